"""The variable-rate pixel codec: continuous quality, checkerboard context, exact decoding, slim files."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from icmkit import bitstream
from icmkit.api import psnr
from icmkit.codecs.base import QualitySpec
from icmkit.codecs.learned import LearnedPixelCodec, VariableRatePixelCodec
from icmkit.errors import QualityError, WeightsMismatchError
from icmkit.losses.objective import lmbda_at
from icmkit.models import MeanScaleHyperprior, VariableRateHyperprior
from icmkit.models.context import interpolated_gain
from icmkit.models.latent import regridded_gains
from icmkit.weights import load_weights, save_weights

from conftest import synthetic_photo


def test_continuous_quality_spec_snaps_and_round_trips_through_the_header_byte():
    spec = QualitySpec(knob="quality", grid=(1, 2, 3), lo=1, hi=7, default=4, resolution=0.025)
    assert spec.validate(3) == 3 and isinstance(spec.validate(3.0), int)
    assert spec.validate("2.5") == 2.5 and spec.validate(2.51) == 2.5 and spec.validate(2.513) == 2.525
    for value in (1, 1.025, 3.5, 6.975, 7):
        assert 1 <= spec.to_id(value) <= 255 and spec.from_id(spec.to_id(value)) == value
    for bad in (0.99, 7.01, float("nan"), "x"):
        with pytest.raises(QualityError):
            spec.validate(bad)


def test_integer_knobs_refuse_fractions_instead_of_truncating():
    spec = QualitySpec(knob="quality", grid=(10, 50), lo=1, hi=100, default=50)
    assert spec.validate(50.0) == 50 and spec.validate("75") == 75
    with pytest.raises(QualityError, match="integer"):
        spec.validate(37.5)


def test_gain_interpolation_is_exponential_between_neighbours_and_exact_at_grid_points():
    gains = torch.tensor([[1.0, 2.0], [4.0, 8.0], [16.0, 32.0]])
    assert torch.equal(interpolated_gain(gains, 2), gains[1])
    assert torch.allclose(interpolated_gain(gains, 1.5), torch.tensor([2.0, 4.0]))  # geometric mean
    assert torch.equal(interpolated_gain(gains, 3), gains[2])
    with pytest.raises(ValueError):
        interpolated_gain(gains, 3.5)
    assert lmbda_at([0.001, 0.004], 1.5) == pytest.approx(0.002)
    assert lmbda_at([0.001, 0.004], 2) == pytest.approx(0.004)


def test_regridded_gains_are_log_linear_in_lambda_and_continue_the_end_segments():
    rows = torch.tensor([[1.0, 2.0], [2.0, 2.0], [8.0, 1.0]])
    lmbdas = [0.01, 0.02, 0.08]
    assert torch.allclose(regridded_gains(rows, lmbdas, lmbdas), rows)
    between = regridded_gains(rows, lmbdas, [0.04])  # halfway from 0.02 to 0.08 in log λ: the geometric mean
    assert torch.allclose(between, torch.tensor([[4.0, 2**0.5]]))
    below, above = regridded_gains(rows, lmbdas, [0.005, 0.32])
    assert torch.allclose(below, torch.tensor([0.5, 2.0])) and torch.allclose(above, torch.tensor([32.0, 0.5]))
    with pytest.raises(ValueError, match="rise"):
        regridded_gains(rows, [0.02, 0.01, 0.08], [0.04])
    with pytest.raises(ValueError, match="rows"):
        regridded_gains(rows, [0.01, 0.02], [0.04])


def test_rate_grows_with_continuous_quality(tiny_vr_codec):
    image = synthetic_photo(64, 128, seed=3)
    sizes = [len(tiny_vr_codec.encode(image, q)) for q in (1, 1.5, 2, 2.75, 3.5, 4)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@pytest.mark.parametrize("quality", [1, 2.5, 4])
def test_round_trip_matches_the_model_and_the_header_records_the_quality(tiny_vr_codec, quality):
    image = synthetic_photo(70, 97, seed=1)
    data = tiny_vr_codec.encode(image, quality)
    header, streams = bitstream.unpack(data)
    assert tiny_vr_codec.quality.from_id(header.quality) == quality and len(streams) == 3
    decoded = tiny_vr_codec.decode(data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    # the codec's output is the model's own reconstruction of the padded image, cropped
    model, _ = tiny_vr_codec.model(quality)
    x, _, _ = tiny_vr_codec.prepare_input(image, model)
    coded = model.compress(x, quality)
    x_hat = model.decompress(coded["strings"], coded["shape"], quality)["x_hat"]
    expected = torch.round(x_hat[0, :, :70, :97].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(decoded, expected)


def test_decoding_is_bit_identical_across_threads_and_batching(tiny_vr_codec):
    streams = [tiny_vr_codec.encode(synthetic_photo(70, 97, seed=s), q) for s, q in ((0, 1.5), (1, 3), (2, 3))]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone_1 = [tiny_vr_codec.decode(s) for s in streams]
        torch.set_num_threads(2)
        batch_2 = tiny_vr_codec.decode_batch(streams)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(alone_1, batch_2):
        assert np.array_equal(a, b)


def test_the_context_pass_is_used_and_changes_the_rate(tiny_vr_weights):
    """With a nonzero residual the second pass's tables differ from the first's: both streams carry data."""
    model, _ = load_weights(tiny_vr_weights)
    x = torch.from_numpy(synthetic_photo(64, 64, seed=5)).permute(2, 0, 1).unsqueeze(0).float() / 255
    anchors, others, z = (s[0] for s in model.compress(x, 2)["strings"])
    assert anchors and others and z


def test_a_fresh_variable_rate_model_is_the_plain_hyperprior_it_was_loaded_from():
    torch.manual_seed(0)
    source = MeanScaleHyperprior(N=16, M=24).eval()
    model = VariableRateHyperprior(N=16, M=24, qualities=3).eval()
    model.load_state_dict(source.state_dict(), strict=False)
    model.set_gains_for([0.0025, 0.01, 0.04], 0.01)  # quality 2 is the source's own λ: gain 1
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = model(x, 2), source(x)
    assert torch.allclose(ours["x_hat"], theirs["x_hat"], atol=1e-5)
    assert torch.allclose(ours["likelihoods"]["y"], theirs["likelihoods"]["y"], atol=1e-5)
    assert torch.allclose(model.gains(1)[0], torch.full((1, 24, 1, 1), 0.5))


def test_slim_file_holds_only_what_coding_reads(tiny_vr_weights):
    model, meta = load_weights(tiny_vr_weights)
    from safetensors import safe_open

    with safe_open(tiny_vr_weights, framework="pt") as handle:
        keys = set(handle.keys())
    assert not any(k.split(".")[0] in ("h_s", "context", "entropy_parameters") for k in keys)
    assert {"h_s_int.weight0", "context_int.weight0", "entropy_parameters_int.weight0", "gain"} <= keys
    assert json.loads(meta["config"])["qualities"] == 4


def test_other_weights_and_single_rate_streams_fail_cleanly(tiny_vr_codec, tiny_codec, tmp_path):
    image = synthetic_photo(64, 64, seed=2)
    torch.manual_seed(9)
    other = VariableRateHyperprior(N=16, M=24, qualities=4).eval()
    other.update()
    save_weights(other, tmp_path / "other.safetensors", slim=True)
    impostor = VariableRatePixelCodec.from_weights_file(tmp_path / "other.safetensors", name="icm-tiny-vr")
    with pytest.raises(WeightsMismatchError, match="other weights"):
        impostor.decode(tiny_vr_codec.encode(image, 2))
    # a v1 (single rate, one file per point) stream under the same codec name: "other weights", not a crash
    old = LearnedPixelCodec.from_weights_file(tiny_codec._weights[1], name="icm-tiny-vr", quality=1)
    with pytest.raises(WeightsMismatchError, match="other weights"):
        tiny_vr_codec.decode(old.encode(image, 1))


def test_a_variable_rate_codec_refuses_a_single_rate_file(tiny_weights):
    from icmkit.errors import IcmError

    codec = VariableRatePixelCodec("icm-x", Path(tiny_weights), 1)
    with pytest.raises(IcmError, match="not a variable-rate one"):
        codec.encode(synthetic_photo(8, 8), 1)


def test_psnr_is_sane_at_every_grid_point(tiny_vr_codec):
    image = synthetic_photo(64, 64, seed=4)
    for quality in tiny_vr_codec.quality.grid:
        assert np.isfinite(psnr(image, tiny_vr_codec.decode(tiny_vr_codec.encode(image, quality))))


def test_cli_takes_a_continuous_quality_and_info_shows_it(tmp_path):
    from PIL import Image

    from helpers.cli import run

    source = tmp_path / "in.png"
    Image.fromarray(synthetic_photo(48, 64, seed=7)).save(source)
    out = tmp_path / "out.icm"
    done = run("compress", source, "-o", out, "--codec", "icm-mse", "-q", "2.75")
    assert done.returncode == 0, done.stderr
    info = json.loads(run("info", out, "--json").stdout)
    assert info["quality"] == 2.75 and info["weights"] == "match installed"
    assert run("decompress", out).returncode == 0
    refused = run("compress", source, "-o", tmp_path / "x.icm", "--codec", "icm-mse", "-q", "9")
    assert refused.returncode == 2 and "outside" in refused.stderr and not (tmp_path / "x.icm").exists()
