"""Issue 23, reproduction 8: weights files and the codec names streams carry.

A stream's header names its codec; that name resolves only to a registered codec, never to a file (a header naming
``w/x.safetensors`` must not make ``decompress`` / ``predict`` / ``info`` load that file). A weights file the user
names (``--codec FILE``) is checked before any model is built: each crafted file below ends in one IcmError.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import icmkit
import icmkit.weights
from icmkit.cli.main import app
from icmkit.codecs.from_file import codec_from_weights_file
from icmkit.codecs.registry import registered_codec, unregister_codec
from icmkit.errors import IcmError, UnknownCodecError
from icmkit.weights import check_weights_file, coding_digest, load_weights


def _read(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    return load_file(str(path)), metadata


def _config_edit(**changes):
    def edit(state, metadata):
        config = json.loads(metadata["config"])
        config.update(changes)
        metadata["config"] = json.dumps(config)

    return edit


def _tensor_edit(key: str, change):
    def edit(state, metadata):
        state[key] = change(state[key].clone())

    return edit


def _set(index, value):
    def change(tensor):
        tensor.view(-1)[index] = value
        return tensor

    return change


def _metadata(key, value):
    def edit(state, metadata):
        metadata[key] = value

    return edit


def _drop(key):
    def edit(state, metadata):
        del state[key]

    return edit


def _add(key):
    def edit(state, metadata):
        state[key] = torch.zeros(3)

    return edit


GC = "gaussian_conditional"
EB = "entropy_bottleneck"
# name → (edit of the tiny variable-rate file, fragment of the error)
CRAFTED = {
    "qualities-1e9": (_config_edit(qualities=10**9), "qualities must be a whole number"),
    "qualities-0": (_config_edit(qualities=0), "qualities must be a whole number"),
    "qualities-text": (_config_edit(qualities="7"), "qualities must be a whole number"),
    "qualities-bool": (_config_edit(qualities=True), "qualities must be a whole number"),
    "qualities-64": (_config_edit(qualities=64), "shaped"),  # bounded, but then the gains do not fit the file
    "N-huge": (_config_edit(N=10**7), "N must be a whole number"),
    "config-unknown-key": (_config_edit(depth="3"), "config"),
    "config-nested": (_config_edit(context=[[[]]]), "must be text"),
    "config-not-json": (_metadata("config", "{N: 16"), "malformed 'config'"),
    "config-deep": (_metadata("config", "[" * 100_000 + "]" * 100_000), "malformed 'config'"),
    "config-list": (_metadata("config", "[1, 2]"), "not an object"),
    "architecture-unknown": (_metadata("architecture", "resnet50"), "architecture"),
    "nan-weight": (_tensor_edit("g_a.0.weight", _set(0, float("nan"))), "NaN"),
    "inf-gain": (_tensor_edit("gain", _set(0, float("inf"))), "NaN or infinite"),
    "huge-bias": (_tensor_edit("g_a.4.bias", _set(0, 5e4)), "values beyond"),  # found by the fuzzer (float16)
    "negative-pmf": (_tensor_edit(f"{GC}.table_pmf", _set(1, -0.5)), "negative probabilities"),
    "nan-pmf": (_tensor_edit(f"{EB}.table_pmf", _set(0, float("nan"))), "NaN"),
    "zero-pmf": (_tensor_edit(f"{EB}.table_pmf", lambda t: t.zero_()), "sum to 1"),
    "length-overrun": (_tensor_edit(f"{GC}.table_length", _set(0, 10**6)), "lengths outside"),
    "length-negative": (_tensor_edit(f"{EB}.table_length", _set(0, -3)), "lengths outside"),
    "offset-huge": (_tensor_edit(f"{GC}.table_offset", _set(0, -(2**30))), "offsets beyond"),
    "scale-table-decreasing": (_tensor_edit(f"{GC}.scale_table", lambda t: t.flip(0)), "strictly increasing"),
    "table-rows": (_tensor_edit(f"{EB}.table_pmf", lambda t: t[:-1].contiguous()), "coding table"),
    "table-dtype": (_tensor_edit(f"{EB}.table_length", lambda t: t.float()), "coding table"),
    "weight-dtype": (_tensor_edit("g_a.0.weight", lambda t: t.to(torch.int16)), "is I16"),
    "weight-shape": (_tensor_edit("g_a.0.weight", lambda t: t[:1].contiguous()), "shaped"),
    "shift-huge": (_tensor_edit("h_s_int.shift0", _set(0, 10**6)), "shifts beyond"),
    "missing-tensor": (_drop("g_a.0.weight"), "missing tensors"),
    "extra-tensor": (_add("extra.weight"), "unexpected tensors"),
}


def _craft(source, target: Path, edit) -> Path:
    state, metadata = _read(source)
    edit(state, metadata)
    save_file(state, str(target), metadata)
    return target


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_weights_file_ends_in_one_clean_error_before_a_model_is_built(
    case, tiny_vr_weights, tmp_path, monkeypatch
):
    edit, fragment = CRAFTED[case]
    path = str(_craft(tiny_vr_weights, tmp_path / f"{case}.safetensors", edit))
    built = []
    real_build = icmkit.weights.build_model
    monkeypatch.setattr(icmkit.weights, "build_model", lambda *a, **k: built.append(a) or real_build(*a, **k))
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(IcmError) as caught:
        codec = codec_from_weights_file(path)  # the file as `--codec FILE` names it
        codec.encode(image, 1)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert built == []  # refused before any model was built


def test_checks_accept_the_untouched_file_and_the_shipped_weights(tiny_vr_weights):
    model, _ = load_weights(tiny_vr_weights)
    assert coding_digest(tiny_vr_weights) == icmkit.weights.weights_digest(model.coding_state_dict())
    for path in sorted((Path(icmkit.__file__).parent / "zoo" / "weights").glob("*.safetensors")):
        assert check_weights_file(path).architecture


def test_truncated_foreign_and_special_files_are_refused(tiny_vr_weights, tmp_path):
    data = Path(tiny_vr_weights).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\x08" + bytes(40))
    for name in ("cut.safetensors", "junk.safetensors"):
        with pytest.raises(IcmError):
            codec_from_weights_file(str(tmp_path / name)).encode(np.zeros((64, 64, 3), np.uint8), 1)
    with pytest.raises(IcmError, match="not a regular file"):
        check_weights_file("/dev/zero")


def test_a_stream_header_never_resolves_to_a_weights_file(tiny_vr_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("w").mkdir()
    shutil.copy(tiny_vr_weights, "w/x.safetensors")
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    try:
        stream = icmkit.compress(image, codec="w/x.safetensors", quality=2)  # the user names the file: allowed
    finally:
        unregister_codec("w/x.safetensors")  # as a fresh process: nothing registered under that name
    assert b"w/x.safetensors" in stream
    Path("photo.icm").write_bytes(stream)
    # The header names the file: decoding without naming it is refused, and nothing is read from the file.
    Path("w/x.safetensors").write_bytes(b"not weights at all")
    with pytest.raises(UnknownCodecError, match="never chooses a weights file") as caught:
        icmkit.decompress(stream)
    assert "not weights" not in str(caught.value)
    with pytest.raises(UnknownCodecError):
        registered_codec("w/x.safetensors")
    for command in (["decompress", "photo.icm", "-o", "out.png"], ["predict", "photo.icm"]):
        result = CliRunner().invoke(app, command, catch_exceptions=False)
        assert result.exit_code == 2 and "--codec FILE" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    # icm info reads the header only: no file, no model.
    result = CliRunner().invoke(app, ["info", "photo.icm", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    fields = json.loads(result.stdout)
    assert fields["codec"] == "w/x.safetensors" and fields["weights"].startswith("not registered here")
    # Named by the user, the file decodes the stream.
    shutil.copy(tiny_vr_weights, "w/x.safetensors")
    try:
        decoded = icmkit.decompress(stream, codec="w/x.safetensors")
        result = CliRunner().invoke(
            app, ["decompress", "photo.icm", "-o", "out.png", "--codec", "w/x.safetensors"], catch_exceptions=False
        )
    finally:
        unregister_codec("w/x.safetensors")
    assert decoded.shape == image.shape and result.exit_code == 0, result.stderr


def test_info_checks_the_weights_digest_without_building_a_model(tmp_path, monkeypatch):
    stream = icmkit.compress(np.full((64, 64, 3), 128, np.uint8), codec="icm-dicm-lite0", quality=1)
    (tmp_path / "f.icm").write_bytes(stream)

    def refuse(*args, **kwargs):
        raise AssertionError("icm info built a model")

    monkeypatch.setattr(icmkit.weights, "build_model", refuse)
    monkeypatch.setattr(registered_codec("icm-dicm-lite0"), "model", refuse)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "f.icm"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["weights"] == "match installed"


def test_the_range_coder_refuses_latents_beyond_its_range_as_a_user_error():
    """Found by the fuzzer: latents of INT64_MIN (a float overflow cast to int) passed the magnitude check, since
    abs() overflows, and failed inside constriction."""
    from icmkit.entropy.coder import SymbolRangeError, TableSet, encode_with_tables

    tables = TableSet(np.array([[0.5, 0.25, 0.25]]), np.array([-1]), np.array([2]))
    for value in (np.iinfo(np.int64).min, np.iinfo(np.int64).max, 1 << 30):
        with pytest.raises(SymbolRangeError) as caught:
            encode_with_tables(np.array([value]), np.array([0]), tables)
        assert isinstance(caught.value, IcmError)
    assert encode_with_tables(np.array([0, 5, -7]), np.array([0, 0, 0]), tables)  # escapes still code
