"""Vision-transformer blocks on feature maps: timm's ``Block`` applied to the map's positions as tokens."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


class TokenTransformer(nn.Module):
    """``depth`` pre-norm transformer blocks (global self-attention + MLP) over the ``H·W`` positions of a
    ``(N, C, H, W)`` map, with a learned depthwise-convolution position encoding (translation-invariant,
    so any map size works).

    Args:
        dim: Channels of the map (the token width); divisible by ``heads``.
        depth: How many transformer blocks.
        heads: Attention heads per block.
        mlp_ratio: Each block's MLP hidden width over ``dim``.
    """

    def __init__(self, dim: int, depth: int = 1, heads: int = 4, mlp_ratio: float = 2.0):
        super().__init__()
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio=mlp_ratio) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        n, c, h, w = x.shape
        tokens = self.blocks(x.flatten(2).transpose(1, 2))
        return tokens.transpose(1, 2).reshape(n, c, h, w)
