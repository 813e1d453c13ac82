"""Feature groups of given arrays over a synthetic source, written as an extraction writes them:
what tests and benches train heads on when the data is made in memory (token grids, planted AUs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_feature_group(
    store, dataset: str, arrays: dict[str, np.ndarray], labels: dict[str, np.ndarray], au_annotated=()
) -> str:
    """A synthetic source (``labels``: the Manifest's label arrays, subject and split included) and a
    complete feature group of ``arrays`` (features by name, float16) over it, as an extraction writes
    them; returns the group's path."""
    from featurestore import Step, StepOutput, StepSpec, step_key
    from stages.extraction.extract import write_source
    from stages.extraction.sources.base import Manifest

    n = len(next(iter(arrays.values())))
    manifest = Manifest(
        dataset=dataset,
        source="synthetic",
        version=1,
        options={"n": n},
        root=Path("."),
        key=step_key(StepSpec("source", 1, {dataset: n}), []),
        paths=[f"s{i}" for i in range(n)],
        status=np.zeros(n, np.int8),
        labels=labels,
        au_annotated=list(au_annotated),
    )
    source, _ = write_source(store, manifest)
    spec = StepSpec("extract", 1, {dataset: {k: list(v.shape[1:]) for k, v in arrays.items()}})
    step = Step("features", spec, (source.key,), "features", (dataset, f"{dataset}-encoder"))
    meta = {"dataset": dataset, "encoder": f"{dataset}-encoder", "source_path": source.path}
    out = {**{k: v.astype(np.float16) for k, v in arrays.items()}, "status": np.zeros(n, np.int8)}
    group, _ = store.run_step(step, lambda: StepOutput(out, meta))
    return group.path
