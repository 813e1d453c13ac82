"""What the commands and the Python API run: a plan here, in this process, or, with a Prefect server
configured (``PREFECT_API_URL``), as its flow (flows/train.py), so the run is recorded with its
artifacts. Planned once: the flow is handed the plan made here. A retrain on the embedded default
pays no temporary server's start.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from featurestore import FeatureStore
from flows.credentials import store_options
from flows.heads import HeadConfig, evaluation, plan_done, plan_heads, results, train_one
from flows.lasca import lasca_grid
from stages.training.lasca_steps import LascaGrid


def train_heads_here(
    configs: list[HeadConfig],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    device: str | None = None,
    progress: bool = True,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """What ``affectflow train`` runs: read back when every planned step is done; the
    ``train-heads`` flow when a Prefect server is configured (given the public options and the
    Secret block's name); else train in this process."""
    t0 = time.perf_counter()
    fstore = FeatureStore(store, store_options(storage_options, storage_secret))
    plan = plan_heads(configs, fstore)
    if plan_done(plan, fstore):
        out = results([train_one(fstore, p, device, progress) for p in plan])
        return {**out, "flow_run": False, "seconds": time.perf_counter() - t0}
    if os.environ.get("PREFECT_API_URL"):
        from flows.train import train_heads  # Prefect: only when a server is configured

        out = train_heads(
            store=store, storage_options=storage_options, device=device, storage_secret=storage_secret, planned=plan
        )
        return {**out, "flow_run": True, "seconds": time.perf_counter() - t0}
    out = results([train_one(fstore, p, device, progress) for p in plan], fstore)
    return {**out, "flow_run": False, "seconds": time.perf_counter() - t0}


def run_lasca(
    grid: LascaGrid,
    store: str,
    storage_options: dict[str, Any],
    out: str | Path | None,
    workers: int | None = None,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """What ``affectflow lasca`` runs: the ``lasca-grid`` flow with a Prefect server configured (given
    the Secret block's name, read inside the run), else here."""
    if os.environ.get("PREFECT_API_URL"):
        from flows.train import lasca_grid_flow  # Prefect: only when a server is configured

        out = str(out) if out else None
        return lasca_grid_flow(asdict(grid), store, storage_options, out, workers, storage_secret=storage_secret)
    return lasca_grid(grid, store, store_options(storage_options, storage_secret), out, workers=workers)


def evaluate_heads_here(
    paths: list[str],
    split: str = "test",
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """What ``affectflow evaluate`` runs: a read, so here, starting no temporary Prefect server; the
    ``evaluate-heads`` flow (its table as an artifact) when a server is configured."""
    if os.environ.get("PREFECT_API_URL"):
        from flows.train import evaluate_heads  # Prefect: only when a server is configured

        return evaluate_heads(paths, split, store, storage_options, storage_secret)
    return evaluation(FeatureStore(store, store_options(storage_options, storage_secret)), paths, split)
