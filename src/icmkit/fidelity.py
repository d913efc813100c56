"""Pixel fidelity and rate of one decoded image: what the API, the benchmark and rate control all report."""

from __future__ import annotations

import numpy as np


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB over all 8-bit RGB samples (inf for identical images)."""
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def bits_per_pixel(num_bytes: int, image_shape: tuple[int, ...]) -> float:
    return 8.0 * num_bytes / (image_shape[0] * image_shape[1])
