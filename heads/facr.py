"""FACR's reasoner: an expression (or pain) classifier through an AU bottleneck, with the
counterfactual-faithfulness objective as an option.

Features → AU logits (a linear map, or an MLP with ``hidden`` units) → AU probabilities a → class
logits a W + b (W (M, C) signed: an AU may raise or lower a class). Its outputs are the ``au_fer``
task's: the AU logits, then the class logits. ``faithfulness_weight`` λ adds heads/faithfulness.py's
loss over a structure G (C, M), given by the step (heads/ reads no files; the ``structure`` option
names it, stages/training/faithfulness_structures.py): interventions on the AUs G marks causal for a
sample's class must move that class's logit by ``margin`` in G's direction, interventions on the
others must not move it. λ = 0 is the no-objective baseline; ``permuted`` trains against G with its
AU labels permuted (the unfaithfulness control: it must not gain agreement with the true G).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from heads.base import Head
from heads.faithfulness import effects, faithfulness_loss
from heads.registry import register_head
from heads.standardise import InputNorm
from heads.tasks import Task, get_task


@dataclass
class FacrConfig:
    label_names: tuple[str, ...] = ()
    hidden: int = 0  # 0: a linear AU layer
    faithfulness_weight: float = 0.0  # λ of the counterfactual-faithfulness loss (0: the baseline)
    margin: float = 1.0  # how far do(AU=1) against do(AU=0) must move a causal AU's class logit
    # G: prototypes (EMFACS), pain (PSPI), generator (the face generator's rule), a (class, au, sign)
    # file or a causal head's path
    structure: str = "prototypes"
    permuted: bool = False  # train against G with its AU columns permuted (the unfaithfulness control)


def permute_aus(structure: torch.Tensor) -> torch.Tensor:
    """G with its AU labels permuted: the first seeded random permutation that moves every AU (a
    derangement), so each causal mark lands on another AU; the same permutation every time."""
    m = structure.shape[1]
    if m < 2:
        raise ValueError("a structure over one AU cannot be permuted")
    seed = 0
    while bool(((order := torch.randperm(m, generator=torch.Generator().manual_seed(seed))) == torch.arange(m)).any()):
        seed += 1
    return structure[:, order]


class FacrHead(Head):
    def __init__(self, task: Task | str, in_dim: int, n_outputs: int, cfg: FacrConfig, structure: torch.Tensor):
        super().__init__()
        self.task, self.cfg = get_task(task), cfg
        self.m = self.task.n_aus(cfg.label_names)
        n_classes = n_outputs - self.m
        if structure.shape != (n_classes, self.m):
            raise ValueError(
                f"structure G is {tuple(structure.shape)}, the head has {n_classes} classes × {self.m} AUs"
            )
        self.norm = InputNorm(in_dim)
        self.aus = (
            nn.Linear(in_dim, self.m)
            if not cfg.hidden
            else nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, self.m))
        )
        self.classes = nn.Linear(self.m, n_classes)
        # the G the objective trains against (the audit measures agreement with the G it is given)
        self.register_buffer("structure", (permute_aus(structure) if cfg.permuted else structure).to(torch.int8))

    def au_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.aus(self.norm(x))

    def au_layer(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.au_logits(x))

    def from_aus(self, aus: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.classes(aus)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits = self.au_logits(x)
        return torch.cat([logits, self.from_aus(torch.sigmoid(logits), x)], 1), None

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        out, _ = self.predict(x)
        task_loss = self.task.loss(out, target, class_weights)
        parts = {"task": float(task_loss.detach())}
        if not self.cfg.faithfulness_weight:
            return task_loss, parts
        faithful = faithfulness_loss(effects(self, x), target[:, self.m], self.structure, self.cfg.margin)
        parts["faithfulness"] = float(faithful.detach())
        return task_loss + self.cfg.faithfulness_weight * faithful, parts


@register_head("facr", version=1, config=FacrConfig, tasks=("au_fer",), inputs=("global", "structure"))
def facr(task: Task | str, in_dim: int, n_outputs: int, config: FacrConfig, structure: torch.Tensor) -> FacrHead:
    """FACR's reasoner: class prediction through an AU bottleneck, auditable by do() on its AU layer."""
    return FacrHead(task, in_dim, n_outputs, config, structure)
