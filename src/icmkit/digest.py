"""The 8-byte weights digest that streams carry, so a file decoded with other weights fails cleanly."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

DIGEST_BYTES = 8


def weights_digest(state_dict: Mapping) -> bytes:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor, truncated to :data:`DIGEST_BYTES`."""
    import torch  # here, not at module level: the bitstream reader (and `icm --help`) must not load torch

    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.digest()[:DIGEST_BYTES]
