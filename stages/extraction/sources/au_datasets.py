"""AU and in-the-wild video datasets in their official layouts: Aff-Wild2 (ABAW), DISFA, BP4D, EmotioNet.

Each parser turns the dataset's own label files into frame rows with canonical labels (AUs in the
FACS order of ``labels.FACS_AUS``, −1 where not coded) and the protocol columns its benchmarks use:
``split`` where the dataset has official splits, ``fold`` (1..3) for the standard subject-exclusive
folds. A malformed label line raises :class:`SourceError` naming file and line.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from stages.extraction.media import is_video
from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.generic import read_csv
from stages.extraction.sources.labels import EXPRESSION_INDEX, MISSING

# -- Aff-Wild2 / ABAW ------------------------------------------------------------------------
ABAW_TASKS = {
    "va": ("VA_Estimation_Challenge", ["valence", "arousal"]),
    "expr": (
        "EXPR_Recognition_Challenge",
        ["Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other"],
    ),
    "au": (
        "AU_Detection_Challenge",
        ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"],
    ),
}
ABAW_SPLITS = {"Train_Set": "train", "Validation_Set": "val"}
# ABAW's expression order → canonical; "Other" has no canonical class.
ABAW_EXPR_TO_CANONICAL = {
    0: EXPRESSION_INDEX["neutral"],
    1: EXPRESSION_INDEX["anger"],
    2: EXPRESSION_INDEX["disgust"],
    3: EXPRESSION_INDEX["fear"],
    4: EXPRESSION_INDEX["happiness"],
    5: EXPRESSION_INDEX["sadness"],
    6: EXPRESSION_INDEX["surprise"],
    7: MISSING,
}


def _abaw_file(path: Path, header: list[str]) -> list[list[float]]:
    lines = path.read_text().splitlines()
    if not lines or [h.strip() for h in lines[0].split(",")] != header:
        raise SourceError(f"{path}:1: expected header {','.join(header)}, got {lines[0] if lines else '(empty)'!r}")
    rows = []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise SourceError(f"{path}:{lineno}: {line!r} is not {len(header)} comma-separated numbers") from None
        if len(values) != (1 if header[0] == "Neutral" else len(header)):
            raise SourceError(
                f"{path}:{lineno}: {len(values)} values, expected {1 if header[0] == 'Neutral' else len(header)}"
            )
        rows.append(values)
    return rows


@register_source("affwild2", version=1)
def parse_affwild2(
    root: Path,
    tasks: str = "va,expr,au",
    annotations: str = "annotations",
    frames: str = "cropped_aligned",
    fps: float | None = None,
) -> Parsed:
    """Aff-Wild2 (ABAW): <annotations>/<Task>_Challenge/{Train,Validation}_Set/<video>.txt ↔ <frames>/<video>/<i:05d>.jpg."""  # noqa: E501 (one line: a table row or the layout's one-line summary)
    wanted = [t.strip() for t in tasks.split(",")]
    unknown = [t for t in wanted if t not in ABAW_TASKS]
    if unknown:
        raise SourceError(f"affwild2: unknown task(s) {unknown}; choose from {sorted(ABAW_TASKS)}")
    rows: dict[tuple[str, int], dict] = {}
    label_files = []
    for challenge in wanted:
        folder, header = ABAW_TASKS[challenge]
        for split_dir, split in ABAW_SPLITS.items():
            directory = root / annotations / folder / split_dir
            for path in sorted(directory.glob("*.txt")) if directory.is_dir() else []:
                label_files.append(path.relative_to(root).as_posix())
                video = path.stem
                for i, values in enumerate(_abaw_file(path, header), 1):
                    row = rows.setdefault((video, i), {"split": {}})
                    row["split"][challenge] = split
                    if challenge == "va":
                        row["va"] = tuple(math.nan if v == -5 else v for v in values)
                    elif challenge == "expr":
                        code = int(values[0])
                        if code != -1 and code not in ABAW_EXPR_TO_CANONICAL:
                            raise SourceError(f"{path}:{i + 1}: expression {code} outside -1..7")
                        row["expression"] = MISSING if code == -1 else ABAW_EXPR_TO_CANONICAL[code]
                    else:
                        row["au"] = [MISSING if v == -1 else int(v) for v in values]
    if not label_files:
        raise SourceError(
            f"affwild2: no annotation files under {root / annotations}/<Task>_Challenge/{{{','.join(ABAW_SPLITS)}}}/"
        )
    au_names = ABAW_TASKS["au"][1] if "au" in wanted else []
    out = Parsed(
        paths=[],
        label_files=label_files,
        expression=[],
        va=[],
        au=[] if au_names else None,
        au_names=au_names,
        subject=[],
        split=[],
    )
    video_col, frame_col, task_splits = [], [], {t: [] for t in wanted}
    for (video, i), row in sorted(rows.items()):
        # two-person videos: <video>_left / _right; their frames may sit under the base video's folder
        base = video.removesuffix("_left").removesuffix("_right")
        folder = video if (root / frames / video).is_dir() or base == video else base
        out.paths.append(f"{frames}/{folder}/{i:05d}.jpg")
        out.expression.append(row.get("expression", MISSING))
        out.va.append(row.get("va", (math.nan, math.nan)))
        if au_names:
            out.au.append(row.get("au", [MISSING] * len(au_names)))
        out.subject.append(video)
        splits = row["split"]
        out.split.append(next(splits[t] for t in wanted if t in splits))
        for t in wanted:
            task_splits[t].append(splits.get(t, ""))
        video_col.append(video)
        frame_col.append(i)
    out.extra = {
        "video": np.array(video_col, dtype=str),
        "frame": np.array(frame_col, dtype=np.int32),
        **{f"split_{t}": np.array(v, dtype=str) for t, v in task_splits.items()},
    }
    if fps:  # label line i is frame i at the video's rate: timestamps make windows possible
        out.extra["timestamp"] = (np.array(frame_col, np.float64) - 1) / fps
    return out


# -- DISFA -------------------------------------------------------------------------------------
DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
DISFA_AUS_8 = (1, 2, 4, 6, 9, 12, 25, 26)
DISFA_FOLDS = {
    1: ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    2: ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    3: ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
}
OCCURRENCE_THRESHOLD = 2  # DISFA intensities 0..5; the AU-detection protocol counts ≥ 2 as present


def _fold_of(folds: dict[int, tuple[str, ...]], subject: str) -> int:
    return next((f for f, members in folds.items() if subject in members), -1)


def _frame_images(subject: str, frames: list[int], pattern: str) -> list[str]:
    """Image paths of 1-based ``frames``: the pattern may use {subject}, {frame} and {frame0} (0-based)."""
    return [pattern.format(subject=subject, frame=f, frame0=f - 1) for f in frames]


@register_source("disfa", version=1)
def parse_disfa(root: Path, aus: int = 12, frames: str = "Videos_LeftCamera/LeftVideo{subject}_comp.avi") -> Parsed:
    """DISFA: ActionUnit_Labels/SN0xx/SN0xx_au<N>.txt (frame,intensity), occurrence at ≥ 2, 3 subject folds."""
    if aus not in (8, 12):
        raise SourceError(f"disfa: aus must be 8 or 12, got {aus}")
    chosen = DISFA_AUS_8 if aus == 8 else DISFA_AUS
    label_root = root / "ActionUnit_Labels"
    subjects = sorted(p.name for p in label_root.iterdir() if p.is_dir()) if label_root.is_dir() else []
    if not subjects:
        raise SourceError(f"disfa: no subject folders under {label_root}")
    out = Parsed(paths=[], label_files=[], au=[], au_names=[f"AU{a}" for a in chosen], subject=[], split=[])
    intensity_rows, frame_col, fold_col, video_col = [], [], [], []
    for subject in subjects:
        per_au: dict[int, dict[int, int]] = {}
        for au in chosen:
            path = label_root / subject / f"{subject}_au{au}.txt"
            if not path.is_file():
                raise SourceError(f"disfa: {path} not found (every subject needs all {len(chosen)} AU files)")
            out.label_files.append(path.relative_to(root).as_posix())
            values = {}
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.split(",")
                try:
                    frame, level = int(parts[0]), int(parts[1])
                    if len(parts) != 2 or frame < 1 or not 0 <= level <= 5:
                        raise ValueError
                except (ValueError, IndexError):
                    raise SourceError(
                        f"{path}:{lineno}: expected '<frame ≥ 1>,<intensity 0..5>', got {line!r}"
                    ) from None
                values[frame] = level
            per_au[au] = values
        frame_ids = sorted(set().union(*(v.keys() for v in per_au.values())))
        video = frames.format(subject=subject, frame=0, frame0=0) if is_video(frames) else subject
        paths = [video] * len(frame_ids) if is_video(frames) else _frame_images(subject, frame_ids, frames)
        out.paths += paths
        for f in frame_ids:
            levels = [per_au[a].get(f, -1) for a in chosen]
            intensity_rows.append(levels)
            out.au.append([MISSING if v < 0 else int(v >= OCCURRENCE_THRESHOLD) for v in levels])
            out.subject.append(subject)
            out.split.append("")
            frame_col.append(f - 1)  # 0-based index in the video stream
            fold_col.append(_fold_of(DISFA_FOLDS, subject))
            video_col.append(subject)
    out.extra = {
        "au_intensity": np.array(intensity_rows, dtype=np.int8),
        "frame": np.array(frame_col, np.int32),
        "fold": np.array(fold_col, np.int8),
        "video": np.array(video_col, dtype=str),
    }
    if is_video(frames):
        out.extra["timestamp"] = _video_timestamps(root, out.paths, frame_col)
    return out


def _video_timestamps(root: Path, paths: list[str], frames: list[int]) -> np.ndarray:
    """Each row's timestamp from its video's probe; NaN (and later missing_file) without the video."""
    from stages.extraction.media import MediaError
    from stages.extraction.sources.videos import probe_cached

    out = np.full(len(paths), np.nan)
    cache: dict[str, np.ndarray | None] = {}
    for i, (rel, frame) in enumerate(zip(paths, frames)):
        if rel not in cache:
            try:
                cache[rel] = probe_cached(root, rel).timestamps if (root / rel).is_file() else None
            except MediaError:
                cache[rel] = None
        stamps = cache[rel]
        if stamps is not None and 0 <= frame < stamps.size:
            out[i] = stamps[frame]
    return out


# -- BP4D ----------------------------------------------------------------------------------------
BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
# The subject-exclusive 3 folds most AU papers use (as distributed with JAA-Net, Shao et al. 2018).
BP4D_FOLDS = {
    1: ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    2: ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    3: ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
}
BP4D_UNKNOWN = 9


@register_source("bp4d", version=1)
def parse_bp4d(root: Path, images: str = "{subject}/{task}/{frame:04d}.jpg", fps: float | None = None) -> Parsed:
    """BP4D: AUCoding/AU_OCC/<Subject>_<Task>.csv (column 0 = frame; 9 = unknown), images <Subject>/<Task>/<frame>.jpg, 3 folds."""  # noqa: E501 (one line: a table row or the layout's one-line summary)
    occ = root / "AUCoding" / "AU_OCC"
    files = sorted(occ.glob("*_*.csv")) if occ.is_dir() else []
    if not files:
        raise SourceError(f"bp4d: no <Subject>_<Task>.csv files under {occ}")
    out = Parsed(paths=[], label_files=[], au=[], au_names=[f"AU{a}" for a in BP4D_AUS], subject=[], split=[])
    frame_col, fold_col, video_col = [], [], []
    for path in files:
        subject, task = path.stem.split("_", 1)
        out.label_files.append(path.relative_to(root).as_posix())
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header or header[0] != "0":
                raise SourceError(f"{path}:1: the first column must be '0' (the frame number), got {header[:1]}")
            try:
                columns = [header.index(str(a)) for a in BP4D_AUS]
            except ValueError:
                raise SourceError(f"{path}:1: needs AU columns {list(BP4D_AUS)}, has {header[1:]}") from None
            for lineno, row in enumerate(reader, 2):
                if not row:
                    continue
                try:
                    frame = int(row[0])
                    values = [int(row[c]) for c in columns]
                    if any(v not in (0, 1, BP4D_UNKNOWN) for v in values):
                        raise ValueError
                except (ValueError, IndexError):
                    raise SourceError(
                        f"{path}:{lineno}: expected a frame number and 0/1/9 per AU, got {row!r}"
                    ) from None
                out.paths.append(images.format(subject=subject, task=task, frame=frame))
                out.au.append([MISSING if v == BP4D_UNKNOWN else v for v in values])
                out.subject.append(subject)
                out.split.append("")
                frame_col.append(frame)
                fold_col.append(_fold_of(BP4D_FOLDS, subject))
                video_col.append(f"{subject}_{task}")
    out.extra = {
        "frame": np.array(frame_col, np.int32),
        "fold": np.array(fold_col, np.int8),
        "video": np.array(video_col, dtype=str),
    }
    if fps:  # BP4D is recorded at 25 fps
        out.extra["timestamp"] = np.array(frame_col, np.float64) / fps
    return out


# -- EmotioNet ----------------------------------------------------------------------------------
EMOTIONET_NOT_CODED = 999


@register_source("emotionet", version=1)
def parse_emotionet(root: Path, manifest: str = "emotionet.csv") -> Parsed:
    """EmotioNet-style list: `path` + AU<n> occurrence columns (1/0; 999 = not coded), optional split."""
    path = root / manifest
    if not path.is_file():
        raise SourceError(f"emotionet: {path} not found")
    columns, rows = read_csv(path, ["path"], "an EmotioNet list")
    aus = [c for c in columns if c.strip().upper().startswith("AU")]
    if not aus:
        raise SourceError(f"{path}:1: needs AU<n> columns, has {columns}")
    names = [c.strip().upper() for c in aus]
    out = Parsed(paths=[], label_files=[manifest], au=[], au_names=names, au_source=str(path), split=[])
    for where, row in rows:
        try:
            values = [int(float(row[c])) for c in aus]
            if any(v not in (0, 1, EMOTIONET_NOT_CODED) for v in values):
                raise ValueError
        except (ValueError, TypeError):
            raise SourceError(f"{where}: AU values must be 0, 1 or 999, got {[row.get(c) for c in aus]}") from None
        out.paths.append(row["path"])
        out.au.append([MISSING if v == EMOTIONET_NOT_CODED else v for v in values])
        out.split.append(row.get("split") or "")
    return out
