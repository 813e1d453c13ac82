"""Per-dimension standardisation of frozen features, fitted on the training split.

Cached encoder features are far from zero-mean, unit-variance (post-activation pooled maps, CLIP
embeddings, blendshape scores in [0, 1]); every head standardises its input with the training
split's statistics. They are buffers, so they travel with the checkpoint and ``predict`` needs no
separate scaler file.
"""

from __future__ import annotations

import torch
from torch import nn


class InputNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Statistics over every sample (and token) of ``x``; constant dimensions keep unit scale."""
        flat = x.reshape(-1, x.shape[-1]).float()
        self.mean.copy_(flat.mean(0))
        std = flat.std(0)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


def fit_input_norms(model: nn.Module, x_train: torch.Tensor) -> None:
    for module in model.modules():
        if isinstance(module, InputNorm):
            module.fit(x_train.to(module.mean.device))
