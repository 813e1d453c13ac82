"""The head-training step: (head spec, feature group, its source) → checkpoint, metrics, predictions.

Keyed like every step, so a rerun with the same inputs and spec is skipped. The group stores the
test-split predictions (and, for archetype heads, the deciding archetype per row) as arrays, and
beside them ``model.safetensors``, ``config.json`` and ``metrics.json``. Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import safetensors.torch
import torch

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepOutput, StepSpec, canonical_json
from featurestore.selectors import select_group
from heads.calibration import calibration_summary, fit_temperature, reliability_png
from heads.data import TaskData
from heads.graph_report import graph_files
from heads.registry import create_head, get_head
from heads.tasks import get_task
from heads.trainer import LATER_KNOBS, TrainConfig, evaluate, fit, predict, seed_everything
from stages.extraction.sources.labels import expression_prototypes
from stages.training.circumplex import transport_costs, transport_key
from stages.training.head_data import load_task_data
from stages.training.head_inputs import HeadInput, HeadRequest, PlannedInput, register_input
from stages.training.head_resources import describe_resources, load_resources, rebuild_resources, resource_keys
from stages.training.lasca_data import lasca_data_of

HEAD_STEP = "train-head"
# The step's version is the head's own (``@register_head(version=…)``). They start at 5, the shared
# version before heads had their own: 2 inputs standardised, 3 initial weights seeded, 4 AURA's
# branches stacked, 5 its contextualiser's CLS tokens stored first.


def head_spec(
    head: str,
    task: str,
    array: str,
    options: dict[str, Any],
    train: TrainConfig,
    expressions: list[int] | None,
    test_fold: int,
    folds: int | None = None,
) -> StepSpec:
    # where it runs and whether it shows a bar do not change the result; everything else does
    entry = get_head(head)
    # what the head reads besides features: e.g. prompts (the file's digest, the text encoder's spec)
    resources = resource_keys(entry.resources, entry.option_values(options))
    knobs = {
        k: v
        for k, v in asdict(train).items()
        if k not in ("device", "progress") and not (k in LATER_KNOBS and v == LATER_KNOBS[k])
    }
    return StepSpec(
        HEAD_STEP,
        entry.version,
        {
            "head": head,
            "task": task,
            "array": array,
            "options": options,
            "train": knobs,
            "expressions": expressions,
            "test_fold": test_fold,
            # only when asked for: the keys of heads trained without k-fold stay what they were
            **({"folds": folds} if folds is not None else {}),
            **resources,
            **transport_key(train.transport),
        },
    )


JOINT = "__"  # between the dataset names of a head trained on several ("+" is not a safe store path)


def feature_paths(features: str | Sequence[str]) -> list[str]:
    """One feature group's path, or several's (one head trained on several datasets), as a list."""
    return [features] if isinstance(features, str) else list(features)


def head_step(store: FeatureStore, features_path: str | Sequence[str], spec: StepSpec) -> Step:
    """``heads/<dataset>/<head>-<task>/<key>``: the head's spec over a feature group and its source;
    over several groups (one head trained on several datasets), keyed on every group and source,
    under ``heads/<dataset>__<dataset>…``."""
    groups = [GroupReader.open(store, path) for path in feature_paths(features_path)]
    sources = [GroupReader.open(store, g.meta["source_path"]).step.key for g in groups]
    inputs = (groups[0].step.key, sources[0]) if len(groups) == 1 else (*(g.step.key for g in groups), *sources)
    part = f"{spec.params['head']}-{spec.params['task']}"
    return Step("head", spec, inputs, "heads", (JOINT.join(g.meta["dataset"] for g in groups), part))


def uses_archetypes(head_meta: dict[str, Any]) -> bool:
    """Whether a head step's head has a codebook (reports, predict's deciding archetypes)."""
    return head_meta.get("uses_archetypes", head_meta["head"] == "aura")  # groups written before it was recorded


def has_report(head_meta: dict[str, Any]) -> bool:
    """Whether a head step's head has a report: archetype heads', graph heads' and the attention
    maps of heads that draw them (``affectflow report``)."""
    return uses_archetypes(head_meta) or bool(head_meta.get("graphs")) or head_meta.get("draws_maps", False)


def stored_metrics(store: FeatureStore, path: str) -> dict[str, Any] | None:
    """The metrics of a complete head step at ``path``, or None when it is not done."""
    group = store.open_step(path)
    if group is None or not group.is_complete:
        return None
    return json.loads(store.get_file(path, "metrics.json"))


def variant(params: dict[str, Any]) -> str:
    """What makes runs of one head comparable: the spec without the seed and the test fold. Runs
    that differ only in those are seeds and folds of one protocol (DISFA's and BP4D's three folds,
    k-fold's k), pooled into one mean ± std."""
    params = {k: v for k, v in params.items() if k != "test_fold"}
    params["train"] = {k: v for k, v in params["train"].items() if k != "seed"}
    return canonical_json(params)


def head_run(
    store: FeatureStore, group: StepGroup, state: str, metrics: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One complete head step as a run record: what training returns, and what ``results`` reads."""
    meta = group.meta
    params = meta["spec"]["params"]
    return {
        "head": params["head"],
        "task": params["task"],
        "seed": params["train"]["seed"],
        "test_fold": params["test_fold"],
        "folds": params.get("folds"),
        "state": state,
        "path": group.path,
        "key": group.key,
        "metrics": metrics or json.loads(store.get_file(group.path, "metrics.json")),
        "dataset": meta["dataset"],
        "features": " + ".join(meta.get("features_paths", [meta["features_path"]])),
        "array": params["array"],
        "options": params["options"],
        "train": {k: v for k, v in params["train"].items() if k != "seed"},
        "variant": variant(params),
        "uses_archetypes": uses_archetypes(meta),
        "completed_at": meta.get("completed_at"),
    }


def stored_runs(
    store: FeatureStore, dataset: str | None = None, task: str | None = None, head: str | None = None
) -> list[dict[str, Any]]:
    """Every complete head step in the store (optionally of one dataset, task or head) as run records."""
    runs = []
    for group in store.list_steps(f"heads/{dataset}" if dataset else "heads"):
        meta = group.meta
        if not group.is_complete or (task and meta["task"] != task) or (head and meta["head"] != head):
            continue
        runs.append(head_run(store, group, "stored"))
    return runs


def train_head(
    store: FeatureStore,
    features_path: str | Sequence[str],
    head: str,
    task: str,
    array: str = "global",
    options: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    expressions: list[int] | None = None,
    test_fold: int = 1,
    folds: int | None = None,
) -> tuple[StepGroup, str, dict[str, Any]]:
    """Train (or skip) one head on one feature group, or on several groups of one encoder (datasets
    trained together, each split by its own protocol); returns (group, "skipped" | "new", metrics)."""
    options, train = dict(options or {}), train or TrainConfig()
    paths = feature_paths(features_path)
    entry = get_head(head)
    entry.check(task, options)
    spec = head_spec(head, task, array, options, train, expressions, test_fold, folds)
    step = head_step(store, paths, spec)

    def fit_head() -> StepOutput:
        data = load_task_data(store, paths, task, array, expressions, test_fold, train.seed, folds)
        sources = [GroupReader.open(store, path).meta["source_path"] for path in paths]
        meta = {
            "dataset": step.parts[0],
            "features_path": paths[0],
            "source_path": sources[0],
            # several datasets: every group and source, and each test row's dataset (the "dataset" array)
            **({"features_paths": paths, "source_paths": sources} if len(paths) > 1 else {}),
        }
        resources = load_resources(store, entry.resources, entry.option_values(options), data.label_names)
        what = f"{head} on {', '.join(paths)} [{array}]"
        return fit_head_output(head, task, array, options, train, data, meta, what, resources)

    group, state = store.run_step(step, fit_head)
    return group, state, json.loads(store.get_file(step.path, "metrics.json"))


def fit_head_output(
    head: str,
    task: str,
    array: str,
    options: dict[str, Any],
    train: TrainConfig,
    data: TaskData,
    meta: dict[str, Any],
    what: str,
    resources: dict[str, Any] | None = None,
) -> StepOutput:
    """Train a head on loaded splits, the one way every head step does: the test predictions (and
    deciding archetypes), checkpoint, config, metrics, and a graph head's graph files. ``meta``
    says where the data came from; ``what`` names the run in errors; ``resources``: what the head
    reads besides features (stages/training/head_resources.py)."""
    x_train = data.x["train"]
    n_patches = x_train.shape[1] if x_train.ndim == 3 else 0
    seed_everything(train.seed)  # the initial weights too: a key always gives the same head
    try:
        model = create_head(
            head, task, int(x_train.shape[-1]), data.n_outputs, n_patches, tuple(data.label_names), resources, **options
        )
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    groups = data.dataset["train"] if data.dataset else None
    costs = None
    if train.transport != "none":  # the transport term's class costs, over the task's classes
        costs = transport_costs(train.transport, get_task(task).transport_classes(data.label_names))
    result = fit(
        model, task, (x_train, data.y["train"]), (data.x["val"], data.y["val"]), data.n_outputs, train, groups, costs
    )
    outputs = predict(model, data.x["test"])
    y_test = data.y["test"].numpy()
    metrics = {
        "test": evaluate(task, outputs, y_test, data.n_outputs, data.label_names),
        "val": result.val,
        "train_seconds": result.seconds,
        "best_epoch": result.best_epoch,
        "batch_size": result.batch_size,
        "epochs_run": result.epochs_run,
        "epoch_budget": result.epoch_budget,
        "steps_per_epoch": result.steps_per_epoch,
        "k_stable": result.k_stable,
        "protocol": data.protocol,
        "samples": {k: int(v.size) for k, v in data.rows.items()},
    }
    temperature = None
    if (classes := get_task(task).classes(data.label_names)) is not None:
        # temperature scaling on the validation split (heads/calibration.py): predict's probabilities
        logits = {"val": predict(model, data.x["val"]), "test": outputs}
        splits = {
            k: (v[:, classes], get_task(task).class_target(data.y[k].numpy(), data.label_names))
            for k, v in logits.items()
        }
        temperature = fit_temperature(*splits["val"])
        metrics["calibration"] = calibration_summary(splits, temperature)
    if data.dataset:  # several datasets: each one's test rows scored apart too
        metrics["test_by_dataset"] = {
            name: evaluate(task, outputs[mine], y_test[mine], data.n_outputs, data.label_names)
            for i, name in enumerate(data.datasets)
            if (mine := data.dataset["test"] == i).any()
        }
    config = {
        "head": head,
        "task": task,
        "array": array,
        "options": options,
        "in_dim": int(x_train.shape[-1]),
        "n_outputs": data.n_outputs,
        "n_patches": n_patches,
        "labels": data.label_names,
        "temperature": temperature,  # the class logits' calibration (None: no classes)
        "module": get_head(head).build.__module__,  # where it registers: a plugin head loads without --plugin
        # what rebuilds its resources without their sources (the prompts' shape, a structure's table)
        **describe_resources(resources or {}),
    }
    meta = {
        **meta,
        "head": head,
        "task": task,
        "labels": data.label_names,
        "uses_archetypes": model.uses_archetypes,  # it has a codebook: reports, predict's deciding archetypes
        "draws_maps": model.draws_maps,  # it has attention maps: its report draws them
    }
    arrays = {"outputs": outputs, "archetype": _archetypes(model, data.x["test"]), "row": data.rows["test"]}
    if data.dataset:
        arrays["dataset"] = data.dataset["test"].astype(np.int32)
    files = {
        "model.safetensors": safetensors.torch.save(model.state_dict()),
        "config.json": json.dumps(config, indent=1).encode(),
        "metrics.json": json.dumps(metrics, indent=1).encode(),
    }
    if "calibration" in metrics and "val" in metrics["calibration"]:
        files["calibration.png"] = reliability_png(metrics["calibration"])
    if graphs := {name: g.cpu().numpy() for name, g in model.graphs().items()}:
        m = get_task(task).n_aus(data.label_names)
        names, y_train = data.label_names, data.y["train"].numpy()
        files.update(graph_files(graphs, names[:m], names[m:], y_train[:, :m], expression_prototypes()))
        meta["graphs"] = sorted(graphs)
    return StepOutput(arrays, meta, files)


@torch.no_grad()
def _archetypes(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """The archetype that decided each test row (−1 for heads without archetypes)."""
    model.eval()
    device = next(model.parameters()).device
    _, index = model.predict(x.to(device))
    return np.full((x.shape[0], 1), -1, np.int32) if index is None else index.cpu().numpy().astype(np.int32)


def load_head(store: FeatureStore, path: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a trained head from its config and safetensors weights."""
    config = json.loads(store.get_file(path, "config.json"))
    entry = get_head(config["head"], module=config.get("module"))
    trained_by = store.open_step(path).meta["spec"]["version"]
    if trained_by != entry.version:  # its weights are another version's: say so, not a state-dict error
        raise ValueError(
            f"{path} was trained by {config['head']} version {trained_by}; this code's is version "
            f"{entry.version}: train it again (the new version trains under a new key beside it)"
        )
    model = create_head(
        config["head"],
        config["task"],
        config["in_dim"],
        config["n_outputs"],
        config["n_patches"],
        tuple(config["labels"]),
        rebuild_resources(entry.resources, config),
        **config["options"],
    )
    model.load_state_dict(safetensors.torch.load(store.get_file(path, "model.safetensors")))
    return model.eval(), config


def head_data(store: FeatureStore, path: str) -> tuple[dict[str, Any], GroupReader, TaskData]:
    """(spec params, source, splits) of a trained head: the splits rebuilt by the same protocol
    and seed it was trained with."""
    head = GroupReader.open(store, path)
    params = head.meta["spec"]["params"]
    source = GroupReader.open(store, head.meta["source_path"])
    if "pairs_path" in head.meta:  # a LaScA learner: its splits come from prompts and pairs
        return params, source, lasca_data_of(store, head)
    data = load_task_data(
        store,
        head.meta.get("features_paths", head.meta["features_path"]),
        params["task"],
        params["array"],
        params["expressions"],
        params["test_fold"],
        params["train"]["seed"],
        params.get("folds"),
    )
    return params, source, data


def evaluate_head(store: FeatureStore, path: str, split: str = "test") -> dict[str, Any]:
    """Every metric of a trained head on ``split`` (train / val / test), with the split rebuilt by the
    same protocol and seed the head was trained with."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split {split!r} not in train, val, test")
    model, config = load_head(store, path)  # first: it registers a plugin head's task too
    params, _, data = head_data(store, path)
    outputs = predict(model, data.x[split])
    metrics = evaluate(params["task"], outputs, data.y[split].numpy(), data.n_outputs, data.label_names)
    return {
        "head": config["head"],
        "task": params["task"],
        "path": path,
        "split": split,
        "samples": int(data.rows[split].size),
        "protocol": data.protocol,
        "metrics": metrics,
    }


@register_input
class FeatureGroupInput(HeadInput):
    """A feature group's ``global`` vectors or ``patch`` tokens (``request.array``), or several groups
    of one encoder trained together (a head per dataset set)."""

    kinds = ("global", "patch")

    def plan(self, store: FeatureStore, request: HeadRequest) -> PlannedInput:
        if request.cell is not None:
            raise ValueError(f"a cell is for heads that read window pairs (lasca), not {request.head!r}")
        # a readable selector (rafdb/open_clip) or the path: the plan names the one complete group
        paths = tuple(select_group(store, f, "features").path for f in feature_paths(request.features))
        r = request
        spec = head_spec(r.head, r.task, r.array, r.options, r.train, r.expressions, r.test_fold, r.folds)
        return PlannedInput(head_step(store, paths, spec), paths, paths[0] if len(paths) == 1 else paths)

    def train(
        self, store: FeatureStore, request: HeadRequest, planned: tuple[str, ...]
    ) -> tuple[StepGroup, str, dict[str, Any]]:
        r = request
        return train_head(
            store, list(planned), r.head, r.task, r.array, r.options, r.train, r.expressions, r.test_fold, r.folds
        )
