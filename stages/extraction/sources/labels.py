"""One canonical label space, with an explicit map from each dataset's own codes.

Canonical expression order is AffectNet's first eight (the largest corpus), so its codes map to
themselves. Every other dataset states its mapping here, in one place, instead of in the head code.
Missing values: expression −1, AU −1, valence/arousal NaN.
"""

from __future__ import annotations

import csv
from pathlib import Path

EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "sadness",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
    # not a basic expression: the facial expression of pain (UNBC-McMaster, BioVid), scored by PSPI
    # (stages/extraction/sources/data/pain_pspi.csv); after AffectNet's eight so their codes keep mapping to themselves
    "pain",
)
EXPRESSION_INDEX = {name: i for i, name in enumerate(EXPRESSIONS)}
VA_NAMES: tuple[str, ...] = ("valence", "arousal")  # the ``va`` array's two columns
MISSING = -1

# RAF-DB basic: 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral.
RAFDB_TO_CANONICAL = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 0}

# AffectNet manual: 0..7 as canonical; 8 None, 9 Uncertain, 10 No-Face carry no expression.
AFFECTNET_TO_CANONICAL = {i: i for i in range(8)} | {8: MISSING, 9: MISSING, 10: MISSING}


# The package's data files (label maps' sources, lexicons, structures, the circumplex), stage 2's too.
DATA = Path(__file__).parent / "data"


# Canonical AU space: every action unit FACS defines (Ekman, Friesen & Hager 2002), from the data
# file that cites it. A source stores ``au`` compactly, only the AUs its dataset codes, in this
# order (1/0, −1 where a coded AU is missing for a row); its ``au_annotated`` names them.
def _facs_table() -> dict[int, str]:
    text = (DATA / "facs_action_units.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {int(row["code"]): row["name"] for row in rows}


FACS_NAMES: dict[int, str] = _facs_table()  # code → the manual's name
FACS_AUS: tuple[int, ...] = tuple(FACS_NAMES)
AU_NAMES: tuple[str, ...] = tuple(f"AU{n}" for n in FACS_AUS)


def expression_prototypes(path: str | Path | None = None) -> dict[str, list[tuple[str, frozenset[str]]]]:
    """Expression → its (kind, AU set) rows, ``kind`` prototype or variant, from the packaged EMFACS
    table (data/emfacs_prototypes.csv, which cites its sources) or a user's file with the same columns
    (expression, kind, aus: "1+2+5+26/27", "a/b" one of a or b, so one row per alternative)."""
    import itertools

    path = Path(path) if path else DATA / "emfacs_prototypes.csv"
    lines = path.read_text().splitlines()
    out: dict[str, list[tuple[str, frozenset[str]]]] = {}
    body = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(line for _, line in body)
    for (n, _), row in zip(body[1:], reader):
        where = f"{path}:{n}"
        if row.get("expression") not in EXPRESSION_INDEX:
            raise ValueError(f"{where}: expression {row.get('expression')!r} is not one of {', '.join(EXPRESSIONS)}")
        if row.get("kind") not in ("prototype", "variant"):
            raise ValueError(f"{where}: kind {row.get('kind')!r} is not prototype or variant")
        choices = [part.split("/") for part in (row.get("aus") or "").split("+")]
        codes = [[au_code(c) for c in choice] for choice in choices]
        if not all(is_facs(c) for choice in codes for c in choice):
            raise ValueError(f"{where}: AUs {row.get('aus')!r} are not FACS action units joined by + and /")
        for combination in itertools.product(*codes):
            out.setdefault(row["expression"], []).append((row["kind"], frozenset(f"AU{c}" for c in combination)))
    return out


def au_code(name: str) -> int | None:
    """``"AU12"`` / ``"au12"`` / ``"12"`` / ``"1.2e+01"`` → 12; None when it is not an AU number."""
    text = str(name).strip().upper().removeprefix("AU")
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value > 0 else None


def is_facs(code: int | None) -> bool:
    return code is not None and code in FACS_NAMES


def au_number(name: str) -> int:
    """``"AU12"`` → 12, checked against FACS (for settings a user types, e.g. an AU subset)."""
    code = au_code(name)
    if not is_facs(code):
        raise ValueError(f"{name!r} is not a FACS action unit; FACS codes: {', '.join(AU_NAMES)}")
    return code


# Views select the classes a benchmark uses; other classes become missing (−1) in that view.
EXPRESSION_VIEWS: dict[str, tuple[str, ...]] = {
    "basic7": EXPRESSIONS[:7],  # RAF-DB basic, AffectNet-7
    "affectnet8": EXPRESSIONS[:8],
}

# Folder and CSV class names people actually use, mapped to canonical names.
SYNONYMS = {
    "neutral": "neutral",
    "happy": "happiness",
    "happiness": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "surprise": "surprise",
    "surprised": "surprise",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "anger": "anger",
    "angry": "anger",
    "contempt": "contempt",
    "pain": "pain",
}


def expression_from_name(name: str) -> int:
    """Canonical index of a class name; raises ValueError naming the accepted names."""
    canonical = SYNONYMS.get(name.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown expression {name!r}; use one of {sorted(SYNONYMS)}")
    return EXPRESSION_INDEX[canonical]


def expression_view(view: str | None) -> list[int] | None:
    """The canonical expression indices a head uses: a named view (``basic7``, ``affectnet8``), a
    comma-separated list of class names or canonical indices, or None (every class the data has)."""
    if view is None:
        return None
    if view in EXPRESSION_VIEWS:
        return [EXPRESSION_INDEX[name] for name in EXPRESSION_VIEWS[view]]
    indices = []
    for part in (p.strip() for p in view.split(",")):
        index = int(part) if part.isdigit() else expression_from_name(part)
        if not 0 <= index < len(EXPRESSIONS):
            raise ValueError(f"expression index {index} outside 0–{len(EXPRESSIONS) - 1} ({', '.join(EXPRESSIONS)})")
        indices.append(index)
    return indices
