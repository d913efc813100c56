"""Data-parallel training over processes started by ``torchrun`` (DDP); a no-op for one process.

The auxiliary loss is the known pain point of learned codecs under DDP: the factorised prior's
``quantiles`` take no part in the forward pass, so the main backward never delivers their gradient.
Depending on the torch version DDP then errors ("unused parameters"), hangs, or — seen with torch 2.14
— all-reduces the bucket holding them only during the auxiliary backward, after the main optimiser has
already stepped on each rank's own gradients: the ranks silently drift apart. Here the quantiles are
excluded from DDP (:meth:`DataParallel.wrap`) and their gradients averaged by hand
(:meth:`DataParallel.average_gradients`) before the auxiliary optimiser steps, so every rank keeps
identical weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from icmkit.errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU when CUDA is available, else the CPU; ``cuda`` → this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available here (use device=cpu or auto)")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def launch_environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun announces them; (0, 1, 0) when not launched by torchrun."""
    return tuple(
        int(os.environ.get(name, default))
        for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))
    )


def launched_rank() -> int:
    """This process's rank as torchrun announces it (0 when not launched by torchrun)."""
    return launch_environment()[0]


@dataclass
class DataParallel:
    """This process's place in a torchrun job (rank 0 of 1 without one) and the DDP steps that depend on it.

    Built by :meth:`from_environment`.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # destroy the process group on close (we created it)

    @classmethod
    def from_environment(cls, device_name: str) -> tuple[DataParallel, torch.device]:
        """Join the process group torchrun describes (gloo on CPUs, NCCL on GPUs) and pick the device."""
        _, world, local_rank = launch_environment()
        device = resolve_device(device_name, local_rank)
        if world <= 1:
            return cls(), device
        owns_group = not dist.is_initialized()
        if owns_group:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, owns_group), device

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device, ignore: list[str]) -> nn.Module:
        """``model`` under DDP, leaving the parameters and buffers named in ``ignore`` to the caller."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignore)
        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def broadcast_from_main(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` on every rank with rank 0's values (for parameters DDP does not sync)."""
        if self.active:
            for tensor in tensors:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad.div_(self.world_size)

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Every rank's ``values`` averaged (the same keys on every rank), so that logs cover the global batch."""
        if not self.active:
            return values
        packed = torch.tensor(list(values.values()), dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return dict(zip(values, (packed / self.world_size).tolist()))

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on one (decisions to stop must agree, or ranks hang)."""
        if not self.active:
            return flag
        packed = torch.tensor([int(flag)], device=self._collective_device())
        dist.all_reduce(packed, op=dist.ReduceOp.MAX)
        return bool(packed.item())

    def gather(self, value) -> list:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    def _collective_device(self) -> torch.device:
        if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
