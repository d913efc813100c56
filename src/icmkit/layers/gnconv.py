"""Recursive gated convolution, gnConv (HorNet, Rao et al., NeurIPS 2022) — DICM's analysis/synthesis blocks.

Written here because neither timm nor torchvision ships HorNet. An order-``n`` gnConv projects the input
into a gate ``p0`` of width ``C/2^(n-1)`` and ``n`` branches of widths ``C/2^(n-1) … C``; one depthwise
convolution mixes space in all branches, then the gate is multiplied in sequence with each branch
(with a 1×1 convolution widening it between steps) — spatial interactions of order ``n`` at the cost of
a convolution::

    p0, q = split(proj_in(x));  q0 … q(n-1) = split(dwconv(q))
    p1 = p0 ⊙ q0;  p(k+1) = widen_k(p(k)) ⊙ q(k);  out = proj_out(p(n))

The paper's third analysis block adds a global (FFT) filter; on the 8–16-sample latent grids of a
feature codec a 7×7 depthwise kernel already covers the map, so icmkit leaves it out.
"""

from __future__ import annotations

import torch
from timm.layers import ConvMlp, LayerNorm2d
from torch import nn


class GnConv(nn.Module):
    """An order-``n`` recursive gated convolution (see the module docstring); shape-preserving.

    Args:
        dim: Channels in and out; divisible by ``2**(order - 1)``.
        order: Interaction order: how many gating steps.
        kernel: Side of the depthwise convolution shared by all branches.
        scale: Factor on the depthwise output, damping the product chain at initialisation (HorNet's 1/3).
    """

    def __init__(self, dim: int, order: int = 3, kernel: int = 7, scale: float = 1.0 / 3.0):
        super().__init__()
        if dim % (1 << (order - 1)):
            raise ValueError(f"gnConv width {dim} must be divisible by 2^(order-1) = {1 << (order - 1)}")
        self.widths = [dim // (1 << i) for i in range(order)][::-1]
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(
            sum(self.widths), sum(self.widths), kernel, padding=kernel // 2, groups=sum(self.widths)
        )
        self.widen = nn.ModuleList(nn.Conv2d(self.widths[i], self.widths[i + 1], 1) for i in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.scale = scale  # damps the product chain at initialisation (HorNet's choice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, branches = torch.split(self.proj_in(x), (self.widths[0], sum(self.widths)), dim=1)
        branches = torch.split(self.dwconv(branches) * self.scale, self.widths, dim=1)
        x = gate * branches[0]
        for widen, branch in zip(self.widen, branches[1:]):
            x = widen(x) * branch
        return self.proj_out(x)


class HorBlock(nn.Module):
    """Pre-norm residual gnConv followed by a pre-norm residual MLP (HorNet's block).

    Args:
        dim: Channels in and out.
        order: The gnConv's interaction order.
        kernel: Side of the gnConv's depthwise convolution.
        mlp_ratio: The MLP's hidden channels over ``dim``.
    """

    def __init__(self, dim: int, order: int = 3, kernel: int = 7, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.gnconv = GnConv(dim, order, kernel)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gnconv(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ResidualConvBlock(nn.Module):
    """The ablation's plain-convolution stand-in for :class:`HorBlock`: two 3×3 convolutions, same I/O.

    Takes :class:`HorBlock`'s other arguments and ignores them, so either can be built by one call.

    Args:
        dim: Channels in and out.
    """

    def __init__(self, dim: int, *_, **__):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
