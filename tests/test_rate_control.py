"""Rate control: bisection over every codec's knob for size, PSNR and keep-prediction targets; CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from icmkit import bitstream
from icmkit.api import predict, psnr
from icmkit.codecs import CodecKind
from icmkit.ratecontrol import Target, TargetError, candidates, compress_to_target, search

from conftest import codec_params, require_codec, synthetic_photo
from helpers.cli import assert_user_error, run

IMAGE = synthetic_photo(64, 96, seed=11)


def _codec(name):
    return require_codec(name)


def _max_encodes(codec) -> int:
    return math.ceil(math.log2(len(candidates(codec.quality)))) + 2


@pytest.mark.parametrize("name", codec_params())
def test_byte_target_is_the_largest_stream_that_fits(name):
    """Within the codec's step: the chosen stream fits and the next quality up would not."""
    codec = _codec(name)
    qualities = candidates(codec.quality)
    low, high = len(codec.encode(IMAGE, qualities[0])), len(codec.encode(IMAGE, qualities[-1]))
    if high <= low:
        pytest.skip(f"{name}: one size at every quality on this image")
    goal = (low + high) // 2
    result = search(codec, IMAGE, Target("bytes", goal))
    assert result.met and len(result.data) <= goal and result.encodes <= _max_encodes(codec)
    index = qualities.index(result.quality)
    if index + 1 < len(qualities):
        assert len(codec.encode(IMAGE, qualities[index + 1])) > goal
    assert result.data == codec.encode(IMAGE, result.quality)  # the search's stream is the codec's own


@pytest.mark.parametrize("name", codec_params(CodecKind.PIXEL))
def test_psnr_target_is_met_within_the_step(name):
    codec = _codec(name)
    qualities = candidates(codec.quality)
    low = psnr(IMAGE, codec.decode(codec.encode(IMAGE, qualities[0])))
    high = psnr(IMAGE, codec.decode(codec.encode(IMAGE, qualities[-1])))
    if not high > low + 0.5:
        pytest.skip(f"{name}: PSNR range too narrow on this image")
    goal = (low + min(high, 60)) / 2
    result = search(codec, IMAGE, Target("psnr", goal))
    assert result.met and psnr(IMAGE, codec.decode(result.data)) >= goal
    index = qualities.index(result.quality)
    if index > 0:  # the step below misses it (PSNR is monotone enough on a smooth image)
        assert psnr(IMAGE, codec.decode(codec.encode(IMAGE, qualities[index - 1]))) < goal


def test_continuous_knob_searches_fractional_qualities(tiny_vr_codec):
    goal = len(tiny_vr_codec.encode(IMAGE, 2.5))
    result = search(tiny_vr_codec, IMAGE, Target("bytes", goal))
    assert result.met and len(result.data) <= goal and result.encodes <= _max_encodes(tiny_vr_codec)
    assert result.quality >= 2.5  # the largest that fits: sizes grow (in steps) with the quality
    following = round(result.quality + tiny_vr_codec.quality.resolution, 6)
    if following <= tiny_vr_codec.quality.hi:  # within the knob's step: one step up no longer fits
        assert len(tiny_vr_codec.encode(IMAGE, following)) > goal


def test_keep_prediction_returns_a_stream_with_the_originals_decision():
    codec = _codec("jpeg")
    image = synthetic_photo(96, 96, seed=2)
    target = Target("keep", model="tf_efficientnet_lite0")
    result = search(codec, image, target, weights=None)  # a random Lite0 suffices: it is a decision to keep
    original = predict(image, "tf_efficientnet_lite0", k=1, weights=None).top_k[0].index
    assert predict(codec.decode(result.data), "tf_efficientnet_lite0", k=1, weights=None).top_k[0].index == original
    top5 = search(codec, image, Target("keep", keep="top5", model="tf_efficientnet_lite0"), weights=None)
    assert len(top5.data) <= len(result.data)  # a looser target never needs more bytes


def test_unreachable_targets_fail_or_fall_back():
    codec = _codec("jpeg")
    with pytest.raises(TargetError, match="unreachable"):
        search(codec, IMAGE, Target("bytes", 10))
    closest = search(codec, IMAGE, Target("bytes", 10), best_effort=True)
    assert not closest.met and closest.quality == candidates(codec.quality)[0] and closest.encodes == 1
    with pytest.raises(TargetError, match="unreachable"):
        search(codec, IMAGE, Target("psnr", 99))
    assert search(codec, IMAGE, Target("psnr", 99), best_effort=True).quality == candidates(codec.quality)[-1]
    smallest = search(codec, IMAGE, Target("psnr", 99), best_effort=True, fallback="smallest")
    assert smallest.quality == candidates(codec.quality)[0]


@pytest.mark.parametrize(
    "kwargs", [{"kind": "bytes", "value": 0}, {"kind": "psnr", "value": 200}, {"kind": "bpp", "value": -1}]
)
def test_out_of_range_targets_are_refused(kwargs):
    with pytest.raises(TargetError):
        Target(**kwargs)
    with pytest.raises(TargetError):
        Target("keep", min_confidence=1.5)


def test_the_record_counts_against_a_size_target(tiny_vr_codec):
    goal = len(bitstream.with_record(tiny_vr_codec.encode(IMAGE, 3), "bytes<=999"))
    result = compress_to_target(tiny_vr_codec, IMAGE, Target("bytes", goal))
    assert len(result.data) <= goal and result.quality >= 3
    header, _ = bitstream.unpack(result.data)
    assert bitstream.read_record(header) == "bytes<=" + str(goal)
    assert tiny_vr_codec.decode(result.data).shape == IMAGE.shape  # decoders accept the record


def test_cli_target_bytes_writes_and_records(tmp_path):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(synthetic_photo(72, 100, seed=3)).save(source)
    out = tmp_path / "out.icm"
    done = run("compress", source, "-o", out, "--codec", "icm-dicm-lite0", "--target-bytes", "1500")
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size <= 1500 and "quality" in done.stdout and "encodes" in done.stdout
    info = json.loads(run("info", out, "--json").stdout)
    assert info["rate_control"] == "bytes<=1500" and info["bytes"] <= 1500
    kept = tmp_path / "kept.jpg"
    done = run("compress", source, "-o", kept, "--codec", "jpeg", "--keep-prediction", "--keep", "top5")
    assert done.returncode == 0 and kept.exists() and "keep-top5" in done.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--target-bytes", "4000", "--target-psnr", "30"], "conflict"),
        (["--target-bytes", "4000", "-q", "50"], "conflict"),
        (["--target-bytes", "0"], "positive"),
        (["--target-psnr", "150"], "out of range"),
        (["--keep-prediction", "--min-confidence", "2"], "min-confidence"),
        (["--keep", "top5"], "only apply with --keep-prediction"),
        (["--target-bytes", "10"], "unreachable"),
    ],
)
def test_cli_target_errors_exit_2_without_output(tmp_path, args, fragment):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(synthetic_photo(40, 40, seed=1)).save(source)
    out = tmp_path / "out.jpg"
    assert_user_error(run("compress", source, "-o", out, "--codec", "jpeg", *args), fragment)
    assert not out.exists()


def test_cli_best_effort_keeps_the_closest_stream_with_a_warning(tmp_path):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(synthetic_photo(40, 40, seed=1)).save(source)
    out = tmp_path / "out.jpg"
    done = run("compress", source, "-o", out, "--codec", "jpeg", "--target-bytes", "10", "--best-effort")
    assert done.returncode == 0 and out.exists() and "warning" in done.stderr and "unreachable" in done.stderr


def test_adaptive_bench_adds_the_sweep_and_its_bd_against_the_fixed_curve(tmp_path):
    from icmkit.bench.benchmark import BenchOptions, run_bench

    outcome = run_bench(
        BenchOptions(out=tmp_path / "b", codecs="jpeg:10,50,90", anchor="jpeg", limit=2, adaptive="keep-top1")
    )
    rows = [r for r in outcome.summary if r["codec"] == "jpeg@keep-top1"]
    assert [r["quality"] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r["bpp"]) for r in rows)
    assert {(r["codec"], r["anchor"]) for r in outcome.bd} >= {("jpeg@keep-top1", "jpeg")}
