"""The CompressAI wrapper, exercised with a model of the same contract (CompressAI itself is optional)."""

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
