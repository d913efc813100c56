"""Receiver-side restoration (issue 21): the filter model, the quality read from standard streams, composed
``BASE+FILTER`` codecs (streams byte for byte the base's), `--restore`, and training on a decoded-crop cache.
Tiny filters with random weights and synthetic images only (no shipped weights needed)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from icmkit.cli.main import app
from icmkit.codecs.anchors import _rawstream
from icmkit.codecs.anchors.hevc_headers import slice_qp
from icmkit.codecs.anchors.jpeg_quality import estimate_quality
from icmkit.codecs.registry import get_codec
from icmkit.codecs.restored import RestoredCodec
from icmkit.errors import BitstreamError, IcmError
from icmkit.fidelity import psnr
from icmkit.models.restoration import RestorationNet
from icmkit.train.config import RESTORATION, TrainConfig
from icmkit.train.decoded_cache import CacheSpec, DecodedCrops, build
from icmkit.train.trainers import make_trainer
from icmkit.weights import save_weights

from conftest import labelled_folder, require_codec, synthetic_photo
from train_helpers import TINY_FIELDS

RANGES = {"hevc444": (12.0, 50.0), "jpeg": (5.0, 95.0)}


def tiny_filter(base: str, seed: int = 0, scale: int = 4, edge_kernel: int = 3) -> RestorationNet:
    torch.manual_seed(seed)
    net = RestorationNet(base, *RANGES[base], scale=scale, width=8, blocks=1, embedding=8, edge_kernel=edge_kernel)
    with torch.no_grad():
        for parameter in net.parameters():  # not the identity it starts as: the filter must change pixels
            parameter.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def filter_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("filters")
    paths = {}
    for base in RANGES:
        paths[base] = folder / f"{base}-filter.safetensors"
        save_weights(tiny_filter(base), paths[base], {"beta": 1.0})
    return paths


@pytest.fixture(scope="module")
def image():
    return synthetic_photo(70, 97, seed=3)


def composed(base: str, path) -> RestoredCodec:
    return get_codec(str(path))


# -- the model -------------------------------------------------------------------------------------
def test_an_untrained_filter_is_the_identity():
    net = RestorationNet("jpeg", 5, 95, width=8, blocks=2)
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(x, torch.tensor([10.0, 90.0])), x)


def off_by(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    difference = (a.int() - b.int()).abs()
    return int(difference.max()), float((difference > 0).float().mean())


@pytest.mark.parametrize("scale, edge_kernel", [(4, 3), (8, 1)])
def test_tiles_give_the_whole_image_result_on_any_size(scale, edge_kernel):
    """Tiles read exactly the pixels the whole image does; only a convolution's summation order (which may depend
    on its input's size) can move a value across a rounding boundary: at most 1 level, on a few samples."""
    net = tiny_filter("jpeg", scale=scale, edge_kernel=edge_kernel)
    pad = (0, -203 % scale, 0, -101 % scale)
    image = (torch.rand(1, 3, 101, 203, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    whole = net.restore(image, 40, tile=1000)
    assert whole.shape == image.shape and whole.dtype == torch.uint8
    worst, share = off_by(net.restore(image, 40, tile=8), whole)
    assert worst <= 1 and share < 1e-3
    reference = net(torch.nn.functional.pad(image.float() / 255, pad, mode="replicate"), torch.tensor([40.0]))
    expected = (reference[..., :101, :203] * 255).round().clamp(0, 255).to(torch.uint8)
    worst, share = off_by(whole, expected)
    assert worst <= 1 and share < 1e-3
    assert torch.equal(net.restore(image, 40, tile=8), net.restore(image, 40, tile=8))  # a fixed grid: repeatable


def test_the_condition_changes_the_output_and_clamps_outside_the_range():
    net = tiny_filter("hevc444")
    image = (torch.rand(1, 3, 32, 32) * 255).to(torch.uint8)
    assert not torch.equal(net.restore(image, 20), net.restore(image, 45))
    assert torch.equal(net.restore(image, 50), net.restore(image, 60))  # above the training range: its top
    assert torch.equal(net.restore(image, 0), net.restore(image, 12))


@pytest.mark.parametrize("scale, edge_kernel", [(4, 3), (8, 1)])
def test_restored_output_does_not_depend_on_the_thread_count(scale, edge_kernel):
    net = tiny_filter("jpeg", scale=scale, edge_kernel=edge_kernel)
    image = (torch.rand(1, 3, 256, 384) * 255).to(torch.uint8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.restore(image, 30)
        torch.set_num_threads(2)
        two = net.restore(image, 30)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


# -- the quality read from standard streams ----------------------------------------------------------
def test_hevc444_slice_qp_is_read_from_the_stream(image, filter_files):
    codec = require_codec("hevc444")
    for q in (2, 12, 27, 37, 50):
        _, stream = _rawstream.unpack(codec.encode(image, q), _rawstream.StreamKind.HEVC_444, 8, "hevc444")
        assert slice_qp(stream) == q - 2  # x265 at BPG's q: QP q + 1 minus its I-picture offset of 3
        assert composed("hevc444", filter_files["hevc444"]).stream_quality(codec.encode(image, q)) == q


def test_jpeg_quality_is_exact_for_libjpeg_files(image):
    codec = require_codec("jpeg")
    for q in (1, 5, 33, 50, 75, 95):
        assert estimate_quality(codec.encode(image, q)) == q
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=88, subsampling=0, optimize=True)  # another writer's options
    assert estimate_quality(buffer.getvalue()) == 88


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x00\x01", b"\x00\x00\x01\x40\x01\x0c", b"\x00\x00\x01\x42\x01" + b"\xff" * 40, bytes(range(256)) * 4],
)
def test_corrupt_hevc_headers_give_one_clean_error(data):
    with pytest.raises(BitstreamError):
        slice_qp(data)


def test_truncated_hevc_headers_give_one_clean_error(image):
    _, stream = _rawstream.unpack(require_codec("hevc444").encode(image, 30), _rawstream.StreamKind.HEVC_444, 8, "h")
    truth, raised = slice_qp(stream), 0
    for cut in range(0, len(stream), 3):
        try:  # a cut after the slice QP leaves the fields it needs whole
            assert slice_qp(stream[:cut]) == truth
        except BitstreamError:
            raised += 1
    assert raised >= 10


# -- composed codecs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("base", sorted(RANGES))
def test_a_composed_codec_writes_the_base_stream_and_restores_its_decode(base, filter_files, image):
    codec, plain = composed(base, filter_files[base]), require_codec(base)
    assert codec.name == str(filter_files[base]) and codec.kind.value == "pixel" and codec.base.name == base
    quality = 30
    stream = codec.encode(image, quality)
    assert stream == plain.encode(image, quality)  # byte for byte the base's
    base_decoded = plain.decode(stream)
    restored = codec.decode(stream)
    assert restored.shape == image.shape and restored.dtype == np.uint8
    assert not np.array_equal(restored, base_decoded)
    net = tiny_filter(base)
    x = torch.from_numpy(base_decoded.copy()).permute(2, 0, 1).unsqueeze(0)
    assert np.array_equal(restored, net.restore(x, quality)[0].permute(1, 2, 0).numpy())  # conditioned on q
    assert np.array_equal(codec.decode(stream), restored)


def test_a_banded_codec_restores_each_stream_with_the_filter_of_its_band(image, tmp_path):
    paths = []
    for index, (lo, hi) in enumerate([(5, 40), (41, 95)]):
        torch.manual_seed(index)
        net = RestorationNet("jpeg", lo, hi, scale=8, width=8, blocks=1, embedding=8, edge_kernel=1)
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.normal_(0, 0.05)
        paths.append(tmp_path / f"band{index}.safetensors")
        save_weights(net.eval(), paths[-1], {"beta": 1.0})
    banded = RestoredCodec(require_codec("jpeg"), paths, name="jpeg+test-bands")
    bands = [RestoredCodec(require_codec("jpeg"), path, name=f"jpeg+b{i}") for i, path in enumerate(paths)]
    for quality, expected in ((20, 0), (40, 0), (41, 1), (90, 1), (99, 1), (1, 0)):
        assert banded.filter(quality).config["quality_lo"] == (5, 41)[expected]
    for quality, expected in ((20, 0), (80, 1)):
        stream = banded.encode(image, quality)
        assert np.array_equal(banded.decode(stream), bands[expected].decode(stream))
    assert len(banded.fingerprint(50).split("+")) == 3  # the base's and both filters' digests


def test_a_filter_for_another_base_is_refused(filter_files, image):
    jpeg_stream = require_codec("jpeg").encode(image, 50)
    with pytest.raises(BitstreamError):
        composed("hevc444", filter_files["hevc444"]).decode(jpeg_stream)  # not an hevc444 stream
    mismatched = RestoredCodec(require_codec("jpeg"), filter_files["hevc444"], name="jpeg+wrong")
    with pytest.raises(IcmError, match="behind hevc444"):
        mismatched.decode(jpeg_stream)


def test_cli_compress_decompress_restore_and_predict_with_a_composed_codec(filter_files, image, tmp_path):
    runner = CliRunner()
    source = tmp_path / "photo.png"
    Image.fromarray(image).save(source)
    codec = str(filter_files["jpeg"])
    result = runner.invoke(app, ["compress", str(source), "--codec", codec, "-q", "40", "-o", str(tmp_path / "a.jpg")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.jpg").read_bytes() == require_codec("jpeg").encode(image, 40)
    # A plain JPEG written outside icmkit restores the same way.
    Image.fromarray(image).save(tmp_path / "camera.jpg", quality=40)
    for name in ("a.jpg", "camera.jpg"):
        out = tmp_path / f"{name}.png"
        result = runner.invoke(app, ["decompress", str(tmp_path / name), "--restore", codec, "-o", str(out)])
        assert result.exit_code == 0, result.output
        expected = composed("jpeg", filter_files["jpeg"]).decode((tmp_path / name).read_bytes())
        assert np.array_equal(np.asarray(Image.open(out)), expected)
    result = runner.invoke(app, ["decompress", str(tmp_path / "a.jpg"), "--restore", str(filter_files["hevc444"])])
    assert result.exit_code != 0 and "restores hevc444 streams" in result.output
    result = runner.invoke(app, ["decompress", str(tmp_path / "a.jpg"), "--restore", "nosuch"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    result = runner.invoke(
        app, ["predict", str(tmp_path / "a.jpg"), "--codec", codec, "--model-weights", "none", "--json", "-k", "2"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["codec"] == codec and len(record["top_k"]) == 2


# -- training ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decoded_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-images")
    for seed in range(3):
        Image.fromarray(synthetic_photo(80, 96, seed=seed)).save(root / f"{seed}.png")
    out = tmp_path_factory.mktemp("cache") / "jpeg"
    build(CacheSpec("jpeg", (str(root),), crop=64, crops=2, qualities=2), out)
    return out


def restoration_config(cache, out, **changes) -> TrainConfig:
    sizes = {k: v for k, v in TINY_FIELDS.items() if k not in ("N", "M")}  # the codec widths are not a filter's
    fields = {"architecture": RESTORATION, "data": [], "filter_width": 8, "filter_blocks": 1, **sizes}
    return TrainConfig.from_flat(**{**fields, "decoded_cache": str(cache), "out": str(out), **changes})


def test_training_exports_a_filter_for_the_caches_codec_and_resumes_exactly(decoded_cache, tmp_path):
    whole = make_trainer(restoration_config(decoded_cache, tmp_path / "whole")).run()
    make_trainer(restoration_config(decoded_cache, tmp_path / "split", stop_at=2)).run()
    split = make_trainer(restoration_config(decoded_cache, tmp_path / "split")).run()
    a, b = load_file(str(whole)), load_file(str(split))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    codec = get_codec(str(whole))
    assert isinstance(codec, RestoredCodec) and codec.base.name == "jpeg"
    assert codec.filter().config["quality_lo"] == 5.0 and codec.filter().config["quality_hi"] == 95.0
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in a.items() if k.startswith("tail"))  # it trained


def test_a_band_filter_trains_only_on_its_band_and_is_conditioned_on_it(decoded_cache, tmp_path):
    crops = DecodedCrops(decoded_cache)
    inside = crops.indices_within(5, 50)
    qualities = [crops.record(int(i))["quality"] for i in range(len(crops))]
    assert sorted(inside.tolist()) == [i for i, q in enumerate(qualities) if 5 <= q <= 50]
    assert 0 < len(inside) < len(crops)  # the cache holds one quality from each half of JPEG's grid
    config = restoration_config(decoded_cache, tmp_path / "band", quality_band=[5, 50], filter_edge_kernel=1)
    trainer = make_trainer(config)
    seen = {float(q) for _ in range(10) for q in trainer.next_batch()[2]}
    assert seen and all(5 <= q <= 50 for q in seen)
    net = get_codec(str(trainer.run())).filter()
    assert (net.config["quality_lo"], net.config["quality_hi"], net.config["edge_kernel"]) == (5.0, 50.0, 1)
    with pytest.raises(IcmError, match="no crop of a quality in quality_band"):
        make_trainer(restoration_config(decoded_cache, tmp_path / "empty", quality_band=[96, 99]))
    with pytest.raises(IcmError, match="quality_band must be"):
        restoration_config(decoded_cache, tmp_path / "bad", quality_band=[50, 5]).validate()


def test_a_checkpoint_of_another_kind_or_version_is_refused(decoded_cache, tmp_path):
    make_trainer(restoration_config(decoded_cache, tmp_path / "run", stop_at=2)).run()
    meta_path = tmp_path / "run" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "kind": "moco-v2"}))
    with pytest.raises(IcmError, match="holds the checkpoint of a moco-v2 run, not of a restoration-cnn run"):
        make_trainer(restoration_config(decoded_cache, tmp_path / "run"))
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "kind"}))
    with pytest.raises(IcmError, match="earlier icmkit version"):
        make_trainer(restoration_config(decoded_cache, tmp_path / "run"))


def test_training_without_a_cache_is_refused(tmp_path):
    with pytest.raises(IcmError, match="decoded_cache"):
        restoration_config("", tmp_path / "x").validate()
    with pytest.raises(IcmError, match="decoded_cache"):
        make_trainer(restoration_config(tmp_path / "missing", tmp_path / "y"))
    assert not (tmp_path / "y").exists()


# -- everything that takes a pixel codec takes a composed one -------------------------------------------
@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return labelled_folder(tmp_path_factory.mktemp("labelled"), 120, 150)


def summary_rows(folder) -> list[dict]:
    import csv

    with (folder / "summary.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_bench_classify_runs_a_composed_codec_beside_its_base(filter_files, labelled, tmp_path):
    codec = str(filter_files["jpeg"])
    args = ["bench", "--data", str(labelled), "--out", str(tmp_path / "b"), "--codecs", f"jpeg:10,50,{codec}:10,50"]
    args += ["--anchor", "jpeg", "--model", "resnet18", "--model-weights", "none", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {(r["codec"], r["quality"]): r for r in summary_rows(tmp_path / "b")}
    for quality in ("10", "50"):
        base, restored = rows[("jpeg", quality)], rows[(codec, quality)]
        assert base["bpp"] == restored["bpp"]  # the same stream
        assert base["psnr"] != restored["psnr"]  # restored pixels


def test_bench_detect_runs_a_composed_codec(filter_files, tiny_coco, tmp_path):
    codec = str(filter_files["jpeg"])
    args = ["bench", "--data", str(tiny_coco), "--task", "detect", "--model-weights", "none", "--codecs"]
    args += [f"jpeg:50,{codec}:50", "--anchor", "jpeg", "--workers", "1", "--out", str(tmp_path / "d")]
    result = CliRunner().invoke(app, [*args, "--detector-min-size", "96"])
    assert result.exit_code == 0, result.output
    rows = summary_rows(tmp_path / "d")
    assert [r["codec"] for r in rows] == ["jpeg", codec] and all(0 <= float(r["map"]) <= 100 for r in rows)


def test_rate_control_codes_the_base_stream_of_a_composed_codec(filter_files, image, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(image).save(source)
    codec = str(filter_files["jpeg"])
    runner = CliRunner()
    result = runner.invoke(
        app, ["compress", str(source), "-o", str(tmp_path / "t.jpg"), "--codec", codec, "--target-bytes", "1500"]
    )
    assert result.exit_code == 0, result.output
    data = (tmp_path / "t.jpg").read_bytes()
    assert len(data) <= 1500 and data == require_codec("jpeg").encode(image, estimate_quality(data))
    args = ["compress", str(source), "-o", str(tmp_path / "k.jpg"), "--codec", codec, "--keep-prediction"]
    # The classifier sees the restored image: the tiny random filter garbles it, so no quality keeps the class.
    result = runner.invoke(app, args)
    assert result.exit_code != 0 and f"unreachable with {codec}" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, [*args, "--best-effort"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "k.jpg").read_bytes() == require_codec("jpeg").encode(image, 95)


@pytest.mark.parametrize("name, base, quality", [("hevc444+mmd", "hevc444", 37), ("jpeg+mmd", "jpeg", 30)])
def test_a_shipped_filter_restores_its_base_stream(name, base, quality, image):
    """The shipped filters (zoo families BASE-mmd): the plain stream, a restored decode close to the base's, the
    same with every call (the golden vectors pin their exact output)."""
    from icmkit.zoo import family

    codec, plain = require_codec(name), require_codec(base)
    assert codec.family == f"{base}-mmd" and family(f"{base}-mmd")[0].sha256
    stream = codec.encode(image, quality)
    assert stream == plain.encode(image, quality)
    decoded, restored = plain.decode(stream), codec.decode(stream)
    assert not np.array_equal(decoded, restored)
    assert abs(psnr(image, restored) - psnr(image, decoded)) < 2.0  # a restoration, not another image


def test_a_jpeg_written_elsewhere_restores_with_the_shipped_filter(image, tmp_path):
    """`icm decompress photo.jpg --restore jpeg+mmd` on a JPEG Pillow wrote (not icmkit): the quality read from its
    tables, the filter run, a PNG written; `icm info` shows the quality the filter reads."""
    photo = tmp_path / "photo.jpg"
    Image.fromarray(image).save(photo, quality=23)
    runner = CliRunner()
    result = runner.invoke(app, ["decompress", str(photo), "--restore", "jpeg+mmd", "-o", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    restored = np.asarray(Image.open(tmp_path / "r.png"))
    plain = np.asarray(Image.open(photo).convert("RGB"))
    assert restored.shape == plain.shape and not np.array_equal(restored, plain)
    info = runner.invoke(app, ["info", str(photo), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["quality"] == 23.0
    assert "jpeg+mmd" in json.loads(info.stdout)["restore_with"]
