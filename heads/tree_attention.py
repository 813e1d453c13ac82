"""FAUD-CLIP's coarse-to-fine tree attention over a grid of patch tokens.

The keys and values of an h × w token grid are pooled into a pyramid by recursive 2 × 2 averaging
(level 0 the tokens, level L − 1 the coarsest; an odd side's last region averages the tokens it
has). A query attends to every region of the coarsest level, keeps the ``top_k`` regions with the
highest scores, and at each finer level attends only to the children of the regions it kept (up to
4 · top_k candidates), again keeping the best ``top_k`` to descend into. Its output is
Σ_l w_l · s_l, s_l the attention output at level l and w = softmax(learnable level logits). With
one level and ``top_k`` covering the grid this is plain multi-head attention (a test checks it);
with L levels a query scores N / 4^(L−1) + 4 · top_k · (L − 1) keys instead of N, so the cost grows
with N · (N / 4^(L−1)) rather than N² (bench/faud.py measures it).

The chosen regions are discrete (no gradient flows through the choice), the attention inside them
is differentiable, as in the paper. :meth:`TreeAttention.forward` can also return each query's
attention on the grid: every level's weights spread over the tokens of their regions, weighted by w
— the per-AU maps of the report when the queries are AU tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pool_pyramid(x: torch.Tensor, grid: tuple[int, int], levels: int) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """[(tokens (…, h_l · w_l, d), (h_l, w_l))] for l = 0 … levels − 1 of ``x`` (…, h · w, d)."""
    h, w = grid
    lead, d = x.shape[:-2], x.shape[-1]
    if x.shape[-2] != h * w:
        raise ValueError(f"{x.shape[-2]} tokens are not a {h} × {w} grid")
    out = [(x, (h, w))]
    image = x.reshape(-1, h, w, d).permute(0, 3, 1, 2)
    for _ in range(1, levels):
        # ceil_mode: an odd side's last region is the mean of the tokens it covers (the overhang is not counted)
        image = F.avg_pool2d(image, 2, ceil_mode=True)
        h, w = image.shape[-2:]
        out.append((image.permute(0, 2, 3, 1).reshape(*lead, h * w, d), (h, w)))
    return out


def children(
    regions: torch.Tensor, coarse: tuple[int, int], fine: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (…, 4 · k) at the finer level, valid mask) of the 2 × 2 children of ``regions`` (…, k)
    on the coarser grid; a child past an odd side is invalid (its index clamped to 0)."""
    row, col = regions // coarse[1], regions % coarse[1]
    offsets = torch.tensor([(0, 0), (0, 1), (1, 0), (1, 1)], device=regions.device)
    child_row = (2 * row).unsqueeze(-1) + offsets[:, 0]
    child_col = (2 * col).unsqueeze(-1) + offsets[:, 1]
    valid = (child_row < fine[0]) & (child_col < fine[1])
    index = torch.where(valid, child_row * fine[1] + child_col, torch.zeros_like(child_row))
    return index.flatten(-2), valid.flatten(-2)


# Up to this many regions a level is scored in full and masked to the chosen children rather than
# read out region by region: the same numbers (a test compares the two), and on 2 CPUs the 7 × 7
# grid's head trains ~2× faster; past it the read-out keeps the cost sub-quadratic.
DENSE_MAX = 64


class TreeAttention(nn.Module):
    """Multi-head coarse-to-fine attention of queries over a token grid (see the module docstring)."""

    def __init__(self, dim: int, heads: int = 4, levels: int = 3, top_k: int = 2):
        super().__init__()
        if dim % heads or levels < 1 or top_k < 1:
            raise ValueError(f"dim {dim} must divide into {heads} heads; levels {levels} and top_k {top_k} ≥ 1")
        self.heads, self.levels, self.top_k = heads, levels, top_k
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.level_logits = nn.Parameter(torch.zeros(levels))
        # levels of at most this many regions are scored densely and masked (see forward)
        self.dense_max = DENSE_MAX

    def level_weights(self) -> torch.Tensor:
        return torch.softmax(self.level_logits, 0)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        return x.view(b, n, self.heads, dim // self.heads).transpose(1, 2)  # (B, H, n, d)

    def forward(
        self,
        queries: torch.Tensor,
        tokens: torch.Tensor,
        grid: tuple[int, int],
        maps: bool = False,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``queries`` (B, Q, D) over ``tokens`` (B, h·w, D) → (B, Q, D); with ``maps``, also each
        query's attention on the grid (B, H, Q, h·w), summing to 1 per query and head. ``values``:
        other tokens on the same grid to read once the keys (``tokens``) have chosen where."""
        b, nq, dim = queries.shape
        q = self._split(self.q(queries))
        k = self.kv(tokens).chunk(2, -1)[0]
        v = self.kv(tokens if values is None else values).chunk(2, -1)[1]
        pyramid_k = pool_pyramid(self._split(k), grid, self.levels)
        pyramid_v = pool_pyramid(self._split(v), grid, self.levels)
        levels = len(pyramid_k)
        weights = self.level_weights()
        scale = 1 / math.sqrt(q.shape[-1])
        # the coarsest level: every region
        top_keys, shape = pyramid_k[-1]
        scores = (q @ top_keys.transpose(-1, -2)) * scale  # (B, H, Q, R)
        attention = scores.softmax(-1)
        output = weights[-1] * (attention @ pyramid_v[-1][0])
        grid_map = self._spread(attention, None, shape, grid, levels - 1) * weights[-1] if maps else None
        kept = scores.topk(min(self.top_k, scores.shape[-1]), -1).indices
        rows = torch.arange(b * self.heads, device=q.device).view(b, self.heads, 1, 1)
        for level in range(levels - 2, -1, -1):
            fine = pyramid_k[level][1]
            index, valid = children(kept, shape, fine)  # (B, H, Q, C)
            c, n_fine = index.shape[-1], fine[0] * fine[1]
            keys, values = pyramid_k[level][0], pyramid_v[level][0]
            if n_fine <= self.dense_max:
                # a small level: score every region with one matmul and mask all but the children
                # (the same attention; on a CPU much faster than reading the children out)
                # counted, not written: an invalid child's clamped index may be a valid child's too
                allowed = torch.zeros(*index.shape[:-1], n_fine, dtype=torch.int32, device=q.device)
                allowed = allowed.scatter_add_(-1, index, valid.int()) > 0
                scores = ((q @ keys.transpose(-1, -2)) * scale).masked_fill(~allowed, float("-inf"))
                attention = scores.softmax(-1)
                output = output + weights[level] * (attention @ values)
                if maps:
                    grid_map = grid_map + weights[level] * self._spread(attention, None, fine, grid, level)
                kept = scores.topk(min(self.top_k, c), -1).indices
            else:
                # the children's keys and values, read by one index_select over the flattened level
                # (on CPU twice as fast as gather with an expanded index, forward and backward)
                flat = (rows * n_fine + index).reshape(-1)
                kv = torch.cat([keys, values], -1).reshape(b * self.heads * n_fine, -1)
                keys, values = kv.index_select(0, flat).view(b, self.heads, nq, c, -1).chunk(2, -1)
                scores = (keys @ q.unsqueeze(-1)).squeeze(-1) * scale
                scores = scores.masked_fill(~valid, float("-inf"))
                attention = scores.softmax(-1)
                output = output + weights[level] * (attention.unsqueeze(-2) @ values).squeeze(-2)
                if maps:
                    grid_map = grid_map + weights[level] * self._spread(attention, index, fine, grid, level)
                kept = index.gather(-1, scores.topk(min(self.top_k, c), -1).indices)
            shape = fine
        output = self.out(output.transpose(1, 2).reshape(b, nq, dim))
        return (output, grid_map) if maps else output

    @staticmethod
    def _spread(
        attention: torch.Tensor, index: torch.Tensor | None, shape: tuple[int, int], grid: tuple[int, int], level: int
    ) -> torch.Tensor:
        """Attention on level-``level`` regions (dense (…, R), or over ``index``) spread evenly over
        the grid tokens each region covers: (…, h·w), keeping its sum."""
        lead = attention.shape[:-1]
        dense = (
            attention
            if index is None
            else attention.new_zeros(*lead, shape[0] * shape[1]).scatter_add(-1, index, attention)
        )
        side = 2**level  # a level-l region covers up to 2^l × 2^l tokens (fewer past an odd side)
        region_of_row = torch.arange(grid[0], device=attention.device) // side
        region_of_col = torch.arange(grid[1], device=attention.device) // side
        region = (region_of_row[:, None] * shape[1] + region_of_col[None, :]).flatten()  # (h·w,)
        size = torch.bincount(region, minlength=shape[0] * shape[1]).to(attention.dtype)
        return (dense / size)[..., region]
