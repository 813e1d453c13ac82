"""Read step groups as numpy, torch or dask arrays. Heads read through here, never through Zarr."""

from __future__ import annotations

from typing import Any

import numpy as np

from featurestore.completion import DONE, StepGroup
from featurestore.status import SampleStatus
from featurestore.store import FeatureStore, files_beside_arrays


class IncompleteGroupError(RuntimeError):
    pass


class GroupReader:
    def __init__(self, step: StepGroup, allow_incomplete: bool = False):
        if not step.is_complete and not allow_incomplete:
            raise IncompleteGroupError(
                f"{step.path} is not complete ({len(step.undone_chunks())} chunks missing); rerun the step to finish it"
            )
        self.step = step

    @classmethod
    def open(cls, store: FeatureStore, path: str, **kw: Any) -> GroupReader:
        step = store.open_step(path)
        if step is None:
            raise KeyError(f"no step group at {path!r} in {store.url}")
        return cls(step, **kw)

    @property
    def meta(self) -> dict[str, Any]:
        return self.step.meta

    @property
    def path(self) -> str:
        return self.step.path

    def names(self) -> list[str]:
        with files_beside_arrays():
            return sorted(n for n in self.step.group.array_keys() if n != DONE)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.step.group[name].shape)

    def numpy(self, name: str, rows: slice | np.ndarray | None = None) -> np.ndarray:
        array = self.step.group[name]
        values = np.asarray(array[:] if rows is None else array[rows])
        if values.dtype.kind == "T":  # Zarr's variable-length strings → plain fixed-width str
            return np.array(values.tolist(), dtype=str)
        return values

    def torch(self, name: str, dtype: Any = None):
        import torch

        t = torch.from_numpy(self.numpy(name))
        return t.to(dtype) if dtype is not None else t

    def dask(self, name: str):
        """Lazy ``dask.array`` over the Zarr array, one dask chunk per Zarr chunk."""
        import dask.array as da

        return da.from_zarr(self.step.group[name])

    def status(self) -> np.ndarray:
        return self.numpy("status")

    def ok_mask(self) -> np.ndarray:
        return self.status() == SampleStatus.OK

    def status_counts(self) -> dict[str, int]:
        codes, counts = np.unique(self.status(), return_counts=True)
        return {SampleStatus(int(c)).label: int(n) for c, n in zip(codes, counts)}
