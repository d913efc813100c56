"""Convolutional modulation block (Conv2Former, Hou et al., TPAMI 2024) — DICM's "ConvFormer" blocks.

Written here because neither timm nor torchvision ships it. The block replaces self-attention by a
large-kernel depthwise convolution whose output *modulates* (multiplies) a linear projection of the
input, then applies an MLP; both halves are pre-norm residuals::

    x = x + proj(dwconv_k(GELU(a(LN(x)))) ⊙ v(LN(x)))
    x = x + MLP(LN(x))
"""

from __future__ import annotations

import torch
from timm.layers import ConvMlp, LayerNorm2d
from torch import nn


class ConvModulation(nn.Module):
    """The attention stand-in of a Conv2Former block: ``proj(dwconv_k(GELU(a(x))) ⊙ v(x))``, shape-preserving.

    Args:
        dim: Channels in and out.
        kernel: Side of the depthwise convolution (odd; padded to keep the size).
    """

    def __init__(self, dim: int, kernel: int = 7):
        super().__init__()
        self.a = nn.Sequential(
            nn.Conv2d(dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        )
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.a(x) * self.v(x))


class Conv2FormerBlock(nn.Module):
    """One Conv2Former block: pre-norm convolutional modulation, then a pre-norm MLP, both residual.

    Args:
        dim: Channels in and out.
        kernel: Side of the modulation's depthwise convolution.
        mlp_ratio: The MLP's hidden channels over ``dim``.
    """

    def __init__(self, dim: int, kernel: int = 7, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.modulation = ConvModulation(dim, kernel)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.modulation(self.norm1(x))
        return x + self.mlp(self.norm2(x))
