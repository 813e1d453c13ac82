"""Audits of trained heads, run here (no Prefect): what the ``audit-heads`` flow and the demo run."""

from __future__ import annotations

from typing import Any

from featurestore import FeatureStore
from stages.training.audits import run_audit


def audit_heads_here(
    audit: str,
    paths: list[str],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    seeds: int = 0,
    structure: str | None = None,
    threshold: float = 0.5,
    measure: str = "f1",
) -> list[dict[str, Any]]:
    """Audit each head at ``paths`` (stages/training/audits/): a keyed audit step with its report;
    with ``seeds`` > 1 against the head's controls on as many seeds."""
    fstore = FeatureStore(store, storage_options or {})
    out = []
    for path in paths:
        group, state, result = run_audit(fstore, audit, path, seeds, structure, threshold, measure)
        text = fstore.get_file(group.path, "report.md").decode()
        out.append({"path": group.path, "state": state, "result": result, "markdown": text})
    return out
