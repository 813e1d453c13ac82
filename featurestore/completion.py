"""Explicit completion of a step group: a per-chunk done mask plus a final ``complete`` mark.

Zarr v3 does not write chunks equal to the fill value, so the existence of a chunk never means it
was written. Instead each writer sets ``_done[i]`` only after all of chunk ``i``'s arrays are
written; ``_done`` has one element per Zarr chunk, so writers of different chunks never touch the
same object. ``complete`` is written once, by the coordinator, after every chunk is done.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import zarr

DONE = "_done"
META = "affectflow"


class StepGroup:
    """A Zarr group produced by one step, chunked along samples."""

    def __init__(self, group: zarr.Group):
        self.group = group

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.group.attrs[META])

    @property
    def path(self) -> str:
        return self.group.path

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def n_samples(self) -> int:
        return int(self.meta["n_samples"])

    @property
    def chunk_size(self) -> int:
        return int(self.meta["chunk_size"])

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk_size)

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.n_samples)

    def write(self, name: str, values: Any, start: int = 0) -> None:
        """Rows ``start …`` of array ``name`` (a writer keeps to its own chunks' rows)."""
        self.group[name][start : start + len(values)] = values

    def done_mask(self) -> np.ndarray:
        return np.asarray(self.group[DONE][:], dtype=bool)

    def undone_chunks(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.done_mask())]

    def mark_chunk_done(self, index: int) -> None:
        self.group[DONE][index] = True

    @property
    def is_complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def mark_complete(self) -> None:
        undone = self.undone_chunks()
        if undone:
            raise RuntimeError(f"cannot mark {self.path} complete: chunks {undone[:10]} not done")
        meta = self.meta
        meta["complete"] = True
        meta["completed_at"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")  # not keyed
        self.group.attrs[META] = meta


def completion_order(group) -> tuple[datetime, str]:
    """A complete group's place in completion order: when it completed (groups stored with seconds
    before microseconds were recorded still parse), then its path for a tie."""
    return datetime.fromisoformat(group.meta["completed_at"]), group.path
