"""Every trainer, registered: :func:`make_trainer` builds the one a config asks for.

- codecs (pixel and feature) and DICM's RE stage (``dicm-re``): :class:`~icmkit.train.loop.Trainer`;
- ``moco-v2``, DICM's stage 1: :class:`~icmkit.train.ssl_loop.ContrastiveTrainer`; with ``ssl_re_from``, stage 3:
  :class:`~icmkit.train.ssl_joint_loop.JointContrastiveTrainer`;
- ``restoration-cnn``: :class:`~icmkit.train.restoration_loop.RestorationTrainer`.

A new trainer is a :class:`~icmkit.train.base.TrainerBase` subclass decorated with
:func:`~icmkit.train.base.register_trainer`, imported here.
"""

from __future__ import annotations

# Imported for their registrations (the trainers claim disjoint sets of configs: import order does not matter).
from icmkit.train import loop, restoration_loop, ssl_joint_loop, ssl_loop  # noqa: F401
from icmkit.train.base import TrainerBase, trainer_for
from icmkit.train.config import TrainConfig
from icmkit.train.reporting import Reporter, print_json_line


def make_trainer(config: TrainConfig, report: Reporter = print_json_line) -> TrainerBase:
    """The trainer ``config`` asks for (by its architecture), built: it resumes from the checkpoint in
    ``config.runtime.out``."""
    return trainer_for(config)(config, report)


__all__ = ["make_trainer"]
