"""Cached token grids in the small-data regime of a real AU-coded set: what FAUD-CLIP's step
budget is checked against (issue 37).

A real AU-coded set of posed faces is ~700 training faces with some AUs at 3–10 % (FAUD-CLIP fell
to half the linear probe there, its rare AUs at F1 0). Here: 85 subjects of 20 faces (35 train,
10 val, 40 test: 700 / 200 / 800 rows), eight AUs at the prevalences of ``PREVALENCE`` (two at 4 and
6 %), drawn independently per face. Each present AU adds its own unit pattern × ``strength`` to two
cells of a ``cells``-token grid (its "region"), over unit Gaussian noise and a per-subject offset
(σ 0.5) on every token. What it is not: faces or an encoder's tokens; the AUs do not co-occur, and
nothing but the AU patterns varies between faces of a subject.
"""

from __future__ import annotations

import numpy as np

AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15")
PREVALENCE = (0.35, 0.25, 0.20, 0.12, 0.04, 0.06, 0.30, 0.08)
SUBJECTS = {"train": 35, "val": 10, "test": 40}
FACES_PER_SUBJECT = 20


def small_au_grids(
    seed: int, cells: int = 16, dim: int = 16, strength: float = 1.0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(features, labels): ``spatial`` (n, cells, dim) float32 token grids and ``global`` their
    mean; a Manifest's labels, ``au`` (n, 8) int8, ``subject``, ``split``, and no expression or VA."""
    rng = np.random.default_rng(seed)
    n_subjects = sum(SUBJECTS.values())
    n = n_subjects * FACES_PER_SUBJECT
    au = (rng.random((n, len(AU_NAMES))) < np.array(PREVALENCE)).astype(np.int8)
    patterns = rng.normal(size=(len(AU_NAMES), dim))
    patterns /= np.linalg.norm(patterns, axis=1, keepdims=True)
    regions = [rng.choice(cells, 2, replace=False) for _ in AU_NAMES]
    subject = np.arange(n) // FACES_PER_SUBJECT
    x = rng.normal(size=(n, cells, dim)) + rng.normal(0, 0.5, (n_subjects, 1, dim))[subject]
    for j, region in enumerate(regions):
        x[:, region] += strength * au[:, j, None, None] * patterns[j]
    split = np.repeat(list(SUBJECTS), list(SUBJECTS.values()))[subject]
    x = x.astype(np.float32)
    labels = {
        "expression": np.full(n, -1, np.int8),
        "va": np.full((n, 2), np.nan, np.float32),
        "au": au,
        "subject": subject.astype(str),
        "split": split,
    }
    return {"spatial": x, "global": x.mean(1)}, labels
