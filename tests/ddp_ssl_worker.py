"""Run by test_ssl.py under torchrun: check MoCo's cross-rank batch shuffle, train a moco-v2 config, then
every rank saves what it holds — key encoder, queue, query encoder — for the test to compare across ranks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from icmkit.ssl.shuffle import BatchShuffle
from icmkit.train.config import load_config
from icmkit.train.trainers import make_trainer


def shuffle_checks(rank: int, world: int, per_rank: int = 2, draws: int = 8) -> tuple[bool, bool]:
    """(every sample comes back encoded in a group that holds it, some group mixed the ranks' samples).

    The samples are one-hot rows of their global index; the "encoder" replaces each by the sum of its BN group
    (this rank's slice of the shuffled global batch), so a returned row names the members of its group."""
    samples = torch.eye(world * per_rank)[rank * per_rank : (rank + 1) * per_rank]
    shuffle = BatchShuffle(rank, world)
    returned_own, mixed = True, False
    for draw in range(draws):
        groups = shuffle.encode(_group_sum, samples, torch.Generator().manual_seed(draw))
        for row, sample in zip(groups, samples):
            returned_own &= bool(row[sample.argmax()] == 1) and int(row.sum()) == per_rank
            members = row.nonzero().flatten() // per_rank
            mixed |= bool((members != rank).any())
    return returned_own, mixed


def _group_sum(batch: torch.Tensor) -> torch.Tensor:
    return batch.sum(0, keepdim=True).expand_as(batch)


def main(config_path: str, dump_folder: str, *overrides: str) -> None:
    trainer = make_trainer(load_config(config_path, list(overrides)))
    returned_own, mixed = shuffle_checks(trainer.parallel.rank, trainer.parallel.world_size)
    trainer.run()
    moco = trainer.model
    tensors = {f"key.{k}": v for k, v in moco.key.state_dict().items()}
    tensors.update({f"queue.{k}": v for k, v in moco.queue.state_dict().items()})
    tensors.update({f"query.{k}": v for k, v in moco.query.state_dict().items()})
    tensors["shuffle.returned_own"] = torch.tensor([returned_own])
    tensors["shuffle.mixed"] = torch.tensor([mixed])
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(Path(dump_folder) / f"rank{os.environ['RANK']}.safetensors"))


if __name__ == "__main__":
    main(*sys.argv[1:])
