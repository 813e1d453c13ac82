"""The ``train-heads`` flow: head specs × seeds → keyed head steps, with metrics as mean ± std."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from featurestore import FeatureStore
from heads.tasks import get_task
from heads.trainer import TrainConfig
from stages.head_reports import write_report
from stages.head_steps import evaluate_head, head_spec, head_step, stored_metrics, train_head, uses_archetypes


class HeadConfig(BaseModel):
    head: str = Field(description="registered head: aura, linear, mlp")
    task: str = Field(description="fer, va or au")
    features: str = Field(description="feature group path in the store, e.g. features/<dataset>/<encoder>/<key>")
    array: str = Field("global", description="feature array: global, patch_proj, blendshapes …")
    options: dict[str, Any] = Field(default_factory=dict, description="head options (AuraConfig fields for aura)")
    seeds: list[int] = Field(default_factory=lambda: [0])
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-4
    patience: int = 15
    warmup_epochs: int = 5
    report: bool = Field(True, description="write the interpretability report (archetype heads)")
    expressions: list[int] | None = Field(None, description="canonical expression indices to use (a view)")
    test_fold: int = 1

    def train_config(self, seed: int, device: str | None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            patience=self.patience,
            warmup_epochs=self.warmup_epochs,
            seed=seed,
            device=device,
            progress=True,
        )


@task(cache_policy=NO_CACHE, task_run_name="{config.head}-{config.task} seed {seed}")
def train_head_task(
    store_url: str, storage_options: dict, config: HeadConfig, seed: int, device: str | None
) -> dict[str, Any]:
    fstore = FeatureStore(store_url, storage_options)
    group, state, metrics = train_head(
        fstore,
        config.features,
        config.head,
        config.task,
        config.array,
        config.options,
        config.train_config(seed, device),
        config.expressions,
        config.test_fold,
    )
    return {
        "head": config.head,
        "task": config.task,
        "seed": seed,
        "state": state,
        "path": group.path,
        "key": group.key,
        "metrics": metrics,
        "uses_archetypes": uses_archetypes(group.meta),
    }


@task(cache_policy=NO_CACHE, task_run_name="report {head_path}")
def head_report_task(store_url: str, storage_options: dict, head_path: str, force: bool = False) -> dict[str, Any]:
    """The interpretability report beside the checkpoint (kept when it exists), as an artifact too."""
    fstore = FeatureStore(store_url, storage_options)
    if force or not fstore.has_file(head_path, "report.md"):
        write_report(fstore, head_path)
    text = fstore.get_file(head_path, "report.md").decode()
    create_markdown_artifact(markdown=text, key="head-report", description=f"archetype report of {head_path}")
    return {"path": head_path, "markdown": text}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Test metrics as mean ± std over the seeds of each (head, task, features)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["head"], r["task"], r["features"]), []).append(r)
    out = []
    for (head, task_name, features), rs in groups.items():
        names = [k for k, v in rs[0]["metrics"]["test"].items() if isinstance(v, float)]
        stats = {
            k: (
                float(np.mean([r["metrics"]["test"][k] for r in rs])),
                float(np.std([r["metrics"]["test"][k] for r in rs])),
            )
            for k in names
        }
        out.append(
            {
                "head": head,
                "task": task_name,
                "features": features,
                "seeds": [r["seed"] for r in rs],
                "headline": get_task(task_name).headline,
                "test": stats,
                "k_stable": [r["metrics"]["k_stable"] for r in rs],
                "train_seconds": float(np.mean([r["metrics"]["train_seconds"] for r in rs])),
                "protocol": rs[0]["metrics"]["protocol"],
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


@flow(name="train-heads", log_prints=True)
def train_heads(
    heads: list[HeadConfig],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Train every head config for each of its seeds on cached features (skipped when keyed done)."""
    logger = get_run_logger()
    storage_options = storage_options or {}
    fstore = FeatureStore(store, storage_options)
    for h in heads:  # fail fast: every feature group exists and is complete
        if fstore.open_step(h.features) is None:
            raise ValueError(f"no feature group at {h.features!r} in {store}; `affectflow ls` lists them")
    runs = []
    for h in heads:
        for seed in h.seeds:
            run = train_head_task(store, storage_options, h, seed, device)
            if h.report and run["uses_archetypes"]:
                run["report"] = head_report_task(store, storage_options, run["path"])["markdown"]
            runs.append({**run, "features": h.features})
            headline = get_task(h.task).headline
            logger.info(
                "%s %s seed %d: %s, test %s = %.4f",
                h.head,
                h.task,
                seed,
                run["state"],
                headline,
                run["metrics"]["test"][headline],
            )
    summary = summarise(runs)
    markdown = summary_markdown(summary)
    create_markdown_artifact(markdown=markdown, key="train-heads-summary", description="train-heads run")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    fstore.fs.makedirs(f"{fstore.root}/reports/train-heads", exist_ok=True)
    fstore.fs.pipe_file(f"{fstore.root}/reports/train-heads/{stamp}.md", markdown.encode())
    return {"runs": runs, "summary": summary, "report": markdown}


def completed_runs(
    heads: list[HeadConfig], store: str, storage_options: dict[str, Any] | None = None
) -> list[dict[str, Any]] | None:
    """Every (head, seed) run read back from the store when all of them (and their reports) are
    done; None as soon as one is not, so the caller starts the flow."""
    fstore = FeatureStore(store, storage_options or {})
    runs = []
    for h in heads:
        if fstore.open_step(h.features) is None:
            return None  # the flow reports the missing group
        for seed in h.seeds:
            spec = head_spec(h.head, h.task, h.array, h.options, h.train_config(seed, None), h.expressions, h.test_fold)
            step = head_step(fstore, h.features, spec)
            path, key = step.path, step.key
            metrics = stored_metrics(fstore, path)
            if metrics is None:
                return None
            wants_report = h.report and uses_archetypes(fstore.open_step(path).meta)
            if wants_report and not fstore.has_file(path, "report.md"):
                return None
            run = {"head": h.head, "task": h.task, "seed": seed, "state": "skipped", "path": path, "key": key}
            if wants_report:
                run["report"] = fstore.get_file(path, "report.md").decode()
            runs.append({**run, "metrics": metrics, "features": h.features})
    return runs


def train_or_skip(
    heads: list[HeadConfig],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """What ``affectflow train`` runs: no flow run at all when every head step is already done."""
    runs = completed_runs(heads, store, storage_options)
    if runs is None:
        return train_heads(heads, store=store, storage_options=storage_options, device=device)
    summary = summarise(runs)
    return {"runs": runs, "summary": summary, "report": summary_markdown(summary)}


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


@flow(name="evaluate-heads", log_prints=True)
def evaluate_heads(
    paths: list[str], split: str = "test", store: str = "./store", storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every metric of trained heads on a split, as a markdown artifact (and the returned table)."""
    fstore = FeatureStore(store, storage_options or {})
    results = [evaluate_head(fstore, path, split) for path in paths]
    markdown = evaluation_markdown(results)
    create_markdown_artifact(markdown=markdown, key="evaluate-heads", description=f"heads on the {split} split")
    return {"results": results, "report": markdown}


@flow(name="head-report", log_prints=True)
def head_reports(
    paths: list[str], store: str = "./store", storage_options: dict[str, Any] | None = None, force: bool = False
) -> list[dict[str, Any]]:
    """Write (or, with ``force``, rewrite) the interpretability reports of trained archetype heads."""
    return [head_report_task(store, storage_options or {}, path, force) for path in paths]
