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
from safetensors.torch import load_file, save

from icmkit.errors import ConfigError
from icmkit.fileio import atomic_write
from icmkit.image import load_rgb, resize_shorter_side
from icmkit.ssl.contact_sheet import write_contact_sheet
from icmkit.ssl.crops import ContrastiveViews, compute_boxes
from icmkit.ssl.encoder import EmbeddingEncoder
from icmkit.ssl.moco import MoCo
from icmkit.ssl.shuffle import BatchShuffle, concat_from_ranks
from icmkit.tasks.classification import load_classifier
from icmkit.train.config import MOCO_V2, TrainConfig
from icmkit.train.loop import Trainer, _model_tensors, _optimizer_tensors, _restore_optimizer, _rng_names
from icmkit.train.precision import MixedPrecision

SGD_MOMENTUM = 0.9  # MoCo v2's optimiser
WEIGHT_DECAY = 1e-4
REFERENCE_BATCH = 256  # ssl_lr is the learning rate of a global batch of this size
CONTACT_SHEET_IMAGES = 48
# Generator streams, each seeded by (seed, step or epoch, stream[, rank]).
_VIEWS, _SHUFFLE, _EPOCH_ORDER = 1, 2, 3


class ContrastiveTrainer(Trainer):
    """Trainer's construction order, loop, logging, time limit and rank handling; MoCo's model, data, step,
    checkpoints and export. ``make_trainer(config)`` returns one when ``config.architecture`` is ``moco-v2``.

    Hooks for :class:`~icmkit.train.ssl_joint_loop.JointContrastiveTrainer` (stage 3): :meth:`_build_encoder`,
    :meth:`_encode_queries` with :attr:`term_weights`, and :attr:`checkpoint_kind`."""

    # What a checkpoint of this trainer holds: a resume refuses the checkpoint of another kind of run.
    checkpoint_kind = MOCO_V2
    # Weights of the extra loss terms :meth:`_encode_queries` returns, by name (none for plain MoCo).
    term_weights: dict[str, float] = {}

    # -- building: hooks called by Trainer.__init__ -----------------------------------------------
    def _build_model(self) -> None:
        config = self.config
        torch.manual_seed(config.seed)  # the same projection head and queue on every rank
        weights = None if config.backbone_weights == "none" else config.backbone_weights
        classifier = load_classifier(config.backbone, weights)
        mean, std = classifier.preprocess_config.mean, classifier.preprocess_config.std
        try:
            encoder = self._build_encoder(classifier.model, mean, std)
        except ValueError as exc:
            raise ConfigError(f"backbone: {exc}") from None
        self.model = MoCo(encoder, config.ssl_queue, config.ssl_momentum, config.ssl_temperature).to(self.device)
        self.backbone = None  # not a feature codec: Trainer's codec initialisation stays off
        self.precision = MixedPrecision(self.device, config.amp)
        self.precision.prepare(self.model)  # after MoCo's copy: query and key each get their own float32 wrappers
        self.optimizer = torch.optim.SGD(
            encoder.trainable_parameters(), lr=self.learning_rate(0), momentum=SGD_MOMENTUM, weight_decay=WEIGHT_DECAY
        )
        self.shuffle = BatchShuffle(self.parallel.rank, self.parallel.world_size)

    def _build_data(self) -> None:
        config = self.config
        if config.ssl_queue % self.global_batch:
            raise ConfigError(
                f"ssl_queue ({config.ssl_queue}) must be a multiple of the global batch ({self.global_batch} = "
                "batch_size × processes)"
            )
        images = [_load_image(f, config.resize) for f in self.files]
        self.views = ContrastiveViews(images, config.crop, config.ssl_beta_alpha)
        self.steps_per_epoch = len(self.views) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"data: {len(self.views)} images, fewer than one global batch ({self.global_batch})")
        if self.parallel.active:
            torch.manual_seed(self._stream_seed(0))  # each rank its own dropout, where a backbone has some

    def _build_encoder(self, classifier: torch.nn.Module, mean, std) -> EmbeddingEncoder:
        config = self.config
        return EmbeddingEncoder(classifier, mean, std, config.ssl_projection_dim, config.ssl_bn_groups)

    def _distribute(self) -> torch.nn.Module:
        return self.parallel.wrap(self.model.query, self.device, ignore=[])  # the key encoder and queue: by hand

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.parallel.world_size

    # -- one step ---------------------------------------------------------------------------------
    def learning_rate(self, step: int) -> float:
        base = self.config.ssl_lr * self.global_batch / REFERENCE_BATCH
        return base * 0.5 * (1 + math.cos(math.pi * step / self.config.steps))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._refresh_boxes_when_due()
        seed = (self.config.seed, self.step, _VIEWS, self.parallel.rank)
        queries, keys = self.views.pairs(self._batch_indices(self.step), seed)
        return queries.to(self.device), keys.to(self.device)

    def _batch_indices(self, step: int) -> list[int]:
        """This rank's images at ``step``: its slice of the step's global batch in the epoch's permutation."""
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng((self.config.seed, epoch, _EPOCH_ORDER)).permutation(len(self.views))
        start = position * self.global_batch + self.parallel.rank * self.config.batch_size
        return order[start : start + self.config.batch_size].tolist()

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
        seed = np.random.default_rng((self.config.seed, self.step, stream)).integers(2**63)
        return torch.Generator().manual_seed(int(seed))

    # -- semantic guidance ------------------------------------------------------------------------
    def _refresh_boxes_when_due(self) -> None:
        epoch, position = divmod(self.step, self.steps_per_epoch)
        warmup, every = self.config.ssl_box_warmup, self.config.ssl_box_every
        if position == 0 and epoch >= warmup and (epoch - warmup) % every == 0:
            self.refresh_boxes(epoch)

    def refresh_boxes(self, epoch: int) -> None:
        """Every image's activation box from the current query backbone; each rank computes every
        ``world_size``-th image and all receive all boxes. Rank 0 redraws ``crops.png``."""
        rank, world = self.parallel.rank, self.parallel.world_size
        images = self.views.images
        config = self.config
        mine = compute_boxes(self.model.query, images[rank::world], config.ssl_box_size, config.ssl_box_threshold)
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
    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _checkpoint_extras(self) -> tuple[dict, dict]:
        optimizer, optimizer_groups = _optimizer_tensors("opt", self.optimizer)
        tensors = {**optimizer, "boxes": self.views.boxes.contiguous()}
        return tensors, {"architecture": self.checkpoint_kind, "optimizer_groups": optimizer_groups}

    def _resume(self) -> bool:
        tensors_path, meta_path = self._checkpoint_paths()
        if not (tensors_path.exists() and meta_path.exists()):
            return False
        meta = json.loads(meta_path.read_text())
        if meta.get("architecture") != self.checkpoint_kind:
            held = meta.get("architecture") or meta["config"]["architecture"]
            raise ConfigError(
                f"out: {self.out} holds the checkpoint of a {held} run, not of a {self.checkpoint_kind} run"
            )
        tensors = load_file(str(tensors_path))
        if tensors["boxes"].shape[0] != len(self.views):
            raise ConfigError(f"data: {len(self.views)} images, the checkpoint's run had {tensors['boxes'].shape[0]}")
        self.model.load_state_dict(_model_tensors(tensors))
        _restore_optimizer("opt", self.optimizer, tensors, meta["optimizer_groups"])
        if meta.get("grad_scaler"):
            self.precision.scaler.load_state_dict(meta["grad_scaler"])
        self.views.boxes = tensors["boxes"]
        self.step = int(meta["step"])
        restored = self._restore_rng(tensors, meta)
        self.log({"event": "resumed", "step": self.step, **({} if restored else {"random_streams": "new"})})
        return True

    def _restore_rng(self, tensors: dict, meta: dict) -> bool:
        names = _rng_names(self.parallel.rank)
        if names["torch"] not in tensors:  # resumed with more processes than the run had
            return False
        torch.set_rng_state(tensors[names["torch"]])
        if self.device.type == "cuda" and names["cuda"] in tensors:
            torch.cuda.set_rng_state(tensors[names["cuda"]], self.device)
        return True

    # -- output -----------------------------------------------------------------------------------
    def export(self) -> Path:
        path = self.out / "final.safetensors"
        export_backbone(self.model.query, self.config, self.step, path, self.git_commit)
        return path


def export_backbone(encoder: EmbeddingEncoder, config: TrainConfig, step: int, path: Path, commit=None) -> None:
    """The trained classifier's state dict, with what made it as metadata."""
    metadata = {
        "architecture": MOCO_V2,
        "backbone": config.backbone,
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
