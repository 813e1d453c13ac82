"""Tasks: what a head predicts, from which labels, with which loss, scored and shown how.

A task is an object registered by name where it is defined (``@register_task``), like heads,
encoders and sources. Heads, the trainer, the head step and the reports ask the task, never
compare its name: adding a task is one class here (or in a plugin module) and its tests.

Two shapes of output exist. A *categorical* task (``fer``) has one output space whose outputs are
the classes; the others have one output space per output (valence and arousal; one per AU), each
producing one value. Archetype heads build one codebook per output space ("branch").
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from heads.losses import (
    ClassLoss,
    au_branch_losses,
    au_loss,
    class_weights,
    expression_loss,
    occurrence_weights,
    preference_loss,
    va_loss,
)
from heads.metrics import au_metrics, expression_metrics, preference_metrics, va_metrics


class LabelSource(Protocol):
    """What a task reads labels from (a source group's reader satisfies it)."""

    @property
    def meta(self) -> Mapping[str, Any]: ...

    @property
    def path(self) -> str: ...

    def numpy(self, name: str) -> np.ndarray: ...

    def names(self) -> list[str]: ...


@dataclass(frozen=True)
class Labels:
    y: np.ndarray  # per sample, in the task's form
    labelled: np.ndarray  # bool per sample: it has a usable label
    names: list[str]  # the outputs' names (classes, dimensions, AUs)


class Task(ABC):
    name: ClassVar[str]
    headline: ClassVar[str]  # the metric that picks the best epoch and heads tables
    categorical: ClassVar[bool] = False  # one output space of classes, not one space per output

    @abstractmethod
    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        """This task's labels of every sample of ``source`` (``expressions``: a class view)."""

    def merge(self, parts: list[Labels], classes: Sequence[str]) -> list[Labels]:
        """Several datasets' labels in one output space, for one head trained on all of them
        (``classes``: the canonical expression names, the order classes take). By default the
        datasets must have the same outputs; tasks whose datasets code different subsets (AUs,
        classes) take the union, a dataset's outputs it does not code missing (−1)."""
        if any(p.names != parts[0].names for p in parts):
            raise ValueError(f"task {self.name!r} needs the same outputs in every dataset: {[p.names for p in parts]}")
        return parts

    def n_branches(self, n_outputs: int) -> int:
        """Output spaces: 1 for a categorical task, else one per output."""
        return 1 if self.categorical else n_outputs

    def squash(self, out: torch.Tensor) -> torch.Tensor:
        """Raw head output → the task's output (a bounded value, a logit …)."""
        return out

    @abstractmethod
    def loss(
        self, out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, alpha: float = 1.0
    ) -> torch.Tensor:
        """Task loss of outputs (B, n_outputs) against targets; ``alpha`` weighs VA's MSE term."""

    @abstractmethod
    def branch_loss(
        self, out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None, alpha: float = 1.0
    ) -> torch.Tensor:
        """Sum over output spaces of each one's loss: ``out`` (M, B[, C]), ``target`` (M, B)."""

    def to_branches(self, target: torch.Tensor) -> torch.Tensor:
        """Targets (B[, n_outputs]) → per output space (M, B)."""
        return target[None] if self.categorical else target.T

    def from_branches(self, values: torch.Tensor) -> torch.Tensor:
        """Per output space (M, B[, C]) → per sample (B, n_outputs)."""
        return values[0] if self.categorical else values.T

    def with_transport(self, weights: Any, cost: torch.Tensor, weight: float) -> ClassLoss:
        """The loss settings with a transport term over the task's classes (heads/losses.py)."""
        raise TypeError(f"task {self.name!r} has no classes for a transport term (fer and au_fer have)")

    def transport_classes(self, names: list[str]) -> list[str]:
        """The class names a transport cost runs over, from the outputs' names."""
        raise TypeError(f"task {self.name!r} has no classes for a transport term (fer and au_fer have)")

    def class_weights(self, y_train: torch.Tensor, n_outputs: int) -> torch.Tensor | None:
        return None

    def classes(self, names: Sequence[str]) -> slice | None:
        """Where the class logits lie among the outputs (their softmax is the class probability,
        which temperature scaling calibrates), or None for a task without classes."""
        return None

    def class_target(self, target: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """The class index of each row (−1 unlabelled) from the task's targets."""
        raise TypeError(f"task {self.name!r} has no classes")

    @abstractmethod
    def metrics(self, outputs: np.ndarray, target: np.ndarray, names: list[str]) -> dict[str, float]:
        """Every metric of raw outputs (B, n_outputs) against targets, from heads/metrics.py."""

    def answer(self, outputs: np.ndarray, names: list[str]) -> dict[str, Any]:
        """One sample's outputs as a person reads them (``affectflow predict``)."""
        return dict(zip(names, map(float, outputs)))

    # -- archetype reports: what an archetype says, and how far its members agree. A task that
    # archetype heads do not serve need not describe them.
    def _no_archetypes(self) -> TypeError:
        return TypeError(f"task {self.name!r} does not describe archetypes (the reports of archetype heads)")

    def reading(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(label, confidence) of archetypes from φ's outputs on them: a class index (categorical) or a
        score (VA value, AU probability), and how decided it is."""
        raise self._no_archetypes()

    def agrees(self, said: float, y: np.ndarray) -> np.ndarray:
        """Per labelled member (``y`` its labels in this output space): agreement with ``said``
        (True/False, or a degree in [0, 1]); unlabelled members are dropped."""
        raise self._no_archetypes()

    def contradicts(self, said: float, label: Any, agreement: float, members: int) -> tuple[bool, float]:
        """(flag for the annotation audit, strength): a label at odds with a trustworthy archetype."""
        raise self._no_archetypes()

    def text(self, value: float, names: list[str]) -> str:
        """A label or score as shown in reports."""
        return f"{value:.2f}"

    def label_text(self, value: Any, names: list[str]) -> str:
        """A sample's label as shown in the audit."""
        return self.text(float(value), names)

    def groups(self, label: np.ndarray, names: list[str]) -> list[tuple[str, np.ndarray]]:
        """The report table's rows: (class or score bin, mask over archetypes)."""
        raise self._no_archetypes()

    # -- archetype groups: what an archetype decides (a class, an AU state, a VA score bin) and which
    # training samples could use it, so usage is judged against what its group can supply.
    def n_groups(self, n_outputs: int) -> int:
        raise self._no_archetypes()

    def archetype_groups(self, out: torch.Tensor) -> torch.Tensor:
        """The group each archetype decides, from φ's raw output on it ((K, C) or (K,))."""
        raise self._no_archetypes()

    def sample_groups(self, y: torch.Tensor) -> torch.Tensor:
        """The group of each sample's label in one output space (−1: unlabelled)."""
        raise self._no_archetypes()

    def group_names(self, names: list[str]) -> list[str]:
        """What each group is called in reports (``names``: the task's label names)."""
        raise self._no_archetypes()

    def score01(self, out: torch.Tensor) -> torch.Tensor:
        """Per-output outputs as scores in [0, 1] (score-aware regularisers)."""
        raise TypeError(f"task {self.name!r} has no per-output score")

    def of_branch(self, y: np.ndarray, branch: int) -> np.ndarray:
        """Labels (B[, n_outputs]) → those of one output space."""
        return y if self.categorical else y[:, branch]

    def colormap(self) -> str:
        """How training samples are coloured by their label in a branch's map."""
        return "tab10" if self.categorical else "coolwarm"


TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls()
    return cls


def get_task(task: str | Task) -> Task:
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; registered: {', '.join(sorted(TASKS))}")
    return TASKS[task]


def _au_order(name: str) -> tuple[int, str]:
    match = re.fullmatch(r"AU(\d+)", name)
    return (int(match[1]) if match else 1 << 30, name)


def merge_columns(parts: list[Labels]) -> list[Labels]:
    """Per-output labels (B, n) of several datasets in the union of their outputs (AUs in FACS
    order), −1 where a dataset does not code one."""
    names = sorted({n for p in parts for n in p.names}, key=_au_order)
    merged = []
    for p in parts:
        y = np.full((p.y.shape[0], len(names)), -1, p.y.dtype)
        y[:, [names.index(n) for n in p.names]] = p.y
        merged.append(Labels(y, p.labelled, names))
    return merged


def merge_classes(parts: list[Labels], classes: Sequence[str]) -> list[Labels]:
    """Class indices (B,) of several datasets in the union of their classes, in ``classes``' order."""
    order = {name: k for k, name in enumerate(classes)}
    names = sorted({n for p in parts for n in p.names}, key=lambda n: (order.get(n, len(order)), n))
    merged = []
    for p in parts:
        lookup = np.array([names.index(n) for n in p.names] or [0], np.int64)
        merged.append(Labels(np.where(p.y >= 0, lookup[np.clip(p.y, 0, None)], -1), p.labelled, names))
    return merged


def _bins(label: np.ndarray, edges: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        last = hi == edges[-1]
        mask = (label >= lo) & ((label <= hi) if last else (label < hi))
        out.append((f"[{lo:g}, {hi:g}{']' if last else ')'}", mask))
    return out


# Score bins of the report table (the AURA paper's Table 3 layout): VA in [−1, 1], AU probability in [0, 1].
VA_BINS = (-1.0, -0.5, 0.0, 0.5, 1.0)
AU_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
# The audit flags a label that contradicts an archetype most of whose members agree with it
# (expressions, AUs: at least this share of at least this many members; φ's softmax on unit-norm
# archetypes is too flat to serve as the confidence) …
AUDIT_AGREEMENT = 0.8
AUDIT_MIN_MEMBERS = 5
# … or (VA) a label at least this far from the archetype's score on the [−1, 1] scale.
AUDIT_VA_GAP = 1.0


@register_task
class Expression(Task):
    """Basic expressions: classes in the canonical space (or a view of it), class-weighted CE."""

    name = "fer"
    headline = "macro_f1"
    categorical = True

    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        names = source.meta["expressions"]
        raw = source.numpy("expression").astype(np.int64)
        classes = expressions if expressions is not None else sorted(int(c) for c in np.unique(raw[raw >= 0]))
        remap = np.full(len(names), -1, np.int64)
        remap[classes] = np.arange(len(classes))
        y = np.where(raw >= 0, remap[np.clip(raw, 0, None)], -1)
        return Labels(y, y >= 0, [names[c] for c in classes])

    def merge(self, parts, classes):
        return merge_classes(parts, classes)

    def loss(self, out, target, weights, alpha=1.0):
        return expression_loss(out, target, weights)

    def branch_loss(self, out, target, weights, alpha=1.0):
        return expression_loss(out[0], target[0], weights)

    def class_weights(self, y_train, n_outputs):
        return class_weights(y_train, n_outputs)

    def with_transport(self, weights, cost, weight):
        return ClassLoss(weights, cost, weight)

    def transport_classes(self, names):
        return list(names)

    def metrics(self, outputs, target, names):
        return expression_metrics(outputs.argmax(-1), target, len(names), names)

    def classes(self, names):
        return slice(0, len(names))

    def class_target(self, target, names):
        return target

    def answer(self, outputs, names):
        probs = torch.softmax(torch.from_numpy(outputs), -1).numpy()
        return {"expression": names[int(probs.argmax())], "scores": dict(zip(names, map(float, probs)))}

    def reading(self, out):
        confidence, label = torch.softmax(out, dim=-1).max(-1)
        return label.float(), confidence

    def agrees(self, said, y):
        return y == said

    def contradicts(self, said, label, agreement, members):
        trusted = agreement >= AUDIT_AGREEMENT and members >= AUDIT_MIN_MEMBERS
        return bool(trusted and label != said), agreement

    def text(self, value, names):
        return names[int(value)]

    def groups(self, label, names):
        return [(names[c], label == c) for c in range(len(names))]

    def n_groups(self, n_outputs):
        return n_outputs

    def archetype_groups(self, out):
        return out.argmax(-1)

    def sample_groups(self, y):
        return y

    def group_names(self, names):
        return list(names)


@register_task
class ValenceArousal(Task):
    """Valence and arousal in [−1, 1]: (1 − CCC) + α·MSE per dimension, tanh outputs."""

    name = "va"
    headline = "ccc_mean"

    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        y = source.numpy("va").astype(np.float32)
        return Labels(y, np.isfinite(y).all(1), ["valence", "arousal"])

    def squash(self, out):
        return torch.tanh(out)

    def loss(self, out, target, weights, alpha=1.0):
        return va_loss(out[:, 0], target[:, 0], alpha) + va_loss(out[:, 1], target[:, 1], alpha)

    def branch_loss(self, out, target, weights, alpha=1.0):
        return sum(va_loss(out[j], target[j], alpha) for j in range(out.shape[0]))

    def metrics(self, outputs, target, names):
        return va_metrics(outputs, target)

    def answer(self, outputs, names):
        return {"valence": float(outputs[0]), "arousal": float(outputs[1])}

    def reading(self, out):
        return out, out.abs()

    def agrees(self, said, y):
        return 1 - np.abs(y - said) / 2

    def contradicts(self, said, label, agreement, members):
        gap = abs(float(label) - said)
        return gap >= AUDIT_VA_GAP, gap

    def text(self, value, names):
        return f"{value:+.2f}"

    def groups(self, label, names):
        return _bins(label, VA_BINS)

    def n_groups(self, n_outputs):
        return len(VA_BINS) - 1

    def archetype_groups(self, out):
        return torch.bucketize(out.contiguous(), torch.tensor(VA_BINS[1:-1], device=out.device), right=True)

    def sample_groups(self, y):
        return torch.where(torch.isfinite(y), self.archetype_groups(y.nan_to_num(0.0)), -1)

    def group_names(self, names):
        return [name for name, _ in _bins(np.array([]), VA_BINS)]

    def score01(self, out):
        return (out + 1) / 2


@register_task
class ActionUnits(Task):
    """AU occurrence: one logit per AU the dataset codes, BCE over labelled entries only."""

    name = "au"
    headline = "mean_f1"

    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        if "au" not in source.names():
            raise ValueError(f"{source.path} has no AU labels")
        # groups written before the canonical AU space stored only the dataset's own columns
        annotated = source.meta.get("au_annotated", source.meta["au_names"])
        columns = [source.meta["au_names"].index(a) for a in annotated]
        y = source.numpy("au")[:, columns].astype(np.int64)
        return Labels(y, (y >= 0).any(1), list(annotated))

    def merge(self, parts, classes):
        return merge_columns(parts)

    def loss(self, out, target, weights, alpha=1.0):
        return au_loss(out, target)  # unweighted: the weights serve heads whose losses take them (FAUD)

    def class_weights(self, y_train, n_outputs):
        return occurrence_weights(y_train)

    def branch_loss(self, out, target, weights, alpha=1.0):
        return au_branch_losses(out, target).sum()

    def metrics(self, outputs, target, names):
        return au_metrics((outputs > 0).astype(int), target, names)

    def answer(self, outputs, names):
        probs = 1 / (1 + np.exp(-outputs))
        return {
            "aus": {a: float(p) for a, p in zip(names, probs)},
            "present": [a for a, p in zip(names, probs) if p >= 0.5],
        }

    def reading(self, out):
        probability = torch.sigmoid(out)
        return probability, (probability - 0.5).abs() * 2

    def agrees(self, said, y):
        return (y[y >= 0] == 1) == (said >= 0.5)

    def contradicts(self, said, label, agreement, members):
        trusted = agreement >= AUDIT_AGREEMENT and members >= AUDIT_MIN_MEMBERS
        return bool(trusted and label >= 0 and (label == 1) != (said >= 0.5)), agreement

    def text(self, value, names):
        return f"p={value:.2f}"

    def label_text(self, value, names):
        return str(int(value))

    def groups(self, label, names):
        return _bins(label, AU_BINS)

    def n_groups(self, n_outputs):
        return 2  # absent, present

    def archetype_groups(self, out):
        return (out >= 0).long()

    def group_names(self, names):
        return ["absent", "present"]

    def sample_groups(self, y):
        return y.long()

    def score01(self, out):
        return torch.sigmoid(out)


@register_task
class ActionUnitsAndExpression(Task):
    """AU occurrence and the basic expression together (CausalAffect's graph heads): outputs are the
    M AU logits then the C expression logits; labels (B, M + 1) are the AUs (1/0, −1 missing) then
    the expression index (−1 missing). A sample counts when it has any label: datasets that code
    only AUs or only expressions train one head together, each loss on what is labelled."""

    name = "au_fer"
    headline = "joint_f1"

    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        has_au = "au" in source.names()
        has_expression = "expression" in source.names()
        if not (has_au or has_expression):
            raise ValueError(f"{source.path} has neither AU nor expression labels")
        if has_au:
            aus = get_task("au").labels(source)
        else:
            n = source.numpy("path").shape[0]
            aus = Labels(np.zeros((n, 0), np.int64), np.zeros(n, bool), [])
        expression = get_task("fer").labels(source, expressions)
        y = np.concatenate([aus.y, expression.y[:, None]], axis=1)
        return Labels(y, aus.labelled | expression.labelled, [*aus.names, *expression.names])

    def merge(self, parts, classes):
        """AUs in the union of the datasets' AUs, classes in the union of their classes."""
        m = [self.n_aus(p.names) for p in parts]
        aus = merge_columns([Labels(p.y[:, :k], p.labelled, p.names[:k]) for p, k in zip(parts, m)])
        expression = merge_classes([Labels(p.y[:, k], p.labelled, p.names[k:]) for p, k in zip(parts, m)], classes)
        return [
            Labels(np.concatenate([a.y, e.y[:, None]], 1), p.labelled, [*a.names, *e.names])
            for p, a, e in zip(parts, aus, expression)
        ]

    @staticmethod
    def split(n_outputs: int, target_width: int) -> tuple[int, int]:
        """(M AUs, C classes) from the outputs' and the labels' widths (M + C and M + 1)."""
        m = target_width - 1
        return m, n_outputs - m

    @staticmethod
    def n_aus(names: list[str] | tuple[str, ...]) -> int:
        """How many of the outputs' names are AUs (they come first; FACS names are ``AU<n>``)."""
        return sum(1 for name in names if re.fullmatch(r"AU\d+", name))

    def loss(self, out, target, weights, alpha=1.0):
        m = target.shape[1] - 1
        return au_loss(out[:, :m], target[:, :m]) + expression_loss(out[:, m:], target[:, m], weights)

    def branch_loss(self, out, target, weights, alpha=1.0):
        raise TypeError("au_fer has no archetype branches")

    def class_weights(self, y_train, n_outputs):
        m, c = self.split(n_outputs, y_train.shape[1])
        return class_weights(y_train[:, m], c)

    def with_transport(self, weights, cost, weight):
        return ClassLoss(weights, cost, weight)

    def transport_classes(self, names):
        return list(names[self.n_aus(names) :])

    def classes(self, names):
        return slice(self.n_aus(names), len(names))

    def class_target(self, target, names):
        return target[:, self.n_aus(names)]

    def metrics(self, outputs, target, names):
        m, c = self.split(outputs.shape[1], target.shape[1])
        au = au_metrics((outputs[:, :m] > 0).astype(int), target[:, :m], names[:m]) if m else {"mean_f1": float("nan")}
        expression = expression_metrics(outputs[:, m:].argmax(-1), target[:, m], c, names[m:] if names else None)
        scores = [v for v in (au["mean_f1"], expression["macro_f1"]) if np.isfinite(v)]
        return {**au, **expression, "joint_f1": float(np.mean(scores)) if scores else float("nan")}

    def answer(self, outputs, names):
        m = self.n_aus(names)
        return {**get_task("au").answer(outputs[:m], names[:m]), **get_task("fer").answer(outputs[m:], names[m:])}


@register_task
class Preference(Task):
    """LaScA's preference: from the difference of two windows' features, whether valence or arousal
    rises from the first to the second (one logit; labels 1 / 0, NaN missing), read from a pairs
    group's ``label`` array; binary cross-entropy, scored by accuracy."""

    name = "rank"
    headline = "accuracy"

    def labels(self, source: LabelSource, expressions: list[int] | None = None) -> Labels:
        if "label" not in source.names():
            raise ValueError(f"{source.path} is not a pairs group: the rank task reads its 'label' array")
        y = source.numpy("label").astype(np.float32).reshape(-1, 1)
        return Labels(y, np.isfinite(y[:, 0]), [f"{source.meta.get('affect', 'affect')} rises"])

    def loss(self, out, target, weights, alpha=1.0):
        return preference_loss(out[:, 0], target[:, 0].float())

    def branch_loss(self, out, target, weights, alpha=1.0):
        raise TypeError("rank has no archetype branches")

    def metrics(self, outputs, target, names):
        return preference_metrics(outputs[:, 0], target[:, 0])

    def answer(self, outputs, names):
        return {names[0] if names else "rises": float(1 / (1 + np.exp(-outputs[0])))}
