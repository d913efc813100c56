"""Typed training configuration: documented fields, YAML files and ``key=value`` overrides.

Every field carries its documentation in ``metadata["doc"]`` (:func:`describe_fields`, ``icm train
--list-fields``), so the dataclass is the single source of names, types, defaults and docs.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import reprlib
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path

import yaml

from icmkit.errors import ConfigError
from icmkit.limits import MODEL_SIZE_RANGES
from icmkit.losses.distortion import DISTORTIONS, MS_SSIM_MIN_CROP
from icmkit.losses.feature import FEATURE_TARGETS
from icmkit.losses.mmd import DEFAULT_BANDWIDTH_MULTIPLIERS
from icmkit.losses.perception import DEFAULT_LAYERS
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
class TrainConfig:
    """Every field of a training run; saved beside every checkpoint."""

    out: str = documented("runs/icm-mse", doc="run directory: checkpoints, log.jsonl, tensorboard/, final weights")
    data: list[str] = documented(
        factory=list,  # no default: a run names its data (no folder layout of a development machine is assumed)
        doc=f"image folders to train on (searched recursively); '{SAMPLES_FOLDER}' = the photos shipped with icmkit",
    )
    architecture: str = documented(
        "mean-scale-hyperprior",
        doc=f"model architecture (see icmkit.models); '{MOCO_V2}': self-supervised MoCo v2 pre-training of the "
        "`backbone` classifier (DICM's stage 1; the ssl_* fields; with ssl_re_from its stage 3); "
        f"'{DICM_RE}': the redundancy-elimination module alone on the frozen backbone's head (DICM's stage 2; "
        "the re_* fields, lr, aux_lr)",
    )
    N: int = documented(64, doc="transform width (channels of the analysis / synthesis transforms)")
    M: int = documented(160, doc="latent channels")
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
    re_from: str = documented(
        "",
        doc=f"dicm-feature: start the RE module from this file — a {DICM_RE} run's final.safetensors or a "
        f"{MOCO_V2} + ssl_re_from run's re.safetensors (DICM's stage 4); its re_levels / re_width / re_latent must "
        "be the config's and its head the backbone's; its feature statistics replace the measured ones",
    )
    re_frozen: bool = documented(
        True, doc="with re_from: keep the loaded RE module fixed, only the compression network trains (DICM's stage 4)"
    )
    feature_target: str = documented(
        "head",
        doc="feature codecs: what f̂ (and the tail's stages and logits) are matched to: 'head' (the head's f1) or "
        "'filtered' (the RE module's f2 — DICM's stage 4 after a stage 3 that trained the tail on f2)",
    )
    resize: int = documented(
        0, doc="resize each training image so its shorter side is this (bicubic) before cropping; 0 = native size"
    )
    init_from: str = documented("", doc="weights file to start from (fine-tuning); ignored when resuming a checkpoint")
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
    filter_scale: int = documented(
        4, doc=f"{RESTORATION}: side of the pixel blocks folded into channels (the filter runs at 1/scale resolution)"
    )
    filter_width: int = documented(64, doc=f"{RESTORATION}: channels of the filter's residual blocks")
    filter_blocks: int = documented(4, doc=f"{RESTORATION}: residual blocks (quality-conditioned by FiLM)")
    quality_band: list[float] = documented(
        factory=list,
        doc=f"{RESTORATION}: [lo, hi] — train on the cached items whose quality lies in this band only and condition "
        "the filter on it (one model per band, the ablation of one quality-conditioned model); empty = the whole grid",
    )
    filter_edge_kernel: int = documented(
        3, doc=f"{RESTORATION}: kernel side of the filter's head and tail convolutions (3 or 1)"
    )
    crop: int = documented(
        256,
        doc=f"side of the random square training crops (a multiple of 64); {RESTORATION}: the window taken from each "
        "cached crop (at most the cache's crop)",
    )
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
    max_minutes: float = documented(0.0, doc="stop (with a checkpoint) after this wall time; 0 = no limit")
    stop_at: int = documented(
        0,
        doc="stop (with a checkpoint) once this step is reached, keeping the schedule of `steps`: a long run in "
        "sittings, or a short run on the long run's learning-rate schedule; 0 = train to `steps`",
    )
    tensorboard: bool = documented(
        True, doc="write TensorBoard scalars to <out>/tensorboard when tensorboard is installed"
    )
    # -- moco-v2 (icmkit.ssl): its budget is `steps`; one epoch = (number of images // global batch) steps --
    ssl_queue: int = documented(
        4096, doc=f"{MOCO_V2}: negative keys in the queue (a multiple of the global batch = batch_size × processes)"
    )
    ssl_temperature: float = documented(0.2, doc=f"{MOCO_V2}: InfoNCE temperature τ")
    ssl_momentum: float = documented(0.999, doc=f"{MOCO_V2}: momentum m of the key encoder (key ← m·key + (1−m)·query)")
    ssl_projection_dim: int = documented(
        128, doc=f"{MOCO_V2}: output width of the MLP projection head (hidden width = the backbone's feature width)"
    )
    ssl_lr: float = documented(
        0.03,
        doc=f"{MOCO_V2}: SGD learning rate per 256 crops: lr = ssl_lr × global batch / 256, momentum 0.9, weight "
        "decay 1e-4, cosine decay over `steps` (MoCo v2; the codec fields lr, lr_drop_at, clip_grad are not used)",
    )
    ssl_bn_groups: int = documented(
        2,
        doc=f"{MOCO_V2}: BatchNorm groups per process (batch_size / groups crops each); queries run in order, keys "
        "in a random shuffle of the global batch (MoCo's shuffling BN; one process needs ≥ 2 groups for it)",
    )
    ssl_box_threshold: float = documented(
        0.1, doc=f"{MOCO_V2}: threshold of the min–max normalised activation map whose bounding box guides the crops"
    )
    ssl_box_size: int = documented(
        224,
        doc=f"{MOCO_V2}: side of the square each image is resized to for its activation map (224: a 7×7 map at "
        "stride 32, ContrastiveCrop's)",
    )
    ssl_box_warmup: int = documented(
        20, doc=f"{MOCO_V2}: epochs of whole-image crops before the first activation boxes are computed"
    )
    ssl_box_every: int = documented(
        20, doc=f"{MOCO_V2}: epochs between recomputations of the boxes (each also redraws <out>/crops.png)"
    )
    ssl_beta_alpha: float = documented(
        0.6, doc=f"{MOCO_V2}: α of the Beta(α, α) that places crop centres within the box (ContrastiveCrop)"
    )
    ssl_re_from: str = documented(
        "",
        doc=f"{MOCO_V2}: a {DICM_RE} run's final.safetensors to put between the backbone's head (`split`) and tail "
        "and train with it (DICM's stage 3); its re_levels / re_width / re_latent must be the config's and its "
        "head the one backbone_weights give; the run also writes <out>/re.safetensors",
    )
    ssl_rate_weight: float = documented(0.1, doc=f"{MOCO_V2} with ssl_re_from: weight of the RE latent's bpp")
    ssl_distortion_weight: float = documented(
        0.1, doc=f"{MOCO_V2} with ssl_re_from: weight of L1(f2, f1) on standardised features"
    )

    def validate(self) -> None:
        """Refuse inconsistent values (not the environment: data folders are checked when training starts)."""
        for name, (least, greatest) in INT_RANGES.items():
            value = getattr(self, name)
            if not least <= value <= greatest:
                raise ConfigError(f"{name} must be in [{least}, {greatest}], got {value}")
        for name in ("data", "lmbdas", "perception_layers", "perception_layer_weights", "mmd_bandwidths"):
            if len(getattr(self, name)) > MAX_LIST_ITEMS:
                raise ConfigError(f"{name}: more than {MAX_LIST_ITEMS} items")
        if self.crop % 64 and self.architecture != MOCO_V2:
            raise ConfigError(f"crop must be a multiple of 64, got {self.crop}")
        for name in ("batch_size", "steps", "N", "M", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.lmbda <= 0 or self.lr <= 0 or self.aux_lr <= 0 or any(v <= 0 for v in self.lmbdas):
            raise ConfigError("lmbda, lmbdas, lr and aux_lr must be positive")
        if not 0 <= self.lr_drop_at <= 1:
            raise ConfigError(f"lr_drop_at must be a fraction in [0, 1], got {self.lr_drop_at}")
        if self.clip_grad < 0 or self.max_minutes < 0 or self.threads < 0:
            raise ConfigError("clip_grad, max_minutes and threads must be ≥ 0")
        if not 0 <= self.stop_at <= self.steps:
            raise ConfigError(f"stop_at must be in [0, steps = {self.steps}], got {self.stop_at}")
        if self.distortion not in DISTORTIONS:
            raise ConfigError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {self.distortion!r}")
        if self.distortion == "ms-ssim" and self.crop < MS_SSIM_MIN_CROP:
            raise ConfigError(f"ms-ssim needs crop ≥ {MS_SSIM_MIN_CROP} (five scales), got {self.crop}")
        if self.beta < 0 or self.distill_weight < 0 or self.distill_floor < 0:
            raise ConfigError("beta, distill_weight and distill_floor must be ≥ 0")
        if self.beta > 0 and not self.perception_layers:
            raise ConfigError("beta > 0 needs at least one perception layer")
        if self.perception_layer_weights and len(self.perception_layer_weights) != len(self.perception_layers):
            raise ConfigError("perception_layer_weights needs one weight per perception layer")
        if self.mmd_samples < 2 or not self.mmd_bandwidths or min(self.mmd_bandwidths) <= 0:
            raise ConfigError("mmd_samples must be ≥ 2 and mmd_bandwidths positive")
        if self.device not in DEVICES and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.architecture == RESTORATION:
            self._validate_restoration()
        elif not self.data:
            raise ConfigError(
                f"no training data: name image folders with data=a/,b/ (or data: [...] in the config; "
                f"'{SAMPLES_FOLDER}' for the photos shipped with icmkit)"
            )
        if self.tail_stage_weights and len(self.tail_stage_weights) != len(self.tail_stages):
            raise ConfigError("tail_stage_weights needs one weight per tail stage")
        for name, allowed in (("block", BLOCKS), ("context", CONTEXTS), ("hyper_synthesis", HYPER_SYNTHESES)):
            if getattr(self, name) not in allowed:  # the model's own choices, not a copy of them
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.latent_levels < 1:
            raise ConfigError("latent_levels must be ≥ 1")
        if min(self.re_levels, self.resize, self.re_rate_weight, self.re_distortion_weight, self.feature_weight) < 0:
            raise ConfigError("re_levels, resize, re_rate_weight, re_distortion_weight and feature_weight must be ≥ 0")
        if self.feature_target not in FEATURE_TARGETS:
            raise ConfigError(f"feature_target must be {' or '.join(FEATURE_TARGETS)}, got {self.feature_target!r}")
        if self.decoded_cache and self.architecture != RESTORATION:
            raise ConfigError(f"decoded_cache is for {RESTORATION}, not {self.architecture}")
        if self.feature_cache and self.architecture not in ("dicm-feature", DICM_RE):
            raise ConfigError(f"feature_cache is for dicm-feature and {DICM_RE}, not {self.architecture}")
        if self.re_from and self.architecture != "dicm-feature":
            raise ConfigError(f"re_from is for dicm-feature ({MOCO_V2} takes ssl_re_from), not {self.architecture}")
        if self.re_from and self.re_levels == 0:
            raise ConfigError("re_from needs an RE module: re_levels must be the file's, not 0")
        if self.ssl_re_from and self.architecture != MOCO_V2:
            raise ConfigError(f"ssl_re_from is for {MOCO_V2} (dicm-feature takes re_from), not {self.architecture}")
        if self.architecture == MOCO_V2:
            self._validate_self_supervised()
        if self.architecture == DICM_RE:
            self._validate_redundancy_stage()

    def _validate_restoration(self) -> None:
        if not self.decoded_cache:
            raise ConfigError(
                f"{RESTORATION} trains on decoded crops: name a cache built by `icm cache decoded` "
                "with decoded_cache=DIR"
            )
        if self.crop % self.filter_scale:
            raise ConfigError(f"crop ({self.crop}) must be a multiple of filter_scale ({self.filter_scale})")
        if self.filter_edge_kernel not in (1, 3):
            raise ConfigError(f"filter_edge_kernel must be 1 or 3, not {self.filter_edge_kernel}")
        if self.quality_band and not (
            len(self.quality_band) == 2
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in self.quality_band)
            and self.quality_band[0] < self.quality_band[1]
        ):
            raise ConfigError(f"quality_band must be [lo, hi] with lo < hi, got {self.quality_band}")
        if self.init_from:
            raise ConfigError(f"init_from is for codecs; {RESTORATION} starts as the identity filter")

    def _validate_redundancy_stage(self) -> None:
        if self.re_levels < 1:
            raise ConfigError(f"{DICM_RE} trains an RE module: re_levels must be ≥ 1")
        if self.init_from:
            raise ConfigError(f"init_from is for codecs; {DICM_RE} starts from scratch on backbone_weights")

    def _validate_self_supervised(self) -> None:
        # A backbone reduces by 32: crops of whole feature maps (the codec's stride of 64 is not needed here).
        if self.crop % 32 or self.crop < 32:
            raise ConfigError(f"{MOCO_V2}: crop must be a positive multiple of 32, got {self.crop}")
        for name in ("ssl_queue", "ssl_projection_dim", "ssl_bn_groups", "ssl_box_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.batch_size % self.ssl_bn_groups:
            raise ConfigError(f"ssl_bn_groups ({self.ssl_bn_groups}) must divide batch_size ({self.batch_size})")
        if self.ssl_queue % self.batch_size:  # the global batch (× processes) is checked when training starts
            raise ConfigError(f"ssl_queue ({self.ssl_queue}) must be a multiple of batch_size ({self.batch_size})")
        if self.ssl_temperature <= 0 or self.ssl_lr <= 0 or self.ssl_beta_alpha <= 0:
            raise ConfigError("ssl_temperature, ssl_lr and ssl_beta_alpha must be positive")
        if not 0 <= self.ssl_momentum < 1 or not 0 <= self.ssl_box_threshold < 1:
            raise ConfigError("ssl_momentum and ssl_box_threshold must be in [0, 1)")
        if self.ssl_box_warmup < 0 or self.ssl_box_size < 32:
            raise ConfigError("ssl_box_warmup must be ≥ 0 and ssl_box_size ≥ 32")
        if self.init_from:
            raise ConfigError(f"init_from is for codecs; {MOCO_V2} starts from backbone_weights")
        if self.ssl_rate_weight < 0 or self.ssl_distortion_weight < 0:
            raise ConfigError("ssl_rate_weight and ssl_distortion_weight must be ≥ 0")
        if self.ssl_re_from and self.re_levels == 0:
            raise ConfigError("ssl_re_from needs an RE module: re_levels must be the file's, not 0")

    def data_folders(self) -> list[Path]:
        """The folders of ``data``, with the bundled-samples name resolved."""
        from icmkit.data import SAMPLES_DIR

        return [SAMPLES_DIR if entry == SAMPLES_FOLDER else Path(entry) for entry in self.data]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# -- field types and documentation -----------------------------------------------------------------
def _field_types() -> dict[str, type]:
    return typing.get_type_hints(TrainConfig)


def type_name(hint) -> str:
    if typing.get_origin(hint) is list:
        return f"list[{typing.get_args(hint)[0].__name__}]"
    return hint.__name__


def describe_fields() -> list[dict[str, str]]:
    """Name, type, default (as on this machine) and documentation of every field, in declaration order."""
    defaults = TrainConfig()
    types = _field_types()
    return [
        {
            "name": f.name,
            "type": type_name(types[f.name]),
            "default": json.dumps(getattr(defaults, f.name)),
            "doc": f.metadata["doc"],
        }
        for f in dataclasses.fields(TrainConfig)
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
    known = [f.name for f in dataclasses.fields(TrainConfig)]
    if key in known:
        return key
    close = difflib.get_close_matches(str(key), known, n=1)
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


def config_from_yaml(path: str | Path) -> TrainConfig:
    """A config from a YAML mapping of field: value (fields left out keep their defaults); not validated."""
    path = Path(path)
    types = _field_types()
    values = {}
    for key, value in _read_yaml_mapping(path).items():
        key = _check_known(key, str(path))
        try:
            values[key] = _coerce(key, value, types[key])
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return TrainConfig(**values)


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
    """Apply ``key=value`` strings (see :func:`_parse_override_value`), then validate."""
    types = _field_types()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"bad override {_short(item)}: expected key=value")
        key = _check_known(key, f"override {_short(item)}")
        try:
            setattr(config, key, _coerce(key, _parse_override_value(raw, types[key]), types[key]))
        except ConfigError as exc:
            raise ConfigError(f"override {_short(item)}: {exc}") from None
    config.validate()
    return config


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file ``path`` (when given), then ``key=value`` overrides; validated."""
    config = TrainConfig() if path is None else config_from_yaml(path)
    return apply_overrides(config, list(overrides))
