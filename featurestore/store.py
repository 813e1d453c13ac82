"""The feature store: a Zarr v3 hierarchy at a local path or any fsspec URL.

Layout (every group describes itself in its ``affectflow`` attribute: step spec, key, inputs; each
path is a :class:`featurestore.steps.Step`'s)::

    sources/<dataset>/<manifest-key>/            samples table + canonical labels
    features/<dataset>/<encoder>/<step-key>/     encoder outputs, status, done mask
    lexicon/<name>/<encoder>/<step-key>/         prompt embeddings from a text tower
    windows/<dataset>/<encoder>/<window>/<key>/  frame features pooled over fixed windows
    heads/<dataset>/<head>-<task>/<key>/         test predictions (Zarr) + model.safetensors, JSON files
    .affectflow-locks/<step-key>/                step locks (not Zarr nodes)

This module is the only code that writes Zarr.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from featurestore.completion import DONE, META, StepGroup, completion_order
from featurestore.locks import step_lock
from featurestore.status import status_names
from featurestore.steps import Step, StepOutput

STORE_FORMAT = 1
# Chunks of a few MB: big enough for throughput on object stores, small enough to resume cheaply.
TARGET_CHUNK_BYTES = 4 << 20

# Variable-length strings are stable in practice but flagged as not yet in the v3 spec.
warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
warnings.filterwarnings("ignore", message=".*StringDType.*")
# Lock objects and report files live beside the Zarr nodes on purpose.
warnings.filterwarnings("ignore", message=".*is not recognized as a component of a Zarr hierarchy.*")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@contextmanager
def files_beside_arrays() -> Iterator[None]:
    """Head groups keep files beside their arrays (checkpoint, reports: see ``put_file``); Zarr
    warns about each one whenever it lists a group's members, which is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object at .* is not recognized as a component of a Zarr")
        yield


class StoreError(RuntimeError):
    pass


def safe_name(name: str, what: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"{what} {name!r} must match {_SAFE_NAME.pattern} (it becomes a store path)")
    return name


def choose_chunk_size(bytes_per_sample: int, n_samples: int) -> int:
    """Samples per chunk so that the largest array's chunk is about TARGET_CHUNK_BYTES."""
    size = 16
    while size * 2 * bytes_per_sample <= TARGET_CHUNK_BYTES and size < 4096:
        size *= 2
    return max(1, min(size, n_samples))


@dataclass(frozen=True)
class ArraySpec:
    """One per-sample array: ``shape`` excludes the leading sample axis."""

    shape: tuple[int, ...]
    dtype: Any
    fill_value: Any = 0


def array_spec(values: np.ndarray) -> ArraySpec:
    """How a computed per-sample array is stored: text as strings, floats missing as NaN, other
    numbers as −1 (the canonical "missing" of labels), flags as False."""
    if values.dtype.kind in "USO":
        return ArraySpec(values.shape[1:], str, "")
    if np.issubdtype(values.dtype, np.floating):
        return ArraySpec(values.shape[1:], values.dtype, np.nan)
    if values.dtype == bool:
        return ArraySpec(values.shape[1:], bool, False)
    return ArraySpec(values.shape[1:], values.dtype, -1)


def _open_root(zstore: zarr.abc.store.Store) -> zarr.Group:
    """The store's root group, created on first use. Two first runs on a new store race to create
    it; the one that loses opens the winner's (``mode="a"`` raises rather than opening it)."""
    try:
        return zarr.open_group(store=zstore, mode="a")
    except zarr.errors.ContainsGroupError:
        return zarr.open_group(store=zstore, mode="r+")


class FeatureStore:
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, create: bool = True):
        """Open the store at ``url``; ``create=False`` (what reading commands pass) refuses a URL
        where no store is, rather than making an empty one there (a mistyped --store)."""
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.is_local = "file" in self.fs.protocol or "local" in self.fs.protocol
        if not create and not self.fs.exists(f"{self.root.rstrip('/')}/zarr.json"):
            raise StoreError(
                f"no feature store at {self.url!r} (nothing there has been extracted): check --store; "
                "`affectflow extract` makes one"
            )
        try:
            if self.is_local:
                zstore = zarr.storage.LocalStore(self.root)
            else:
                zstore = zarr.storage.FsspecStore.from_url(self.url, storage_options=self.storage_options)
            self.root_group = _open_root(zstore)
            if self.root_group.attrs.get("affectflow_store_format") != STORE_FORMAT:
                self.root_group.attrs["affectflow_store_format"] = STORE_FORMAT
        except (OSError, PermissionError) as err:
            raise StoreError(
                f"cannot open the feature store at {self.url!r} for writing ({err}); "
                "pass --store with a writable directory or bucket URL"
            ) from err

    # -- files beside a group's arrays (checkpoints, reports): bytes, never pickles --------------
    def put_file(self, group_path: str, name: str, data: bytes) -> None:
        directory = f"{self.root}/{group_path}"
        self.fs.makedirs(directory, exist_ok=True)
        self.fs.pipe_file(f"{directory}/{safe_name(name, 'file name')}", data)

    def file_report(self, run: str, markdown: str) -> str:
        """A run's summary (extract-features, train-heads …) as ``reports/<run>/<UTC time>.md``, the
        one place run reports go; returns its path in the store."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.put_file(f"reports/{run}", f"{stamp}.md", markdown.encode())
        return f"reports/{run}/{stamp}.md"

    def get_file(self, group_path: str, name: str) -> bytes:
        return self.fs.cat_file(f"{self.root}/{group_path}/{safe_name(name, 'file name')}")

    def has_file(self, group_path: str, name: str) -> bool:
        return self.fs.exists(f"{self.root}/{group_path}/{safe_name(name, 'file name')}")

    # -- groups -----------------------------------------------------------------------------
    def open_step(self, path: str) -> StepGroup | None:
        try:
            group = self.root_group[path]
        except KeyError:
            return None
        if not isinstance(group, zarr.Group) or META not in group.attrs:
            return None
        return StepGroup(group)

    def create_step(
        self,
        step: Step,
        *,
        n_samples: int,
        arrays: dict[str, ArraySpec],
        chunk_size: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> StepGroup:
        """Create (overwriting any half-made group at its path) the group of ``step`` with empty arrays."""
        if chunk_size is None:
            largest = max(
                int(np.prod(a.shape, dtype=np.int64)) * np.dtype(a.dtype).itemsize if a.dtype is not str else 64
                for a in arrays.values()
            )
            chunk_size = choose_chunk_size(largest, n_samples)
        chunk_size = max(1, min(chunk_size, max(n_samples, 1)))
        group = self.root_group.require_group(step.path)
        for name, a in arrays.items():
            group.create_array(
                name,
                shape=(n_samples, *a.shape),
                chunks=(chunk_size, *a.shape),
                dtype=a.dtype,
                fill_value=a.fill_value,
                compressors=ZstdCodec(level=3) if a.dtype is not str else "auto",
                overwrite=True,
            )
        n_chunks = -(-n_samples // chunk_size)
        group.create_array(DONE, shape=(n_chunks,), chunks=(1,), dtype=bool, fill_value=False, overwrite=True)
        group.attrs[META] = {
            "kind": step.kind,
            "key": step.key,
            "spec": step.spec.to_json(),
            "inputs": list(step.inputs),
            "n_samples": n_samples,
            "chunk_size": chunk_size,
            "status_codes": status_names(),
            "complete": False,
            **(meta or {}),
        }
        return StepGroup(group)

    # -- the one step routine -------------------------------------------------------------------
    def is_complete(self, step: Step) -> bool:
        group = self.open_step(step.path)
        return group is not None and group.key == step.key and group.is_complete

    def run_step(self, step: Step, compute) -> tuple[StepGroup, str]:
        """Run a whole step once: under its lock, skip it when complete, else ``compute()`` → a
        :class:`StepOutput` written as one chunk (+ files) and marked complete. Returns
        (group, "skipped" | "new")."""
        with self.lock(step.key):
            existing = self.open_step(step.path)
            if existing is not None and existing.key == step.key and existing.is_complete:
                return existing, "skipped"
            output: StepOutput = compute()
            n = output.n_samples
            group = self.create_step(
                step,
                n_samples=n,
                arrays={name: array_spec(np.asarray(v)) for name, v in output.arrays.items()},
                chunk_size=output.chunk_size or max(n, 1),
                meta=output.meta,
            )
            for name, values in output.arrays.items():
                values = np.asarray(values)
                group.write(name, values.astype(str) if values.dtype.kind in "USO" else values)
            for name, payload in output.files.items():
                self.put_file(step.path, name, payload)
            for chunk in range(group.n_chunks):
                group.mark_chunk_done(chunk)
            group.mark_complete()
            return group, "new"

    @contextmanager
    def chunked_step(
        self,
        step: Step,
        n_samples: int,
        arrays: dict[str, ArraySpec],
        chunk_size: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Iterator[tuple[StepGroup, str, list[int]]]:
        """Hold the lock of a chunked step while its chunks run: yields (group, "skipped" | "resumed"
        | "new", chunks still to compute); on leaving, a group whose chunks are all done is marked
        complete. A chunk is written by one writer and flagged done after its data (``mark_chunk_done``)."""
        with self.lock(step.key):
            group = self.open_step(step.path)
            if group is not None and group.key == step.key and group.is_complete:
                yield group, "skipped", []
                return
            if group is not None and group.key == step.key and len(group.undone_chunks()) < group.n_chunks:
                state, todo = "resumed", group.undone_chunks()
            else:
                group = self.create_step(step, n_samples=n_samples, arrays=arrays, chunk_size=chunk_size, meta=meta)
                state, todo = "new", list(range(group.n_chunks))
            yield group, state, todo
            if not group.undone_chunks():
                group.mark_complete()

    @contextmanager
    def lock(self, key: str, timeout: float = 3600) -> Iterator[None]:
        with step_lock(self.fs, self.root, key, timeout=timeout):
            yield

    def latest(self, prefix: str, where: Callable[[StepGroup], bool] | None = None) -> StepGroup | None:
        """The complete step group under ``prefix`` (that ``where`` accepts) completed last, or None.
        Zarr lists members in its own order, neither creation nor completion order: a re-extraction
        with other options would otherwise be found, or not, by the order of its key's letters."""
        groups = [g for g in self.list_steps(prefix) if g.is_complete and (where is None or where(g))]
        return max(groups, key=completion_order, default=None)

    def list_steps(self, prefix: str = "") -> list[StepGroup]:
        """Every step group under ``prefix`` (``sources``, ``features`` or '' for all)."""
        out = []
        try:
            start = self.root_group[prefix] if prefix else self.root_group
        except KeyError:  # nothing written under it yet
            return []
        with files_beside_arrays():
            for _, node in start.members(max_depth=None):
                if isinstance(node, zarr.Group) and META in node.attrs:
                    out.append(StepGroup(node))
        return out
