"""``moco-v2`` with ``ssl_re_from`` — DICM's stage 3: MoCo v2 and the redundancy-elimination module, jointly.

    icm train --config configs/ssl-joint-lite0.yaml data=DIR,DIR out=runs/ssl-joint-lite0

Stage 1's loop (:class:`~icmkit.train.ssl_loop.ContrastiveTrainer`: semantic-guided views, shuffling BN, queue,
momentum key encoder, SGD with a cosine schedule, exact resume) with the RE module of stage 2 between the
backbone's head (``split``) and tail (:mod:`icmkit.ssl.filtered`); the loss is

    InfoNCE + ssl_rate_weight · bpp_RE + ssl_distortion_weight · L1(f2, f1)   (the reference: 1, 0.1, 0.1)

and SGD trains backbone, RE and projection head together; the key encoder averages all of them. The projection
head and the queue start afresh (stage 1's final file holds the classifier only).

Output: ``final.safetensors`` is the trained classifier's state dict, as stage 1's (``load_classifier`` loads it;
stage 4 takes it as ``backbone_weights``), and ``re.safetensors`` the trained RE module with the feature statistics
it works with and the digest of this run's trained head (stage 4's ``re_from``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from icmkit.backbones.split import SplitError
from icmkit.errors import ConfigError
from icmkit.ssl.encoder import EmbeddingEncoder
from icmkit.ssl.filtered import FilteredEmbeddingEncoder
from icmkit.train.base import register_trainer
from icmkit.train.builders import load_backbone
from icmkit.train.config import MOCO_V2
from icmkit.train.loop import export_weights
from icmkit.train.redundancy_source import load_redundancy_filter
from icmkit.train.ssl_loop import ContrastiveTrainer

RE_FILE = "re.safetensors"


@register_trainer(lambda config: config.model.architecture == MOCO_V2 and bool(config.ssl.re_from))
class JointContrastiveTrainer(ContrastiveTrainer):
    """:class:`~icmkit.train.ssl_loop.ContrastiveTrainer` with an RE module in the encoders (module docstring)."""

    checkpoint_kind = f"{MOCO_V2}+re"

    def _build_encoder(self, classifier: torch.nn.Module, mean, std) -> EmbeddingEncoder:
        config = self.config
        info = load_backbone(config).info  # the head that ssl_re_from must have been trained on
        re_filter = load_redundancy_filter(config.ssl.re_from, config, info, "ssl_re_from")
        multiple = info.stride * re_filter.re.factor
        if config.data.crop % multiple:
            raise ConfigError(
                f"crop must be a multiple of {multiple} (head stride {info.stride} × the RE module's "
                f"{re_filter.re.factor}), got {config.data.crop}"
            )
        self.term_weights = {"bpp_re": config.ssl.rate_weight, "l1_re": config.ssl.distortion_weight}
        try:
            return FilteredEmbeddingEncoder(
                classifier,
                config.model.split,
                re_filter.train(),
                mean,
                std,
                config.ssl.projection_dim,
                config.ssl.bn_groups,
            )
        except SplitError as exc:
            raise ConfigError(f"split: {exc}") from None

    def _encode_queries(self, queries: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.network(queries, with_re_terms=True)

    def export(self) -> Path:
        """The classifier as stage 1 exports it, then the RE module recorded against the trained head."""
        path = super().export()
        head = load_backbone(self.config, weights=str(path)).info.head_digest.hex()
        re_filter = self.model.query.re_filter.for_head(head).to("cpu")
        re_path = self.out / RE_FILE
        export_weights(re_filter, self.config, self.step, re_path, self.git_commit)
        self.log({"event": "exported", "backbone": str(path), "re": str(re_path), "head_digest": head})
        return path
