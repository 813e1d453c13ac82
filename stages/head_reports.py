"""The report step of an archetype head: reads its checkpoint, data and thumbnails, writes the files
that ``heads/report.py`` builds beside the checkpoint."""

from __future__ import annotations

import json
from typing import Any

from featurestore import FeatureStore
from heads.report import analyse, report_files, sheet_rows
from heads.tasks import get_task
from stages.head_steps import head_data, load_head
from stages.thumbnails import thumbnails, to_image


def write_report(store: FeatureStore, head_path: str, n_nearest: int = 8, thumb_size: int = 64) -> dict[str, Any]:
    """Build every report file of an archetype head beside its checkpoint; returns the summary."""
    model, config = load_head(store, head_path)  # first: it registers a plugin head's task too
    params, source, data = head_data(store, head_path)
    if not model.uses_archetypes:
        raise ValueError(f"{head_path} is a {config['head']} head: the report needs an archetype head (aura)")
    task = get_task(params["task"])
    branches = analyse(model, data, task, n_nearest)
    rows = sheet_rows(branches)  # decoded once: AU branches share most of their nearest samples
    pictures = {row: to_image(pixels, thumb_size) for row, pixels in thumbnails(source, rows, thumb_size).items()}
    files, summary = report_files(
        head_path,
        model,
        data,
        task,
        source.numpy("path"),
        pictures,
        n_nearest,
        thumb_size,
        seed=params["train"]["seed"],
        branches=branches,
    )
    for name, payload in files.items():
        store.put_file(head_path, name, payload)
    return summary


def read_archetypes(store: FeatureStore, head_path: str) -> dict[str, Any]:
    """The report's archetypes.json, written first if the head has no report yet."""
    if not store.has_file(head_path, "archetypes.json"):
        write_report(store, head_path)
    return json.loads(store.get_file(head_path, "archetypes.json"))
