"""Maximum mean discrepancy between two samples, with a multi-kernel Gaussian (MK-MMD, Long et al. 2015).

Written here because no maintained library offers a differentiable, unbiased MMD² on torch tensors
(torchmetrics and geomloss do not; the seed paper publishes no code).

Kernel: ``k(a, b) = mean_j exp(−‖a − b‖² / (s_j · h))`` with ``h`` the median pairwise squared distance of
the pooled sample (detached: a bandwidth is a choice, not something to optimise) and ``s_j`` a fixed set of
multipliers, so that the kernel adapts to each layer's feature scale without per-layer tuning.
"""

from __future__ import annotations

import torch

DEFAULT_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise ‖a_i − b_j‖² for rows of a (n, d) and b (m, d), clamped at 0 against rounding."""
    a2 = a.pow(2).sum(1, keepdim=True)
    b2 = b.pow(2).sum(1, keepdim=True)
    return (a2 + b2.T - 2.0 * a @ b.T).clamp_min_(0.0)


def median_bandwidth(distances: torch.Tensor) -> torch.Tensor:
    """Median of the off-diagonal pooled squared distances (never zero)."""
    n = distances.shape[0]
    off_diagonal = distances[~torch.eye(n, dtype=torch.bool, device=distances.device)]
    return off_diagonal.median().clamp_min(1e-8)


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    multipliers: tuple[float, ...] = DEFAULT_BANDWIDTH_MULTIPLIERS,
    bandwidth: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between samples x (n, d) and y (m, d), n, m ≥ 2.

    ``bandwidth`` fixes ``h``; by default it is the median heuristic on the pooled sample. The estimate
    can be slightly negative when the two distributions are equal — that is what unbiased means; for a
    sample compared with itself it lies in ``[−2/m, 0]``, which vanishes as the sample grows.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"samples must be (n, d) and (m, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("MMD² needs at least two samples on each side")
    pooled = torch.cat([x, y])
    distances = squared_distances(pooled, pooled)
    h = median_bandwidth(distances.detach()) if bandwidth is None else torch.as_tensor(bandwidth, dtype=x.dtype)
    kernel = sum(torch.exp(-distances / (s * h)) for s in multipliers) / len(multipliers)
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * k_xy.mean()
