import numpy as np
import pytest
import torch

from icmkit import bitstream
from icmkit.api import psnr
from icmkit.codecs import get_codec
from icmkit.codecs.learned import LearnedPixelCodec
from icmkit.errors import BitstreamError, InputImageError, QualityError, WeightsMismatchError
from icmkit.models import MeanScaleHyperprior, NotFinalizedError
from icmkit.weights import save_weights

from conftest import synthetic_photo


@pytest.mark.parametrize("shape", [(1, 1), (63, 65), (70, 97), (128, 64)])
def test_any_size_round_trips_to_its_shape(tiny_codec, shape):
    image = synthetic_photo(*shape, seed=sum(shape))
    data = tiny_codec.encode(image, 1)
    header, _ = bitstream.unpack(data)
    assert (header.height, header.width) == shape
    assert (header.height + header.pad_bottom) % 64 == 0 and (header.width + header.pad_right) % 64 == 0
    decoded = tiny_codec.decode(data)
    assert decoded.shape == image.shape and decoded.dtype == np.uint8


def test_decoding_is_bit_identical_across_threads_and_batching(tiny_codec):
    images = [synthetic_photo(70, 97, seed=s) for s in range(3)]
    streams = [tiny_codec.encode(image, 1) for image in images]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone_1 = [tiny_codec.decode(s) for s in streams]
        torch.set_num_threads(2)
        alone_2 = [tiny_codec.decode(s) for s in streams]
        batch_2 = tiny_codec.decode_batch(streams)
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(alone_1, alone_2, batch_2):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_encoding_is_deterministic(tiny_codec, photo):
    assert tiny_codec.encode(photo, 1) == tiny_codec.encode(photo, 1)


def test_other_weights_fail_cleanly(tiny_codec, photo, tmp_path):
    torch.manual_seed(123)
    other = MeanScaleHyperprior(N=16, M=24).eval()
    other.update()
    save_weights(other, tmp_path / "other.safetensors")
    impostor = LearnedPixelCodec.from_weights_file(tmp_path / "other.safetensors", name="icm-tiny", quality=1)
    with pytest.raises(WeightsMismatchError, match="other weights"):
        impostor.decode(tiny_codec.encode(photo, 1))


def test_stream_of_another_codec_is_refused(tiny_codec, tiny_weights, photo):
    renamed = LearnedPixelCodec.from_weights_file(tiny_weights, name="icm-other", quality=1)
    with pytest.raises(BitstreamError, match="written by codec"):
        renamed.decode(tiny_codec.encode(photo, 1))


def test_unknown_quality_is_refused(tiny_codec, photo):
    with pytest.raises(QualityError):
        tiny_codec.encode(photo, 7)


def test_bad_arrays_are_refused(tiny_codec):
    with pytest.raises(InputImageError):
        tiny_codec.encode(np.zeros((8, 8), np.uint8), 1)
    with pytest.raises(InputImageError):
        tiny_codec.encode(np.zeros((8, 8, 3), np.float32), 1)


def test_unfinalised_weights_are_refused(tmp_path, photo):
    save_weights(MeanScaleHyperprior(N=16, M=24), tmp_path / "raw.safetensors")
    codec = LearnedPixelCodec.from_weights_file(tmp_path / "raw.safetensors", name="icm-raw")
    with pytest.raises(NotFinalizedError):
        codec.encode(photo, 1)


def test_shipped_default_codec_works_offline():
    codec = get_codec("icm-mse")
    assert codec.availability().ok, codec.availability().reason
    image = synthetic_photo(96, 128, seed=5)
    data = codec.encode(image)
    decoded = codec.decode(data)
    bpp = 8 * len(data) / (96 * 128)
    assert 0.02 < bpp < 3.0
    assert psnr(image, decoded) > 24.0


def test_shipped_codec_decodes_identically_across_threads_and_batching():
    codec = get_codec("icm-mse")
    streams = [codec.encode(synthetic_photo(200, 300, seed=s)) for s in (1, 2)]
    threads = torch.get_num_threads()
    decoded = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            decoded += [codec.decode(streams[0]), codec.decode_batch(streams)[0]]
    finally:
        torch.set_num_threads(threads)
    assert all(np.array_equal(decoded[0], other) for other in decoded[1:])
    assert torch.get_num_threads() == threads  # the decoder restores the caller's setting
