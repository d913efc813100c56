"""Per-image fidelity metrics on 8-bit RGB: PSNR and MS-SSIM (pytorch-msssim, CompressAI's choice)."""

from __future__ import annotations

import math

import numpy as np
import torch

from icmkit.fidelity import psnr
from icmkit.threads import single_threaded

MS_SSIM_MIN_SIDE = 161  # five scales of an 11-tap window need at least this many pixels


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM over RGB with data range 255; NaN for images too small for five scales."""
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    from pytorch_msssim import ms_ssim as _ms_ssim

    # float32, as CompressAI computes it: within 1e-6 of float64 and 5× faster.
    def to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)

    with torch.no_grad(), single_threaded():
        return float(_ms_ssim(to_tensor(reference), to_tensor(decoded), data_range=255))


__all__ = ["ms_ssim", "psnr"]
