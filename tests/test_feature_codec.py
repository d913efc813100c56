"""The DICM feature codec through real .icm streams: shapes, determinism, rate points, refusals."""

import os

import numpy as np
import pytest
import torch

from icmkit import bitstream
from icmkit.backbones import split_classifier
from icmkit.codecs.base import FeatureMaps
from icmkit.codecs.feature import FeatureCodec
from icmkit.errors import BitstreamError, IcmError, QualityError, WeightsMismatchError
from icmkit.models import DICMFeatureModel, NotFinalizedError
from icmkit.weights import load_weights, save_weights

from conftest import synthetic_photo


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("shape", [(1, 1), (70, 97), (128, 128), (200, 130)])
def test_round_trip_shapes_and_header_in_the_full_geometry(tiny_feature_codec, shape):
    image = synthetic_photo(*shape, seed=sum(shape))
    data = tiny_feature_codec.for_full_image().encode(image, 1)
    header, streams = bitstream.unpack(data)
    assert header.kind == "feature" and len(streams) == 3
    stride = 8 * 16  # backbone stride × codec stride
    assert (header.height + header.pad_bottom) % stride == 0 and (header.width + header.pad_right) % stride == 0
    extra = bitstream.unpack_extra(header.extra)
    assert extra["b"] == b"tf_efficientnet_lite0" and extra["s"] == b"blocks.2" and len(extra["h"]) == 8
    assert "c" not in extra and "g" not in extra
    decoded = tiny_feature_codec.decode(data)
    assert isinstance(decoded, FeatureMaps)
    features = decoded.tensors["features"]
    assert features.shape == (1, 40, -(-shape[0] // 8), -(-shape[1] // 8)) and features.dtype == torch.float32
    assert decoded.strides == {"features": 8} and decoded.image_size == shape
    assert decoded.meta["backbone"] == "tf_efficientnet_lite0" and decoded.meta["feature_shape"] == extra["f"].decode()
    assert "input_size" not in decoded.meta


@pytest.mark.parametrize("shape", [(1, 1), (70, 97), (300, 451), (500, 40)])
def test_classifier_geometry_codes_the_classifiers_own_crop(tiny_feature_codec, shape):
    image = synthetic_photo(*shape, seed=sum(shape))
    assert tiny_feature_codec.geometry == "classifier"  # the default
    data = tiny_feature_codec.encode(image, 1)
    header, _ = bitstream.unpack(data)
    assert (header.height, header.width, header.pad_bottom, header.pad_right) == (*shape, 0, 0)  # bpp: the photo's
    extra = bitstream.unpack_extra(header.extra)
    # Lite0's transform: shorter side to 256 (bicubic), centre crop 224 → a 28×28 map, coded padded to 32×32.
    assert extra["c"] == b"224x224" and extra["f"] == b"40x32x32" and "g" not in extra
    decoded = tiny_feature_codec.decode(data)
    assert decoded.tensors["features"].shape == (1, 40, 28, 28)
    assert decoded.image_size == shape and decoded.meta["input_size"] == (224, 224)


def test_classifier_geometry_features_are_the_classifiers_own(tiny_feature_codec):
    """Uncompressed, the head's features of the classifier geometry give the classifier's logits exactly: the
    sender's transform is the image path's."""
    from icmkit.tasks.classification import load_classifier

    image = synthetic_photo(150, 260, seed=8)
    classifier = load_classifier("tf_efficientnet_lite0")
    features = tiny_feature_codec.uncompressed(image)
    assert features.meta["input_size"] == (224, 224)
    split = split_classifier("tf_efficientnet_lite0", "blocks.2")
    with torch.no_grad():
        from_features = split.tail(features.tensors["features"])
    torch.testing.assert_close(from_features, classifier.logits(classifier.preprocess([image])), rtol=0, atol=0)


def test_decoding_is_identical_across_threads_and_batching(tiny_feature_codec):
    streams = [tiny_feature_codec.encode(synthetic_photo(96, 140, seed=s), 2) for s in range(3)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone_1 = [tiny_feature_codec.decode(s).tensors["features"] for s in streams]
        torch.set_num_threads(2)
        alone_2 = [tiny_feature_codec.decode(s).tensors["features"] for s in streams]
        batch_2 = [f.tensors["features"] for f in tiny_feature_codec.decode_batch(streams)]
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(alone_1, alone_2, batch_2):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_model_codes_a_batch_as_it_codes_each_image(tiny_feature_weights):
    model, _ = load_weights(tiny_feature_weights)
    torch.manual_seed(3)
    features = torch.randn(3, 40, 32, 48) * 5
    batch = model.compress(features, 1)
    for i in range(3):
        alone = model.compress(features[i : i + 1], 1)
        assert [s[0] for s in alone["strings"]] == [s[i] for s in batch["strings"]]
    decoded = model.decompress(batch["strings"], batch["shape"], 1)["f_hat"]
    assert decoded.shape == features.shape
    assert torch.equal(model.decompress([[s[1]] for s in batch["strings"]], batch["shape"], 1)["f_hat"], decoded[1:2])


def test_rate_points_are_distinct_and_validated(tiny_feature_codec):
    image = synthetic_photo(128, 128, seed=5)
    assert tiny_feature_codec.quality.allowed == (1, 2)
    low, high = (tiny_feature_codec.encode(image, q) for q in (1, 2))
    assert low != high and bitstream.unpack(high)[0].quality == 2
    with pytest.raises(QualityError):
        tiny_feature_codec.encode(image, 3)


def test_rate_is_counted_over_input_pixels_and_includes_the_header(tiny_feature_codec):
    image = synthetic_photo(100, 100, seed=1)
    data = tiny_feature_codec.encode(image, 1)
    header, streams = bitstream.unpack(data)
    assert len(data) > sum(len(s) for s in streams) + len(header.extra)


def _with_crc(data: bytearray) -> bytes:
    import struct
    import zlib

    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def test_corrupt_streams_end_in_features_or_one_clean_error(tiny_feature_codec):
    data = tiny_feature_codec.encode(synthetic_photo(128, 128, seed=2), 1)
    header_len = len(data) - 4 - sum(bitstream.unpack(data)[0].stream_lengths)
    rng = np.random.default_rng(0)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(60):
        mutated = bytearray(data)
        for position in rng.integers(header_len, len(data) - 4, size=int(rng.integers(1, 9))):
            mutated[position] = int(rng.integers(0, 256))
        try:
            result = tiny_feature_codec.decode(_with_crc(mutated))
            assert result.tensors["features"].shape == (1, 40, 16, 16)
            outcomes["decoded"] += 1
        except IcmError:
            outcomes["refused"] += 1
    assert sum(outcomes.values()) == 60
    with pytest.raises(BitstreamError):
        tiny_feature_codec.decode(data[:-10])


def test_foreign_and_mismatched_streams_are_refused(tiny_feature_codec, tiny_codec, tmp_path):
    image = synthetic_photo(128, 128, seed=4)
    data = tiny_feature_codec.encode(image, 1)
    with pytest.raises(BitstreamError, match="written by codec"):
        tiny_feature_codec.decode(tiny_codec.encode(image, 1))
    with pytest.raises(BitstreamError, match="written by codec"):
        tiny_codec.decode(data)
    # The same codec name with other weights: the weights digest in the header no longer matches.
    model, _ = load_weights(tiny_feature_codec._weights[1])
    with torch.no_grad():
        model.g_s[-1].bias.add_(1.0)
    other = tmp_path / "other.safetensors"
    save_weights(model, other)
    with pytest.raises(WeightsMismatchError):
        FeatureCodec.from_weights_file(other, name="icm-feature-tiny").decode(data)
    # A stream whose header names another head (CRC recomputed): refused before decoding.
    header, streams = bitstream.unpack(data)
    extra = bitstream.unpack_extra(header.extra)
    forged = bitstream.IcmHeader(
        **{**header.__dict__, "extra": bitstream.pack_extra({**extra, "h": b"\0" * 8}), "stream_lengths": ()}
    )
    with pytest.raises(WeightsMismatchError, match="another tf_efficientnet_lite0 head"):
        tiny_feature_codec.decode(bitstream.pack(forged, streams))
    forged = bitstream.IcmHeader(
        **{**header.__dict__, "extra": bitstream.pack_extra({**extra, "s": "blocks.1"}), "stream_lengths": ()}
    )
    with pytest.raises(WeightsMismatchError, match="after blocks.1"):
        tiny_feature_codec.decode(bitstream.pack(forged, streams))


def test_codec_refuses_a_backbone_with_another_head(tiny_feature_weights, tmp_path):
    torch.manual_seed(0)
    random_lite0 = split_classifier("tf_efficientnet_lite0", "blocks.2", weights=None)
    path = tmp_path / "lite0-random.safetensors"
    from safetensors.torch import save_file

    full = {k: v.contiguous() for k, v in random_lite0.head.layers[0].state_dict().items()}
    assert full  # the stem's weights, enough to show that a partial file is refused below
    codec = FeatureCodec.from_weights_file(tiny_feature_weights, name="icm-feature-x", backbone_weights=None)
    with pytest.raises(WeightsMismatchError, match="is not the one"):
        codec.encode(synthetic_photo(64, 64), 1)
    save_file(full, str(path))
    with pytest.raises(IcmError):
        FeatureCodec.from_weights_file(tiny_feature_weights, name="icm-feature-y", backbone_weights=path).encode(
            synthetic_photo(64, 64), 1
        )


def test_slim_weights_drop_float_twins_and_still_code(tiny_feature_weights, tmp_path):
    model, _ = load_weights(tiny_feature_weights)
    slim = tmp_path / "slim.safetensors"
    save_weights(model, slim, slim=True)
    from safetensors.torch import load_file

    tensors = load_file(str(slim))
    assert not any(k.split(".")[0] in DICMFeatureModel.float_twins for k in tensors)
    assert tensors["g_a.0.weight"].dtype == torch.float16 and tensors["h_s_int.weight0"].dtype == torch.int16
    assert slim.stat().st_size < 0.7 * os.path.getsize(tiny_feature_weights)
    codec = FeatureCodec.from_weights_file(slim, name="icm-feature-slim").for_full_image()
    data = codec.encode(synthetic_photo(128, 128, seed=6), 2)
    assert codec.decode(data).tensors["features"].shape == (1, 40, 16, 16)


def test_unfinalised_model_refuses_to_code():
    model = DICMFeatureModel(40, N=16, M=16, hyper=16, re_width=16, re_latent=16)
    with pytest.raises(NotFinalizedError):
        model.compress(torch.zeros(1, 40, 16, 16))
    with pytest.raises(ValueError, match="quality 2 outside 1…1"):
        model(torch.zeros(1, 40, 16, 16), quality=2)


@pytest.mark.parametrize(
    "variant", [{"re_levels": 0}, {"block": "conv"}, {"context": "none"}, {"hyper_synthesis": "attention"}]
)
def test_ablation_variants_round_trip(variant):
    torch.manual_seed(0)
    model = DICMFeatureModel(40, N=16, M=16, hyper=16, re_width=16, re_latent=16, **variant).eval()
    model.update()
    features = torch.randn(1, 40, 32, 32) * 3
    coded = model.compress(features)
    assert model.decompress(coded["strings"], coded["shape"])["f_hat"].shape == features.shape


def _forger(data: bytes):
    header, streams = bitstream.unpack(data)
    extra = bitstream.unpack_extra(header.extra)
    forge = lambda streams=streams, **fields: bitstream.pack(  # noqa: E731
        bitstream.IcmHeader(**{**header.__dict__, "stream_lengths": (), **fields}), streams
    )
    return header, streams, extra, forge


def test_edited_feature_header_fields_are_refused_before_decoding(tiny_feature_codec):
    full = tiny_feature_codec.for_full_image()
    header, streams, extra, forge = _forger(full.encode(synthetic_photo(64, 64, seed=5), 1))
    cases = [
        (forge(extra=bitstream.pack_extra({**extra, "f": "40x9x8"})), "shape 40x9x8"),
        (forge(extra=bitstream.pack_extra({k: v for k, v in extra.items() if k != "f"})), "fields b, h, s"),
        (forge(extra=bitstream.pack_extra({**extra, "b": b"\xff"})), "non-ASCII"),
        (forge(extra=bitstream.pack_extra({**extra, "b": b"../w/x.safetensors "})), "backbone or split name"),
        (forge(extra=header.extra + b"\x00"), "trailing bytes"),
        (forge(streams=streams[:2]), "expected 3 streams"),
        (forge(width=header.width + 128), "shape 40x16x16, expected 40x16x32"),  # larger than the coded map
        (forge(pad_right=header.pad_right + 128), "padding"),  # a multiple of the stride, but not minimal
        (forge(quality=3), "quality 3"),
    ]
    for forged, message in cases:
        with pytest.raises(BitstreamError, match=message):
            full.decode(forged)


def test_edited_classifier_geometry_fields_are_refused_before_decoding(tiny_feature_codec):
    header, _, extra, forge = _forger(tiny_feature_codec.encode(synthetic_photo(64, 80, seed=5), 1))
    cases = [
        (forge(extra=bitstream.pack_extra({**extra, "c": "0x224"})), "bad input size"),
        (forge(extra=bitstream.pack_extra({**extra, "c": "99999x99999"})), "bad input size"),  # over the pixel limit
        (forge(extra=bitstream.pack_extra({**extra, "c": "480x480"})), "expected 40x64x64"),
        (forge(extra=bitstream.pack_extra({**extra, "g": "224x224"})), "fields b, c, f, g, h, s"),
        (forge(pad_bottom=8), "padding in a resized stream"),
    ]
    for forged, message in cases:
        with pytest.raises(BitstreamError, match=message):
            tiny_feature_codec.decode(forged)
    # 240² maps to 30×30, coded padded to 32×32 like 224²: the coded map alone cannot tell the two crops apart,
    # so the receiver crops what the (CRC-covered) header says — never more than was coded.
    other_crop = forge(extra=bitstream.pack_extra({**extra, "c": "240x240"}))
    assert tiny_feature_codec.decode(other_crop).tensors["features"].shape == (1, 40, 30, 30)


def test_attention_hyper_synthesis_codes_with_its_float_network():
    model = DICMFeatureModel(40, N=16, M=16, hyper=16, re_levels=0, hyper_synthesis="attention")
    assert model.h_s_int is None and "h_s" not in model.float_twins  # slim files must keep the float h_s
    assert any(k.startswith("h_s.") for k in model.coding_state_dict())
    with pytest.raises(ValueError, match="hyper_synthesis"):
        DICMFeatureModel(40, hyper_synthesis="transformer")
