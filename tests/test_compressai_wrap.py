"""The CompressAI wrapper, exercised with a model of the same contract (CompressAI itself is optional)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from icmkit import bitstream
from icmkit.codecs import get_codec
from icmkit.codecs.compressai_wrap import CompressAICodec, compressai_installed
from icmkit.errors import CodecUnavailableError, WeightsMismatchError
from icmkit.models import MeanScaleHyperprior

from conftest import synthetic_photo


def _model(seed: int) -> MeanScaleHyperprior:
    torch.manual_seed(seed)
    return MeanScaleHyperprior(N=16, M=24)


@pytest.fixture(scope="module")
def wrapped():
    return CompressAICodec("compressai-like", lambda q: _model(q), (1, 2), needs_compressai=False)


def test_round_trip_records_latent_shape(wrapped):
    image = synthetic_photo(70, 130)
    data = wrapped.encode(image, 2)
    header, streams = bitstream.unpack(data)
    assert header.extra == bytes([2, 3]) and len(streams) == 2
    assert wrapped.decode(data).shape == image.shape


def test_other_weights_are_detected(wrapped):
    data = wrapped.encode(synthetic_photo(64, 64), 1)
    impostor = CompressAICodec("compressai-like", lambda q: _model(99), (1, 2), needs_compressai=False)
    with pytest.raises(WeightsMismatchError):
        impostor.decode(data)


def test_zoo_codecs_are_registered_and_explain_availability():
    codec = get_codec("compressai-mbt2018-mean")
    state = codec.availability()
    assert state.ok == compressai_installed()
    if not state.ok:
        assert "compressai" in state.reason
        with pytest.raises(CodecUnavailableError):
            codec.encode(np.zeros((8, 8, 3), np.uint8))


def _hub_file(tmp_path, monkeypatch, payload: bytes, prefix: str | None = None) -> str:
    """A checkpoint in a private torch hub cache, named like CompressAI's (``…-<sha256 prefix>.pth.tar``)."""
    import hashlib

    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    prefix = prefix or hashlib.sha256(payload).hexdigest()[:8]
    name = f"mbt2018-mean-1-{prefix}.pth.tar"
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    (tmp_path / "checkpoints" / name).write_bytes(payload)
    return f"https://compressai.s3.amazonaws.com/models/v1/{name}"


def _checkpoint_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buffer)
    return buffer.getvalue()


def test_zoo_weights_are_checked_against_the_hash_in_their_name(tmp_path, monkeypatch):
    from icmkit.codecs.compressai_wrap import verified_state_dict

    payload = _checkpoint_bytes()
    url = _hub_file(tmp_path, monkeypatch, payload)
    assert torch.equal(verified_state_dict(url)["w"], torch.arange(4.0))
    (tmp_path / "checkpoints" / url.rsplit("/", 1)[1]).write_bytes(b"X" + payload[1:])  # replaced in the cache
    with pytest.raises(CodecUnavailableError, match="does not match"):
        verified_state_dict(url)
    with pytest.raises(CodecUnavailableError, match="no SHA-256 prefix"):
        verified_state_dict("https://example.invalid/models/weights.pth.tar")


def test_zoo_downloads_pass_the_hash_prefix_to_torch_hub(tmp_path, monkeypatch):
    import torch.hub

    from icmkit.codecs.compressai_wrap import verified_state_dict

    payload = _checkpoint_bytes()
    url = _hub_file(tmp_path, monkeypatch, payload)
    (tmp_path / "checkpoints" / url.rsplit("/", 1)[1]).unlink()  # not cached: downloaded
    calls = []

    def fake_download(source, destination, hash_prefix=None, progress=True):
        calls.append((source, hash_prefix))
        Path(destination).write_bytes(payload)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    assert torch.equal(verified_state_dict(url)["w"], torch.arange(4.0))
    assert calls == [(url, url.rsplit("-", 1)[1].split(".")[0])]
