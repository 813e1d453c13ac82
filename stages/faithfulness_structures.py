"""Structures G for the faithfulness audit: signed AU → class tables, and the PSPI pain score.

A structure is a data file of (class, au, sign) edges — the packaged pain structure follows the
PSPI composition (data/pain_pspi.csv, which cites it) — or the basic expressions' EMFACS prototypes
(data/emfacs_prototypes.csv: every AU of a class's prototype rows is causal, +1), or a trained
CausalAffect head's AU → expression edges (heads' ``graphs()``). An AU a structure does not name for
a class is irrelevant to it (0).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stages.sources.labels import au_number, expression_prototypes

PAIN = Path(__file__).parent / "sources" / "data" / "pain_pspi.csv"


def load_structure(path: str | Path = PAIN) -> dict[str, dict[str, int]]:
    """class → {AU name: sign} from a (class, au, sign) file; a bad row is an error naming its line."""
    path = Path(path)
    lines = [
        (n, line)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    out: dict[str, dict[str, int]] = {}
    for (n, _), row in zip(lines[1:], csv.DictReader(line for _, line in lines)):
        try:
            sign = int(row["sign"])
            au = f"AU{au_number(row['au'])}"
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}:{n}: a structure row is class, au, sign (+1 or -1): {err}") from None
        if sign not in (1, -1) or not row.get("class"):
            raise ValueError(f"{path}:{n}: sign must be +1 or -1 and class given, not {row}")
        out.setdefault(row["class"], {})[au] = sign
    return out


def prototype_structure(kind: str = "prototype") -> dict[str, dict[str, int]]:
    """class → {AU: +1} over the EMFACS rows of ``kind`` (prototype, or prototype and variant: "all")."""
    out: dict[str, dict[str, int]] = {}
    for expression, rows in expression_prototypes().items():
        for row_kind, aus in rows:
            if kind == "all" or row_kind == kind:
                out.setdefault(expression, {}).update(dict.fromkeys(aus, 1))
    return out


def structure_matrix(structure: dict[str, dict[str, int]], classes: list[str], aus: list[str]) -> np.ndarray:
    """G (C, M) in ``classes`` × ``aus`` order; a class or AU the structure does not name: zeros."""
    g = np.zeros((len(classes), len(aus)), np.int8)
    for c, name in enumerate(classes):
        for au, sign in structure.get(name, {}).items():
            if au in aus:
                g[c, aus.index(au)] = sign
    return g


def pspi(intensity: dict[int, float]) -> float:
    """Prkachin & Solomon's pain intensity from AU intensities (AU4/6/7/9/10 on 0–5, AU43 0 or 1; an
    AU not given is 0): AU4 + max(AU6, AU7) + max(AU9, AU10) + AU43, from 0 to 16."""
    get = lambda au: float(intensity.get(au, 0.0))  # noqa: E731
    return get(4) + max(get(6), get(7)) + max(get(9), get(10)) + get(43)
