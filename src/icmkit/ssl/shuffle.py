"""MoCo's shuffling BN: the key encoder sees the batch in a random grouping, never in the queries' groups.

Why: in training mode BatchNorm makes a sample's output depend on the other samples of its BN batch. If a
query and its key were encoded in groups of the same samples, the network could pick its positive key by
that shared batch "signature" rather than by content, and InfoNCE would be solved by cheating (MoCo, §3.3).
MoCo runs the queries in per-GPU batches and the keys in a random shuffle of the global batch. Here:

- every process runs its crops through the encoders in ``bn_groups`` consecutive BN groups
  (:class:`icmkit.ssl.encoder.EmbeddingEncoder`), in order for the queries;
- :class:`BatchShuffle` runs the key encoder on a random permutation of the *global* batch: under DDP the
  crops of all ranks are gathered, permuted by a permutation every rank draws alike (a generator seeded
  by the step: no broadcast, and a resume draws it again), each rank encodes its slice, and the keys are
  gathered back and un-permuted.

With one process and one group there is a single BN batch and nothing to shuffle; hence the default of two
groups per process, which gives one CPU process MoCo's two-GPU behaviour. SyncBatchNorm is no substitute:
torch's raises on CPU tensors (gloo), and global statistics would again be shared by a query and its key.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist


def concat_from_ranks(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Every rank's ``tensor`` (equal shapes), concatenated in rank order, on every rank (no gradient)."""
    if world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class BatchShuffle:
    """Encode a batch in a random BN grouping of the global batch (see the module docstring).

    Args:
        rank: This process's rank in the training's process group (0 without DDP).
        world_size: How many processes train together (1 without DDP).
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size

    @torch.no_grad()
    def encode(
        self, encoder: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``encoder(images)`` for this rank's ``images``, each computed among randomly chosen companions.
        ``generator`` (CPU) must be in the same state on every rank."""
        count = images.shape[0]
        everyone = concat_from_ranks(images, self.world_size)
        order = torch.randperm(everyone.shape[0], generator=generator).to(images.device)
        mine = everyone[order][self.rank * count : (self.rank + 1) * count]
        encoded = concat_from_ranks(encoder(mine), self.world_size)
        restored = encoded[torch.argsort(order)]
        return restored[self.rank * count : (self.rank + 1) * count]
