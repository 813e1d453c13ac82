"""CK+ (the Extended Cohn-Kanade set) in its released folders.

Three trees, found under the root by their names whatever folders hold them (the releases unpack
as e.g. ``extended-cohn-kanade-images/cohn-kanade-images``, ``Emotion_labels/Emotion``,
``FACS_labels/FACS``)::

    cohn-kanade-images/S005/001/S005_001_00000011.png   a sequence's frames, neutral onset → peak
    Emotion*/S005/001/S005_001_00000011_emotion.txt     one code: 0 neutral, 1 anger, 2 contempt,
                                                        3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
    FACS*/S005/001/S005_001_00000011_facs.txt           rows "AU intensity" of the peak frame

Emotion files exist for the labelled sequences only (327 of 593 in the release). The last
``last_frames`` frames of a sequence (default 3, the usual protocol) take its emotion (missing when
it has no emotion file) and its AU codes: 1 for an AU its FACS file lists (intensity 0 means
"present, intensity not coded"), 0 for the other AUs the set codes anywhere. ``neutral_first``
also adds each sequence's first frame as ``neutral`` with no AU active (the protocol's onset
frame). Frames between are not read. Subject = ``S###``; there is no official split, so heads use
subject-exclusive k-fold (``--folds 10``). A label file that cannot be read is a per-sample
status naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from featurestore.status import SampleStatus
from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.generic import IMAGE_SUFFIXES
from stages.extraction.sources.labels import EXPRESSION_INDEX, MISSING, au_code

CKPLUS_EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
CKPLUS_TO_CANONICAL = {code: EXPRESSION_INDEX[name] for code, name in enumerate(CKPLUS_EMOTIONS)}
SUBJECT = re.compile(r"^S\d+$", re.IGNORECASE)
SEARCH_DEPTH = 3  # folders above the three trees that a user's unpacking may add


def _holds_subjects(folder: Path) -> bool:
    return any(p.is_dir() and SUBJECT.match(p.name) for p in folder.iterdir())


def _find_tree(root: Path, matches, what: str) -> Path | None:
    """The shallowest folder under ``root`` whose name ``matches`` and that holds ``S###`` folders."""
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        found = sorted(p for p in level if p is not root and matches(p.name.lower()) and _holds_subjects(p))
        if found:
            if len(found) > 1:
                raise SourceError(f"ckplus: more than one {what} tree under {root}: {[str(p) for p in found]}")
            return found[0]
        level = [c for p in level for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".")]
    return None


def _one_file(folder: Path | None, suffix: str) -> Path | None:
    if folder is None or not folder.is_dir():
        return None
    files = sorted(folder.glob(f"*{suffix}"))
    return files[0] if files else None


def _emotion(path: Path, rel: str) -> tuple[int, str]:
    """(canonical expression, problem or "") of an emotion file."""
    text = path.read_text().split()
    try:
        (value,) = text
        code = float(value)
        return CKPLUS_TO_CANONICAL[int(code)], "" if code.is_integer() else f"{rel}:1: {value!r} is not a code"
    except (ValueError, KeyError):
        return MISSING, f"{rel}:1: {' '.join(text)!r} is not an emotion code 0–7"


def _facs(path: Path, rel: str) -> tuple[dict[int, float], str]:
    """({AU code: intensity}, problem or "") of a FACS file."""
    codes: dict[int, float] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            code, intensity = au_code(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            code, intensity = None, 0.0
        if code is None or len(parts) != 2:
            return {}, f"{rel}:{lineno}: {line.strip()!r} is not 'AU intensity'"
        codes[code] = intensity
    return codes, ""


@register_source("ckplus", version=1)
def parse_ckplus(root: Path, last_frames: int = 3, neutral_first: bool = False) -> Parsed:
    """CK+ as released: cohn-kanade-images/S###/###/ frames, Emotion*/ and FACS*/ label trees; the last N frames of a sequence."""  # noqa: E501 (one line: the layout's one-line summary)
    if last_frames < 1:
        raise SourceError(f"ckplus: last_frames must be at least 1, got {last_frames}")
    images = _find_tree(root, lambda n: n == "cohn-kanade-images", "cohn-kanade-images")
    if images is None:
        raise SourceError(f"ckplus: no cohn-kanade-images/S###/ folder within {SEARCH_DEPTH} levels of {root}")
    emotions = _find_tree(root, lambda n: n.startswith("emotion"), "Emotion")
    facs_tree = _find_tree(root, lambda n: n.startswith("facs"), "FACS")
    sequences = []  # (subject, sequence folder, frames, emotion, AU codes, problem)
    label_files: list[str] = []
    notes = {"sequences without an emotion file": 0, "sequences without labels (not read)": 0}
    for subject_dir in sorted(p for p in images.iterdir() if p.is_dir() and SUBJECT.match(p.name)):
        for seq in sorted(p for p in subject_dir.iterdir() if p.is_dir()):
            frames = sorted(f for f in seq.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            tail = Path(subject_dir.name) / seq.name
            emotion_file = _one_file(emotions / tail if emotions else None, "_emotion.txt")
            facs_file = _one_file(facs_tree / tail if facs_tree else None, "_facs.txt")
            if not frames or (emotion_file is None and facs_file is None):
                notes["sequences without labels (not read)"] += 1
                continue
            expression, codes, problems = MISSING, None, []
            if emotion_file is not None:
                rel = emotion_file.relative_to(root).as_posix()
                label_files.append(rel)
                expression, problem = _emotion(emotion_file, rel)
                problems.append(problem)
            else:
                notes["sequences without an emotion file"] += 1
            if facs_file is not None:
                rel = facs_file.relative_to(root).as_posix()
                label_files.append(rel)
                codes, problem = _facs(facs_file, rel)
                problems.append(problem)
                codes = None if problem else codes
            problem = "; ".join(p for p in problems if p)
            sequences.append((subject_dir.name.upper(), tail.as_posix(), frames, expression, codes, problem))
    if not sequences:
        raise SourceError(f"ckplus: no sequence under {images} has an emotion or FACS file")
    coded = sorted({code for *_, codes, _ in sequences if codes for code in codes})
    out = Parsed(
        paths=[],
        label_files=label_files,
        expression=[],
        au=[],
        au_names=[f"AU{code}" for code in coded],
        au_source=str(facs_tree or root),
        subject=[],
        status=[],
        detail=[],
        notes={k: v for k, v in notes.items() if v},
    )
    sequence_of: list[str] = []

    def add(frame: Path, subject: str, sequence: str, expression: int, au: list[int], problem: str) -> None:
        out.paths.append(frame.relative_to(root).as_posix())
        out.expression.append(expression)
        out.au.append(au)
        out.subject.append(subject)
        out.status.append(SampleStatus.BAD_LABEL if problem else SampleStatus.OK)
        out.detail.append(problem)
        sequence_of.append(sequence)

    for subject, sequence, frames, expression, codes, problem in sequences:
        peak = frames[-last_frames:]
        if neutral_first and frames[0] not in peak:
            add(frames[0], subject, sequence, EXPRESSION_INDEX["neutral"], [0] * len(coded), "")
        au = [MISSING] * len(coded) if codes is None else [int(code in codes) for code in coded]
        for frame in peak:
            add(frame, subject, sequence, expression, au, problem)
    out.extra = {"sequence": np.array(sequence_of, dtype=str)}
    return out
