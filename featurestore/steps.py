"""The one step mechanism: every step kind (sources, features, windows, lexicon, heads, and the
kinds to come) is a :class:`Step` — kind, spec, input keys, where it lives — run by one routine.

* :meth:`FeatureStore.run_step` runs a whole step: lock → skip if complete → compute → create →
  write arrays and files → mark complete. The computation returns a :class:`StepOutput`; only
  this package turns it into Zarr.
* :meth:`FeatureStore.chunked_step` holds the lock of a chunked step (features) while its chunks
  run, wherever they run: it opens the group (skipped, resumed at its undone chunks, or new) and
  marks it complete once every chunk's flag is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurestore.keys import StepSpec, step_key

_NAME_WHAT = "store path part"


@dataclass(frozen=True)
class Step:
    """A step's identity: ``key`` is the hash of (spec, inputs) unless given (a source's key is its
    manifest key); it lives at ``<folder>/<parts…>/<key>``."""

    kind: str  # written in the group's metadata: source, features, windows, lexicon, head …
    spec: StepSpec
    inputs: tuple[str, ...]  # the keys of the groups (or digests of the data) it reads
    folder: str  # top-level folder: sources, features, windows, lexicon, heads …
    parts: tuple[str, ...] = ()  # names under it: dataset, encoder, window, head-task …
    key: str = ""

    def __post_init__(self) -> None:
        from featurestore.store import safe_name

        for part in (self.folder, *self.parts):
            safe_name(part, _NAME_WHAT)
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "parts", tuple(self.parts))
        if not self.key:
            object.__setattr__(self, "key", step_key(self.spec, self.inputs))

    @property
    def path(self) -> str:
        return "/".join((self.folder, *self.parts, self.key))

    @classmethod
    def at(cls, path: str, kind: str, spec: StepSpec, inputs: tuple[str, ...]) -> Step:
        """The step of an existing group path (``<folder>/<parts…>/<key>``), e.g. one being imported."""
        folder, *parts, key = path.split("/")
        return cls(kind, spec, inputs, folder, tuple(parts), key=key)


@dataclass
class StepOutput:
    """What a whole step computed: per-sample arrays (same first axis), metadata, files beside them."""

    arrays: Mapping[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    chunk_size: int | None = None  # samples per Zarr chunk; None: one chunk (derived tables are small)

    @property
    def n_samples(self) -> int:
        sizes = {len(v) for v in self.arrays.values()}
        if len(sizes) > 1:
            raise ValueError(f"step arrays disagree on the number of samples: {sorted(sizes)}")
        return sizes.pop() if sizes else 0
