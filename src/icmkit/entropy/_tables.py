"""Storage of finalised coding tables as module buffers, so they travel inside the weights file."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from icmkit.entropy.coder import TableSet

TABLE_BUFFERS = ("table_pmf", "table_offset", "table_length")


class HasTables(nn.Module):
    """Mixin: ``table_pmf`` / ``table_offset`` / ``table_length`` buffers, empty until :meth:`set_tables`.

    Tables are built once (``update()``), saved with the weights and loaded verbatim: the decoder never
    recomputes them from floating-point parameters, so it cannot disagree with the encoder.
    """

    def _init_tables(self) -> None:
        self.register_buffer("table_pmf", torch.zeros(0, 0, dtype=torch.float32))
        self.register_buffer("table_offset", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("table_length", torch.zeros(0, dtype=torch.int32))

    @property
    def finalized(self) -> bool:
        return self.table_pmf.numel() > 0

    def _require_tables(self) -> None:
        if not self.finalized:
            raise RuntimeError("entropy model has no coding tables: call model.update() after training")

    def set_tables(self, pmf: torch.Tensor, offset: torch.Tensor, length: torch.Tensor) -> None:
        self.table_pmf = pmf.detach().to(torch.float32).contiguous()
        self.table_offset = offset.detach().to(torch.int32).contiguous()
        self.table_length = length.detach().to(torch.int32).contiguous()
        self._cached_tables = None

    def tables(self) -> TableSet:
        cached = getattr(self, "_cached_tables", None)
        if cached is None:
            cached = TableSet(
                pmf=self.table_pmf.numpy().astype(np.float64),
                offset=self.table_offset.numpy().astype(np.int64),
                length=self.table_length.numpy().astype(np.int64),
            )
            self._cached_tables = cached
        return cached

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Table sizes are only known once built: take the stored shapes before copying.
        for name in TABLE_BUFFERS:
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        self._cached_tables = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def pad_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.zeros(len(rows), width, dtype=torch.float64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
