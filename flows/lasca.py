"""LaScA's grid: a sweep of head configs, one per cell and fold, planned and trained like every head
(flows/heads.py), its tables as a markdown file.

:func:`lasca_grid` works without Prefect (the embedded default, the demo); flows/run.py runs it as
the ``lasca-grid`` flow (flows/train.py) when a server is configured, which records the run and
publishes the tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from featurestore import FeatureStore, GroupReader
from flows.heads import HeadConfig, plan_heads, train_planned
from heads.lasca_table import grid_tables, prompt_tables
from stages.training.lasca_steps import LASCA_HEAD, RANK_TASK, LascaGrid, explain_pair, grid_cells


def grid_configs(store: FeatureStore, grid: LascaGrid, **train: Any) -> tuple[list[HeadConfig], dict, dict]:
    """The head configs the grid sweeps (``train``: trainer knobs over LaScA's preset, e.g. epochs),
    with its pair counts and prompt statistics (stages.training.lasca_steps.grid_cells)."""
    cells, pairs, prompts = grid_cells(store, grid)
    configs = [
        HeadConfig(
            head=LASCA_HEAD,
            task=RANK_TASK,
            features=grid.dataset,
            cell=cell,
            folds=grid.folds,
            test_fold=test_fold,
            options=grid.options,
            **train,
        )
        for cell, test_fold in cells
    ]
    return configs, pairs, prompts


def run_lasca_grid(
    store: FeatureStore, grid: LascaGrid, workers: int | None = None, progress: bool = False, **train: Any
) -> dict[str, Any]:
    """Every learner of the grid (trained or skipped) as records, with the pair counts and the
    prompt statistics of each window set. New learners train in ``workers`` processes (None: one
    per CPU core when there are enough of them, stages/training/head_pool.py)."""
    configs, pairs, prompts = grid_configs(store, grid, **train)
    runs, workers_used = train_planned(store, plan_heads(configs, store), progress=progress, workers=workers)
    records = [
        {
            "modality": c.cell["modality"],
            "variant": c.cell["variant"],
            "text_model": c.cell.get("text_model"),
            "window": c.cell["window"],
            "affect": c.cell["affect"],
            "tau": c.cell["tau"],
            "fold": c.test_fold,
            "accuracy": run["metrics"]["test"]["accuracy"],
            "pairs": run["metrics"]["samples"],
            "state": run["state"],
            "path": run["path"],
        }
        for c, run in zip(configs, runs)
    ]
    return {"records": records, "prompts": prompts, "pairs": pairs, "folds": grid.folds, "workers": workers_used}


def explanations_markdown(store: FeatureStore, records: list[dict[str, Any]], n: int = 3) -> str:
    """Why the best fold-1 learner called its first ``n`` test pairs as it did: the cues that appeared
    and disappeared between the two windows."""
    best = max((r for r in records if r["fold"] == 1), key=lambda r: r["accuracy"])
    pairs = GroupReader.open(store, best["path"]).numpy("row")[:n]
    lines = [
        f"Learner `{best['path']}` ({best['modality']}, {best['variant']}, {best['window']}, {best['affect']}, "
        f"τ {best['tau']:g}; fold-1 accuracy {best['accuracy']:.3f}), its first test pairs:",
        "",
    ]
    for pair in pairs.tolist():
        why = explain_pair(store, best["path"], int(pair))
        appeared, disappeared = ("; ".join(why[k]) or "nothing" for k in ("appeared", "disappeared"))
        lines.append(
            f"* pair {pair} ({why['video']}, windows {why['windows'][0]} → {why['windows'][1]}): predicted "
            f"{why['affect']} {why['predicted']} (p = {why['probability_rises']:.2f}), labelled {why['label']}; "
            f"appeared: {appeared}; disappeared: {disappeared}"
        )
    return "\n".join(lines)


def grid_markdown(grid: LascaGrid, out: dict[str, Any], seconds: float, explanations: str) -> str:
    """The report: the accuracy and p-value tables, the pairs per set, the prompt statistics, and
    explanations of a few pairs."""
    trained = sum(r["state"] == "new" for r in out["records"])
    pairs = "\n".join(f"| {name} | {n} |" for name, n in out["pairs"].items())
    return "\n".join(
        [
            f"# LaScA grid · {grid.dataset}",
            "",
            f"{len(out['records'])} learners ({trained} trained now, the rest keyed and skipped) in {seconds:.1f} s"
            f" ({out['workers']} process{'es' if out['workers'] > 1 else ''}).",
            "",
            grid_tables(out["records"], grid.pretrained_encoder),
            "",
            "## Pairs (both orders) per window set, affect and τ",
            "",
            "| set | pairs |",
            "|---|---|",
            pairs,
            "",
            "## Prompts (training statistics of fold 1)",
            "",
            prompt_tables(out["prompts"]),
            "",
            "## Explanations",
            "",
            explanations,
        ]
    )


def lasca_grid(
    grid: LascaGrid,
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run (or read back) the grid, its learners in ``workers`` processes (None: one per core when
    enough are new); returns its records and report, written to ``out`` when given."""
    fstore = FeatureStore(store, storage_options or {})
    t0 = time.perf_counter()
    result = run_lasca_grid(fstore, grid, workers, progress)
    seconds = time.perf_counter() - t0
    report = grid_markdown(grid, result, seconds, explanations_markdown(fstore, result["records"]))
    if out is not None:
        Path(out).write_text(report + "\n")
    return {**result, "report": report, "seconds": seconds}
