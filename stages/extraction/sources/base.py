"""Sources parse a dataset's own layout into a :class:`Manifest`: one row per sample.

A source never opens images. It lists relative paths and canonical labels; the manifest key then
covers every file the source read (label files and images) by relative path, size and content.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from featurestore.fingerprint import FileEntry, StatCache, fingerprint_files, manifest_key
from featurestore.status import SampleStatus
from stages.extraction.sources.labels import EXPRESSIONS, MISSING, au_code, is_facs

# Bumped when the stored label layout changes, for every layout at once (2: AU columns in the
# canonical FACS order; 3: only the AUs a dataset codes, FACS 2002's full list, other codes kept
# as ``au_other``). Part of every manifest key, so old source groups are never reused; they stay
# readable (a group's ``au_names`` says what its columns are).
LABEL_FORMAT = 3


class SourceError(ValueError):
    """The dataset's layout or a label file is not what the source expects."""


class SourceWarning(UserWarning):
    """Something in a user's files that is kept but not understood (e.g. an AU code outside FACS)."""


@dataclass
class Parsed:
    """What a parser returns: sample paths (relative to root, as written) and canonical labels."""

    paths: list[str]
    label_files: list[str]
    expression: list[int] | None = None
    va: list[tuple[float, float]] | None = None
    au: list[list[int]] | None = None
    au_names: list[str] = field(default_factory=list)
    au_source: str = ""  # the file the AU columns come from (named in warnings)
    subject: list[str] | None = None
    split: list[str] | None = None
    crop: list[tuple[float, float, float, float] | None] | None = None
    status: list[int] | None = None  # SampleStatus a parser already knows (e.g. an unreadable video)
    detail: list[str] | None = None  # with ``status``: what was wrong, naming the file and line
    notes: dict[str, int] = field(default_factory=dict)  # dataset-level counts worth reporting
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Manifest:
    dataset: str
    source: str
    version: int
    options: dict[str, Any]
    root: Path
    key: str
    paths: list[str]
    status: np.ndarray  # int8, SampleStatus before any image is decoded
    labels: dict[str, np.ndarray]
    au_annotated: list[str]  # the FACS AUs the dataset codes: the columns of ``labels["au"]``
    notes: dict[str, int] = field(default_factory=dict)
    au_other: list[str] = field(default_factory=list)  # codes outside FACS: ``labels["au_other"]``
    details: list[str] | None = None  # per-sample status details a parser gave

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, dict[str, int]]:
        """Samples per split and per fold (where the dataset has them) and per status."""
        out = {}
        for column in ("split", "fold"):
            if column in self.labels:
                values, n = np.unique(self.labels[column].astype(str), return_counts=True)
                if not (values.size == 1 and values[0] in ("", "-1")):
                    out[column] = {str(v) or "(none)": int(c) for v, c in zip(values, n)}
        codes, n = np.unique(self.status, return_counts=True)
        out["status"] = {SampleStatus(int(c)).label: int(k) for c, k in zip(codes, n)}
        if self.notes:
            out["notes"] = dict(self.notes)
        return out


@dataclass(frozen=True)
class SourceInfo:
    name: str
    version: int
    parse: Callable[..., Parsed]
    doc: str


SOURCES: dict[str, SourceInfo] = {}


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line (a layout's one-line description, whole sentences)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def register_source(name: str, version: int) -> Callable:
    """Register ``parse(root, **options) -> Parsed`` under ``name``. Bump ``version`` when parsing changes."""

    def wrap(fn: Callable[..., Parsed]) -> Callable[..., Parsed]:
        SOURCES[name] = SourceInfo(name, version, fn, first_paragraph(fn.__doc__ or ""))
        return fn

    return wrap


def get_source(name: str) -> SourceInfo:
    if name not in SOURCES:
        raise SourceError(f"unknown dataset layout {name!r}; known layouts: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def inside_root(real_root: str, rel: str) -> bool:
    """True when ``real_root/rel`` stays inside ``real_root`` (already ``realpath``-ed) after
    resolving ``..`` and symlinks."""
    if not rel or PurePosixPath(rel).is_absolute() or os.path.isabs(rel) or "\\" in rel:
        return False
    real = os.path.realpath(os.path.join(real_root, rel))
    return os.path.commonpath([real_root, real]) == real_root


def _split_aus(parsed: Parsed, n: int) -> tuple[list[str], np.ndarray | None, list[str], np.ndarray | None]:
    """(FACS AU names in FACS order, their columns, other codes' names, their columns). A column
    outside FACS is kept as a dataset-specific label, with a warning naming the file and column."""
    if parsed.au is None:
        return [], None, [], None
    values = np.asarray(parsed.au, dtype=np.int8).reshape(n, len(parsed.au_names))
    codes = [au_code(name) for name in parsed.au_names]
    if bad := [name for name, code in zip(parsed.au_names, codes) if code is None]:
        raise SourceError(f"{parsed.au_source or 'AU labels'}: {bad} are not AU codes (AU<n>)")
    facs = sorted((code, j) for j, code in enumerate(codes) if is_facs(code))
    other = [(parsed.au_names[j], j) for j, code in enumerate(codes) if not is_facs(code)]
    for name, j in other:
        labelled = int((values[:, j] >= 0).sum())
        warnings.warn(
            f"{parsed.au_source or 'AU labels'}: column {name!r} is not a FACS action unit (Ekman, Friesen & "
            f"Hager 2002); its {labelled} labelled values are kept as the dataset-specific label 'au_other'",
            SourceWarning,
            stacklevel=3,
        )
    return (
        [f"AU{code}" for code, _ in facs],
        values[:, [j for _, j in facs]],
        [name for name, _ in other],
        values[:, [j for _, j in other]] if other else None,
    )


def _labels(parsed: Parsed, n: int) -> dict[str, np.ndarray]:
    def strings(values: list[str] | None) -> np.ndarray:
        return np.array(values if values is not None else [""] * n, dtype=object).astype(str)

    expression = np.full(n, MISSING, dtype=np.int8)
    if parsed.expression is not None:
        expression[:] = parsed.expression
    va = np.full((n, 2), np.nan, dtype=np.float32)
    if parsed.va is not None:
        va[:] = parsed.va
    crop = np.full((n, 4), np.nan, dtype=np.float32)
    if parsed.crop is not None:
        for i, box in enumerate(parsed.crop):
            if box is not None:
                crop[i] = box
    labels = {
        "expression": expression,
        "va": va,
        "subject": strings(parsed.subject),
        "split": strings(parsed.split),
        "crop": crop,
    }
    labels.update(parsed.extra)
    return labels


def build_manifest(
    source: str, root: str | Path, dataset: str | None = None, stat_cache: StatCache | None = None, **options: Any
) -> Manifest:
    """Parse ``root`` with ``source`` and fingerprint everything it reads."""
    info = get_source(source)
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"dataset root {str(root)!r} for layout {source!r} is not a directory")
    parsed = info.parse(root, **options)
    n = len(parsed.paths)
    if n == 0:
        raise SourceError(f"layout {source!r} found no samples under {str(root)!r}")
    status = np.zeros(n, dtype=np.int8) if parsed.status is None else np.asarray(parsed.status, dtype=np.int8)
    real_root = os.path.realpath(root)
    safe = [inside_root(real_root, p) for p in parsed.paths]
    status[~np.asarray(safe)] = SampleStatus.PATH_ESCAPE
    # unique, in order: every frame row of a video names the same file
    readable = list(dict.fromkeys(p for p, ok in zip(parsed.paths, safe) if ok))
    entries = fingerprint_files(root, readable + parsed.label_files, stat_cache)
    by_path = {e.relpath: e for e in entries}
    for i, p in enumerate(parsed.paths):
        if safe[i] and by_path[p].digest is None:
            status[i] = SampleStatus.MISSING_FILE
    # Escaped paths enter the key as strings only: they are never opened.
    escaped = [FileEntry(p, None, "path_escape") for p, ok in zip(parsed.paths, safe) if not ok]
    key = manifest_key(source, f"{info.version}/labels-{LABEL_FORMAT}", options, entries + escaped)
    labels = _labels(parsed, n)
    au_names, au, other_names, other = _split_aus(parsed, n)
    if au is not None and au_names:
        labels["au"] = au
    if other is not None:
        labels["au_other"] = other
    notes = dict(parsed.notes) | {
        f"not a FACS AU: {name}": int((other[:, j] >= 0).sum()) for j, name in enumerate(other_names)
    }
    if labels["expression"].max(initial=MISSING) >= len(EXPRESSIONS):
        raise SourceError(f"{source}: expression index outside the canonical {len(EXPRESSIONS)} classes")
    return Manifest(
        dataset=dataset or source,
        source=source,
        version=info.version,
        options=options,
        root=root,
        key=key,
        paths=list(parsed.paths),
        status=status,
        labels=labels,
        au_annotated=au_names,
        notes=notes,
        au_other=other_names,
        details=list(parsed.detail) if parsed.detail is not None else None,
    )
