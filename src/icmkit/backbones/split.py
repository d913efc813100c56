"""Split a classifier into a frozen ``head(image) -> features`` and ``tail(features) -> logits``.

A feature codec sits between the two: the sender runs the head and codes its features, the receiver
decodes them and runs the tail. One operation covers the families icmkit knows:

- timm EfficientNet / MobileNet-style models (``conv_stem``, ``bn1``, ``blocks``, ``conv_head``, ``bn2``,
  ``forward_head``) — stages ``blocks.0`` … ``blocks.N``;
- torchvision and timm ResNets (``conv1``, ``bn1``, a ReLU, ``maxpool``, ``layer1`` … ``layer4``, ``fc``) —
  stages ``layer1`` … ``layer4``.

The split keeps the classifier's modules (no copies), records the stage's channels and stride, the
head's input normalisation and a digest of the head's weights — a feature stream names the head that
made it, so a receiver with another head refuses it. ``tail.stages`` lists the tail's own stages so a
training loss can compare intermediate activations (DICM's L2 terms on layer2/3/4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from icmkit.digest import weights_digest
from icmkit.errors import IcmError, WeightsMismatchError
from icmkit.geometry import ClassifierGeometry
from icmkit.image import image_to_tensor
from icmkit.preprocess import PreprocessConfig, preprocess_images


class SplitError(IcmError):
    """A split that the model's family does not have (unknown stage, unsupported architecture)."""


@dataclass(frozen=True)
class SplitInfo:
    """What a feature stream must agree on with its receiver."""

    backbone: str  # classifier name, e.g. "tf_efficientnet_lite0"
    stage: str  # last stage of the head, e.g. "blocks.1" or "layer1"
    channels: int
    stride: int  # input pixels per feature sample, each side
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    head_digest: bytes

    def check_features(
        self, meta: Mapping, receiver: str, error: type[IcmError] = IcmError, remedy: str = "", complete: bool = True
    ) -> None:
        """Refuse features (their ``meta``: a feature stream's header fields, a features file's metadata) that
        ``receiver``'s tail cannot take: the one check every reader of features runs (bench evaluators, predict,
        detect, probe). Another backbone or split raises ``error``; a head of other weights raises
        :class:`~icmkit.errors.WeightsMismatchError`. ``complete``: the features must name all three (streams and
        this version's files do); otherwise a missing backbone or digest is taken on trust. ``remedy`` ends the
        message with what the user can do."""
        check_backbone(meta, self.backbone, receiver, error, remedy, complete, self.stage)
        stage, digest = str(meta["split"]), meta.get("head_digest")
        if stage != self.stage:
            raise error(
                f"these features were cut after {_short(stage)}; {receiver} decodes {self.backbone} {self.stage} "
                f"features{remedy}"
            )
        if digest is not None and str(digest) != self.head_digest.hex():
            raise WeightsMismatchError(
                f"features were made by a {self.backbone} head with digest {_short(digest)}; {receiver} has head "
                f"digest {self.head_digest.hex()} (other weights){remedy}"
            )


def check_backbone(
    meta: Mapping,
    backbone: str,
    receiver: str,
    error: type[IcmError] = IcmError,
    remedy: str = "",
    complete: bool = True,
    stage: str = "",
) -> None:
    """The first half of :meth:`SplitInfo.check_features`, before any split is built: the features name a split
    (and, when ``complete``, a backbone and head digest) and come from ``backbone``."""
    named = ("backbone", "split", "head_digest") if complete else ("split",)
    if not all(meta.get(key) for key in named):
        raise error(f"features carry no {', '.join(named)} in their meta: the tail to run is unknown")
    found = meta.get("backbone")
    if found is not None and str(found) != backbone:
        raise error(
            f"these features come from {_short(found)} (after {_short(meta['split'])}); {receiver} decodes "
            f"{' '.join(filter(None, (backbone, stage)))} features{remedy}"
        )


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Head(nn.Module):
    """Normalised image batch ``(N, 3, H, W)`` → features ``(N, C, H/stride, W/stride)``.

    The sender's half of a split classifier or detector: its digest (:func:`head_digest`) names the features.

    Args:
        modules: The classifier's stem and stages up to the split, in order (shared, not copied).
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Tail(nn.Module):
    """Features → logits, through named stages (``forward(x, return_stages=True)`` also returns them).

    The receiver's half of a split classifier: what decoded features are scored with.

    Args:
        stages: ``(name, module)`` pairs of the stages after the split, in order.
        finish: What follows the last stage: ``forward`` gives logits, ``pooled`` the pooled vector.
    """

    def __init__(self, stages: list[tuple[str, nn.Module]], finish: nn.Module):
        super().__init__()
        self.stage_names = [name for name, _ in stages]
        self.stages = nn.ModuleList(module for _, module in stages)
        self.finish = finish

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        logits = self.finish(x)
        return (logits, outputs) if return_stages else logits

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Features → the globally average-pooled vector ``(N, D)`` the classifier layer reads (a linear probe's
        input): the tail's stages and everything of ``finish`` before the classifier."""
        for stage in self.stages:
            x = stage(x)
        return self.finish.pooled(x)


class _TimmEfficientNetFinish(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.conv_head, self.bn2 = model.conv_head, model.bn2
        self._forward_head = model.forward_head  # global pool, dropout, classifier (timm's own order)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output → the map the classifier pools (bn2 applies the activation)."""
        return self.bn2(self.conv_head(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_head(self.feature_map(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_head(self.feature_map(x), pre_logits=True)


class _ResNetFinish(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return x  # layer4's output is the map the classifier pools

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "forward_head"):  # timm ResNet
            return self.model.forward_head(x)
        return self.model.fc(torch.flatten(self.model.avgpool(x), 1))  # torchvision ResNet

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.model, "forward_head"):
            return self.model.forward_head(x, pre_logits=True)
        return torch.flatten(self.model.avgpool(x), 1)


def _efficientnet_parts(model: nn.Module) -> tuple[list[nn.Module], list[tuple[str, nn.Module]], nn.Module]:
    stages = [(f"blocks.{i}", block) for i, block in enumerate(model.blocks)]
    return [model.conv_stem, model.bn1], stages, _TimmEfficientNetFinish(model)


def _resnet_parts(model: nn.Module) -> tuple[list[nn.Module], list[tuple[str, nn.Module]], nn.Module]:
    act = getattr(model, "act1", None) or model.relu
    stages = [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    return [model.conv1, model.bn1, act, model.maxpool], stages, _ResNetFinish(model)


def _is_resnet(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("conv1", "bn1", "maxpool", "layer1", "layer4"))


def _family_parts(model: nn.Module):
    if all(hasattr(model, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")):
        return _efficientnet_parts(model)
    if _is_resnet(model):
        return _resnet_parts(model)
    raise SplitError(
        f"cannot split a {type(model).__name__}: icmkit splits EfficientNet/MobileNet-style timm models and ResNets"
    )


def split_stages(model: nn.Module) -> list[str]:
    """The stage names ``model`` can be split after."""
    return [name for name, _ in _family_parts(model)[1]]


def split_parts(
    model: nn.Module, stage: str, name: str = ""
) -> tuple[list[nn.Module], list[tuple[str, nn.Module]], nn.Module]:
    """``model``'s own modules (shared, not copied, left trainable) cut after ``stage``: the head's modules in
    order, the tail's named stages, and the finish (``feature_map``: the map the classifier pools; ``forward``:
    logits)."""
    stem, stages, finish = _family_parts(model)
    names = [n for n, _ in stages]
    if stage not in names:
        raise SplitError(f"{name or type(model).__name__} has no stage {stage!r}; stages: {', '.join(names)}")
    cut = names.index(stage) + 1
    return stem + [module for _, module in stages[:cut]], stages[cut:], finish


class SplitBackbone(nn.Module):
    """A frozen classifier cut after ``stage``: :attr:`head`, :attr:`tail` and :attr:`info`.

    Usually built by :func:`split_classifier`.

    Args:
        name: The classifier's name (e.g. ``tf_efficientnet_lite0``), recorded in :attr:`info`.
        model: The classifier (a timm EfficientNet/MobileNet-style model or a ResNet); its modules are shared.
        stage: The stage to cut after (one of :func:`split_stages`).
        mean (Sequence[float]): Per-channel RGB mean of the classifier's input normalisation (images in [0, 1]).
        std (Sequence[float]): Per-channel RGB standard deviation, likewise.
        preprocess: The classifier's evaluation transform; ``None`` when not known, which leaves
            :meth:`classifier_input` unusable.
    """

    def __init__(self, name: str, model: nn.Module, stage: str, mean, std, preprocess: PreprocessConfig | None = None):
        super().__init__()
        self.preprocess_config = preprocess  # the classifier's evaluation transform (None: not known here)
        head, tail_stages, finish = split_parts(model, stage, name)  # the stride is measured (_probe), not declared
        self.head = Head(head)
        self.tail = Tail(tail_stages, finish)
        self.eval().requires_grad_(False)
        channels, stride = _probe(self.head)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        digest = head_digest(self.head, drop_counters=_is_resnet(model))
        self.info = SplitInfo(name, stage, channels, stride, tuple(mean), tuple(std), digest)

    def train(self, mode: bool = True) -> SplitBackbone:
        return super().train(False)  # frozen: batch norms always use their running statistics

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the head's input (the classifier's own mean / std)."""
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], ``(N, 3, H, W)`` → head features."""
        return self.head(self.normalize(x))

    def classifier_input(self, image: np.ndarray) -> tuple[torch.Tensor, ClassifierGeometry]:
        """An ``H×W×3`` uint8 image → the classifier's own input ``(1, 3, h, w)`` (resized, centre-cropped,
        normalised exactly as on the image path) and where it sits in the image."""
        if self.preprocess_config is None:
            raise SplitError(
                f"the {self.info.backbone} split loaded here does not know its classifier's evaluation transform: "
                "code the image in the full geometry instead"
            )
        x = preprocess_images([image], self.preprocess_config)
        return x, ClassifierGeometry(tuple(image.shape[:2]), tuple(x.shape[-2:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(x))


def head_digest(head: Head, drop_counters: bool = False) -> bytes:
    """The digest a feature stream carries of the head that made it.

    ``drop_counters`` leaves out batch norms' ``num_batches_tracked``, a training counter that does not
    change a frozen head's output: ResNet heads drop it, so that the ImageNet classifier's ``BatchNorm2d``
    head and a COCO detector's ``FrozenBatchNorm2d`` head (no counter) with equal weights share a digest —
    one stream, both receivers. (EfficientNet heads keep it: their digests are in shipped streams.)
    """
    state = head.state_dict()
    if drop_counters:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    return weights_digest(state)


@torch.no_grad()
def _probe(head: Head) -> tuple[int, int]:
    out = head(torch.zeros(1, 3, 64, 64))
    return int(out.shape[1]), 64 // int(out.shape[-1])


def split_classifier(name: str, stage: str, weights="default") -> SplitBackbone:
    """Load classifier ``name`` (as :func:`icmkit.pretrained.classifiers.load_classifier`) and split it."""
    from icmkit.pretrained.classifiers import load_classifier

    classifier = load_classifier(name, weights)
    cfg = classifier.preprocess_config
    return SplitBackbone(name, classifier.model, stage, cfg.mean, cfg.std, cfg)


def images_to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """Equal-sized H×W×3 uint8 arrays → a float batch in [0, 1]."""
    return torch.stack([image_to_tensor(i) for i in images])
