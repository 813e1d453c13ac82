"""Video datasets: one manifest row per frame (video file, frame index, exact timestamp).

``videofolder`` layout (generic, SEWA-like)::

    <root>/[<split>/][<subject>/]<name>.mp4     videos (any of stages.extraction.media.VIDEO_SUFFIXES), or audio
                                                recordings (.wav, .flac, .mp3 … : AUDIO_SUFFIXES)
    <root>/.../<name>.csv                       optional per-frame labels: `frame` (0-based index at
                                                the native rate) + expression, valence, arousal, AU<n>
    <root>/.../<name>.va.csv                    optional continuous VA: `time` (s) and one or more
                                                valence*/arousal* columns (raters, averaged), linearly
                                                interpolated at each frame's timestamp

Frames are the video's own (``fps=None``) or the frame on screen at each k / fps. A video that
cannot be read becomes one row with status ``decode_error`` (the other videos go on); a video
without an audio track is fine for face encoders and gets ``no_audio`` rows from audio encoders;
a recording without a picture (a speech corpus's ``.wav`` files, an audio-only ``.mp4``) has a row
per analysis instant (25 per second) for audio encoders and gets ``no_video`` rows from face encoders.
Probing a video demuxes its packets; the result is cached by the file's content digest.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from featurestore.fingerprint import cache_dir, fingerprint_files
from featurestore.status import SampleStatus
from stages.extraction.media import MEDIA_SUFFIXES, MediaError, VideoInfo, probe_video, sample_frames
from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.generic import au_columns, parse_float, read_csv, row_labels, split_of_folder
from stages.extraction.sources.labels import MISSING


def probe_cached(root: Path, rel: str) -> VideoInfo:
    """:func:`probe_video` of ``root/rel``, cached under the cache dir by the file's content digest."""
    (entry,) = fingerprint_files(root, [rel])
    if entry.digest is None:
        raise MediaError(f"{rel}: cannot read file")
    cached = cache_dir() / "video-probes" / f"{entry.digest}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return VideoInfo(
                z["timestamps"],
                int(z["width"]),
                int(z["height"]),
                float(z["nominal_fps"]),
                bool(z["has_audio"]),
                bool(z["has_video"]) if "has_video" in z else True,
            )
    info = probe_video(root / rel)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        timestamps=info.timestamps,
        width=info.width,
        height=info.height,
        nominal_fps=info.nominal_fps,
        has_audio=info.has_audio,
        has_video=info.has_video,
    )
    tmp.replace(cached)  # atomic: concurrent probes of one file write the same bytes
    return info


def _frame_labels(path: Path) -> tuple[dict[int, dict], list[str]]:
    """Per-frame label rows of ``path`` keyed by frame index, and the AU columns it has."""
    columns, lines = read_csv(path, ["frame"], "per-frame labels")
    aus = au_columns(columns)
    rows = {}
    for where, row in lines:
        frame = parse_float(row["frame"], where)
        if math.isnan(frame) or frame < 0 or frame != int(frame):
            raise SourceError(f"{where}: frame {row['frame']!r} is not a 0-based integer")
        expression, va, au = row_labels(row, aus, where)
        rows[int(frame)] = {"expression": expression, "va": va, "au": dict(zip(aus, au))}
    return rows, aus


def _continuous_va(path: Path, timestamps: np.ndarray) -> np.ndarray:
    """Rater-averaged valence/arousal traces interpolated at ``timestamps`` (NaN outside)."""
    columns, rows = read_csv(path, ["time"], "continuous VA")
    v_cols = [c for c in columns if c.lower().startswith("valence")]
    a_cols = [c for c in columns if c.lower().startswith("arousal")]
    if not v_cols or not a_cols:
        raise SourceError(f"{path}:1: continuous VA needs valence* and arousal* columns, has {columns}")
    times, v, a = [], [], []
    for where, row in rows:
        times.append(parse_float(row["time"], where))
        v.append(np.nanmean([parse_float(row[c], where) for c in v_cols]))
        a.append(np.nanmean([parse_float(row[c], where) for c in a_cols]))
    times = np.asarray(times)
    if np.any(np.diff(times) <= 0):
        raise SourceError(f"{path}: 'time' must increase")
    out = np.full((timestamps.size, 2), np.nan, np.float32)
    inside = (timestamps >= times[0]) & (timestamps <= times[-1])
    out[inside, 0] = np.interp(timestamps[inside], times, v)
    out[inside, 1] = np.interp(timestamps[inside], times, a)
    return out


@register_source("videofolder", version=2)  # 2: split folder synonyms (Validation/, dev/ …)
def parse_videofolder(root: Path, fps: float | None = None) -> Parsed:
    """Video folder: [<split>/][<subject>/]<video>, per-frame <video>.csv and continuous <video>.va.csv labels."""
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
    if not videos:
        raise SourceError(f"video folder {root} has no videos or recordings ({', '.join(sorted(MEDIA_SUFFIXES))})")
    paths, label_files, status, video_col, frame_col, time_col = [], [], [], [], [], []
    subject, split, expression, va, au_rows = [], [], [], [], []
    all_aus: list[str] = []
    per_video = []
    for video in videos:
        rel = video.relative_to(root).as_posix()
        parts = video.relative_to(root).parts[:-1]
        split_name = (split_of_folder(parts[0]) if parts else None) or ""
        rest = parts[1:] if split_name else parts
        labels_csv, va_csv = video.with_suffix(".csv"), video.with_suffix(".va.csv")
        frame_labels: dict[int, dict] = {}
        if labels_csv.is_file():
            frame_labels, aus = _frame_labels(labels_csv)
            label_files.append(labels_csv.relative_to(root).as_posix())
            all_aus += [a for a in aus if a not in all_aus]
        per_video.append((video, rel, split_name, rest[-1] if rest else video.stem, frame_labels, va_csv))
    notes = {"videos": len(per_video), "unreadable": 0, "variable_frame_rate": 0, "without_audio": 0, "audio_only": 0}
    for video, rel, split_name, subj, frame_labels, va_csv in per_video:
        try:
            info = probe_cached(root, rel)
        except MediaError:
            indices, timestamps, ok = np.array([-1]), np.array([math.nan]), False
            notes["unreadable"] += 1
        else:
            timestamps = info.timestamps
            indices, ok = sample_frames(timestamps, fps), True
            notes["variable_frame_rate"] += info.variable_frame_rate
            notes["without_audio"] += not info.has_audio
            notes["audio_only"] += not info.has_video
        continuous = None
        if ok and va_csv.is_file():
            continuous = _continuous_va(va_csv, timestamps[indices])
            label_files.append(va_csv.relative_to(root).as_posix())
        for k, i in enumerate(indices):
            paths.append(rel)
            status.append(SampleStatus.OK if ok else SampleStatus.DECODE_ERROR)
            video_col.append(rel.rsplit(".", 1)[0])
            frame_col.append(int(i))
            time_col.append(float(timestamps[i]) if ok else math.nan)
            subject.append(subj)
            split.append(split_name)
            row = frame_labels.get(int(i))
            expression.append(row["expression"] if row else MISSING)
            pair = row["va"] if row else (math.nan, math.nan)
            if continuous is not None and not np.isnan(continuous[k]).all():
                pair = tuple(float(x) for x in continuous[k])
            va.append(pair)
            au_rows.append([row["au"].get(a, MISSING) if row else MISSING for a in all_aus])
    return Parsed(
        paths=paths,
        label_files=label_files,
        expression=expression,
        va=va,
        au=au_rows if all_aus else None,
        au_names=all_aus,
        au_source=f"{root} (per-frame label CSVs)",
        subject=subject,
        split=split,
        status=status,
        notes=notes,
        extra={
            "video": np.array(video_col, dtype=str),
            "frame": np.array(frame_col, dtype=np.int32),
            "timestamp": np.array(time_col, dtype=np.float64),
        },
    )
