"""FER2013 as it is released: one CSV of 48×48 grey faces, no image files.

``fer2013.csv`` (the ``file=`` option) has the columns ``emotion`` (0 Angry, 1 Disgust, 2 Fear,
3 Happy, 4 Sad, 5 Surprise, 6 Neutral), ``pixels`` (2,304 space-separated grey values, row by row)
and ``Usage`` (Training → train, PublicTest → val, PrivateTest → test: the benchmark's test is the
private one). Frames are decoded straight from their CSV line at extraction (``csv_offset``, see
stages/extraction/sources/packed.py); the manifest key covers the CSV's bytes. A malformed row (wrong pixel
count, a value that is not a number, an unknown emotion or usage) is a per-sample status that names
the line; the rest of the file is used.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from featurestore.status import SampleStatus
from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.labels import EXPRESSION_INDEX, MISSING
from stages.extraction.sources.packed import PIXELS_COLUMN, grey_pixels

FER2013_SIDE = 48
FER2013_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FER2013_TO_CANONICAL = {code: EXPRESSION_INDEX[name] for code, name in enumerate(FER2013_EMOTIONS)}
FER2013_USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
REQUIRED = ("emotion", PIXELS_COLUMN, "Usage")


@register_source("fer2013csv", version=1)
def parse_fer2013csv(root: Path, file: str = "fer2013.csv") -> Parsed:
    """FER2013's fer2013.csv: emotion (0–6), pixels (48×48 grey values), Usage (Training / PublicTest / PrivateTest)."""  # noqa: E501 (one line: the layout's one-line summary)
    path = root / file
    if not path.is_file():
        raise SourceError(f"fer2013csv: {path} not found")
    out = Parsed(paths=[], label_files=[], expression=[], split=[], status=[], detail=[], extra={})
    offsets: list[int] = []
    with open(path, "rb") as f:
        first = f.readline()
        header = next(csv.reader([first.decode("utf-8-sig")]), [])
        if missing := [c for c in REQUIRED if c not in header]:
            raise SourceError(f"{path}:1: FER2013's CSV needs column(s) {missing}, has {header}")
        at = {name: header.index(name) for name in REQUIRED}
        offset = len(first)
        for lineno, raw in enumerate(f, 2):
            line_offset, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            status, detail, expression, split = _row(raw, at, f"{file}:{lineno}")
            out.paths.append(file)
            offsets.append(line_offset)
            out.expression.append(expression)
            out.split.append(split)
            out.status.append(status)
            out.detail.append(detail)
    out.extra = {"csv_offset": np.array(offsets, dtype=np.int64)}
    return out


def _row(raw: bytes, at: dict[str, int], where: str) -> tuple[int, str, int, str]:
    """(status, detail, canonical expression, split) of one line."""
    fields = next(csv.reader([raw.decode("utf-8", errors="replace")]))
    if len(fields) <= max(at.values()):
        return SampleStatus.DECODE_ERROR, f"{where}: {len(fields)} fields, expected {len(at)}", MISSING, ""
    usage = FER2013_USAGE.get(fields[at["Usage"]].strip().lower())
    try:
        expression = FER2013_TO_CANONICAL[int(fields[at["emotion"]])]
    except (ValueError, KeyError):
        return SampleStatus.BAD_LABEL, f"{where}: emotion {fields[at['emotion']]!r} is not 0–6", MISSING, usage or ""
    if usage is None:
        detail = f"{where}: Usage {fields[at['Usage']]!r} is not Training, PublicTest or PrivateTest"
        return SampleStatus.BAD_LABEL, detail, expression, ""
    try:
        image = grey_pixels(fields[at[PIXELS_COLUMN]])
    except ValueError as err:
        return SampleStatus.DECODE_ERROR, f"{where}: {err}", expression, usage
    if image.shape != (FER2013_SIDE, FER2013_SIDE):
        detail = f"{where}: {image.size} pixel values, expected {FER2013_SIDE * FER2013_SIDE} (48×48)"
        return SampleStatus.DECODE_ERROR, detail, expression, usage
    return SampleStatus.OK, "", expression, usage
