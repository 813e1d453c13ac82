"""AffectNet (manually annotated part)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.labels import AFFECTNET_TO_CANONICAL

HEADER = [
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
]
SPLITS = {"training.csv": "train", "validation.csv": "val"}
NO_VA = -2.0
N_LANDMARKS = 68


def _va(value: float) -> float:
    return float("nan") if value == NO_VA else value


@register_source("affectnet", version=1)
def parse_affectnet(root: Path, images_dir: str = "Manually_Annotated_Images") -> Parsed:
    """AffectNet manual: training.csv / validation.csv, crop by the face box, VA in [-1, 1] (-2 none)."""
    files = [name for name in SPLITS if (root / name).is_file()]
    if not files:
        raise SourceError(f"AffectNet layout: neither training.csv nor validation.csv under {root}")
    paths, expression, va, split, crop, landmarks, raw = [], [], [], [], [], [], []
    for name in files:
        with open(root / name, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != HEADER:
                raise SourceError(f"{root / name}:1: header {header} != expected {HEADER}")
            for lineno, row in enumerate(reader, 2):
                try:
                    x, y, w, h = (float(v) for v in row[1:5])
                    points = [float(v) for v in row[5].split(";")] if row[5] else []
                    code = int(row[6])
                    valence, arousal = float(row[7]), float(row[8])
                    if len(row) != len(HEADER) or code not in AFFECTNET_TO_CANONICAL:
                        raise ValueError(f"expression code {code} outside 0..10")
                    if points and len(points) != 2 * N_LANDMARKS:
                        raise ValueError(f"{len(points)} landmark values, expected {2 * N_LANDMARKS}")
                    for v in (valence, arousal):
                        if v != NO_VA and not -1.0 <= v <= 1.0:
                            raise ValueError(f"valence/arousal {v} outside [-1, 1] and not -2")
                except (ValueError, IndexError) as err:
                    raise SourceError(f"{root / name}:{lineno}: {err}") from None
                paths.append(f"{images_dir}/{row[0]}")
                crop.append((x, y, w, h) if w > 0 and h > 0 else None)
                expression.append(AFFECTNET_TO_CANONICAL[code])
                raw.append(code)
                va.append((_va(valence), _va(arousal)))
                split.append(SPLITS[name])
                landmarks.append(points or [np.nan] * (2 * N_LANDMARKS))
    return Parsed(
        paths=paths,
        label_files=files,
        expression=expression,
        va=va,
        split=split,
        crop=crop,
        extra={
            "landmarks": np.asarray(landmarks, dtype=np.float32).reshape(-1, N_LANDMARKS, 2),
            "expression_raw": np.asarray(raw, dtype=np.int8),
        },
    )
