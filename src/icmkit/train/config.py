"""Typed training configuration by concern — data, model, loss, schedule, runtime, and moco-v2's ssl — read from
YAML files (flat or by section) and ``key=value`` overrides.

Every field carries its documentation in ``metadata["doc"]`` (:func:`describe_fields`, ``icm train
--list-fields``), so the dataclasses are the single source of names, types, defaults and docs. Each field also
goes by a flat key, unique across sections (:data:`KEYS`: ``lr`` is ``schedule.lr``), which is how overrides,
flat YAML and saved configs name it; allowed architectures, blocks and contexts are the models' own registries.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import reprlib
import typing
import warnings
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from icmkit.errors import ConfigError
from icmkit.limits import MODEL_SIZE_RANGES
from icmkit.losses.distortion import DISTORTIONS, MS_SSIM_MIN_CROP
from icmkit.losses.feature import FEATURE_TARGETS
from icmkit.losses.mmd import DEFAULT_BANDWIDTH_MULTIPLIERS
from icmkit.losses.perception import DEFAULT_LAYERS
from icmkit.models import ARCHITECTURES
from icmkit.models.dicm import BLOCKS, CONTEXTS, HYPER_SYNTHESES

# A `data` entry naming the photos shipped inside the package (smoke runs work from any directory).
SAMPLES_FOLDER = "icmkit:samples"
DEVICES = ("auto", "cpu", "cuda")
# Bounds of a config file and of its fields: far above any real run, far below what exhausts a machine.
MAX_CONFIG_BYTES = 256 << 10  # a config is a few KiB; the pure-Python YAML parser takes ~1 s per MiB
MAX_CONFIG_DEPTH = 8  # fields are scalars or lists of scalars: two levels
MAX_LIST_ITEMS = 4096
# Whole-number fields: (least, greatest) value. Widths and sizes bound the model and the batch a run allocates.
INT_RANGES: dict[str, tuple[int, int]] = {
    **MODEL_SIZE_RANGES,
    "mmd_samples": (2, 1 << 20),
    "resize": (0, 16384),
    "crop": (1, 4096),
    "batch_size": (1, 4096),
    "steps": (1, 1 << 40),
    "seed": (0, (1 << 63) - 1),
    "threads": (0, 4096),
    "log_every": (1, 1 << 40),
    "checkpoint_every": (1, 1 << 40),
    "stop_at": (0, 1 << 40),
    "ssl_queue": (1, 1 << 24),
    "ssl_projection_dim": (1, 1 << 16),
    "ssl_bn_groups": (1, 4096),
    "ssl_box_size": (32, 4096),
    "ssl_box_warmup": (0, 1 << 20),
    "ssl_box_every": (1, 1 << 20),
    "filter_scale": (1, 16),
    "filter_width": (1, 1024),
    "filter_blocks": (0, 64),
    "filter_edge_kernel": (1, 3),
}
# The self-supervised backbone recipe (DICM's stage 1; stage 3 with ssl_re_from): icmkit.train.ssl_loop, not a codec.
MOCO_V2 = "moco-v2"
# DICM's stage 2: the redundancy-elimination module alone on a frozen backbone (icmkit.models.redundancy).
DICM_RE = "dicm-re"
# A receiver-side restoration filter behind a standard codec (icmkit.models.restoration), trained on decoded crops.
RESTORATION = "restoration-cnn"


def documented(default=MISSING, *, doc: str, factory=MISSING):
    """A dataclass field whose documentation travels with it (``factory`` for mutable defaults)."""
    if factory is not MISSING:
        return field(default_factory=factory, metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class DataConfig:
    """What a run trains on: image folders (or a cache of them) and how crops are taken."""

    folders: list[str] = documented(
        factory=list,  # no default: a run names its data (no folder layout of a development machine is assumed)
        doc=f"image folders to train on (searched recursively); '{SAMPLES_FOLDER}' = the photos shipped with icmkit",
    )
    resize: int = documented(
        0, doc="resize each training image so its shorter side is this (bicubic) before cropping; 0 = native size"
    )
    crop: int = documented(
        256,
        doc=f"side of the random square training crops (a multiple of 64); {RESTORATION}: the window taken from each "
        "cached crop (at most the cache's crop)",
    )
    feature_cache: str = documented(
        "",
        doc=f"dicm-feature and {DICM_RE}: train from this folder of cached head features (`icm cache features`: V "
        "random crop + flip views per image, float16) instead of running the frozen head every step; the cache must "
        "be built for this config's backbone, split, crop, resize and data; each image shows its V views in a seeded "
        "order before any repeats (V epochs of fresh views); '' = the head on fresh random crops",
    )
    decoded_cache: str = documented(
        "",
        doc=f"{RESTORATION}: the folder of decoded crops to train on (`icm cache decoded`); its codec is the filter's "
        "base codec and its quality grid the range the filter is conditioned on; `data` is not read",
    )
    quality_band: list[float] = documented(
        factory=list,
        doc=f"{RESTORATION}: [lo, hi] — train on the cached items whose quality lies in this band only and condition "
        "the filter on it (one model per band, the ablation of one quality-conditioned model); empty = the whole grid",
    )

    def validate(self) -> None:
        if self.resize < 0:
            raise ConfigError("resize must be ≥ 0")
        if self.quality_band and not (
            len(self.quality_band) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.quality_band)
            and self.quality_band[0] < self.quality_band[1]
        ):
            raise ConfigError(f"quality_band must be [lo, hi] with lo < hi, got {self.quality_band}")


@dataclass
class ModelConfig:
    """What is trained: the architecture and its widths, the backbone a feature codec splits, where weights start."""

    architecture: str = documented(
        "mean-scale-hyperprior",
        doc=f"model architecture (see icmkit.models); '{MOCO_V2}': self-supervised MoCo v2 pre-training of the "
        "`backbone` classifier (DICM's stage 1; the ssl_* fields; with ssl_re_from its stage 3); "
        f"'{DICM_RE}': the redundancy-elimination module alone on the frozen backbone's head (DICM's stage 2; "
        "the re_* fields, lr, aux_lr)",
    )
    N: int = documented(64, doc="transform width (channels of the analysis / synthesis transforms)")
    M: int = documented(160, doc="latent channels")
    backbone: str = documented(
        "tf_efficientnet_lite0",
        doc="feature codecs: the frozen classifier split into head and tail (timm/torchvision); "
        f"{MOCO_V2}: the classifier trained (timm models, torchvision ResNets)",
    )
    backbone_weights: str = documented(
        "default",
        doc="feature codecs and moco-v2: the backbone's (initial) weights ('default', 'none' = random init for "
        "tests, or a file — e.g. a moco-v2 run's final.safetensors)",
    )
    split: str = documented("blocks.2", doc="feature codecs: the backbone stage after which it is split")
    hyper: int = documented(96, doc="feature codecs: channels of the hyper-latent z")
    latent_levels: int = documented(2, doc="feature codecs: stride-2 levels of the analysis transform (y's scale)")
    re_levels: int = documented(
        2, doc="feature codecs: stride-2 levels of the redundancy-elimination module (0 = no RE module)"
    )
    re_width: int = documented(64, doc="feature codecs: width of the RE module's Conv2Former blocks")
    re_latent: int = documented(96, doc="feature codecs: channels of the RE module's rounded latent")
    block: str = documented("gnconv", doc="feature codecs: analysis/synthesis blocks, 'gnconv' or 'conv' (ablation)")
    context: str = documented(
        "checkerboard",
        doc="variable-rate pixel and feature codecs: 'checkerboard' (two-pass context) or 'none' (ablation)",
    )
    hyper_synthesis: str = documented(
        "integer",
        doc="feature codecs: 'integer' (bit-exact convolutions) or 'attention' (the paper's transformer in h_s, "
        "float: reproducible only on the encoding machine; ablation)",
    )
    filter_scale: int = documented(
        4, doc=f"{RESTORATION}: side of the pixel blocks folded into channels (the filter runs at 1/scale resolution)"
    )
    filter_width: int = documented(64, doc=f"{RESTORATION}: channels of the filter's residual blocks")
    filter_blocks: int = documented(4, doc=f"{RESTORATION}: residual blocks (quality-conditioned by FiLM)")
    filter_edge_kernel: int = documented(
        3, doc=f"{RESTORATION}: kernel side of the filter's head and tail convolutions (3 or 1)"
    )
    init_from: str = documented(
        "",
        doc="weights file to start from (fine-tuning; a variable-rate model trained on another λ grid — moved or more "
        "qualities — loads with its gains interpolated in log λ onto `lmbdas`); ignored when resuming a checkpoint",
    )
    re_from: str = documented(
        "",
        doc=f"dicm-feature: start the RE module from this file — a {DICM_RE} run's final.safetensors or a "
        f"{MOCO_V2} + ssl_re_from run's re.safetensors (DICM's stage 4); its re_levels / re_width / re_latent must "
        "be the config's and its head the backbone's; its feature statistics replace the measured ones",
    )
    re_frozen: bool = documented(
        True, doc="with re_from: keep the loaded RE module fixed, only the compression network trains (DICM's stage 4)"
    )

    def validate(self) -> None:
        known = (*ARCHITECTURES, MOCO_V2, DICM_RE)  # the registered models and the recipes that train no codec
        if self.architecture not in known:
            raise ConfigError(f"unknown architecture {self.architecture!r}; known: {', '.join(known)}")
        if self.N <= 0 or self.M <= 0:
            raise ConfigError("N and M must be positive")
        for name, allowed in (("block", BLOCKS), ("context", CONTEXTS), ("hyper_synthesis", HYPER_SYNTHESES)):
            if getattr(self, name) not in allowed:  # the model's own choices, not a copy of them
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.latent_levels < 1:
            raise ConfigError("latent_levels must be ≥ 1")
        if self.re_levels < 0:
            raise ConfigError("re_levels must be ≥ 0")
        if self.filter_edge_kernel not in (1, 3):
            raise ConfigError(f"filter_edge_kernel must be 1 or 3, not {self.filter_edge_kernel}")
        if self.re_from and self.architecture != "dicm-feature":
            raise ConfigError(f"re_from is for dicm-feature ({MOCO_V2} takes ssl_re_from), not {self.architecture}")
        if self.re_from and self.re_levels == 0:
            raise ConfigError("re_from needs an RE module: re_levels must be the file's, not 0")


@dataclass
class LossConfig:
    """What is minimised: λ (or one per quality), the distortion, the perception, distillation and feature terms."""

    lmbda: float = documented(0.0067, doc="rate–distortion trade-off: bpp + λ·255²·MSE (λ·(1 − MS-SSIM) for ms-ssim)")
    lmbdas: list[float] = documented(
        factory=list,
        doc="variable-rate models (variable-rate-hyperprior, feature codecs): one λ per quality (gain units); "
        "a pixel codec trains a continuous quality drawn per step (λ interpolated log-linearly), a feature codec "
        "one quality drawn per step; empty = a single-rate model at lmbda",
    )
    distortion: str = documented("mse", doc=f"distortion term: {' or '.join(DISTORTIONS)} (ms-ssim needs crop ≥ 192)")
    beta: float = documented(
        0.0, doc="weight β of the perception-consistency (MMD) term; 0 trains for rate + distortion only"
    )
    perception_model: str = documented(
        "tf_efficientnet_lite0", doc="frozen classifier whose features are matched when β > 0 (timm/torchvision name)"
    )
    perception_weights: str = documented(
        "default", doc="the perception classifier's weights: 'default', 'none' (random init; for tests) or a local file"
    )
    perception_layers: list[str] = documented(
        factory=lambda: list(DEFAULT_LAYERS), doc="module names of the perception classifier to tap"
    )
    perception_layer_weights: list[float] = documented(factory=list, doc="weight per tapped layer; empty = all 1")
    mmd_samples: int = documented(1024, doc="feature positions drawn per layer for the MMD estimate")
    mmd_bandwidths: list[float] = documented(
        factory=lambda: list(DEFAULT_BANDWIDTH_MULTIPLIERS),
        doc="MMD kernel bandwidths, as multiples of the median distance",
    )
    distill_weight: float = documented(0.0, doc="weight of logit distillation inside the perception term (0 = off)")
    distill_temperature: float = documented(2.0, doc="softmax temperature of the logit distillation")
    distill_floor: float = documented(
        0.0,
        doc="feature codecs: below this λ the distillation term keeps the weight it has at this λ (w_d · floor / λ_q "
        "inside λ_q · distortion), so low-rate qualities do not collapse to sending nothing; 0 = off",
    )
    feature_weight: float = documented(1.0, doc="feature codecs: weight of MSE(f̂, f) at the split inside λ·(…)")
    tail_stages: list[str] = documented(
        factory=list, doc="feature codecs: tail stages whose outputs are matched (normalised MSE) inside λ·(…)"
    )
    tail_stage_weights: list[float] = documented(factory=list, doc="weight per tail stage; empty = all 1")
    re_rate_weight: float = documented(
        0.1,
        doc=f"feature codecs and {DICM_RE}: weight of the RE latent's rate (not transmitted; the reference's "
        "stage 2: 1)",
    )
    re_distortion_weight: float = documented(
        1.0,
        doc="feature codecs: weight of the RE module's own distortion, normalised MSE(f2, f); "
        f"{DICM_RE}: of L1(f2, f) on standardised features (the reference's stage 2: 128)",
    )
    feature_target: str = documented(
        "head",
        doc="feature codecs: what f̂ (and the tail's stages and logits) are matched to: 'head' (the head's f1) or "
        "'filtered' (the RE module's f2 — DICM's stage 4 after a stage 3 that trained the tail on f2)",
    )

    def validate(self) -> None:
        if self.lmbda <= 0 or any(v <= 0 for v in self.lmbdas):
            raise ConfigError("lmbda and lmbdas must be positive")
        if self.distortion not in DISTORTIONS:
            raise ConfigError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {self.distortion!r}")
        if self.beta < 0 or self.distill_weight < 0 or self.distill_floor < 0:
            raise ConfigError("beta, distill_weight and distill_floor must be ≥ 0")
        if self.beta > 0 and not self.perception_layers:
            raise ConfigError("beta > 0 needs at least one perception layer")
        if self.perception_layer_weights and len(self.perception_layer_weights) != len(self.perception_layers):
            raise ConfigError("perception_layer_weights needs one weight per perception layer")
        if self.mmd_samples < 2 or not self.mmd_bandwidths or min(self.mmd_bandwidths) <= 0:
            raise ConfigError("mmd_samples must be ≥ 2 and mmd_bandwidths positive")
        if self.tail_stage_weights and len(self.tail_stage_weights) != len(self.tail_stages):
            raise ConfigError("tail_stage_weights needs one weight per tail stage")
        if min(self.re_rate_weight, self.re_distortion_weight, self.feature_weight) < 0:
            raise ConfigError("re_rate_weight, re_distortion_weight and feature_weight must be ≥ 0")
        if self.feature_target not in FEATURE_TARGETS:
            raise ConfigError(f"feature_target must be {' or '.join(FEATURE_TARGETS)}, got {self.feature_target!r}")


@dataclass
class ScheduleConfig:
    """How long and how fast: batch, steps, learning rates, seed, where a run stops."""

    batch_size: int = documented(8, doc="crops per step and per process (the global batch is this × world size)")
    steps: int = documented(20000, doc="optimiser steps of the whole run")
    lr: float = documented(1e-4, doc="learning rate of the main (Adam) optimiser")
    aux_lr: float = documented(
        1e-3, doc="learning rate of the auxiliary (Adam) optimiser of the factorised prior's quantiles"
    )
    lr_drop_at: float = documented(0.85, doc="fraction of steps after which the main learning rate is divided by 10")
    clip_grad: float = documented(1.0, doc="clip the main gradients' global norm to this; 0 = no clipping")
    seed: int = documented(
        0, doc="seed of initialisation, crops, flips and quantisation noise (each DDP rank derives its own)"
    )
    stop_at: int = documented(
        0,
        doc="stop (with a checkpoint) once this step is reached, keeping the schedule of `steps`: a long run in "
        "sittings, or a short run on the long run's learning-rate schedule; 0 = train to `steps`",
    )
    max_minutes: float = documented(0.0, doc="stop (with a checkpoint) after this wall time; 0 = no limit")

    def validate(self) -> None:
        if self.batch_size <= 0 or self.steps <= 0:
            raise ConfigError("batch_size and steps must be positive")
        if self.lr <= 0 or self.aux_lr <= 0:
            raise ConfigError("lr and aux_lr must be positive")
        if not 0 <= self.lr_drop_at <= 1:
            raise ConfigError(f"lr_drop_at must be a fraction in [0, 1], got {self.lr_drop_at}")
        if self.clip_grad < 0 or self.max_minutes < 0:
            raise ConfigError("clip_grad and max_minutes must be ≥ 0")
        if not 0 <= self.stop_at <= self.steps:
            raise ConfigError(f"stop_at must be in [0, steps = {self.steps}], got {self.stop_at}")


@dataclass
class RuntimeConfig:
    """Where and how it runs: output folder, threads, device, precision, memory format, logging."""

    out: str = documented("runs/icm-mse", doc="run directory: checkpoints, log.jsonl, tensorboard/, final weights")
    threads: int = documented(0, doc="torch CPU threads; 0 keeps torch's default")
    device: str = documented("auto", doc="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    amp: bool = documented(
        True,
        doc="mixed precision on CUDA (bf16, else fp16 with loss scaling); entropy models and loss stay float32; "
        "no effect on the CPU (see cpu_bf16)",
    )
    cpu_bf16: bool = documented(
        False,
        doc="bf16 autocast on a CPU with native bf16 (AMX or AVX512-BF16; ignored elsewhere); entropy models and "
        "loss stay float32",
    )
    fold_tail_norms: bool = documented(
        True,
        doc="feature codecs: fold the frozen tail's batch norms into its convolutions for training (same function, "
        "one pass less per norm forward and backward)",
    )
    channels_last: bool = documented(
        False, doc="train in the channels-last memory format (model, backbone, batches): faster convolutions on CPUs"
    )
    log_every: int = documented(50, doc="steps between progress records (log.jsonl, console, TensorBoard)")
    checkpoint_every: int = documented(500, doc="steps between checkpoints")
    tensorboard: bool = documented(
        True, doc="write TensorBoard scalars to <out>/tensorboard when tensorboard is installed"
    )

    def validate(self) -> None:
        if self.threads < 0:
            raise ConfigError("threads must be ≥ 0")
        if self.log_every <= 0 or self.checkpoint_every <= 0:
            raise ConfigError("log_every and checkpoint_every must be positive")
        if self.device not in DEVICES and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class SelfSupervisedConfig:
    """moco-v2 only (DICM's stage 1; stage 3 with ``re_from``): its budget is ``schedule.steps``, one epoch =
    (number of images // global batch) steps. Its keys in flat YAML and overrides carry an ``ssl_`` prefix."""

    queue: int = documented(
        4096, doc=f"{MOCO_V2}: negative keys in the queue (a multiple of the global batch = batch_size × processes)"
    )
    temperature: float = documented(0.2, doc=f"{MOCO_V2}: InfoNCE temperature τ")
    momentum: float = documented(0.999, doc=f"{MOCO_V2}: momentum m of the key encoder (key ← m·key + (1−m)·query)")
    projection_dim: int = documented(
        128, doc=f"{MOCO_V2}: output width of the MLP projection head (hidden width = the backbone's feature width)"
    )
    lr: float = documented(
        0.03,
        doc=f"{MOCO_V2}: SGD learning rate per 256 crops: lr = ssl_lr × global batch / 256, momentum 0.9, weight "
        "decay 1e-4, cosine decay over `steps` (MoCo v2; the codec fields lr, lr_drop_at, clip_grad are not used)",
    )
    bn_groups: int = documented(
        2,
        doc=f"{MOCO_V2}: BatchNorm groups per process (batch_size / groups crops each); queries run in order, keys "
        "in a random shuffle of the global batch (MoCo's shuffling BN; one process needs ≥ 2 groups for it)",
    )
    box_threshold: float = documented(
        0.1, doc=f"{MOCO_V2}: threshold of the min–max normalised activation map whose bounding box guides the crops"
    )
    box_size: int = documented(
        224,
        doc=f"{MOCO_V2}: side of the square each image is resized to for its activation map (224: a 7×7 map at "
        "stride 32, ContrastiveCrop's)",
    )
    box_warmup: int = documented(
        20, doc=f"{MOCO_V2}: epochs of whole-image crops before the first activation boxes are computed"
    )
    box_every: int = documented(
        20, doc=f"{MOCO_V2}: epochs between recomputations of the boxes (each also redraws <out>/crops.png)"
    )
    beta_alpha: float = documented(
        0.6, doc=f"{MOCO_V2}: α of the Beta(α, α) that places crop centres within the box (ContrastiveCrop)"
    )
    re_from: str = documented(
        "",
        doc=f"{MOCO_V2}: a {DICM_RE} run's final.safetensors to put between the backbone's head (`split`) and tail "
        "and train with it (DICM's stage 3); its re_levels / re_width / re_latent must be the config's and its "
        "head the one backbone_weights give; the run also writes <out>/re.safetensors",
    )
    rate_weight: float = documented(0.1, doc=f"{MOCO_V2} with ssl_re_from: weight of the RE latent's bpp")
    distortion_weight: float = documented(
        0.1, doc=f"{MOCO_V2} with ssl_re_from: weight of L1(f2, f1) on standardised features"
    )

    def validate(self) -> None:  # checked for every config (the values are bounded whatever the architecture)
        for name in ("queue", "projection_dim", "bn_groups", "box_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ssl_{name} must be positive")
        if self.temperature <= 0 or self.lr <= 0 or self.beta_alpha <= 0:
            raise ConfigError("ssl_temperature, ssl_lr and ssl_beta_alpha must be positive")
        if not 0 <= self.momentum < 1 or not 0 <= self.box_threshold < 1:
            raise ConfigError("ssl_momentum and ssl_box_threshold must be in [0, 1)")
        if self.box_warmup < 0 or self.box_size < 32:
            raise ConfigError("ssl_box_warmup must be ≥ 0 and ssl_box_size ≥ 32")
        if self.rate_weight < 0 or self.distortion_weight < 0:
            raise ConfigError("ssl_rate_weight and ssl_distortion_weight must be ≥ 0")


# The sections by name, and the key each field goes by in flat YAML, `key=value` overrides and saved configs:
# its own name, but `data` for the data folders and an `ssl_` prefix for moco-v2's fields. Keys are unique, so a
# flat key names one field; `section.field` names it too.
SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "schedule": ScheduleConfig,
    "runtime": RuntimeConfig,
    "ssl": SelfSupervisedConfig,
}
KEY_PREFIXES = {"ssl": "ssl_"}
KEY_RENAMES = {("data", "folders"): "data"}


def _keys() -> dict[str, tuple[str, str]]:
    keys = {}
    for section, kind in SECTION_TYPES.items():
        for item in dataclasses.fields(kind):
            key = KEY_RENAMES.get((section, item.name), KEY_PREFIXES.get(section, "") + item.name)
            assert key not in keys, key  # a flat key must name one field
            keys[key] = (section, item.name)
    return keys


KEYS: dict[str, tuple[str, str]] = _keys()
_DOTTED = {f"{section}.{name}": key for key, (section, name) in KEYS.items()}


def canonical_key(key) -> str | None:
    """The flat key of a flat or dotted (``schedule.lr``) key; None when it names no field."""
    if not isinstance(key, str):
        return None
    return key if key in KEYS else _DOTTED.get(key)


@dataclass
class TrainConfig:
    """Every field of a training run, by concern; saved beside every checkpoint (flat, by key: :meth:`to_json`).

    Args:
        data: what a run trains on (:class:`DataConfig`).
        model: the architecture and where its weights start (:class:`ModelConfig`).
        loss: what is minimised (:class:`LossConfig`).
        schedule: batch, steps, learning rates, seed (:class:`ScheduleConfig`).
        runtime: output folder, device, threads, precision, logging (:class:`RuntimeConfig`).
        ssl: the moco-v2 recipe's fields (:class:`SelfSupervisedConfig`).

    ``TrainConfig.from_flat(lr=1e-4, data=[...])`` builds one from flat keys; ``config.get(key)`` /
    ``config.set(key, value)`` read and write by key. Reading or writing a field as a flat attribute
    (``config.lr``) still works, with a DeprecationWarning: it is ``config.schedule.lr`` now.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    ssl: SelfSupervisedConfig = field(default_factory=SelfSupervisedConfig)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any] | None = None, **more: Any) -> TrainConfig:
        """A config from flat (or dotted) keys, e.g. a saved checkpoint's; not coerced or validated."""
        config = cls()
        for key, value in {**(values or {}), **more}.items():
            config.set(key, value)
        return config

    def _locate(self, key: str) -> tuple[object, str]:
        flat = canonical_key(key)
        if flat is None:
            raise ConfigError(f"unknown field {_short(key)}; `icm train --list-fields` lists them")
        section, name = KEYS[flat]
        return getattr(self, section), name

    def get(self, key: str) -> Any:
        """The value of the field a flat or dotted key names."""
        holder, name = self._locate(key)
        return getattr(holder, name)

    def set(self, key: str, value: Any) -> None:
        """Set the field a flat or dotted key names (as given: :func:`apply_overrides` coerces text)."""
        holder, name = self._locate(key)
        setattr(holder, name, value)

    def flat(self) -> dict[str, Any]:
        """Every field by its flat key (copies: changing the dict leaves the config as it is)."""
        return {key: copy.deepcopy(getattr(getattr(self, section), name)) for key, (section, name) in KEYS.items()}

    def to_json(self) -> str:
        return json.dumps(self.flat(), sort_keys=True)

    def data_folders(self) -> list[Path]:
        """The folders of ``data``, with the bundled-samples name resolved."""
        from icmkit.data import SAMPLES_DIR

        return [SAMPLES_DIR if entry == SAMPLES_FOLDER else Path(entry) for entry in self.data.folders]

    # -- flat attributes: the layout before the sections, kept as deprecated aliases -------------------------
    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        if name in KEYS and name not in SECTION_TYPES:
            section, field_name = KEYS[name]
            _deprecated(name, section, field_name)
            return getattr(getattr(self, section), field_name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        flat_data = name == "data" and not isinstance(value, DataConfig)  # the folders, as `data` used to be
        if flat_data or (name in KEYS and name not in SECTION_TYPES):
            section, field_name = KEYS[name]
            _deprecated(name, section, field_name)
            setattr(getattr(self, section), field_name, value)
        else:
            object.__setattr__(self, name, value)

    # -- validation ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse inconsistent values (not the environment: data folders are checked when training starts): each
        section's own rules, then the rules that span sections and the recipes' (moco-v2, dicm-re, restoration)."""
        for key, (least, greatest) in INT_RANGES.items():
            value = self.get(key)
            if not least <= value <= greatest:
                raise ConfigError(f"{key} must be in [{least}, {greatest}], got {value}")
        for key in ("data", "lmbdas", "perception_layers", "perception_layer_weights", "mmd_bandwidths"):
            if len(self.get(key)) > MAX_LIST_ITEMS:
                raise ConfigError(f"{key}: more than {MAX_LIST_ITEMS} items")
        for section in SECTION_TYPES:
            getattr(self, section).validate()
        self._validate_across_sections()
        recipe = {MOCO_V2: self._validate_self_supervised, DICM_RE: self._validate_redundancy_stage}
        recipe.get(self.model.architecture, lambda: None)()

    def _validate_across_sections(self) -> None:
        architecture, data = self.model.architecture, self.data
        if data.crop % 64 and architecture != MOCO_V2:
            raise ConfigError(f"crop must be a multiple of 64, got {data.crop}")
        if self.loss.distortion == "ms-ssim" and data.crop < MS_SSIM_MIN_CROP:
            raise ConfigError(f"ms-ssim needs crop ≥ {MS_SSIM_MIN_CROP} (five scales), got {data.crop}")
        if architecture == RESTORATION:
            self._validate_restoration()
        elif not data.folders:
            raise ConfigError(
                f"no training data: name image folders with data=a/,b/ (or data: [...] in the config; "
                f"'{SAMPLES_FOLDER}' for the photos shipped with icmkit)"
            )
        if data.decoded_cache and architecture != RESTORATION:
            raise ConfigError(f"decoded_cache is for {RESTORATION}, not {architecture}")
        if data.feature_cache and architecture not in ("dicm-feature", DICM_RE):
            raise ConfigError(f"feature_cache is for dicm-feature and {DICM_RE}, not {architecture}")
        if self.ssl.re_from and architecture != MOCO_V2:
            raise ConfigError(f"ssl_re_from is for {MOCO_V2} (dicm-feature takes re_from), not {architecture}")

    def _validate_restoration(self) -> None:
        data, model = self.data, self.model
        if not data.decoded_cache:
            raise ConfigError(
                f"{RESTORATION} trains on decoded crops: name a cache built by `icm cache decoded` "
                "with decoded_cache=DIR"
            )
        if data.crop % model.filter_scale:
            raise ConfigError(f"crop ({data.crop}) must be a multiple of filter_scale ({model.filter_scale})")
        if model.init_from:
            raise ConfigError(f"init_from is for codecs; {RESTORATION} starts as the identity filter")

    def _validate_redundancy_stage(self) -> None:
        if self.model.re_levels < 1:
            raise ConfigError(f"{DICM_RE} trains an RE module: re_levels must be ≥ 1")
        if self.model.init_from:
            raise ConfigError(f"init_from is for codecs; {DICM_RE} starts from scratch on backbone_weights")

    def _validate_self_supervised(self) -> None:
        ssl, batch_size = self.ssl, self.schedule.batch_size
        # A backbone reduces by 32: crops of whole feature maps (the codec's stride of 64 is not needed here).
        if self.data.crop % 32 or self.data.crop < 32:
            raise ConfigError(f"{MOCO_V2}: crop must be a positive multiple of 32, got {self.data.crop}")
        if batch_size % ssl.bn_groups:
            raise ConfigError(f"ssl_bn_groups ({ssl.bn_groups}) must divide batch_size ({batch_size})")
        if ssl.queue % batch_size:  # the global batch (× processes) is checked when training starts
            raise ConfigError(f"ssl_queue ({ssl.queue}) must be a multiple of batch_size ({batch_size})")
        if self.model.init_from:
            raise ConfigError(f"init_from is for codecs; {MOCO_V2} starts from backbone_weights")
        if ssl.re_from and self.model.re_levels == 0:
            raise ConfigError("ssl_re_from needs an RE module: re_levels must be the file's, not 0")


def _deprecated(key: str, section: str, name: str) -> None:
    warnings.warn(f"TrainConfig.{key} is TrainConfig.{section}.{name} now", DeprecationWarning, stacklevel=3)


# -- field types and documentation -----------------------------------------------------------------
def _field_types() -> dict[str, type]:
    """Each flat key's type."""
    hints = {section: typing.get_type_hints(kind) for section, kind in SECTION_TYPES.items()}
    return {key: hints[section][name] for key, (section, name) in KEYS.items()}


def type_name(hint) -> str:
    if typing.get_origin(hint) is list:
        return f"list[{typing.get_args(hint)[0].__name__}]"
    return hint.__name__


def describe_fields() -> list[dict[str, str]]:
    """Key, section, type, default (as on this machine) and documentation of every field, section by section."""
    defaults = TrainConfig()
    types = _field_types()
    docs = {
        (section, item.name): item.metadata["doc"]
        for section, kind in SECTION_TYPES.items()
        for item in dataclasses.fields(kind)
    }
    return [
        {
            "name": key,
            "section": f"{section}.{name}",
            "type": type_name(types[key]),
            "default": json.dumps(defaults.get(key)),
            "doc": docs[(section, name)],
        }
        for key, (section, name) in KEYS.items()
    ]


def _coerce(name: str, value, hint):
    """``value`` as field ``name``'s type: ints widen to floats, a lone string becomes a one-item list of
    strings; anything else of the wrong type is refused (``True`` is not an int here)."""
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{name} expects a list of {item.__name__}, got {_short(value)}")
        return [_coerce(name, v, item) for v in value]
    if hint is float and type(value) is int:
        value = float(value)
    if hint is float and isinstance(value, str):
        value = _float_from_text(name, value)  # YAML 1.1 reads `1e-4` (no dot) as a string
    if type(value) is not hint:
        raise ConfigError(f"{name} expects {hint.__name__}, got {_short(value)}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def _short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line quotes a value, never megabytes of it."""
    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = limit, limit, 6, 6, 3
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float_from_text(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} expects float, got {_short(text)}") from None


def _check_known(key, source: str) -> str:
    """The flat key of a flat or dotted key; one error with the closest known key otherwise."""
    flat = canonical_key(key)
    if flat is not None:
        return flat
    close = difflib.get_close_matches(str(key), [*KEYS, *_DOTTED], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{source}: unknown field {_short(key)}{hint}; `icm train --list-fields` lists them")


# -- sources: YAML files and key=value overrides ---------------------------------------------------
class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``: the "billion laughs" expansion) and with a nesting
    limit (the composer recurses once per level).

    Args:
        stream (str | bytes | typing.IO): The YAML text (or a file object), as :class:`yaml.SafeLoader` takes it.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in a config", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_CONFIG_DEPTH} levels deep", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml_bounded(text: str):
    """One YAML document through :class:`BoundedLoader` (``yaml.YAMLError`` when refused or malformed)."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_config_text(path: Path) -> str:
    try:
        if path.exists() and not path.is_file():  # a folder, a device, a FIFO (whose open would block)
            raise ConfigError(f"{path}: cannot read config (not a regular file)")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a training config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def _read_yaml_mapping(path: Path) -> dict:
    text = _read_config_text(path)
    try:
        document = load_yaml_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if document is None:  # an empty file: all defaults
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value, got a {type(document).__name__}")
    return document


def _yaml_items(document: dict, source: str):
    """``(key, value)`` pairs of a config mapping: flat keys (``lr: 1e-4``) and section mappings
    (``schedule: {lr: 1e-4}``) alike; ``data`` is the section when it holds a mapping, else the folders."""
    for key, value in document.items():
        if key in SECTION_TYPES and isinstance(value, dict):
            for name, inner in value.items():
                yield _check_known(f"{key}.{name}", source), inner
        else:
            yield _check_known(key, source), value


def config_from_yaml(path: str | Path) -> TrainConfig:
    """A config from a YAML mapping of field: value, flat or by section (fields left out keep their defaults);
    not validated."""
    path = Path(path)
    types = _field_types()
    config = TrainConfig()
    for key, value in _yaml_items(_read_yaml_mapping(path), str(path)):
        try:
            config.set(key, _coerce(key, value, types[key]))
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config


def _parse_override_value(raw: str, hint):
    """Text fields take the text as it is; others parse as JSON (numbers, lists, true/false) when they
    can; a list field also takes comma-separated items."""
    if hint is str:
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    except RecursionError:
        raise ConfigError(f"value nested too deeply: {_short(raw)}") from None
    if isinstance(value, str) and typing.get_origin(hint) is list:
        return [v for v in value.split(",") if v]
    return value


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings (flat keys or ``section.field``; see :func:`_parse_override_value`), then
    validate."""
    types = _field_types()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"bad override {_short(item)}: expected key=value")
        key = _check_known(key, f"override {_short(item)}")
        try:
            config.set(key, _coerce(key, _parse_override_value(raw, types[key]), types[key]))
        except ConfigError as exc:
            raise ConfigError(f"override {_short(item)}: {exc}") from None
    config.validate()
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file ``path`` (when given), then ``key=value`` overrides; validated."""
    config = TrainConfig() if path is None else config_from_yaml(path)
    return apply_overrides(config, list(overrides))
