"""Head training without ceremony: the plan of (head, seed) steps, running it, and the Python API.

Nothing here imports Prefect: flows/run.py decides whether a plan runs here or as the
``train-heads`` flow (flows/train.py), which receives the plan made here and runs it as tasks.
Loaded splits stay in memory between calls (``stages.training.head_data.load_task_data``), so a notebook's
second retrain on the same features costs its training and little else.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from featurestore import FeatureStore, Step
from heads.registry import get_head
from heads.tasks import get_task
from heads.trainer import KNOBS, TrainConfig
from stages.training.head_inputs import HeadRequest, head_input
from stages.training.head_pool import map_in_processes, pool_workers
from stages.training.head_steps import (
    evaluate_head,
    has_report,
    head_run,
    uses_archetypes,
)


class HeadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or misplaced field is an error, never ignored

    head: str = Field(description="registered head: aura, linear, mlp, or a plugin's")
    task: str = Field(description="fer, va, au, or a plugin's task")
    features: str | list[str] = Field(
        description="feature group: its path (features/<dataset>/<encoder>/<key>) or a selector (<dataset>/<encoder>);"
        " several groups of one encoder: one head trained on all their datasets together; for the rank task"
        " (LaScA), the video dataset whose windows it reads"
    )
    array: str = Field("global", description="feature array: global, patch_proj, blendshapes …")
    options: dict[str, Any] = Field(default_factory=dict, description="the head's options (its config's fields)")
    seeds: list[int] = Field(default_factory=lambda: [0])
    preset: str = Field(
        "fast",
        description="training preset: fast (the default), paper (AURA's lr 1e-4), causal (CausalAffect's AdamW), "
        "lasca (MLPClassifier's) or faud (FAUD-CLIP's AdamW and cosine schedule)",
    )
    epochs: int | None = Field(None, description="None: the preset's")
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None
    warmup_epochs: int | None = None
    min_steps: int | None = Field(
        None,
        description="the fewest optimiser steps: a small set's epochs are stretched until they reach it "
        "(None: the preset's, faud 1,000, others 0, see docs/methods.md#step-budget; 0 when epochs is given)",
    )
    transport: str | None = Field(
        None,
        description="a transport term on the class loss (fer, au_fer): circumplex (Russell's distances between the "
        "classes) or uniform (the same cost for every error: the control); None: none",
    )
    transport_weight: float | None = Field(None, description="the transport term's weight (None: 1.0)")
    report: bool = Field(True, description="write the head's report (archetype, graph and attention-map heads)")
    expressions: list[int] | None = Field(None, description="canonical expression indices to use (a view)")
    test_fold: int = Field(1, description="the test fold: of the dataset's own folds (DISFA, BP4D) or of k-fold")
    folds: int | None = Field(None, description="k-fold (subject-exclusive) on a dataset without an official split")
    cell: dict[str, Any] | None = Field(
        None,
        description="rank task (LaScA): the grid's cell, any of window, affect, tau, modality, variant, text_model, "
        "pretrained_encoder, lexicon, lexicon_kind, template (stages.training.lasca_steps.CELL_DEFAULTS fills the "
        "rest)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_preset(cls, data: Any) -> Any:
        """No preset named: what the head's input kind trains with (fast; LaScA's pairs: its MLPClassifier's)."""
        if isinstance(data, dict) and data.get("preset") is None:
            return {**data, "preset": head_input(data.get("head", "aura")).preset}
        return data

    @model_validator(mode="after")
    def _cell_is_for_pairs(self) -> HeadConfig:
        if self.cell is not None and not head_input(self.head).takes_cell:
            raise ValueError(f"a cell is for heads that read window pairs (lasca), not {self.head!r}")
        return self

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, name: str) -> str:
        TrainConfig.preset(name)  # the one check (an unknown name lists the presets)
        return name

    @property
    def head_options(self) -> dict[str, Any]:
        """The options the head is built with: its preset's, overridden by ``options``."""
        return get_head(self.head).preset_options(self.preset, self.options)

    def train_config(self, seed: int, device: str | None, progress: bool = True) -> TrainConfig:
        knobs = {k: getattr(self, k) for k in KNOBS}
        return TrainConfig.preset(self.preset, **knobs, seed=seed, device=device, progress=progress)

    def request(self, seed: int, device: str | None = None, progress: bool = True) -> HeadRequest:
        """This config on one seed, as the head's input loader reads it."""
        features = self.features if isinstance(self.features, str) else tuple(self.features)
        return HeadRequest(
            self.head,
            self.task,
            features,
            self.train_config(seed, device, progress),
            self.array,
            self.head_options,
            self.expressions,
            self.test_fold,
            self.folds,
            self.cell,
        )


@dataclass
class PlannedHead:
    config: HeadConfig
    seed: int
    step: Step
    inputs: Any  # what the head's input loader trains from (stages/training/head_inputs.py): feature paths, a cell's


def plan_heads(configs: list[HeadConfig], store: FeatureStore) -> list[PlannedHead]:
    """Every (head config, seed) as a keyed step, through its head's input loader; fails on a
    feature group that is not there."""
    wanted = []
    for h in configs:
        get_head(h.head).check(h.task, h.head_options)
        wanted += [(h, seed) for seed in h.seeds]
    planned: list[Any] = [None] * len(wanted)
    by_loader: dict[int, list[int]] = {}  # each loader plans its requests in one pass (shared lookups)
    for i, (h, _) in enumerate(wanted):
        by_loader.setdefault(id(head_input(h.head)), []).append(i)
    for indices in by_loader.values():
        loader = head_input(wanted[indices[0]][0].head)
        requests = [wanted[i][0].request(wanted[i][1]) for i in indices]
        for i, p in zip(indices, loader.plan_many(store, requests), strict=True):
            planned[i] = p
    plan = []
    for (h, seed), p in zip(wanted, planned, strict=True):
        features = p.features if isinstance(p.features, str) else list(p.features)
        plan.append(PlannedHead(h.model_copy(update={"features": features}), seed, p.step, p.inputs))
    return plan


def plan_done(plan: list[PlannedHead], store: FeatureStore) -> bool:
    """Every step complete, and every report that is asked for written."""
    for p in plan:
        if not store.is_complete(p.step):
            return False
        meta = store.open_step(p.step.path).meta
        joint = not isinstance(p.config.features, str)  # no archetype report: see train_one
        if p.config.report and has_report(meta) and not (joint and uses_archetypes(meta)):
            if not store.has_file(p.step.path, "report.md"):
                return False
    return True


def train_one(store: FeatureStore, planned: PlannedHead, device: str | None, progress: bool = True) -> dict[str, Any]:
    """Train (or skip) one planned head, then write its report when it has a codebook and one is asked for."""
    h = planned.config
    t0 = time.perf_counter()
    request = h.request(planned.seed, device, progress)
    group, state, metrics = head_input(h.head).train(store, request, planned.inputs)
    assert group.key == planned.step.key, "the plan and the step disagree on the key"
    run = head_run(store, group, state, metrics)
    run["step_seconds"] = time.perf_counter() - t0  # the head step: store reads, training, writes
    joint = not isinstance(h.features, str)
    if h.report and run["uses_archetypes"] and joint:
        # the archetype report's thumbnails, audit and nearest samples read one dataset's source
        run["report"] = (
            f"No archetype report for `{group.path}`: it trained on several datasets; train one per dataset."
        )
    elif h.report and has_report(group.meta):
        if not store.has_file(group.path, "report.md"):
            from stages.training.head_reports import write_report  # matplotlib and thumbnails: only for reports

            write_report(store, group.path)
        run["report"] = store.get_file(group.path, "report.md").decode()
    if store.has_file(group.path, "graph.md"):  # a graph head: its strongest edges per target
        run["graph_report"] = store.get_file(group.path, "graph.md").decode()
    return run


def train_planned(
    store: FeatureStore,
    plan: list[PlannedHead],
    device: str | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Train (or skip) every planned head as :func:`train_one` does, in order, the new ones side by
    side in ``workers`` processes (None: one per core when each gets enough of them; see
    stages/training/head_pool.py). Returns the runs and the processes used."""
    pending = [p for p in plan if not store.is_complete(p.step)]
    n = pool_workers(len(pending), workers)
    trained: dict[str, dict[str, Any]] = {}
    if n > 1:
        for p in pending:  # work they share (LaScA's prompt embeddings) done once, here
            head_input(p.config.head).prepare(store, p.config.request(p.seed, device, False), p.inputs)
        runs = map_in_processes(store, functools.partial(train_one, device=device, progress=False), pending, n)
        trained = {p.step.key: run for p, run in zip(pending, runs)}
    return [trained.get(p.step.key) or train_one(store, p, device, progress) for p in plan], n


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test metrics as mean ± std over the seeds (and k-fold's folds) of each variant of a head:
    runs whose specs differ only in those."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["head"], r["task"], r["features"], r["variant"]), []).append(r)
    out = []
    for (head, task_name, features, _), rs in groups.items():
        # in seed order (the store lists steps in no set order): paths[0] is the first seed's
        rs = sorted(rs, key=lambda r: (r["seed"], r["test_fold"]))
        names = [k for k, v in rs[0]["metrics"]["test"].items() if isinstance(v, float)]
        stats = {
            k: (
                float(np.mean([r["metrics"]["test"][k] for r in rs])),
                float(np.std([r["metrics"]["test"][k] for r in rs])),
            )
            for k in names
        }
        dates = [r["completed_at"] for r in rs if r["completed_at"]]
        # several test folds (k-fold, DISFA/BP4D's own) pool into the mean ± std with the seeds
        test_folds = sorted({r["test_fold"] for r in rs})
        out.append(
            {
                "head": head,
                "task": task_name,
                "dataset": rs[0]["dataset"],
                "features": features,
                "array": rs[0]["array"],
                "options": rs[0]["options"],
                "train": rs[0]["train"],
                "seeds": sorted({r["seed"] for r in rs}),
                "folds": test_folds if len(test_folds) > 1 or rs[0]["folds"] else None,
                "headline": get_task(task_name).headline,
                "test": stats,
                "k_stable": [r["metrics"]["k_stable"] for r in rs],
                "train_seconds": float(np.mean([r["metrics"]["train_seconds"] for r in rs])),
                "protocol": rs[0]["metrics"]["protocol"],
                "paths": [r["path"] for r in rs],
                "completed_at": max(dates) if dates else None,
            }
        )
    return out


def summary_markdown(summary: list[dict[str, Any]]) -> str:
    lines = [
        "# train-heads",
        "",
        "| head | task | features | seeds | headline (test) | K_stable | train s | protocol |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        mean, std = s["test"][s["headline"]]
        lines.append(
            f"| {s['head']} | {s['task']} | `{s['features']}` | {len(s['seeds'])} | "
            f"{s['headline']} {mean:.3f} ± {std:.3f} | {s['k_stable'][0]} | {s['train_seconds']:.1f} | "
            f"{s['protocol']} |"
        )
    for s in summary:
        lines += ["", f"## {s['head']} · {s['task']}", "", "| metric | mean | std |", "|---|---|---|"]
        lines += [f"| {k} | {m:.4f} | {sd:.4f} |" for k, (m, sd) in s["test"].items()]
    return "\n".join(lines)


def results(runs: list[dict[str, Any]], store: FeatureStore | None = None) -> dict[str, Any]:
    """The runs with their summary and its markdown (also filed under ``reports/train-heads/`` when
    a store is given: what was trained, not what was read back)."""
    summary = summarise(runs)
    markdown = summary_markdown(summary)
    if store is not None:
        store.file_report("train-heads", markdown)
    return {"runs": runs, "summary": summary, "report": markdown}


def evaluation_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# evaluate-heads"]
    for r in results:
        lines += [
            "",
            f"## {r['head']} · {r['task']} · {r['split']} ({r['samples']} samples)",
            "",
            f"`{r['path']}` — {r['protocol']}",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {v:.4f} |" for k, v in r["metrics"].items() if isinstance(v, float)]
    return "\n".join(lines)


def evaluation(store: FeatureStore, paths: list[str], split: str = "test") -> dict[str, Any]:
    """Every metric of the trained heads at ``paths`` on ``split``, and their markdown table."""
    results = [evaluate_head(store, path, split) for path in paths]
    return {"results": results, "report": evaluation_markdown(results)}


@dataclass
class TrainedHead:
    path: str  # the head's group in the store: checkpoint, metrics, predictions, report
    key: str
    state: str  # "new" or "skipped" (the same key was already complete)
    metrics: dict[str, Any]
    seconds: float  # this call, end to end


_STORES: dict[tuple[str, str], FeatureStore] = {}


def train(
    features: str | list[str],
    task: str,
    head: str = "aura",
    *,
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    array: str = "global",
    options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
    report: bool = False,
    cell: dict[str, Any] | None = None,
    **train: Any,
) -> TrainedHead:
    """Train one head on cached features from Python (a notebook), keyed like every head step.

    ``train`` holds the trainer's knobs: ``preset`` ("fast", the default, or "paper") and any of
    ``epochs``, ``lr``, ``batch_size``, ``patience``, ``warmup_epochs``, ``min_steps``, ``transport`` to override it,
    and the protocol's ``test_fold`` and ``folds``. ``cell``: the rank task's LaScA cell (``features``
    is then the video dataset's name). Returns the step's path, key, state and metrics. Loaded
    features and splits stay in this process for the next call, and the store is opened once per URL::

        import affectflow
        run = affectflow.train("features/generated/mediapipe-face/<key>", "fer", "linear", array="blendshapes")
        run.metrics["test"]["macro_f1"], run.path
    """
    t0 = time.perf_counter()
    cache = (store, repr(sorted((storage_options or {}).items())))
    if cache not in _STORES:
        _STORES[cache] = FeatureStore(store, storage_options or {})
    fstore = _STORES[cache]
    config = HeadConfig(
        head=head,
        task=task,
        features=features,
        array=array,
        options=options or {},
        seeds=[seed],
        report=report,
        cell=cell,
        **train,
    )
    (planned,) = plan_heads([config], fstore)
    run = train_one(fstore, planned, device, progress)
    return TrainedHead(run["path"], run["key"], run["state"], run["metrics"], time.perf_counter() - t0)
