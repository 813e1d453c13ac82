"""Baselines on the same cached features and task losses as AURA: a linear probe and a two-layer MLP."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from heads.base import Head
from heads.dropout import Dropout
from heads.registry import register_head
from heads.standardise import InputNorm
from heads.tasks import Task, get_task


class TaskHead(Head):
    """Any module mapping standardised features to the task's outputs, trained on its loss."""

    def __init__(self, task: Task | str, in_dim: int, body: nn.Module):
        super().__init__()
        self.task, self.body = get_task(task), body
        self.norm = InputNorm(in_dim)

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.task.squash(self.body(self.norm(x)))

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.outputs(x), None

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = self.task.loss(self.outputs(x), target, class_weights)
        return loss, {"task": float(loss.detach())}


@dataclass
class LinearConfig:
    """The linear probe has no options."""


@dataclass
class MlpConfig:
    hidden: int = 256
    dropout: float = 0.2


@register_head("linear", version=5, config=LinearConfig, tasks=("fer", "va", "au"), inputs=("global",))
def linear_probe(task: Task | str, in_dim: int, n_outputs: int, config: LinearConfig | None = None) -> TaskHead:
    """Linear probe on the same features and losses."""
    return TaskHead(task, in_dim, nn.Linear(in_dim, n_outputs))


@register_head("mlp", version=5, config=MlpConfig, tasks=("fer", "va", "au"), inputs=("global",))
def mlp(task: Task | str, in_dim: int, n_outputs: int, config: MlpConfig | None = None) -> TaskHead:
    """Two-layer MLP on the same features and losses."""
    config = config or MlpConfig()
    body = nn.Sequential(
        nn.Linear(in_dim, config.hidden), nn.GELU(), Dropout(config.dropout), nn.Linear(config.hidden, n_outputs)
    )
    return TaskHead(task, in_dim, body)
