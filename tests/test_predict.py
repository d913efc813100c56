"""``icmkit.predict``: images, pixel streams, feature streams, decoded features; labels and caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import icmkit
from icmkit import api
from icmkit.codecs import FeatureMaps
from icmkit.errors import BitstreamError, IcmError, WeightsMismatchError
from icmkit.feature_io import save_features
from icmkit.tasks.labels import class_label

from conftest import registered_codecs, synthetic_photo

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ESPRESSO = 967


def coffee_128() -> np.ndarray:
    """The bundled coffee photo (label: espresso), centre square resized to 128×128."""
    from icmkit.data import sample_path

    image = Image.open(sample_path("coffee.png")).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)).resize((128, 128), Image.BICUBIC))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64) - logits.max())
    return e / e.sum()


@pytest.fixture()
def registered(tiny_feature_codec, tiny_codec):
    """The tiny feature and pixel codecs, registered for this test only (streams name them in their header)."""
    with registered_codecs(tiny_feature_codec, tiny_codec):
        yield


@pytest.fixture(scope="module")
def lite0_split():
    """An independently loaded EfficientNet-Lite0 split at blocks.2 (not through predict's cache)."""
    from icmkit.backbones import split_classifier

    return split_classifier("tf_efficientnet_lite0", "blocks.2")


def test_image_prediction_is_the_classifiers_softmax_with_imagenet_labels():
    image = coffee_128()
    result = icmkit.predict(image, k=5)
    from icmkit.tasks import load_classifier

    logits = load_classifier("tf_efficientnet_lite0").predict([image])[0]
    probabilities = softmax(logits)
    expected = list(np.argsort(-probabilities)[:5])
    assert result.kind == "image" and result.model == "tf_efficientnet_lite0" and result.codec is None
    assert [t.index for t in result.top_k] == expected
    assert result.top_k[0].index == ESPRESSO and result.top_k[0].label == "espresso"
    for top in result.top_k:
        assert top.probability == pytest.approx(probabilities[top.index], rel=1e-5)
        assert top.label == class_label(top.index)
    assert result.probabilities.shape == (1000,) and result.probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert result.as_dict()["top_k"][0] == {
        "index": ESPRESSO,
        "label": "espresso",
        "probability": result.top_k[0].probability,
    }


def test_labels_come_from_imagenet_only_for_1000_classes():
    assert class_label(282) == "tiger cat" and class_label(967) == "espresso"
    assert class_label(3, num_classes=10) == "class 3"


def test_path_bytes_array_and_pil_give_the_same_prediction(tmp_path):
    image = synthetic_photo(96, 128, seed=5)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    results = [icmkit.predict(s, k=3) for s in (image, Image.fromarray(image), path, str(path), path.read_bytes())]
    assert {r.kind for r in results} == {"image"}
    first = [(t.index, round(t.probability, 6)) for t in results[0].top_k]
    for other in results[1:]:
        assert [(t.index, round(t.probability, 6)) for t in other.top_k] == first


def test_pixel_stream_is_decoded_then_classified(registered, tiny_codec):
    image = synthetic_photo(64, 80, seed=1)
    data = tiny_codec.encode(image, 1)
    result = icmkit.predict(data, k=4)
    assert result.kind == "pixel_stream" and result.codec == "icm-tiny"
    expected = icmkit.predict(tiny_codec.decode(data), k=4)
    assert [t.index for t in result.top_k] == [t.index for t in expected.top_k]
    assert np.allclose(result.probabilities, expected.probabilities)


def test_conventional_stream_pillow_cannot_read_is_decoded(tmp_path):
    codec = icmkit.get_codec("hevc444")
    if not codec.availability().ok:
        pytest.skip(f"hevc444 unavailable: {codec.availability().reason}")
    data = codec.encode(synthetic_photo(64, 64, seed=2), 32)
    result = icmkit.predict(data, k=2)
    assert result.kind == "pixel_stream" and result.codec == "hevc444"


def test_feature_stream_runs_the_backbones_tail(registered, tiny_feature_codec, lite0_split):
    data = tiny_feature_codec.encode(coffee_128(), 1)
    result = icmkit.predict(data, k=5)
    assert result.kind == "feature_stream" and result.codec == "icm-feature-tiny"
    assert result.model == "tf_efficientnet_lite0"
    decoded = tiny_feature_codec.decode(data)
    with torch.no_grad():
        logits = lite0_split.tail(decoded.tensors["features"])[0].numpy()
    probabilities = softmax(logits)
    assert [t.index for t in result.top_k] == list(np.argsort(-probabilities)[:5])
    assert [t.probability for t in result.top_k] == pytest.approx(sorted(probabilities)[::-1][:5], rel=1e-5)
    # the same backbone on the undistorted head features would differ: the tail really sees decoded features
    with torch.no_grad():
        clean = lite0_split.tail(
            lite0_split.features(torch.from_numpy(np.array(coffee_128())).permute(2, 0, 1)[None] / 255.0)
        )
    assert not np.allclose(softmax(clean[0].numpy()), probabilities)


def test_a_codec_object_decodes_without_registering(tiny_feature_codec):
    assert "icm-feature-tiny" not in {c.name for c in icmkit.list_codecs()}
    data = tiny_feature_codec.encode(synthetic_photo(64, 64, seed=4), 1)
    with pytest.raises(IcmError, match="unknown codec"):
        icmkit.predict(data)
    assert icmkit.predict(data, codec=tiny_feature_codec, k=2).kind == "feature_stream"


def test_feature_maps_and_their_safetensors_file_predict_like_the_stream(registered, tiny_feature_codec, tmp_path):
    data = tiny_feature_codec.encode(synthetic_photo(100, 77, seed=6), 1)
    from_stream = icmkit.predict(data, k=5)
    features = icmkit.decompress(data)
    assert isinstance(features, FeatureMaps)
    from_maps = icmkit.predict(features, k=5)
    path = tmp_path / "x.features.safetensors"
    save_features(features, path)
    from_file = icmkit.predict(path, k=5)
    assert from_maps.kind == from_file.kind == "features" and from_file.model == "tf_efficientnet_lite0"
    for other in (from_maps, from_file):
        assert [t.index for t in other.top_k] == [t.index for t in from_stream.top_k]
        assert np.allclose(other.probabilities, from_stream.probabilities, atol=1e-6)


def test_features_refuse_another_model_or_another_head(registered, tiny_feature_codec, monkeypatch):
    data = tiny_feature_codec.encode(synthetic_photo(64, 64, seed=7), 1)
    features = tiny_feature_codec.decode(data)
    with pytest.raises(IcmError, match="only tf_efficientnet_lite0's tail can classify them, not resnet50"):
        icmkit.predict(features, model="resnet50")
    with monkeypatch.context() as patch:  # a stream is refused from its header, before decoding it
        patch.setattr(tiny_feature_codec, "decode", lambda data: pytest.fail("decoded before refusing"))
        with pytest.raises(IcmError, match="only tf_efficientnet_lite0's tail can classify them, not resnet50"):
            icmkit.predict(data, model="resnet50")
    assert icmkit.predict(data, model="tf_efficientnet_lite0", k=1).kind == "feature_stream"
    with pytest.raises(WeightsMismatchError, match="head digest"):
        icmkit.predict(data, weights=None)  # randomly initialised Lite0: another head


def test_features_without_backbone_metadata_or_of_other_shape_are_refused(registered, tiny_feature_codec):
    features = tiny_feature_codec.decode(tiny_feature_codec.encode(synthetic_photo(64, 64, seed=8), 1))
    bare = FeatureMaps(tensors=features.tensors, strides=features.strides, image_size=features.image_size)
    with pytest.raises(IcmError, match="no backbone"):
        icmkit.predict(bare)
    narrow = FeatureMaps(
        tensors={"features": features.tensors["features"][:, :8]},
        strides=features.strides,
        image_size=features.image_size,
        meta=features.meta,
    )
    with pytest.raises(IcmError, match="8 channels"):
        icmkit.predict(narrow)


def test_corrupt_streams_name_the_file(registered, tiny_feature_codec, tmp_path):
    data = bytearray(tiny_feature_codec.encode(synthetic_photo(64, 64, seed=9), 1))
    data[len(data) // 2] ^= 0x01
    path = tmp_path / "bad.icm"
    path.write_bytes(bytes(data))
    with pytest.raises(BitstreamError, match=r"bad\.icm: .*CRC"):
        icmkit.predict(path)
    with pytest.raises(BitstreamError, match="CRC"):
        icmkit.predict(bytes(data))


def test_bad_arguments_are_user_errors(tmp_path):
    image = synthetic_photo(32, 32)
    for k in (0, -1, 1.5, True):
        with pytest.raises(IcmError, match="top-k"):
            icmkit.predict(image, k=k)
    with pytest.raises(IcmError, match="unknown classifier"):
        icmkit.predict(image, model="no_such_net")
    with pytest.raises(IcmError, match="cannot predict on a list"):
        icmkit.predict([1, 2, 3])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(IcmError, match=r"notes\.txt: not an image format icmkit reads"):
        icmkit.predict(text)
    assert len(icmkit.predict(image, k=5000).top_k) == 1000


def test_models_are_loaded_once_per_process(registered, tiny_feature_codec, tmp_path, monkeypatch):
    image = synthetic_photo(48, 48, seed=3)
    features = tiny_feature_codec.decode(tiny_feature_codec.encode(image, 1))
    path = tmp_path / "f.safetensors"
    save_features(features, path)
    icmkit.predict(image)
    icmkit.predict(path)  # builds the split from the cached classifier
    first = api.cached_classifier("tf_efficientnet_lite0")

    import icmkit.pretrained.classifiers as classification

    def no_reload(*args, **kwargs):
        raise AssertionError("classifier loaded twice")

    monkeypatch.setattr(classification, "load_classifier", no_reload)
    assert api.cached_classifier("tf_efficientnet_lite0") is first
    icmkit.predict(image)
    icmkit.predict(path)
    assert api.cached_split_backbone("tf_efficientnet_lite0", "blocks.2").tail.stages[0] is first.model.blocks[3]
