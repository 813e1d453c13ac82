"""Generic layouts: an image folder with class sub-folders, and a CSV manifest."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.labels import MISSING, expression_from_name

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
# Folder names of the splits in real exports (FER2013's train/validation/test, Kaggle's valid,
# dev sets), any case → the store's split names.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
ACCEPTED_SPLITS = "train/training, val/valid/validation/dev, test/testing (any case)"


def split_of_folder(name: str) -> str | None:
    return SPLIT_FOLDERS.get(name.lower())


def _class_of(folder: Path) -> int:
    try:
        return expression_from_name(folder.name)
    except ValueError as err:
        raise SourceError(f"{folder}: neither a split folder ({ACCEPTED_SPLITS}) nor a class folder: {err}") from None


@register_source("imagefolder", version=1)
def parse_imagefolder(root: Path) -> Parsed:
    """Image folder: <class>/<image> or <split>/<class>/<image>, class names mapped to canonical."""
    tops = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not tops:
        raise SourceError(f"image folder {root} has no class sub-folders")
    with_splits = any(split_of_folder(p.name) for p in tops)
    if with_splits and (others := [p.name for p in tops if not split_of_folder(p.name)]):
        raise SourceError(
            f"image folder {root} mixes split folders with {others}: with splits, every top folder is a split "
            f"({ACCEPTED_SPLITS}) holding class folders"
        )
    groups = (
        [(split_of_folder(p.name), c) for p in tops for c in sorted(p.iterdir()) if c.is_dir()]
        if with_splits
        else [("", p) for p in tops]
    )
    paths, expression, split = [], [], []
    for split_name, class_dir in groups:
        label = _class_of(class_dir)
        for image in sorted(class_dir.rglob("*")):
            if image.suffix.lower() in IMAGE_SUFFIXES and not image.is_dir():
                paths.append(image.relative_to(root).as_posix())
                expression.append(label)
                split.append(split_name)
    return Parsed(paths=paths, label_files=[], expression=expression, split=split)


def parse_float(value: str | None, where: str) -> float:
    """A CSV cell as a float (empty → NaN); anything else names the file and line."""
    if value is None or value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise SourceError(f"{where}: {value!r} is not a number") from None


def read_csv(path: Path, required: list[str], what: str) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """(columns, [(``file:line``, row) …]) of a headed CSV whose header has every ``required`` column."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if missing := [c for c in required if c not in columns]:
            raise SourceError(f"{path}:1: {what} needs column(s) {missing}, has {columns}")
        return columns, [(f"{path}:{lineno}", row) for lineno, row in enumerate(reader, 2)]


def au_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c.upper().startswith("AU") and c[2:].isdigit()]


def row_labels(row: dict[str, str], aus: list[str], where: str) -> tuple[int, tuple[float, float], list[int]]:
    """(expression, (valence, arousal), AU occurrences) of one CSV row, in canonical form."""
    name = (row.get("expression") or "").strip()
    try:
        expression = expression_from_name(name) if name else MISSING
    except ValueError as err:
        raise SourceError(f"{where}: {err}") from None
    va = (parse_float(row.get("valence"), where), parse_float(row.get("arousal"), where))
    au = [MISSING if not (v := (row[c] or "").strip()) else int(parse_float(v, where) > 0) for c in aus]
    return expression, va, au


@register_source("csv", version=1)
def parse_csv(root: Path, manifest: str = "manifest.csv") -> Parsed:
    """CSV manifest: column `path` (relative to the root) and optional expression, valence,
    arousal, subject, split, AU<n> columns (1/0, empty = missing)."""
    csv_path = root / manifest
    if not csv_path.is_file():
        raise SourceError(f"CSV layout: manifest {csv_path} not found")
    columns, rows = read_csv(csv_path, ["path"], "a CSV manifest")
    au_names = au_columns(columns)
    out = Parsed(paths=[], label_files=[manifest], au_names=au_names, au_source=str(csv_path))
    expression, va, au, subject, split = [], [], [], [], []
    for where, row in rows:
        out.paths.append(row["path"])
        labels = row_labels(row, au_names, where)
        expression.append(labels[0])
        va.append(labels[1])
        au.append(labels[2])
        subject.append(row.get("subject") or "")
        split.append(row.get("split") or "")
    out.expression, out.va, out.subject, out.split = expression, va, subject, split
    out.au = au if au_names else None
    return out
