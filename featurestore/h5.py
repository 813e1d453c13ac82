"""Export a step group to HDF5 and import it back (for users of HDF5 tooling).

The HDF5 file holds one dataset per array and the group's ``affectflow`` metadata as a JSON
attribute. Import recreates the group at the same store path with the same key, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from featurestore.completion import META
from featurestore.keys import StepSpec
from featurestore.readers import GroupReader
from featurestore.steps import Step, StepOutput
from featurestore.store import FeatureStore

_STR = h5py.string_dtype("utf-8")


def export_h5(reader: GroupReader, out: str | Path) -> Path:
    out = Path(out)
    with h5py.File(out, "w") as f:
        f.attrs["affectflow_path"] = reader.path
        f.attrs[META] = json.dumps(reader.meta)
        for name in reader.names():
            values = reader.numpy(name)
            if values.dtype.kind in "UOT":
                f.create_dataset(name, data=values.astype(object), dtype=_STR)
            else:
                f.create_dataset(name, data=values, compression="gzip", chunks=True)
    return out


def import_h5(store: FeatureStore, source: str | Path) -> str:
    """Recreate the exported group in ``store``; returns its path."""
    with h5py.File(source, "r") as f:
        meta = json.loads(f.attrs[META])
        path = str(f.attrs["affectflow_path"])
        values = {
            name: np.array(ds.asstr()[...], dtype=str) if ds.dtype.kind == "O" else ds[...] for name, ds in f.items()
        }
    spec = StepSpec(**meta["spec"])
    extra = {
        k: v
        for k, v in meta.items()
        if k
        not in {"kind", "key", "spec", "inputs", "n_samples", "chunk_size", "status_codes", "complete", "completed_at"}
    }
    step = Step.at(path, meta["kind"], spec, tuple(meta["inputs"]))
    store.run_step(step, lambda: StepOutput(values, extra, chunk_size=meta["chunk_size"]))
    return path
