"""``architecture: moco-v2`` — DICM's stage 1: MoCo v2 pre-training of a classifier, semantic-guided crops.

    icm train --config configs/ssl-moco-lite0.yaml data=DIR,DIR out=runs/ssl
    torchrun --standalone --nproc_per_node 2 -m icmkit train --config configs/ssl-moco-lite0.yaml data=... out=...

One step, on every process: take this rank's share of the global batch (an epoch is a permutation of the
images, ``images // global batch`` steps long); make two views of each image (:mod:`icmkit.ssl.crops`); encode
the first with the query encoder (under DDP); update the key encoder and encode the second with it in shuffled
BN groups (:mod:`icmkit.ssl.shuffle`); one SGD step on InfoNCE; push the keys of the whole global batch onto
the queue. At the start of epoch ``ssl_box_warmup`` and every ``ssl_box_every`` epochs after it, the activation
boxes of all training images are recomputed with the current query backbone and drawn into ``<out>/crops.png``.

Optimiser: MoCo v2's SGD — lr = ssl_lr × global batch / 256, momentum 0.9, weight decay 1e-4 — with a cosine
decay over ``steps``; the codec fields lr, lr_drop_at, clip_grad and aux_lr are not used.

Randomness: picks, views and shuffles come from generators seeded by (seed, step[, rank]), so none of them has
a state to carry over a resume; torch's global stream (dropout in some backbones) is checkpointed as
:class:`~icmkit.train.loop.Trainer` does. Checkpoints hold both encoders and the projection head, the queue
and its pointer, the optimiser, the boxes, the step and the random states: one CPU process resumes exactly.

Output: ``final.safetensors`` is the trained classifier's own state dict — ``load_classifier(backbone,
weights=path)`` loads it, and later stages take it as ``backbone_weights``. Its last linear layer is the
initial one (MoCo does not train it); the projection head and the key encoder stay in the checkpoint.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save

from icmkit.errors import ConfigError
from icmkit.fileio import atomic_write
from icmkit.image import load_rgb, resize_shorter_side
from icmkit.pretrained.classifiers import load_classifier
from icmkit.ssl.contact_sheet import write_contact_sheet
from icmkit.ssl.crops import ContrastiveViews, compute_boxes
from icmkit.ssl.encoder import EmbeddingEncoder
from icmkit.ssl.moco import MoCo
from icmkit.ssl.shuffle import BatchShuffle, concat_from_ranks
from icmkit.train.base import TrainerBase, register_trainer
from icmkit.train.config import MOCO_V2, TrainConfig
from icmkit.train.data import find_images
from icmkit.train.precision import MixedPrecision

SGD_MOMENTUM = 0.9  # MoCo v2's optimiser
WEIGHT_DECAY = 1e-4
REFERENCE_BATCH = 256  # ssl_lr is the learning rate of a global batch of this size
CONTACT_SHEET_IMAGES = 48
# Generator streams, each seeded by (seed, step or epoch, stream[, rank]).
_VIEWS, _SHUFFLE, _EPOCH_ORDER = 1, 2, 3


@register_trainer(lambda config: config.model.architecture == MOCO_V2 and not config.ssl.re_from)
class ContrastiveTrainer(TrainerBase):
    """MoCo v2 pre-training of a classifier (DICM's stage 1): its model, data, step, checkpoints and export on
    the base's loop, logging, time limit and rank handling.

    Hooks for :class:`~icmkit.train.ssl_joint_loop.JointContrastiveTrainer` (stage 3): :meth:`_build_encoder`,
    :meth:`_encode_queries` with :attr:`term_weights`, and :attr:`checkpoint_kind`."""

    # What a checkpoint of this trainer holds: a resume refuses the checkpoint of another kind of run.
    checkpoint_kind = MOCO_V2
    # Weights of the extra loss terms :meth:`_encode_queries` returns, by name (none for plain MoCo).
    term_weights: dict[str, float] = {}

    # -- building: hooks called by TrainerBase.__init__ -------------------------------------------
    def check_inputs(self) -> None:
        try:
            self.files = find_images(self.config.data_folders())
        except FileNotFoundError as exc:
            raise ConfigError(f"data: {exc}") from None

    def build(self) -> None:
        self._build_model()
        self._build_data()

    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(config.schedule.seed)  # the same projection head and queue on every rank
        weights = None if config.model.backbone_weights == "none" else config.model.backbone_weights
        classifier = load_classifier(config.model.backbone, weights)
        mean, std = classifier.preprocess_config.mean, classifier.preprocess_config.std
        try:
            encoder = self._build_encoder(classifier.model, mean, std)
        except ValueError as exc:
            raise ConfigError(f"backbone: {exc}") from None
        self.model = MoCo(encoder, config.ssl.queue, config.ssl.momentum, config.ssl.temperature).to(self.device)
        self.precision = MixedPrecision(self.device, config.runtime.amp, config.runtime.cpu_bf16)
        self.precision.prepare(self.model)  # after MoCo's copy: query and key each get their own float32 wrappers
        self.optimizer = torch.optim.SGD(
            encoder.trainable_parameters(), lr=self.learning_rate(0), momentum=SGD_MOMENTUM, weight_decay=WEIGHT_DECAY
        )
        self.shuffle = BatchShuffle(self.parallel.rank, self.parallel.world_size)

    def _build_data(self) -> None:
        config = self.config
        if config.ssl.queue % self.global_batch:
            raise ConfigError(
                f"ssl_queue ({config.ssl.queue}) must be a multiple of the global batch ({self.global_batch} = "
                "batch_size × processes)"
            )
        images = [_load_image(f, config.data.resize) for f in self.files]
        self.views = ContrastiveViews(images, config.data.crop, config.ssl.beta_alpha)
        self.steps_per_epoch = len(self.views) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data: {len(self.views)} images, fewer than one global batch ({self.global_batch})")
        if self.parallel.active:
            torch.manual_seed(self.stream_seed(0))  # each rank its own dropout, where a backbone has some

    def _build_encoder(self, classifier: torch.nn.Module, mean, std) -> EmbeddingEncoder:
        config = self.config
        return EmbeddingEncoder(classifier, mean, std, config.ssl.projection_dim, config.ssl.bn_groups)

    def distribute(self) -> torch.nn.Module:
        return self.parallel.wrap(self.model.query, self.device, ignore=[])  # the key encoder and queue: by hand

    @property
    def global_batch(self) -> int:
        return self.config.schedule.batch_size * self.parallel.world_size

    # -- one step ---------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        base = self.config.ssl.lr * self.global_batch / REFERENCE_BATCH
        return base * 0.5 * (1 + math.cos(math.pi * step / self.config.schedule.steps))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._refresh_boxes_when_due()
        seed = (self.config.schedule.seed, self.step, _VIEWS, self.parallel.rank)
        queries, keys = self.views.pairs(self._batch_indices(self.step), seed)
        return queries.to(self.device), keys.to(self.device)

    def _batch_indices(self, step: int) -> list[int]:
        """This rank's images at ``step``: its slice of the step's global batch in the epoch's permutation."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng((self.config.schedule.seed, epoch, _EPOCH_ORDER)).permutation(len(self.views))
        start = position * self.global_batch + self.parallel.rank * self.config.schedule.batch_size
        return order[start : start + self.config.schedule.batch_size].tolist()

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        queries, keys = batch
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        with self.precision.autocast():
            q, terms = self._encode_queries(queries)
        with torch.no_grad():
            # DDP would give the query rank 0's BN statistics at its next forward; doing it now lets the key copy
            # them, so that every rank ends the step with identical encoders (a no-op for one process).
            self.parallel.broadcast_from_main(list(self.model.query.buffers()))
            self.model.update_key()
            with self.precision.autocast():
                k = self.shuffle.encode(self.model.key, keys, self._step_generator(_SHUFFLE)).float()
        parts = self.model.loss(q.float(), k)  # the queue holds earlier batches' keys only
        if terms:
            parts["contrastive"] = parts["loss"]
            for name, value in terms.items():
                parts[name] = value.float()
                parts["loss"] = parts["loss"] + self.term_weights[name] * parts[name]
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(parts["loss"])
        self.precision.step(self.optimizer)
        self.model.queue.push(concat_from_ranks(k, self.parallel.world_size))
        self.step += 1
        return {name: float(value.detach()) for name, value in parts.items()}

    def _encode_queries(self, queries: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Query embeddings, and extra loss terms of the query path (weighted by :attr:`term_weights`)."""
        return self.network(queries), {}

    def _step_generator(self, stream: int) -> torch.Generator:
        """A CPU generator in the same state on every rank, drawn afresh for each step."""
        seed = np.random.default_rng((self.config.schedule.seed, self.step, stream)).integers(2**63)
        return torch.Generator().manual_seed(int(seed))

    # -- semantic guidance ------------------------------------------------------------------------
    def _refresh_boxes_when_due(self) -> None:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        warmup, every = self.config.ssl.box_warmup, self.config.ssl.box_every
        if position == 0 and epoch >= warmup and (epoch - warmup) % every == 0:
            self.refresh_boxes(epoch)

    def refresh_boxes(self, epoch: int) -> None:
        """Every image's activation box from the current query backbone; each rank computes every
        ``world_size``-th image and all receive all boxes. Rank 0 redraws ``crops.png``."""
        rank, world = self.parallel.rank, self.parallel.world_size
        images = self.views.images
        config = self.config
        mine = compute_boxes(self.model.query, images[rank::world], config.ssl.box_size, config.ssl.box_threshold)
        boxes = torch.empty(len(images), 4)
        for source, part in enumerate(self.parallel.gather(mine.cpu())):
            boxes[source::world] = part
        self.views.boxes = boxes
        if self.parallel.is_main:
            shown = min(len(images), CONTACT_SHEET_IMAGES)
            write_contact_sheet(images[:shown], boxes[:shown], self.out / "crops.png")
        area = float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).mean())
        self.log({"event": "boxes refreshed", "step": self.step, "epoch": epoch, "mean_box_area": round(area, 3)})

    # -- checkpoints ------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.optimizer}

    def random_streams(self) -> dict[str, np.random.Generator]:
        return {}  # every draw is seeded by (seed, step, stream, rank): nothing else to save

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {"boxes": self.views.boxes.contiguous()}

    def checkpoint_metadata(self) -> dict:
        return {"grad_scaler": self.precision.scaler.state_dict()}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if tensors["boxes"].shape[0] != len(self.views):
            raise ConfigError(f"data: {len(self.views)} images, the checkpoint's run had {tensors['boxes'].shape[0]}")
        if meta.get("grad_scaler"):
            self.precision.scaler.load_state_dict(meta["grad_scaler"])
        self.views.boxes = tensors["boxes"]

    def started_record(self) -> dict:
        return {"precision": self.precision.describe()}

    # -- output -----------------------------------------------------------------------------------
    def export(self) -> Path:
        path = self.out / "final.safetensors"
        export_backbone(self.model.query, self.config, self.step, path, self.git_commit)
        return path


def export_backbone(encoder: EmbeddingEncoder, config: TrainConfig, step: int, path: Path, commit=None) -> None:
    """The trained classifier's state dict, with what made it as metadata."""
    metadata = {
        "architecture": MOCO_V2,
        "backbone": config.model.backbone,
        "step": step,
        "config": config.to_json(),
        "git_commit": commit,
    }
    text = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_write(path, save(encoder.classifier_state_dict(), metadata=text))


def _load_image(path: Path, resize: int) -> torch.Tensor:
    """A training image as a uint8 ``(3, H, W)`` tensor, its shorter side scaled to ``resize`` (bicubic) if > 0."""
    array = load_rgb(path)
    if resize > 0:
        array = resize_shorter_side(array, resize, Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).contiguous()  # a copy: PIL arrays are read-only
