"""Class costs for the transport term: distances between expressions on Russell's circumplex.

The positions live in a versioned data file (data/circumplex.csv, which cites Russell 1980 and says
which choices are ours). ``circumplex`` costs are the Euclidean distances between the classes'
(valence, arousal); the ``uniform`` control costs every pair of different classes the same — the
circumplex costs' mean over those pairs, so the two terms weigh alike and differ only in which
errors they make cheap. A head step with a transport term keys on the file's digest.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import xxhash

from heads.losses import circumplex_costs
from stages.extraction.sources.labels import DATA

CIRCUMPLEX = DATA / "circumplex.csv"


def circumplex_positions(names: list[str], path: str | Path = CIRCUMPLEX) -> np.ndarray:
    """(C, 2) valence, arousal of the classes ``names``; a class the file does not place is an error."""
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    known = {row["expression"]: (float(row["valence"]), float(row["arousal"])) for row in csv.DictReader(lines)}
    if missing := [n for n in names if n not in known]:
        raise ValueError(f"{path} places no {', '.join(missing)} on the circumplex (it has {', '.join(known)})")
    return np.array([known[n] for n in names], np.float32)


def transport_costs(kind: str, names: list[str]) -> torch.Tensor:
    """The (C, C) class cost of transport ``kind`` (circumplex or uniform) over classes ``names``."""
    cost = circumplex_costs(torch.from_numpy(circumplex_positions(names)))
    if kind == "circumplex":
        return cost
    if kind == "uniform":
        off = ~torch.eye(len(names), dtype=torch.bool)
        return torch.where(off, cost[off].mean(), torch.zeros_like(cost))
    raise ValueError(f"transport {kind!r} has no class costs: circumplex or uniform")


def transport_key(transport: str) -> dict[str, str]:
    """What a transport term's costs depend on, for the head step's key (nothing without one)."""
    return {} if transport == "none" else {"circumplex": xxhash.xxh3_128_hexdigest(CIRCUMPLEX.read_bytes())}
