"""LaScA's preference pairs: which way valence or arousal moves between consecutive windows, and
the keyed step that stores them for a windows group.

Consecutive windows (by start time) of the same video form a pair when the affect changes by more
than τ relative to where it was: |a_{t+1} − a_t| / max(|a_t|, ε) > τ, ε keeping a start near zero
from dividing by nothing. The label is 1 when the affect rises. Both orders enter ((t, t+1) with
its label and (t+1, t) with the opposite), so the learner sees each direction equally often. A
pair never spans two videos; a window with a missing (NaN) label forms no pair, and those windows
are counted, not dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepOutput, StepSpec

EPSILON = 1e-3  # on the [−1, 1] affect scale: a change from 0 to 0.001 is not "infinitely large"


@dataclass(frozen=True)
class Pairs:
    first: np.ndarray  # window index of the pair's first member
    second: np.ndarray  # and of its second: the learner reads z[second] − z[first]
    label: np.ndarray  # 1: the affect rises from first to second
    unlabelled_windows: int  # windows with a NaN affect: in no pair
    below_threshold: int  # consecutive labelled pairs whose change is at most τ (one order)


def preference_pairs(
    video: np.ndarray, start: np.ndarray, affect: np.ndarray, tau: float, epsilon: float = EPSILON
) -> Pairs:
    """Pairs of windows (rows) given each one's ``video``, ``start`` time and ``affect`` value."""
    if not 0 <= tau:
        raise ValueError(f"τ must be ≥ 0, not {tau}")
    video, start, affect = np.asarray(video), np.asarray(start, float), np.asarray(affect, float)
    order = np.lexsort((start, video))  # by video, then time
    v, a = video[order], affect[order]
    consecutive = v[1:] == v[:-1]
    labelled = np.isfinite(a[1:]) & np.isfinite(a[:-1])
    change = np.abs(a[1:] - a[:-1]) / np.maximum(np.abs(a[:-1]), epsilon)
    candidates = consecutive & labelled
    keep = candidates & (change > tau)
    t = np.flatnonzero(keep)
    first, second = order[t], order[t + 1]
    rises = (a[t + 1] > a[t]).astype(np.int64)
    return Pairs(
        first=np.concatenate([first, second]),
        second=np.concatenate([second, first]),
        label=np.concatenate([rises, 1 - rises]),
        unlabelled_windows=int((~np.isfinite(affect)).sum()),
        below_threshold=int((candidates & ~keep).sum()),
    )


# -- the step: (windows group, affect, τ) → pairs/<dataset>/<encoder>/<window>/<affect>-<τ>/<key> -------
PAIRS_STEP = "pairs"
PAIRS_STEP_VERSION = 1
AFFECTS = ("valence", "arousal")  # the windows' ``va`` columns


def pairs_step(windows: StepGroup, affect: str, tau: float, epsilon: float = EPSILON) -> Step:
    """Keyed on the windows group and (affect, τ, ε): a new τ makes new pairs, and nothing upstream."""
    if affect not in AFFECTS:
        raise ValueError(f"affect {affect!r} is not one of {AFFECTS}")
    spec = StepSpec(PAIRS_STEP, PAIRS_STEP_VERSION, {"affect": affect, "tau": tau, "epsilon": epsilon})
    meta = windows.meta
    where = (meta["dataset"], meta["encoder"], meta["window"], f"{affect}-{tau:g}")
    return Step("pairs", spec, (windows.key,), "pairs", where)


def compute_pairs(
    store: FeatureStore, windows: StepGroup, affect: str, tau: float, epsilon: float = EPSILON
) -> tuple[StepGroup, str]:
    """Write (or skip) the pairs of a windows group; windows without features take part in none.
    Arrays: ``first``, ``second``, ``label`` (1.0 rises), and the pair's ``video``, ``subject`` and
    ``split`` (those of its windows: a pair never spans two videos)."""

    def build() -> StepOutput:
        reader = GroupReader(windows)
        value = reader.numpy("va")[:, AFFECTS.index(affect)].astype(np.float64)
        value = np.where(reader.ok_mask(), value, np.nan)
        pairs = preference_pairs(reader.numpy("video"), reader.numpy("start"), value, tau, epsilon)
        if not pairs.first.size:
            raise ValueError(f"{windows.path}: no consecutive windows change {affect} by more than τ = {tau:g}")
        arrays = {
            "first": pairs.first.astype(np.int64),
            "second": pairs.second.astype(np.int64),
            "label": pairs.label.astype(np.float32),
            **{k: reader.numpy(k)[pairs.first] for k in ("video", "subject", "split")},
        }
        meta = {
            "dataset": windows.meta["dataset"],
            "encoder": windows.meta["encoder"],
            "window": windows.meta["window"],
            "windows_path": windows.path,
            "affect": affect,
            "tau": tau,
            "windows_without_label_or_features": pairs.unlabelled_windows,
            "changes_at_most_tau": pairs.below_threshold,
        }
        return StepOutput(arrays, meta)

    return store.run_step(pairs_step(windows, affect, tau, epsilon), build)
