"""A step group as one table for notebooks and other tools: its arrays with the source's labels.

A feature group's rows are its source's rows, so :func:`aligned_arrays` puts the source's labels,
split, subject and path beside the features, with the group's own per-sample status (which starts
as the source's and adds what extraction found) as its label text (``ok``, ``no_face`` …).
:func:`table` makes that a pandas DataFrame: a vector array becomes one column per component,
named from the group's metadata (``au_names`` → ``AU1, AU2 …``; ``va_names`` → ``valence,
arousal``; ``blendshape_names`` → MediaPipe's 52 names) or ``<array>_<i>``; arrays of more
dimensions (spatial tokens, landmarks) stay one column of per-row arrays. :func:`export_npz` and
:func:`export_parquet` write the same rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.readers import GroupReader
from featurestore.status import SampleStatus
from featurestore.store import FeatureStore

_NOT_LABELS = ("status", "status_detail")  # the source's: the group's own status supersedes them


def aligned_arrays(store: FeatureStore, path: str, arrays: list[str] | None = None) -> dict[str, np.ndarray]:
    """The group's arrays (``arrays``, or all) and its source's, one row per sample, in row order."""
    reader = GroupReader.open(store, path)
    out: dict[str, np.ndarray] = {}
    if "source_path" in reader.meta:
        source = GroupReader.open(store, reader.meta["source_path"])
        out.update({name: source.numpy(name) for name in source.names() if name not in _NOT_LABELS})
    names = reader.names() if arrays is None else arrays
    missing = sorted(set(names) - set(reader.names()))
    if missing:
        raise KeyError(f"{path} has no array {missing}; it has {reader.names()}")
    out.update({name: reader.numpy(name) for name in names if name != "status"})
    if "status" in reader.names():
        codes = reader.numpy("status")
        labels = {int(c): SampleStatus(int(c)).label for c in np.unique(codes)}
        out["status"] = np.array([labels[int(c)] for c in codes], dtype=str)
    return out


def column_names(meta: dict[str, Any], name: str, width: int) -> list[str]:
    """``<name>_names`` (or the singular's: the face encoder's ``blendshape_names``) from the group's
    or its source's metadata when it fits, else ``name_i``."""
    names = meta.get(f"{name}_names", meta.get(f"{name.removesuffix('s')}_names"))
    return list(names) if names is not None and len(names) == width else [f"{name}_{i}" for i in range(width)]


def _names_meta(store: FeatureStore, path: str) -> dict[str, Any]:
    meta = GroupReader.open(store, path).meta
    source = meta.get("source_path")
    return {**(GroupReader.open(store, source).meta if source else {}), **meta}


def table(store: FeatureStore, path: str, arrays: list[str] | None = None):
    """The aligned rows as a pandas DataFrame (see the module's docstring for its columns)."""
    import pandas as pd

    meta = _names_meta(store, path)
    columns: dict[str, Any] = {}
    for name, values in aligned_arrays(store, path, arrays).items():
        if values.ndim == 1:
            columns[name] = values
        elif values.ndim == 2:
            columns.update(zip(column_names(meta, name, values.shape[1]), values.T, strict=True))
        else:
            columns[name] = list(values)
    return pd.DataFrame(columns)


def export_npz(store: FeatureStore, path: str, out: str | Path, arrays: list[str] | None = None) -> Path:
    """One ``.npz`` entry per aligned array; ``__meta__`` holds the group's metadata as JSON."""
    out = Path(out)
    values = aligned_arrays(store, path, arrays)
    meta = {"affectflow_path": path, **_names_meta(store, path)}
    np.savez_compressed(out, **values, __meta__=np.array(json.dumps(meta, default=str)))
    return out


def export_parquet(store: FeatureStore, path: str, out: str | Path, arrays: list[str] | None = None) -> Path:
    """One column per aligned array: a vector or tensor per row is a fixed-size list of its values
    (row-major; the schema's ``affectflow`` metadata holds each array's shape and the group's metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    columns, shapes = {}, {}
    for name, values in aligned_arrays(store, path, arrays).items():
        if values.ndim == 1:
            columns[name] = pa.array(values)
        else:
            shapes[name] = list(values.shape[1:])
            flat = values.reshape(len(values), -1)
            # Parquet has no float16: a feature cached as half precision is written as float32
            flat = flat.astype(np.float32) if flat.dtype == np.float16 else flat
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
    meta = {"affectflow_path": path, "shapes": shapes, "meta": _names_meta(store, path)}
    schema_meta = {b"affectflow": json.dumps(meta, default=str).encode()}
    pq.write_table(pa.table(columns).replace_schema_metadata(schema_meta), out)
    return out
