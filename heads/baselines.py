"""Baselines on the same cached features and losses as AURA: a linear probe and a two-layer MLP."""

from __future__ import annotations

import torch
from torch import nn

from heads.dropout import Dropout
from heads.losses import au_loss, expression_loss, va_loss
from heads.standardise import InputNorm


class TaskHead(nn.Module):
    """Any module mapping features to task outputs, with AURA's task losses (no archetypes)."""

    def __init__(self, task: str, in_dim: int, body: nn.Module, va_alpha: float = 1.0):
        super().__init__()
        self.task, self.body, self.va_alpha = task, body, va_alpha
        self.norm = InputNorm(in_dim)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.norm(x))
        return torch.tanh(out) if self.task == "va" else out

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.outputs(x), None

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out = self.outputs(x)
        if self.task == "fer":
            loss = expression_loss(out, target, class_weights)
        elif self.task == "au":
            loss = au_loss(out, target)
        else:
            loss = va_loss(out[:, 0], target[:, 0], self.va_alpha) + va_loss(out[:, 1], target[:, 1], self.va_alpha)
        return loss, {"task": float(loss.detach())}


def linear_probe(task: str, in_dim: int, n_outputs: int) -> TaskHead:
    return TaskHead(task, in_dim, nn.Linear(in_dim, 2 if task == "va" else n_outputs))


def mlp(task: str, in_dim: int, n_outputs: int, hidden: int = 256, dropout: float = 0.2) -> TaskHead:
    out = 2 if task == "va" else n_outputs
    return TaskHead(
        task, in_dim, nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), Dropout(dropout), nn.Linear(hidden, out))
    )
