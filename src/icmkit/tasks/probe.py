"""Linear probe (the MoCo protocol) on frozen features: pooled penultimate vectors and a linear classifier.

The standard evaluation of a backbone without a trained classifier layer: everything stays frozen, each image
gives the globally average-pooled output of the backbone's last stage (what the classifier layer reads), and
only a linear layer is trained on those vectors with labels. :func:`pooled_features` makes the vectors from
what a codec delivers — decoded images through a classifier (its own preprocessing), or decoded
:class:`~icmkit.codecs.base.FeatureMaps` through the tail of the backbone they were cut from, on the centre
window the benchmark's classification protocol uses — :func:`train_linear_probe` fits the layer,
:func:`evaluate_probe` scores it, and :func:`fit_and_evaluate` does both for ImageNet class indices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icmkit.backbones.split import check_backbone
from icmkit.decoded import FEATURES, FeatureMaps
from icmkit.errors import IcmError

DEFAULT_EPOCHS = 100
# MoCo v2 trains its linear layer with lr 30 on raw pooled features, whose scale is arbitrary (tiny for its
# ResNet). Standardised features have unit variance per dimension, so gradients are of order one and lr 30
# diverges; 0.1 is the base rate MAE uses for its linear probe, which standardises the same way (BatchNorm
# without affine parameters in front of the linear layer).
DEFAULT_LR = 0.1
DEFAULT_MOMENTUM = 0.9  # MoCo's SGD momentum
DEFAULT_WEIGHT_DECAY = 0.0  # MoCo and MAE train the linear layer without weight decay
DEFAULT_BATCH_SIZE = 256  # MoCo's batch of the linear stage
_INIT_STD = 0.01  # MoCo's initialisation of the linear layer: weights N(0, 0.01²), bias 0
_MIN_STD = 1e-6  # a feature this flat on the training set is left unscaled (a dead unit: 0 / 0)


class ProbeError(IcmError):
    """A linear probe that cannot be trained or scored on the features and labels given."""


# -- pooled penultimate features -----------------------------------------------------------------------------
def pooled_features(decoded: Sequence[np.ndarray | FeatureMaps], classifier, *, batch_size: int = 32) -> torch.Tensor:
    """The pooled penultimate vector of every decoded item, ``(N, D)`` float32 on the CPU.

    Images (``H×W×3`` uint8) go through ``classifier`` (an :class:`~icmkit.tasks.Classifier`) with its own
    preprocessing, up to the input of its classifier layer. :class:`FeatureMaps` go through the tail of the
    same classifier split where they were cut (its own modules), on the centre window that corresponds to the
    classifier's crop of the coded image (as ``icm bench`` scores feature codecs), then global average pooling;
    their backbone and head digest must be ``classifier``'s. Items of one call are all images or all features.
    """
    items = list(decoded)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    features = [isinstance(item, FeatureMaps) for item in items]
    if any(features) and not all(features):
        raise ProbeError("pooled features are made of images or of feature maps, not of both in one set")
    if not items:
        return torch.zeros((0, 0), dtype=torch.float32)
    if all(features):
        return _pooled_feature_maps(items, classifier, batch_size)
    return _pooled_images(items, classifier, batch_size)


def penultimate(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """What ``model``'s classifier layer reads for a preprocessed ``batch``, ``(N, D)``.

    timm models: ``forward_head(forward_features(x), pre_logits=True)`` (global pooling, no classifier).
    Other models (torchvision): the input of the last ``nn.Linear`` (ResNets: the average-pooled last stage).
    """
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        out = model.forward_head(model.forward_features(batch), pre_logits=True)
    else:
        out = _last_linear_input(model, batch)
    if out.ndim == 4:  # a head configured without pooling: pool here, as the probe protocol does
        out = out.mean(dim=(2, 3))
    if out.ndim != 2:
        raise ProbeError(f"{type(model).__name__}: its classifier layer reads a {out.ndim}-D tensor, not vectors")
    return out


def _last_linear_input(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ProbeError(f"{type(model).__name__} has no linear classifier layer whose input could be probed")
    captured: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
    try:
        model(batch)
    finally:
        handle.remove()
    return captured[-1].flatten(1)


def _pooled_images(images: list[np.ndarray], classifier, batch_size: int) -> torch.Tensor:
    rows = []
    for start in range(0, len(images), batch_size):
        batch = classifier.preprocess(images[start : start + batch_size]).to(classifier.device)
        with torch.inference_mode():
            rows.append(penultimate(classifier.model, batch).float().cpu())
    return torch.cat(rows)


def _pooled_feature_maps(items: list[FeatureMaps], classifier, batch_size: int) -> torch.Tensor:
    from icmkit.tasks.evaluators import ClassificationEvaluator

    # The bench's classification evaluator knows the classifier's feature window and shares its split
    # backbones (no copy of the modules); no labels: it only crops and splits here.
    windows = ClassificationEvaluator(classifier, {})
    inputs = [_windowed(windows, item) for item in items]
    rows = []
    start = 0
    while start < len(inputs):  # batches of consecutive windows with one stage and one shape
        stage, tensor = inputs[start]
        end = start + 1
        while (
            end < len(inputs)
            and end - start < batch_size
            and inputs[end][0] == stage
            and inputs[end][1].shape == tensor.shape
        ):
            end += 1
        batch = torch.cat([t for _, t in inputs[start:end]]).to(classifier.device)
        with torch.inference_mode():
            rows.append(windows.split(stage).tail.pooled(batch).float().cpu())
        start = end
    return torch.cat(rows)


def _windowed(windows, features: FeatureMaps) -> tuple[str, torch.Tensor]:
    """(split stage, the centre window of the feature map as a ``(1, C, h, w)`` float32 tensor), checked
    against the classifier: same backbone, same head, the stage's channel count and stride."""
    meta = features.meta
    name = windows.classifier.name
    check_backbone(meta, name, name, ProbeError, complete=False)
    stage = str(meta["split"])
    info = windows.split(stage).info
    info.check_features(meta, f"the {name} loaded here", ProbeError, complete=False)
    if FEATURES not in features.tensors:
        raise ProbeError(f"expected a feature tensor named {FEATURES!r}, found {', '.join(features.tensors)}")
    tensor = torch.as_tensor(features.tensors[FEATURES]).to("cpu", torch.float32)
    stride = features.strides.get(FEATURES)
    if (
        tensor.ndim != 4
        or tensor.shape[:2] != (1, info.channels)
        or (stride is not None and int(stride) != info.stride)
    ):
        raise ProbeError(
            f"features of shape {tuple(tensor.shape)} at stride {stride} do not fit {name} after {stage} "
            f"((1, {info.channels}, h, w) at stride {info.stride})"
        )
    top, left, height, width = windows.feature_window(features)
    return str(stage), tensor[:, :, top : top + height, left : left + width]


# -- the linear classifier -------------------------------------------------------------------------------------
class LinearProbe(nn.Linear):
    """A linear layer over standardised features: ``forward(x) = W · (x − mean) / std + b``.

    Built by :func:`train_linear_probe`, which draws the initial ``W`` from its own seeded generator (a new
    layer's ``W`` and ``b`` are zeros, so building one draws nothing from torch's global generator).

    Args:
        in_features: Width ``D`` of the features ``(N, D)``.
        out_features: How many classes.
        mean: The training set's per-dimension feature mean, ``(D,)``; kept as the buffer ``feature_mean``
            (saved with the state dict).
        std: The training set's per-dimension feature standard deviation, likewise (``feature_std``).
    """

    def __init__(self, in_features: int, out_features: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("feature_mean", mean.reshape(1, in_features).to(torch.float32))
        self.register_buffer("feature_std", std.reshape(1, in_features).to(torch.float32))

    def reset_parameters(self) -> None:
        # Zeros, drawing nothing from torch's global generator: train_linear_probe draws MoCo's initialisation
        # from its own seeded one, so fitting a probe never shifts the caller's random stream.
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean) / self.feature_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.standardise(x))


def train_linear_probe(
    train_x,
    train_y,
    num_classes: int,
    *,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    momentum: float = DEFAULT_MOMENTUM,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
) -> LinearProbe:
    """Fit a linear classifier on frozen features ``train_x`` ``(N, D)`` with labels ``train_y`` in
    ``0 … num_classes − 1``: cross-entropy, SGD with momentum, a cosine learning-rate decay to zero over all
    steps, batches reshuffled every epoch. Features are standardised with the training mean and std (the
    returned :class:`LinearProbe` applies them too). The same inputs and ``seed`` give the same probe."""
    x = torch.as_tensor(np.asarray(train_x) if not isinstance(train_x, torch.Tensor) else train_x)
    y = torch.as_tensor(np.asarray(train_y) if not isinstance(train_y, torch.Tensor) else train_y)
    # Features made under inference mode cannot be saved for backward: train on ordinary copies.
    x, y = x.detach().to("cpu", torch.float32).clone(), y.detach().to("cpu", torch.int64).clone()
    _check_training_set(x, y, num_classes)
    for value, what in ((epochs, "epochs"), (batch_size, "batch size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProbeError(f"{what} must be a positive integer, got {value!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ProbeError(f"learning rate must be positive, got {lr!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0) or not 0 <= momentum < 1:
        raise ProbeError(f"weight decay must be ≥ 0 and momentum in [0, 1), got {weight_decay!r} and {momentum!r}")

    mean = x.double().mean(dim=0)
    std = x.double().std(dim=0, unbiased=False)
    std = torch.where(std > _MIN_STD, std, torch.ones_like(std))
    probe = LinearProbe(x.shape[1], num_classes, mean, std)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.inference_mode(False), torch.enable_grad():  # trains even when called under no_grad
        with torch.no_grad():
            probe.weight.copy_(torch.randn(probe.weight.shape, generator=generator) * _INIT_STD)
        standardised = probe.standardise(x)  # once: the features are frozen
        optimizer = torch.optim.SGD(probe.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(x) / batch_size)
        total_steps = epochs * steps_per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
        )
        probe.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                batch = order[start : start + batch_size]
                loss = F.cross_entropy(F.linear(standardised[batch], probe.weight, probe.bias), y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    probe.eval().requires_grad_(False)
    return probe


def _check_training_set(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ProbeError(f"training features must be (N, D) with N labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        raise ProbeError("no training images: a linear probe needs labelled training features")
    if not torch.isfinite(x).all():
        raise ProbeError("training features hold NaN or infinite values")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ProbeError(f"a linear probe needs at least 2 classes, got {num_classes!r}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ProbeError(f"training labels must lie in 0…{num_classes - 1}, got {int(y.min())}…{int(y.max())}")
    if len(torch.unique(y)) < 2:
        raise ProbeError(f"all {len(y)} training images are of class {int(y[0])}: a probe needs two classes or more")


def evaluate_probe(probe: LinearProbe, eval_x, eval_y, k: int = 5) -> dict[str, float]:
    """Top-1 and top-``k`` accuracy in percent (keys ``top1``, ``top5`` for the default ``k``). A label the
    probe has no output for (e.g. −1: a class without training examples) is never right. With fewer than
    ``k`` classes, top-``k`` ranks all of them."""
    x = torch.as_tensor(np.asarray(eval_x) if not isinstance(eval_x, torch.Tensor) else eval_x)
    y = torch.as_tensor(np.asarray(eval_y) if not isinstance(eval_y, torch.Tensor) else eval_y).to(torch.int64)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ProbeError(f"eval features must be (N, D) with N labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) == 0:
        raise ProbeError("no eval images to score the probe on")
    if x.shape[1] != probe.in_features:
        raise ProbeError(f"eval features have {x.shape[1]} dimensions; the probe was trained on {probe.in_features}")
    with torch.inference_mode():
        logits = probe(x.to("cpu", torch.float32))
    ranked = torch.topk(logits, k=min(k, logits.shape[1]), dim=1).indices
    hits = ranked == y.unsqueeze(1)
    count = len(y)  # percentages of integer counts: 4 of 5 is exactly 80.0
    return {"top1": 100.0 * int(hits[:, 0].sum()) / count, f"top{k}": 100.0 * int(hits.any(1).sum()) / count}


# -- both, on class indices --------------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    """What :func:`fit_and_evaluate` returns: accuracies in percent, the set sizes, and the classes the
    probe could not learn (eval classes without any training example: always counted as errors)."""

    top1: float
    top5: float
    train_images: int
    eval_images: int
    classes: tuple[int, ...]  # the class index behind each probe output, ascending
    unseen_classes: tuple[int, ...]  # eval classes absent from the training set
    unseen_images: int  # eval images of those classes
    probe: LinearProbe = field(repr=False)

    @property
    def warnings(self) -> list[str]:
        if not self.unseen_classes:
            return []
        count = len(self.unseen_classes)
        return [
            f"{count} eval class{'es' if count > 1 else ''} ({self.unseen_images} of {self.eval_images} images) "
            f"{'have' if count > 1 else 'has'} no training example: the probe cannot predict "
            f"{'them' if count > 1 else 'it'}, so those images count as errors"
        ]


def fit_and_evaluate(
    train_x,
    train_labels: Sequence[int],
    eval_x,
    eval_labels: Sequence[int],
    **training,
) -> ProbeResult:
    """Train a probe over the classes of ``train_labels`` (any integers, e.g. ImageNet indices; mapped to
    outputs in ascending order) and score it on the eval set. ``training``: the keyword options of
    :func:`train_linear_probe`. Fewer than two training classes raise :class:`ProbeError`."""
    train_labels, eval_labels = [int(v) for v in train_labels], [int(v) for v in eval_labels]
    if not train_labels:
        raise ProbeError("no training images: a linear probe needs labelled training features")
    classes = tuple(sorted(set(train_labels)))
    if len(classes) < 2:
        raise ProbeError(
            f"all {len(train_labels)} training images are of class {classes[0]}: a probe needs two classes or more"
        )
    output = {label: i for i, label in enumerate(classes)}
    probe = train_linear_probe(train_x, [output[v] for v in train_labels], len(classes), **training)
    scores = evaluate_probe(probe, eval_x, [output.get(v, -1) for v in eval_labels])
    unseen = tuple(sorted(set(eval_labels) - set(classes)))
    return ProbeResult(
        top1=scores["top1"],
        top5=scores["top5"],
        train_images=len(train_labels),
        eval_images=len(eval_labels),
        classes=classes,
        unseen_classes=unseen,
        unseen_images=sum(v in unseen for v in eval_labels),
        probe=probe,
    )
