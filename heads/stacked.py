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

    def forward(self, x: torch.Tensor, columns: slice = slice(None)) -> torch.Tensor:
        """``columns``: compute only these output columns of every map."""
        m, lead = x.shape[0], x.shape[1:-1]
        x = x.reshape(m, -1, x.shape[-1])
        weight = self.weight[..., columns]
        out = torch.bmm(x, weight) if self.bias is None else torch.baddbmm(self.bias[:, None, columns], x, weight)
        return out.view(m, *lead, -1)

    def shared(self, x: torch.Tensor) -> torch.Tensor:
        m, in_dim, out_dim = self.weight.shape
        lead = x.shape[:-1]
        # all M maps side by side, (in, M·out): one matrix product with the bias fused (measured
        # faster than a batched product over a broadcast input plus a separate bias add)
        side_by_side = self.weight.transpose(0, 1).reshape(in_dim, m * out_dim)
        x = x.reshape(-1, in_dim)
        out = x @ side_by_side if self.bias is None else torch.addmm(self.bias.reshape(-1), x, side_by_side)
        return out.view(*lead, m, out_dim).movedim(-2, 0)


class StackedLayerNorm(nn.Module):
    """M layer norms over the last dimension of ``(M, ..., width)``."""

    def __init__(self, m: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(m, width))
        self.bias = nn.Parameter(torch.zeros(m, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], *[1] * (x.dim() - 2), x.shape[-1])
        return torch.addcmul(self.bias.view(shape), F.layer_norm(x, x.shape[-1:]), self.weight.view(shape))


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

    def forward(self, x: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """``rows``: compute the output at these positions only, ``(M, B, len(rows), width)``. For an
        encoder's last layer when only some outputs are read (the CLS tokens): every position is
        still a key and a value, but queries, attention rows and the feed-forward run on ``rows``."""
        m, b, length, width = x.shape
        hd = width // self.heads
        h = self.norm1(x)
        if rows is not None:
            x = x[:, :, rows]
        q = self.qkv(h if rows is None else h[:, :, rows], columns=slice(0, width))
        q = q.reshape(m * b, -1, self.heads, hd).transpose(1, 2)
        kv = self.qkv(h, columns=slice(width, None)).view(m * b, length, 2, self.heads, hd)
        k, v = kv.permute(2, 0, 3, 1, 4)
        weights = self.dropout(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1))
        attended = (weights @ v).transpose(1, 2).reshape(m, b, -1, width)
        x = x + self.dropout(self.out(attended))
        return x + self.dropout(self.ff2(self.dropout(F.relu(self.ff1(self.norm2(x))))))
