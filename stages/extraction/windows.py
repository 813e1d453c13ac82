"""Fixed-length windows over frame-level features: a derived step with the same contract.

(window spec, frame feature group, its source) → one row per window of ``length`` seconds started
every ``hop`` seconds from each video's first frame, never crossing a video boundary (a video's last
window may be shorter: its ``n_frames`` says so). Per window:

* each feature array: the mean over the window's frames whose status is ``ok`` (NaN if none);
* ``n_frames``, ``valid_fraction`` (ok frames / frames);
* labels: valence/arousal mean over labelled frames, AU max (occurrence in any frame) or mean
  (fraction of frames) over labelled frames, expression by majority (ties → lowest canonical
  index), subject and split from the video's first frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore import FeatureStore, GroupReader, SampleStatus, Step, StepGroup, StepOutput, StepSpec

WINDOWS_STEP = "windows"
WINDOWS_STEP_VERSION = 1
AU_POOLS = ("max", "mean")


@dataclass(frozen=True)
class WindowSpec:
    length: float  # seconds
    hop: float | None = None  # seconds; default = length (back-to-back windows)
    au_pool: str = "max"

    def __post_init__(self) -> None:
        if self.length <= 0 or (self.hop is not None and self.hop <= 0):
            raise ValueError(f"window length and hop must be positive, got {self.length}, {self.hop}")
        if self.au_pool not in AU_POOLS:
            raise ValueError(f"au_pool {self.au_pool!r} not in {AU_POOLS}")

    @property
    def step(self) -> float:
        return self.hop if self.hop is not None else self.length

    @property
    def label(self) -> str:
        text = f"{self.length:g}s"
        return text if self.hop is None else f"{text}-hop{self.hop:g}s"

    def to_json(self) -> dict:
        return {"length": self.length, "hop": self.step, "au_pool": self.au_pool}


def window_rows(video: np.ndarray, timestamps: np.ndarray, spec: WindowSpec) -> list[tuple[str, float, np.ndarray]]:
    """(video, start time, frame row indices) per window, videos in order of first appearance."""
    out = []
    for name in dict.fromkeys(video.tolist()):
        rows = np.flatnonzero((video == name) & np.isfinite(timestamps))
        if rows.size == 0:
            continue
        rows = rows[np.argsort(timestamps[rows], kind="stable")]
        t = timestamps[rows]
        start = t[0]
        while start <= t[-1] + 1e-9:
            inside = rows[(t >= start - 1e-9) & (t < start + spec.length - 1e-9)]
            if inside.size:
                out.append((name, float(start), inside))
            start += spec.step
    return out


def _majority(values: np.ndarray) -> int:
    labelled = values[values >= 0]
    return int(np.bincount(labelled).argmax()) if labelled.size else -1


def pool_windows(
    windows, features: dict[str, np.ndarray], ok: np.ndarray, labels: dict[str, np.ndarray], au_pool: str
) -> dict[str, np.ndarray]:
    """The window table: pooled features, counts and labels (see the module docstring)."""
    n = len(windows)
    out: dict[str, np.ndarray] = {name: np.full((n, *v.shape[1:]), np.nan, np.float32) for name, v in features.items()}
    out["n_frames"] = np.zeros(n, np.int32)
    out["valid_fraction"] = np.zeros(n, np.float32)
    out["va"] = np.full((n, 2), np.nan, np.float32)
    out["expression"] = np.full(n, -1, np.int8)
    if "au" in labels:
        out["au"] = np.full((n, labels["au"].shape[1]), np.nan, np.float32)
    for w, (_, _, rows) in enumerate(windows):
        good = rows[ok[rows]]
        out["n_frames"][w] = rows.size
        out["valid_fraction"][w] = good.size / rows.size
        for name, values in features.items():
            if good.size:
                out[name][w] = values[good].astype(np.float64).mean(0)
        va = labels["va"][rows].astype(np.float64)
        for d in range(2):
            if np.isfinite(va[:, d]).any():
                out["va"][w, d] = np.nanmean(va[:, d])
        out["expression"][w] = _majority(labels["expression"][rows].astype(np.int64))
        if "au" in labels:
            au = labels["au"][rows].astype(np.float64)
            au[au < 0] = np.nan
            for j in range(au.shape[1]):
                if np.isfinite(au[:, j]).any():
                    out["au"][w, j] = np.nanmax(au[:, j]) if au_pool == "max" else np.nanmean(au[:, j])
    return out


def windows_step(spec: WindowSpec, dataset: str, encoder: str, feature_key: str, source_key: str) -> Step:
    """``windows/<dataset>/<encoder>/<window>/<key>``: the window spec over a frame group and its source."""
    return Step(
        "windows",
        StepSpec(WINDOWS_STEP, WINDOWS_STEP_VERSION, spec.to_json()),
        (feature_key, source_key),
        "windows",
        (dataset, encoder, spec.label),
    )


def compute_windows(
    store: FeatureStore, features: StepGroup, source: StepGroup, spec: WindowSpec
) -> tuple[StepGroup, str]:
    """Write (or skip) the window group of ``features``; returns (group, "skipped" | "new")."""

    def pool() -> StepOutput:
        src = GroupReader(source)
        frames = GroupReader(features)
        if "timestamp" not in src.names():
            raise ValueError(f"{source.path} has no frame timestamps: windows need a video source")
        video, timestamps = src.numpy("video"), src.numpy("timestamp")
        labels = {"va": src.numpy("va"), "expression": src.numpy("expression")}
        if "au" in src.names():
            labels["au"] = src.numpy("au")
        values = {k: frames.numpy(k) for k in frames.names() if k not in ("status", "status_detail")}
        ok = frames.ok_mask()
        windows = window_rows(video, timestamps, spec)
        if not windows:
            raise ValueError(f"{source.path}: no frame has a timestamp (unreadable videos?): nothing to window")
        table = pool_windows(windows, values, ok, labels, spec.au_pool)
        first = [int(rows[0]) for _, _, rows in windows]
        table["video"] = np.array([w[0] for w in windows], dtype=str)
        table["start"] = np.array([w[1] for w in windows], dtype=np.float64)
        table["subject"] = src.numpy("subject")[first]
        table["split"] = src.numpy("split")[first]
        valid = table["valid_fraction"] > 0
        table["status"] = np.where(valid, SampleStatus.OK, SampleStatus.NO_FACE).astype(np.int8)
        table["status_detail"] = np.where(valid, "", "no frame of the window has features")
        meta = {
            "dataset": features.meta["dataset"],
            "encoder": features.meta["encoder"],
            "window": spec.label,
            "feature_path": features.path,
            "source_path": source.path,
            **{k: v for k, v in features.meta.items() if k == "blendshape_names"},
            **{k: v for k, v in source.meta.items() if k in ("au_names", "au_annotated")},
        }
        return StepOutput(table, meta)

    step = windows_step(spec, features.meta["dataset"], features.meta["encoder"], features.key, source.key)
    return store.run_step(step, pool)
