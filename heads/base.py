"""The contract every head follows: what the trainer, the head step and the reports call."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from heads.tasks import Task


@dataclass
class PromptText:
    """What a text-reading head (``@register_head(inputs=(…, "text"))``) is given: one prompt per
    output, as frozen embeddings (n, dim) computed once, or as a frozen text ``tower`` that embeds the
    prompts behind learnable context vectors (CoOp): ``tower(context (M, token_dim)) → (n, dim)``.
    The step builds it (heads/ does no I/O); a stored head is rebuilt with neither, its last
    embeddings and its context being in its weights."""

    n: int
    dim: int
    token_dim: int = 0  # the width of the tower's token embeddings (the context vectors')
    embeddings: torch.Tensor | None = None
    tower: nn.Module | None = None


class Head(nn.Module):
    """A torch head for one task. Archetype heads (``uses_archetypes``) re-initialise rarely used
    archetypes after each warm-up epoch and prune their codebook once training ends; the trainer
    never picks a warm-up epoch as the best one for them."""

    task: Task
    uses_archetypes: ClassVar[bool] = False
    draws_maps: ClassVar[bool] = False  # it has per-output attention maps on the token grid (its report draws them)

    @abstractmethod
    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss to minimise, its named parts as floats)."""

    @abstractmethod
    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(outputs (B, n_outputs) in the task's raw form, the deciding archetype per output space or None)."""

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """(parameters, learning-rate scale) groups for the trainer's optimiser: one group at the
        base rate unless a head's paper gives some modules their own rate."""
        return [(list(self.parameters()), 1.0)]

    def has_maps(self) -> bool:
        """Whether this head, as configured, draws attention maps (a map head's variant may not)."""
        return self.draws_maps

    def reset_unused(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Warm-up: re-initialise rarely used archetypes from the batch ``x`` (labels ``y``); returns how many."""
        return 0

    def prune(self, x: torch.Tensor, y: torch.Tensor) -> list[int] | None:
        """After training: keep the archetypes the training set (``x``, ``y``) uses; K_stable per output
        space (None: no codebook)."""
        return None

    def graphs(self) -> dict[str, torch.Tensor]:
        """The global graphs the head learns (name → matrix, sources as rows; heads/graph_report.py
        names them): CausalAffect's ``au_au`` and ``au_expression``; most heads have none."""
        return {}

    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Each output's attention on the token grid (B, n_outputs, h, w), for heads that ``draws_maps``."""
        raise TypeError(f"{type(self).__name__} has no attention maps")

    def explain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """A graph head's per-sample evidence (the graph report's sub-graphs and label audit):
        ``au``, ``expression`` probabilities, ``contribution`` (B, C, M) of each AU to each class
        logit and ``messages`` (B, M, M) [source, target] between AUs."""
        raise TypeError(f"{type(self).__name__} learns no graph: it has no per-sample evidence to explain")
