"""Feature codecs in `icm bench`: one run with a pixel codec (JPEG) and a feature codec (the tiny DICM of
conftest) on the photos shipped with icmkit, scored by EfficientNet-Lite0 (pixels) and its tail (features)."""

from __future__ import annotations

import csv
import json
import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from icmkit.bench import runner
from icmkit.bench.benchmark import BenchOptions, run_bench
from icmkit.bench.datasets import open_dataset
from icmkit.bench.protocols import resize_center_crop
from icmkit.codecs.base import FeatureMaps
from icmkit.data import SAMPLES_DIR
from icmkit.errors import IcmError

from conftest import registered_codecs

FEATURE = "icm-feature-tiny"
SPEC = f"jpeg:10,50,{FEATURE}"  # the tiny codec has two rate points: its whole grid
IMAGES = 2
LITE0 = "tf_efficientnet_lite0"


def _csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _without_data_uris(text: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", text)


@pytest.fixture(scope="module")
def feature_codec(tiny_feature_codec):
    with registered_codecs(tiny_feature_codec):
        yield tiny_feature_codec


@pytest.fixture(scope="module")
def lite0_split(one_torch_thread):
    """EfficientNet-Lite0 split after blocks.2, loaded on its own (not the benchmark's copy)."""
    from icmkit.backbones import split_classifier

    return split_classifier(LITE0, "blocks.2")


@pytest.fixture(scope="module")
def bench(feature_codec, one_torch_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    outcome = run_bench(BenchOptions(out=out, codecs=SPEC, anchor="jpeg", limit=IMAGES, workers=1))
    return out, outcome


@pytest.fixture(scope="module")
def samples():
    return open_dataset(SAMPLES_DIR, "classify").samples[:IMAGES]


def _crop(sample):
    from icmkit import api

    return resize_center_crop(api.read_image(sample.path), 256)


def _tail_top1(split, features: np.ndarray) -> int:
    """Lite0's tail on the centre 28×28 of a 32×32 blocks.2 map: 224/256 of the 256² crop, at stride 8."""
    assert features.shape == (1, 40, 32, 32)
    with torch.inference_mode():
        logits = split.tail(torch.from_numpy(np.ascontiguousarray(features[:, :, 2:30, 2:30])))
    return int(logits.argmax(1)[0])


def test_rows_of_pixel_and_feature_codecs(bench):
    out, _ = bench
    rows = _csv(out / "results.csv")
    assert sorted((r["codec"], r["quality"]) for r in rows) == sorted(
        [(c, q) for c, q in [("jpeg", "10"), ("jpeg", "50"), (FEATURE, "1"), (FEATURE, "2")]] * IMAGES
    )
    for row in rows:
        assert (row["width"], row["height"]) == ("256", "256")
        assert float(row["bpp"]) == pytest.approx(8 * int(row["bytes"]) / 256**2)
        assert row["top1"] in ("0", "1") and row["top5"] in ("0", "1") and row["agree"] in ("0", "1")
        assert 0 <= int(row["pred"]) < 1000
        if row["codec"] == FEATURE:
            assert row["psnr"] == "" and row["ms_ssim"] == ""  # no pixels, no fidelity
        else:
            assert float(row["psnr"]) > 20 and 0 < float(row["ms_ssim"]) <= 1


def test_feature_rows_are_scored_by_the_tail_on_the_centre_window(bench, feature_codec, lite0_split, samples):
    out, _ = bench
    rows = {(r["key"], r["quality"]): r for r in _csv(out / "results.csv") if r["codec"] == FEATURE}
    reference = {(r["key"], r["reference"]): r for r in _csv(out / "reference.csv")}
    for sample in samples:
        for quality in (1, 2):
            decoded = feature_codec.decode(feature_codec.for_full_image().encode(_crop(sample), quality))
            predicted = _tail_top1(lite0_split, decoded.tensors["features"].numpy())
            row = rows[(sample.key, str(quality))]
            assert int(row["pred"]) == predicted
            assert row["top1"] == str(int(predicted == sample.label))
            # agreement of a feature codec: with the top-1 on the uncompressed features
            assert row["agree"] == str(int(predicted == int(reference[(sample.key, "features@blocks.2")]["pred"])))


def test_uncompressed_references(bench, lite0_split, samples):
    out, outcome = bench
    saved = _csv(out / "reference.csv")
    assert sorted((r["key"], r["reference"]) for r in saved) == sorted(
        (s.key, name) for s in samples for name in ("image", "features@blocks.2")
    )
    by = {(r["key"], r["reference"]): r for r in saved}
    for sample in samples:
        crop = _crop(sample)
        batch = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).float() / 255
        with torch.inference_mode():
            features = lite0_split.features(batch).numpy()
        on_features = _tail_top1(lite0_split, features)
        assert int(by[(sample.key, "features@blocks.2")]["pred"]) == on_features
        on_image = int(by[(sample.key, "image")]["pred"])
        assert by[(sample.key, "features@blocks.2")]["agree"] == str(int(on_features == on_image))
        assert by[(sample.key, "image")]["top1"] == str(int(on_image == sample.label))
    summary = {r["codec"]: r for r in _csv(out / "summary.csv")}
    for name, label in (("image", "(uncompressed image)"), ("features@blocks.2", "(uncompressed blocks.2 features)")):
        expected = 100 * np.mean([int(by[(s.key, name)]["top1"]) for s in samples])
        assert float(summary[label]["top1"]) == pytest.approx(expected)
        assert summary[label]["bpp"] == summary[label]["quality"] == summary[label]["psnr"] == ""
    assert [r["codec"] for r in outcome.reference] == ["(uncompressed image)", "(uncompressed blocks.2 features)"]
    assert outcome.summary[-2:] == outcome.reference


def test_summary_and_bd_leave_fidelity_of_feature_codecs_empty(bench):
    out, outcome = bench
    text = (out / "summary.csv").read_text()
    assert "nan" not in text.lower()
    summary = _csv(out / "summary.csv")
    features = [r for r in summary if r["codec"] == FEATURE]
    assert len(features) == 2 and all(r["psnr"] == r["ms_ssim"] == "" and r["top1"] != "" for r in features)
    assert all(r["psnr"] != "" for r in summary if r["codec"] == "jpeg")
    table = _csv(out / "bd.csv")
    assert {r["codec"] for r in table} == {FEATURE}  # the anchor has no row, the references have none
    assert {r["metric"] for r in table} == {"top1", "top5", "agree"}  # no PSNR / MS-SSIM BD for features
    assert [r["metric"] for r in outcome.bd] == [r["metric"] for r in table]


def test_plots_leave_feature_codecs_out_of_fidelity_and_draw_references(bench):
    out, _ = bench
    psnr, top1 = (out / "plots" / "psnr.svg").read_text(), (out / "plots" / "top1.svg").read_text()
    assert "jpeg" in psnr and FEATURE not in psnr  # matplotlib keeps each legend text as an SVG comment
    assert FEATURE in top1 and "(uncompressed blocks.2 features)" in top1 and "(uncompressed image)" in top1


def test_report_shows_heat_maps_of_decoded_and_original_features(bench):
    out, _ = bench
    index = json.loads((out / "showcase" / runner.HEATMAPS_INDEX).read_text())
    assert set(index["maps"]) == {f"{FEATURE}-1", f"{FEATURE}-2"}
    assert index["maps"][f"{FEATURE}-1"]["window"] == [2, 2, 28, 28]
    original = np.asarray(Image.open(out / "showcase" / index["originals"]["features@blocks.2"]["file"]))
    decoded = np.asarray(Image.open(out / "showcase" / index["maps"][f"{FEATURE}-1"]["file"]))
    assert original.shape == decoded.shape == (256, 256, 3)
    assert original[:, :16].std() > 0  # the map outside the window is not flat
    assert (original[16, 16:240] == 255).all() and (original[239, 16:240] == 255).all()  # the tail's window
    assert not (original[15, 16:240] == 255).all() and not (original[8, 100] == 255).all()
    text = (out / "report.html").read_text()
    stripped = _without_data_uris(text)
    assert f'alt="{FEATURE} decoded features"' in stripped and f'alt="{FEATURE} original features"' in stripped
    assert "(uncompressed blocks.2 features)" in stripped and "nan" not in stripped.lower()
    assert 'src="http' not in text
    # the original crop, one decoded JPEG crop, and the feature codec's two heat maps; the plots as SVG
    assert text.count("data:image/png;base64,") == 1 + 1 + 2
    assert text.count("data:image/svg+xml;base64,") == len(list((out / "plots").glob("*.svg")))


def test_resumed_run_prints_the_references_and_codes_nothing(bench, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from icmkit.cli.main import app

    out, _ = bench
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = (copy / "results.csv").read_text(), (copy / "reference.csv").read_text()
    coded = []
    monkeypatch.setattr(runner, "code_chunk", lambda *args: coded.append(args) or pytest.fail("coded again"))
    result = CliRunner().invoke(
        app,
        ["bench", "--out", str(copy), "--codecs", SPEC, "--anchor", "jpeg", "--limit", str(IMAGES), "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "(uncompressed image)" in result.output and "(uncompressed blocks.2 features)" in result.output
    assert FEATURE in result.output and not coded
    assert ((copy / "results.csv").read_text(), (copy / "reference.csv").read_text()) == before
    assert (copy / "summary.csv").read_text() == (out / "summary.csv").read_text()


def test_workers_get_back_numpy_features(feature_codec, samples, one_torch_thread):
    rows, decoded = runner.code_chunk(FEATURE, 1, samples[:1], 256)
    assert isinstance(decoded[0], FeatureMaps)
    features = decoded[0].tensors["features"]
    assert isinstance(features, np.ndarray) and features.dtype == np.float32 and features.shape == (1, 40, 32, 32)
    assert decoded[0].meta["split"] == "blocks.2" and decoded[0].image_size == (256, 256)
    assert len(pickle.dumps(decoded[0])) < features.nbytes + 2048  # the array and a little metadata
    assert rows[0]["psnr"] == rows[0]["ms_ssim"] == ""


@pytest.mark.parametrize(
    "model, weights, fragment",
    [
        ("resnet18", None, "run with --model tf_efficientnet_lite0"),
        (LITE0, None, "head digest"),  # the right architecture with other (random) weights
    ],
)
def test_mismatched_classifier_is_refused_before_coding(
    model, weights, fragment, feature_codec, one_torch_thread, tmp_path, monkeypatch
):
    monkeypatch.setattr(runner, "code_chunk", lambda *args: pytest.fail("coded before refusing"))
    out = tmp_path / "refused"
    with pytest.raises(IcmError, match=re.escape(fragment)) as caught:
        run_bench(BenchOptions(out=out, codecs=SPEC, anchor="jpeg", model=model, model_weights=weights, limit=1))
    assert FEATURE in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


def test_feature_codecs_outside_classification(feature_codec, tmp_path):
    """Fidelity refuses feature codecs; detection takes only ResNet-50 layer1 ones (a Lite0 codec is refused)."""
    from icmkit.tasks.detection import load_detector
    from icmkit.tasks.evaluators import DetectionEvaluator

    with pytest.raises(IcmError, match="feature codecs serve classification, detection and segmentation"):
        run_bench(BenchOptions(out=tmp_path / "f", task="fidelity", codecs=f"jpeg:50,{FEATURE}", anchor="jpeg"))
    assert not (tmp_path / "f").exists()
    coco = tmp_path / "instances.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
                "annotations": [],
                "categories": [{"id": 1, "name": "person"}],
            }
        )
    )
    detector = load_detector("fasterrcnn_resnet50_fpn", None, min_size=64, max_size=96)
    for segm in (False, True):
        evaluator = DetectionEvaluator(detector=detector, annotations=coco, image_ids={"a.jpg": 1}, segm=segm)
        assert evaluator.detection_size == (64, 96)
        evaluator.check_codec(runner.get_codec("jpeg"), [50])  # pixel codecs are fine
        with pytest.raises(IcmError, match=f"decodes resnet50 layer1 features.*--task {evaluator.task}"):
            evaluator.check_codec(feature_codec, [1])


def test_classification_evaluator_protocol(feature_codec, samples, one_torch_thread):
    from icmkit.tasks import load_classifier
    from icmkit.tasks.evaluators import ClassificationEvaluator

    evaluator = ClassificationEvaluator(load_classifier(LITE0), {s.key: s.label for s in samples})
    evaluator.check_codec(feature_codec, [1, 2])
    assert evaluator.reference_names() == ["image", "features@blocks.2"]
    keys, images = [s.key for s in samples], [_crop(s) for s in samples]
    references = evaluator.reference(keys, images)
    image_refs = [r for r in references if r["reference"] == "image"]
    # the uncompressed inputs themselves agree with their references, images and features alike
    evaluator.reset()
    on_images = evaluator.update(keys, images)
    assert [r["pred"] for r in on_images] == [r["pred"] for r in image_refs] and all(r["agree"] == 1 for r in on_images)
    features = evaluator.uncompressed(images, "features@blocks.2")
    on_features = evaluator.update(keys, features)
    assert all(r["agree"] == 1 for r in on_features)
    both = evaluator.compute()
    # the tail sees only the centre 28×28 (224/256 of the 32×32 map): what lies outside does not count
    assert evaluator.feature_window(features[0]) == (2, 2, 28, 28)
    noisy = features[0].tensors["features"].copy()
    window = np.zeros(noisy.shape, bool)
    window[:, :, 2:30, 2:30] = True
    noisy[~window] = np.random.default_rng(0).normal(0, 500, int((~window).sum()))
    changed = FeatureMaps({"features": noisy}, features[0].strides, features[0].image_size, features[0].meta)
    assert evaluator.update(keys[:1], [changed])[0]["pred"] == on_features[0]["pred"]
    evaluator.reset()
    evaluator.update_from_records(on_images + on_features)
    assert both["agree"] == 100.0
    hits = sum(r["top1"] for r in on_images + on_features)
    assert both["top1"] == pytest.approx(100 * hits / (2 * len(keys)))
    evaluator.reset()
    assert evaluator.compute() == {"top1": "", "top5": "", "agree": ""}
    evaluator.update_from_records([{k: str(v) for k, v in r.items()} for r in on_images + on_features])
    assert evaluator.compute() == both  # saved records give the same set metrics
