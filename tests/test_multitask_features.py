"""One ResNet-50 layer1 feature stream for the classifier and the v1 COCO detectors (random, seeded weights):
the R50 smoke recipe, the detection geometry, `icm predict` / `icm bench --task detect` on feature streams."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import icmkit
from icmkit import bitstream
from icmkit.backbones.detection import SplitDetector
from icmkit.codecs.from_file import codec_from_weights_file
from icmkit.errors import BitstreamError, IcmError
from icmkit.feature_io import FeatureFileError, features_to_bytes, load_features
from icmkit.geometry import DetectionGeometry
from icmkit.tasks.detection import load_detector

from conftest import synthetic_photo
from helpers.cli import assert_user_error, icm, run

ROOT = Path(__file__).resolve().parents[1]
SIZE = (96, 160)  # the detectors' min_size / max_size here: small inputs keep the tests fast
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def r50_weights(tmp_path_factory) -> str:
    """configs/smoke-dicm-r50.yaml run for real (4 steps on random weights): the recipe's CI smoke run."""
    out = tmp_path_factory.mktemp("r50") / "run"
    result = run("train", "--config", ROOT / "configs" / "smoke-dicm-r50.yaml", f"out={out}")
    assert result.returncode == 0, result.stderr
    return str(out / "final.safetensors")


@pytest.fixture(scope="module")
def codec(r50_weights):
    return codec_from_weights_file(r50_weights)


@pytest.fixture(scope="module")
def image():
    return synthetic_photo(90, 130, seed=3)


def _detector(name: str = "fasterrcnn_resnet50_fpn"):
    loose = {"score_thresh": 0.0} if name.startswith("retinanet") else {"box_score_thresh": 0.0}
    return SplitDetector(load_detector(name, None, min_size=SIZE[0], max_size=SIZE[1], **loose))


def test_detection_stream_records_the_geometry(codec, image):
    data = codec.for_detection(*SIZE).encode(image, 2)
    header, _ = bitstream.unpack(data)
    assert (header.height, header.width, header.pad_bottom, header.pad_right) == (90, 130, 0, 0)
    extra = bitstream.unpack_extra(header.extra)
    assert extra["g"] == b"96x138" and extra["f"] == b"256x32x48"  # 96×138 → padded 96×160 → 24×40, coded 32×48
    decoded = codec.decode(data)
    assert decoded.image_size == (90, 130) and decoded.meta["resized"] == (96, 138)
    assert tuple(decoded.tensors["features"].shape) == (1, 256, 24, 40)
    # The full geometry is unchanged: no g record, the image's own map.
    plain = codec.decode(codec.for_full_image().encode(image, 2))
    assert "resized" not in plain.meta and tuple(plain.tensors["features"].shape) == (1, 256, 23, 33)


def test_uncompressed_detection_features_give_the_unsplit_detections(codec, image):
    detector = _detector()
    reference = detector.detector.predict([image], batch_size=1)[0]
    features = codec.for_detection(*SIZE).uncompressed(image)
    geometry = DetectionGeometry(features.image_size, features.meta["resized"])
    result = detector.predict(features.tensors["features"], geometry)
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_array_equal(result[key], reference[key])


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_one_stream_serves_classifier_and_detectors(codec, image, name):
    data = codec.for_detection(*SIZE).encode(image, 1)
    found = icmkit.detect(data, model=name, weights=None, codec=codec, min_size=SIZE[0], max_size=SIZE[1])
    assert found.kind == "feature_stream" and found.model == name and found.codec == codec.name
    assert len(found.boxes) == len(found.scores) == len(found.labels) == len(found.names)
    if not name.startswith("retinanet"):  # random RetinaNet scores stay under its 0.05 threshold
        assert len(found.boxes) > 0
        assert found.boxes[:, [0, 2]].max() <= 130 and found.boxes[:, [1, 3]].max() <= 90  # original coordinates
    assert (found.masks is not None) == name.startswith("mask")
    classified = icmkit.predict(data, weights=None, codec=codec)  # a stream never names its weights file
    assert classified.model == "resnet50" and len(classified.top_k) == 5


def test_detectors_refuse_other_streams(codec, image, tiny_feature_codec):
    plain = codec.encode(image, 1)  # the classifier geometry (the default)
    with pytest.raises(IcmError, match="classifier geometry"):
        icmkit.detect(plain, weights=None, codec=codec, min_size=SIZE[0], max_size=SIZE[1])
    lite0 = tiny_feature_codec.for_detection(*SIZE).encode(image, 1)
    with pytest.raises(IcmError, match="decodes resnet50 layer1 features"):
        icmkit.detect(lite0, codec=tiny_feature_codec, weights=None, min_size=SIZE[0], max_size=SIZE[1])
    with pytest.raises(IcmError, match="no frozen ImageNet stem|whole backbone"):
        data = codec.for_detection(*SIZE).encode(image, 1)
        icmkit.detect(data, model="fasterrcnn_resnet50_fpn_v2", weights=None, codec=codec)


def test_crafted_detection_headers_fail_cleanly(codec, image):
    data = codec.for_detection(*SIZE).encode(image, 1)
    header, streams = bitstream.unpack(data)
    items = bitstream.unpack_extra(header.extra)
    for bad in (b"0x138", b"96x", b"99999x99999", b"200x138"):  # the last: not the coded map
        crafted = bitstream.pack(dataclasses.replace(header, extra=bitstream.pack_extra({**items, "g": bad})), streams)
        with pytest.raises(BitstreamError, match="malformed feature stream header"):
            codec.decode(crafted)
    padded = bitstream.pack(dataclasses.replace(header, pad_bottom=6), streams)
    with pytest.raises(BitstreamError, match="padding in a resized stream"):
        codec.decode(padded)


def test_detection_features_survive_a_features_file(codec, image):
    decoded = codec.decode(codec.for_detection(*SIZE).encode(image, 1))
    again = load_features(features_to_bytes(decoded))
    assert again.meta["resized"] == (96, 138)
    assert torch.equal(again.tensors["features"], decoded.tensors["features"])
    cropped = type(decoded)(
        tensors={"features": decoded.tensors["features"][..., :-1]},
        strides=decoded.strides,
        image_size=decoded.image_size,
        meta=decoded.meta,
    )
    with pytest.raises((FeatureFileError, IcmError), match="resized to 96x138"):
        features_to_bytes(cropped)


def test_cli_compress_info_predict_with_a_detector(r50_weights, tmp_path):
    from PIL import Image

    Image.fromarray(synthetic_photo(90, 130, seed=3)).save(tmp_path / "photo.png")
    stream = tmp_path / "photo.icm"
    result = run("compress", tmp_path / "photo.png", "--codec", r50_weights, "--detector-size", "96", "-o", stream)
    assert result.returncode == 0, result.stderr
    info = json.loads(run("info", stream, "--json").stdout)
    assert info["geometry"] == "detection" and info["resized"] == "96x138"  # 90×130 with the shorter side to 96
    named = ("--model", "fasterrcnn_resnet50_fpn", "--model-weights", "none", "--min-score", "0", "--json")
    # A header never picks a weights file: in a fresh process (in this one the compress above registered the file).
    assert_user_error(icm("predict", stream, *named), "--codec FILE")
    result = run("predict", stream, "--codec", r50_weights, *named)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["kind"] == "feature_stream" and record["model"] == "fasterrcnn_resnet50_fpn"
    assert record["detections"] and {"label", "name", "score", "box"} <= set(record["detections"][0])
    assert_user_error(
        run("compress", tmp_path / "photo.png", "--codec", "jpeg", "--detector-size", "96", "-o", tmp_path / "x.jpg"),
        "--detector-size is for feature codecs",
    )
    assert not (tmp_path / "x.jpg").exists()


def test_bench_detect_and_segment_with_a_feature_codec(r50_weights, tiny_coco, tmp_path):
    out = tmp_path / "bench"
    result = run(
        "bench", "--data", tiny_coco, "--task", "segment", "--model", "maskrcnn_resnet50_fpn", "--model-weights",
        "none", "--detector-min-size", "96", "--codecs", f"{r50_weights}:1,jpeg:50", "--anchor", "jpeg",
        "--workers", "1", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "summary.csv").open()))
    feature = [r for r in rows if r["codec"] == r50_weights]
    assert len(feature) == 1 and feature[0]["map"] != "" and feature[0]["psnr"] == ""
    bpp = float(feature[0]["bpp"])
    per_image = [r for r in csv.DictReader((out / "results.csv").open()) if r["codec"] == r50_weights]
    assert bpp == pytest.approx(
        np.mean([8 * int(r["bytes"]) / (80 * 64) for r in per_image]), rel=1e-4
    )  # original pixels
    saved = list((out / "detections").glob("*.jsonl"))
    assert len(saved) == 2 and all("/" not in p.name for p in saved)


def test_bench_detect_refuses_a_feature_codec_of_another_backbone(tiny_feature_weights, tiny_coco, tmp_path):
    result = run(
        "bench", "--data", tiny_coco, "--task", "detect", "--model-weights", "none", "--detector-min-size", "96",
        "--codecs", f"{tiny_feature_weights}:1", "--workers", "1", "--anchor", tiny_feature_weights, "--out",
        tmp_path / "b",
    )  # fmt: skip
    assert_user_error(result, "decodes resnet50 layer1 features")
    assert not (tmp_path / "b").exists()


def test_split_recipe_script_is_the_config(tmp_path):
    """scripts/train_dicm_r50.sh runs configs/icm-dicm-r50.yaml (checked without training: --help-free dry run)."""
    script = (ROOT / "scripts" / "train_dicm_r50.sh").read_text()
    assert "configs/icm-dicm-r50.yaml" in script
    result = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "train_dicm_r50.sh")], capture_output=True)
    assert result.returncode == 0
