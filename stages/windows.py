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

from featurestore import ArraySpec, FeatureStore, GroupReader, SampleStatus, StepGroup, StepSpec, step_key

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


def windows_key(spec: WindowSpec, feature_key: str, source_key: str) -> str:
    return step_key(StepSpec(WINDOWS_STEP, WINDOWS_STEP_VERSION, spec.to_json()), [feature_key, source_key])


def compute_windows(
    store: FeatureStore, features: StepGroup, source: StepGroup, spec: WindowSpec, dataset: str
) -> tuple[StepGroup, str]:
    """Write (or skip) the window group of ``features``; returns (group, "skipped" | "new")."""
    key = windows_key(spec, features.key, source.key)
    path = store.windows_path(dataset, features.meta["encoder"], spec.label, key)
    with store.lock(key):
        existing = store.open_step(path)
        if existing is not None and existing.is_complete:
            return existing, "skipped"
        src = source.group
        reader = GroupReader(source)
        if "timestamp" not in src.array_keys():
            raise ValueError(f"{source.group.path} has no frame timestamps: windows need a video source")
        video, timestamps = reader.numpy("video"), np.asarray(src["timestamp"][:])
        labels = {"va": np.asarray(src["va"][:]), "expression": np.asarray(src["expression"][:])}
        if "au" in src.array_keys():
            labels["au"] = np.asarray(src["au"][:])
        names = [k for k in features.group.array_keys() if k not in ("status", "status_detail", "_done")]
        values = {k: np.asarray(features.group[k][:]) for k in sorted(names)}
        ok = np.asarray(features.group["status"][:]) == SampleStatus.OK
        windows = window_rows(video, timestamps, spec)
        if not windows:
            raise ValueError(f"{source.group.path}: no frame has a timestamp (unreadable videos?): nothing to window")
        table = pool_windows(windows, values, ok, labels, spec.au_pool)
        first = [int(rows[0]) for _, _, rows in windows]
        table["video"] = np.array([w[0] for w in windows], dtype=str)
        table["start"] = np.array([w[1] for w in windows], dtype=np.float64)
        table["subject"] = reader.numpy("subject")[first]
        table["split"] = reader.numpy("split")[first]
        table["status"] = np.where(table["valid_fraction"] > 0, SampleStatus.OK, SampleStatus.NO_FACE).astype(np.int8)
        table["status_detail"] = np.where(table["valid_fraction"] > 0, "", "no frame of the window has features")
        arrays = {
            k: ArraySpec(
                v.shape[1:],
                str if np.issubdtype(v.dtype, np.str_) else v.dtype,
                ""
                if np.issubdtype(v.dtype, np.str_)
                else (np.nan if np.issubdtype(v.dtype, np.floating) else -1 if k == "expression" else 0),
            )
            for k, v in table.items()
        }
        group = store.create_step(
            path,
            kind="windows",
            spec=StepSpec(WINDOWS_STEP, WINDOWS_STEP_VERSION, spec.to_json()),
            key=key,
            inputs=[features.key, source.key],
            n_samples=len(windows),
            arrays=arrays,
            chunk_size=max(len(windows), 1),
            extra_meta={
                "dataset": dataset,
                "encoder": features.meta["encoder"],
                "window": spec.label,
                "feature_path": features.group.path,
                "source_path": source.group.path,
                **{k: v for k, v in features.meta.items() if k == "blendshape_names"},
                **{k: v for k, v in source.meta.items() if k in ("au_names", "au_annotated")},
            },
        )
        for name, values in table.items():
            group.group[name][:] = values
        group.mark_chunk_done(0)
        group.mark_complete()
        return group, "new"
