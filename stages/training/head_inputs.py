"""What a head trains on, by kind, each kind's loader registered where it is defined (as heads,
tasks and resources are): ``global`` and ``patch`` (a feature group's vectors or tokens, or several
groups of one encoder trained together: stages/training/head_steps.py) and ``pairs`` (LaScA's pairs of
consecutive windows with their prompts, for one cell of its grid: stages/training/lasca_steps.py).

A head names its kind in its registered ``inputs`` (``@register_head(..., inputs=("pairs",))``);
planning and training go through the kind's loader, so every head — LaScA's learners included —
takes the one path plan → keyed step → trainer, and a new kind is one module registering one class.

* ``plan(store, request)``: a :class:`PlannedInput` — the head's keyed step, what training it will
  need (plain data that a Prefect task or another process can be handed: the feature groups a
  selector named, a cell's prompts and pairs) and the features as run records name them. It may run
  the steps the head's key depends on (a cell's prompts and pairs).
* ``train(store, request, planned)``: train (or find done) that step: (group, "new" | "skipped", metrics).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from featurestore import FeatureStore, Step, StepGroup
from heads.registry import get_head
from heads.trainer import TrainConfig


@dataclass(frozen=True)
class HeadRequest:
    """One head to train on one seed, as its config gives it (flows.heads.HeadConfig)."""

    head: str
    task: str
    features: str | tuple[str, ...]  # group paths or selectors; for ``pairs``, the video dataset's name
    train: TrainConfig
    array: str = "global"
    options: dict[str, Any] = field(default_factory=dict)  # the head's, over its preset's
    expressions: list[int] | None = None
    test_fold: int = 1
    folds: int | None = None
    cell: dict[str, Any] | None = None  # ``pairs``: the grid cell (stages.training.lasca_steps.CELL_DEFAULTS)


class PlannedInput(NamedTuple):
    step: Step
    inputs: Any  # what ``train`` reads besides the request
    features: str | tuple[str, ...]  # the request's features resolved: selectors → the groups' paths


class HeadInput(ABC):
    kinds: ClassVar[tuple[str, ...]]  # the ``inputs`` names of heads that read this
    preset: ClassVar[str] = "fast"  # the training preset when a config names none
    takes_cell: ClassVar[bool] = False  # whether a request's ``cell`` means anything here

    @abstractmethod
    def plan(self, store: FeatureStore, request: HeadRequest) -> PlannedInput:
        """The head's keyed step, what :meth:`train` needs besides the request, the resolved features."""

    def plan_many(self, store: FeatureStore, requests: list[HeadRequest]) -> list[PlannedInput]:
        """Every request of one planning pass, in order (a loader whose requests share lookups, as a
        sweep's cells do, makes them once here)."""
        return [self.plan(store, r) for r in requests]

    @abstractmethod
    def train(self, store: FeatureStore, request: HeadRequest, planned: Any) -> tuple[StepGroup, str, dict[str, Any]]:
        """Train (or skip) the planned step."""

    def prepare(self, store: FeatureStore, request: HeadRequest, planned: Any) -> None:
        """Work the planned heads share, done once before they train side by side in processes (each
        would otherwise do it again); nothing by default."""


HEAD_INPUTS: dict[str, HeadInput] = {}


def register_input(cls: type[HeadInput]) -> type[HeadInput]:
    loader = cls()
    for kind in cls.kinds:
        if kind in HEAD_INPUTS and type(HEAD_INPUTS[kind]) is not cls:
            raise ValueError(
                f"head input {kind!r} is registered twice ({type(HEAD_INPUTS[kind]).__name__}, {cls.__name__})"
            )
        HEAD_INPUTS[kind] = loader
    return cls


def head_input(head: str) -> HeadInput:
    """The loader of what ``head`` trains on: the first of its registered ``inputs`` that is a kind."""
    entry = get_head(head)
    for name in entry.inputs:
        if name in HEAD_INPUTS:
            return HEAD_INPUTS[name]
    raise ValueError(
        f"head {head!r} reads {', '.join(entry.inputs)}: none is a registered input kind "
        f"({', '.join(sorted(HEAD_INPUTS))})"
    )
