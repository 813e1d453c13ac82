"""Every head run in a store as one table: ablations and sweeps compared in one view.

Rows are variants of a head (its spec without the seed, and without the test fold under k-fold),
their seeds aggregated to mean ± std exactly as ``affectflow train`` prints them, so a row here
shows the same headline numbers that training showed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from featurestore import FeatureStore
from flows.heads import summarise
from heads.trainer import TrainConfig
from stages.training.head_steps import stored_runs


def open_store(store: str | FeatureStore, storage_options: dict[str, Any] | None = None) -> FeatureStore:
    """A store given as a URL (with ``storage_options``) or already open."""
    return store if isinstance(store, FeatureStore) else FeatureStore(store, storage_options or {})


def head_results(
    store: str | FeatureStore = "./store",
    storage_options: dict[str, Any] | None = None,
    dataset: str | None = None,
    task: str | None = None,
    head: str | None = None,
) -> list[dict[str, Any]]:
    """The summary rows (``flows.heads.summarise``) of every complete head step, oldest first."""
    rows = summarise(stored_runs(open_store(store, storage_options), dataset, task, head))
    return sorted(rows, key=lambda r: (r["completed_at"] or "", r["head"], r["task"]))


def short_options(row: dict[str, Any]) -> str:
    """The head's options, the training knobs that differ from the fast preset's, and k-fold's fold
    count, compact, for a terminal table."""
    fast = asdict(TrainConfig.preset("fast"))
    knobs = {k: v for k, v in row["train"].items() if fast.get(k) != v}
    parts = [f"{k}={v}" for k, v in sorted(row["options"].items())] + [f"{k}={v}" for k, v in sorted(knobs.items())]
    return ", ".join(parts + ([f"k-fold {len(row['folds'])}"] if row["folds"] else []))


def results_frame(rows: list[dict[str, Any]]):
    """One pandas row per variant: spec summary, seeds, headline mean ± std, then every test metric's
    ``<metric>`` (mean) and ``<metric>_std``."""
    import pandas as pd

    records = []
    for r in rows:
        mean, std = r["test"][r["headline"]]
        record = {
            "dataset": r["dataset"],
            "head": r["head"],
            "task": r["task"],
            "features": r["features"],
            "array": r["array"],
            "options": json.dumps(r["options"], sort_keys=True),
            "train": json.dumps(r["train"], sort_keys=True),
            "seeds": r["seeds"],
            "folds": r["folds"],
            "runs": len(r["paths"]),
            "headline": r["headline"],
            "headline_mean": mean,
            "headline_std": std,
        }
        for name, (m, s) in r["test"].items():
            record[name], record[f"{name}_std"] = m, s
        record.update(train_seconds=r["train_seconds"], completed_at=r["completed_at"], protocol=r["protocol"])
        records.append(record)
    return pd.DataFrame.from_records(records)
