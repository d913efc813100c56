"""MoCo v2 (He et al., CVPR 2020; Chen et al., arXiv:2003.04297): momentum contrast with an MLP head.

    view 1 ─ query encoder f_q (trained by SGD) ──────────── q ─┐
    view 2 ─ key encoder f_k = EMA of f_q (no gradient) ──── k ─┼─ InfoNCE(q; k⁺, queue⁻; τ)
    queue: the last K keys of earlier batches (all ranks) ──────┘   then k (all ranks) → queue

:class:`MoCo` holds the three parts; the training step (:mod:`icmkit.train.ssl_loop`) orders them, since
only the query encoder runs under DDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from icmkit.ssl.encoder import EmbeddingEncoder


def info_nce(
    query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's InfoNCE: the cross-entropy of picking each query's own key among it and the ``negatives``.

    ``query``, ``key``: ``(N, d)``, ``negatives``: ``(K, d)``, all L2-normalised. Returns the mean loss and the
    logits ``(N, 1 + K)`` (column 0: the positive)."""
    positive = (query * key).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, query @ negatives.T], dim=1) / temperature
    labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels), logits


class NegativeQueue(nn.Module):
    """A ring buffer of the last ``size`` keys (L2-normalised rows): InfoNCE's negatives, oldest overwritten.

    Starts with random unit vectors, as MoCo does. Batches must divide ``size`` so none straddles the end.

    Args:
        size: How many keys the queue holds (MoCo's K).
        dim: Width of the keys (the encoder's embedding width).
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        size, count = self.keys.shape[0], keys.shape[0]
        if size % count:
            raise ValueError(f"a queue of {size} keys takes batches that divide it, not {count}")
        start = int(self.pointer)
        self.keys[start : start + count] = keys
        self.pointer[0] = (start + count) % size


def stop_tracking_batch_statistics(module: nn.Module) -> None:
    """BatchNorm layers keep normalising with batch statistics in training mode but stop updating their running
    statistics: the key encoder's then follow the query's (copied by the momentum update), identically on
    every rank, instead of drifting with each rank's own key batches."""
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            layer.track_running_stats = False


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and queue of negatives (see the module docstring).

    Args:
        query: The query encoder; the key encoder starts as its copy.
        queue_size: How many negative keys the queue holds (MoCo's K).
        momentum: ``m`` of the key encoder's update ``key ← m·key + (1 − m)·query``.
        temperature: InfoNCE's τ.
    """

    def __init__(self, query: EmbeddingEncoder, queue_size: int = 4096, momentum: float = 0.999, temperature=0.2):
        super().__init__()
        self.query = query
        # timm's EMA: key ← m·key + (1 − m)·query for parameters; buffers (BN statistics) copied from the query.
        self.key = ModelEmaV3(query, decay=momentum, exclude_buffers=True, stochastic_rounding=False)
        self.key.requires_grad_(False)
        self.key.train()  # MoCo's key encoder normalises with batch statistics, as the query encoder does
        stop_tracking_batch_statistics(self.key)
        self.queue = NegativeQueue(queue_size, query.embedding_dim)
        self.temperature = temperature

    @torch.no_grad()
    def update_key(self) -> None:
        self.key.update(self.query)

    def loss(self, query: torch.Tensor, key: torch.Tensor) -> dict[str, torch.Tensor]:
        """InfoNCE against the current queue, and the share of queries whose own key scores highest."""
        loss, logits = info_nce(query, key, self.queue.keys, self.temperature)
        return {"loss": loss, "accuracy": (logits.argmax(dim=1) == 0).float().mean()}
