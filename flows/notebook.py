"""The store from a notebook: a feature group as a table with its labels, and the head runs.

Each function takes the store as a URL (with ``storage_options``) or an open ``FeatureStore``, and
a group as a selector (``rafdb/open_clip``: the only complete match) or its full path::

    import affectflow
    df = affectflow.table("./store", "generated/efficientnet-lite0", arrays=["global"])
    ok = df[df.status == "ok"]                 # features global_0 … global_1279, expression, split, subject …
    runs = affectflow.results("./store", task="fer")   # one row per head variant, mean ± std over seeds
    timeline = affectflow.predict("./store", "generated/aura-fer", ["clip.mp4"], fps=2)  # a row per face and frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featurestore import FeatureStore
from featurestore.selectors import select_group
from featurestore.tables import aligned_arrays
from featurestore.tables import table as group_table
from flows.predict import flat_rows, predict_images
from flows.results import head_results, open_store, results_frame


def _group_path(
    store: str | FeatureStore, group: str, storage_options: dict[str, Any] | None, folder: str
) -> tuple[FeatureStore, str]:
    """(the open store, the path of the one complete group ``group`` names)."""
    fstore = open_store(store, storage_options)
    return fstore, select_group(fstore, group, folder).path


def arrays(
    store: str | FeatureStore,
    group: str,
    arrays: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    folder: str = "features",
) -> dict[str, np.ndarray]:
    """The group's arrays (``arrays``, or all) and its source's labels, split, subject, path, row-aligned;
    ``status`` as text (``ok``, ``no_face`` …)."""
    return aligned_arrays(*_group_path(store, group, storage_options, folder), arrays)


def table(
    store: str | FeatureStore,
    group: str,
    arrays: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    folder: str = "features",
):
    """The same rows as :func:`arrays` as a pandas DataFrame: a vector array is one column per
    component (``AU1`` …, ``valence``/``arousal``, ``global_0`` …), higher-dimensional ones a column of arrays."""
    return group_table(*_group_path(store, group, storage_options, folder), arrays)


def results(
    store: str | FeatureStore = "./store",
    dataset: str | None = None,
    task: str | None = None,
    head: str | None = None,
    storage_options: dict[str, Any] | None = None,
):
    """Every head run in the store as a pandas DataFrame (what ``affectflow results`` prints)."""
    return results_frame(head_results(store, storage_options, dataset=dataset, task=task, head=head))


def predict(
    store: str | FeatureStore,
    head: str,
    media: list[str],
    fps: float | None = 2.0,
    raw: bool = False,
    framing: str = "auto",
    storage_options: dict[str, Any] | None = None,
):
    """``affectflow predict`` as a pandas DataFrame: one row per face of each image and of each
    video frame sampled at ``fps``, with its time (s; NaN for a still), status, answer and one
    ``p_<class>`` column per probability (flows/predict.py)."""
    import pandas as pd

    fstore, path = _group_path(store, head, storage_options, "heads")
    return pd.DataFrame(flat_rows(predict_images(fstore, path, [Path(m) for m in media], 3, raw, framing, fps)))
