"""Modules that hold M same-shaped networks and run them as one batched computation.

AURA keeps one archetype space per output (two for valence–arousal, one per AU: 12 for DISFA).
Run one by one, the AU head costs 12 small sequential networks per step; stacked, each layer is
one batched matrix product over all M branches (bench/heads.py measures the difference).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class StackedLinear(nn.Module):
    """M independent linear maps ``(in → out)``, applied in one batched product.

    ``forward``: one input per map, ``(M, ..., in) → (M, ..., out)``; ``shared``: one input for all
    maps, ``(..., in) → (M, ..., out)``. Initialised like ``nn.Linear``.
    """

    def __init__(self, m: int, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(m, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(m, out_dim).uniform_(-bound, bound)) if bias else None

    def _add_bias(self, out: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return out
        return out + self.bias.view(self.bias.shape[0], *[1] * (out.dim() - 2), self.bias.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, lead = x.shape[0], x.shape[1:-1]
        out = torch.bmm(x.reshape(m, -1, x.shape[-1]), self.weight)
        return self._add_bias(out.view(m, *lead, -1))

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        m, lead = self.weight.shape[0], x.shape[:-1]
        out = torch.einsum("ni,mio->mno", x.reshape(-1, x.shape[-1]), self.weight)
        return self._add_bias(out.reshape(m, *lead, -1))


class StackedLayerNorm(nn.Module):
    """M layer norms over the last dimension of ``(M, ..., width)``."""

    def __init__(self, m: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(m, width))
        self.bias = nn.Parameter(torch.zeros(m, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], *[1] * (x.dim() - 2), x.shape[-1])
        return F.layer_norm(x, x.shape[-1:]) * self.weight.view(shape) + self.bias.view(shape)


class StackedEncoderLayer(nn.Module):
    """M pre-norm transformer encoder layers (multi-head self-attention, ReLU feed-forward) over
    ``(M, B, L, width)``; the same computation as ``nn.TransformerEncoderLayer(norm_first=True)``.

    Attention is written as two matrix products rather than ``scaled_dot_product_attention``: for
    the ~10-token sequences here, PyTorch's fused CPU kernel is about twice as slow (measured).
    """

    def __init__(self, m: int, width: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.norm1, self.norm2 = StackedLayerNorm(m, width), StackedLayerNorm(m, width)
        self.qkv = StackedLinear(m, width, 3 * width)
        self.out = StackedLinear(m, width, width)
        self.ff1, self.ff2 = StackedLinear(m, width, ffn), StackedLinear(m, ffn, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b, length, width = x.shape
        hd = width // self.heads
        q, k, v = self.qkv(self.norm1(x)).view(m * b, length, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        weights = self.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1))
        attended = (weights @ v).transpose(1, 2).reshape(m, b, length, width)
        x = x + self.dropout(self.out(attended))
        return x + self.dropout(self.ff2(self.dropout(F.relu(self.ff1(self.norm2(x))))))
