"""Video and audio decoding with PyAV: exact frame timestamps, frame ranges, resampled audio.

Frames are identified by their presentation timestamps, never by counting from a seek point, so
a chunk that starts mid-video decodes exactly the frames an uninterrupted pass would. Variable
frame rate needs no special case: rows carry each frame's own timestamp, and sampling at a chosen
fps picks, for every instant k / fps, the frame on screen at that instant.

A file with sound and no picture (a ``.wav``, or a video container holding only an audio track) is
a recording like any other: its "frames" are analysis instants every 1 / ``AUDIO_FRAME_RATE``
seconds over the audio's duration, so audio encoders and windows treat it as they treat a video,
and picture encoders give its rows the status ``no_video``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES
AUDIO_FRAME_RATE = 25.0  # analysis instants per second of an audio-only recording (the voice windows' rate)


class MediaError(ValueError):
    pass


@dataclass(frozen=True)
class VideoInfo:
    timestamps: np.ndarray  # seconds, one per decodable frame, increasing
    width: int
    height: int
    nominal_fps: float
    has_audio: bool
    has_video: bool = True  # False: audio only, the timestamps are analysis instants

    @property
    def variable_frame_rate(self) -> bool:
        """True when frame intervals differ by more than 1 % of their median."""
        steps = np.diff(self.timestamps)
        return bool(steps.size and np.abs(steps - np.median(steps)).max() > 0.01 * np.median(steps))


def is_video(path: str | Path) -> bool:
    """A recording read by timestamps (a video, or an audio-only file), not a still image."""
    return Path(path).suffix.lower() in MEDIA_SUFFIXES


def probe_video(path: str | Path) -> VideoInfo:
    """Frame timestamps from the demuxed packets (no decoding), sorted into presentation order."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                if container.streams.audio:
                    return _probe_audio_only(path, container)
                raise MediaError(f"{path}: neither a video nor an audio stream")
            stream = container.streams.video[0]
            base = float(stream.time_base)
            pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
            info = VideoInfo(
                timestamps=np.unique(np.asarray(pts, dtype=np.int64)) * base,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                nominal_fps=float(stream.average_rate or stream.guessed_rate or 0.0),
                has_audio=bool(container.streams.audio),
            )
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: cannot read video ({err})") from None
    if info.timestamps.size == 0:
        raise MediaError(f"{path}: no frames")
    return info


def _probe_audio_only(path: str | Path, container) -> VideoInfo:
    """Analysis instants every 1 / AUDIO_FRAME_RATE s over the first audio track's packets."""
    stream = container.streams.audio[0]
    base = float(stream.time_base)
    ends = [(p.pts + (p.duration or 0)) * base for p in container.demux(stream) if p.pts is not None and p.size > 0]
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    if not ends or max(ends) <= start:
        raise MediaError(f"{path}: an audio track without samples")
    instants = np.arange(start, max(ends) - 1e-9, 1.0 / AUDIO_FRAME_RATE)
    return VideoInfo(instants, 0, 0, AUDIO_FRAME_RATE, has_audio=True, has_video=False)


def sample_frames(timestamps: np.ndarray, fps: float | None) -> np.ndarray:
    """Indices of the frames to keep: all of them, or the frame on screen at each k / fps."""
    if fps is None:
        return np.arange(timestamps.size)
    instants = np.arange(timestamps[0], timestamps[-1] + 1e-9, 1.0 / fps)
    return np.unique(np.searchsorted(timestamps, instants + 1e-6, side="right") - 1)


def _nearest(timestamps: np.ndarray, t: float) -> int:
    """Index of the timestamp closest to ``t`` (timestamps sorted): O(log n) per decoded frame."""
    i = int(np.searchsorted(timestamps, t))
    if i == 0:
        return 0
    if i == timestamps.size:
        return i - 1
    return i if timestamps[i] - t < t - timestamps[i - 1] else i - 1


def read_frames(
    path: str | Path, timestamps: np.ndarray, wanted: list[int] | np.ndarray, max_side: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, RGB uint8) for the ``wanted`` frame indices (sorted), decoding from the
    keyframe before the first one. ``timestamps`` are the probe's; indices refer to them."""
    wanted = np.asarray(sorted(set(int(i) for i in wanted)))
    if wanted.size == 0:
        return
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: no picture (an audio-only recording)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = float(stream.time_base)
        container.seek(int(round(timestamps[wanted[0]] / base)), stream=stream, backward=True, any_frame=False)
        pending = set(wanted.tolist())
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            index = _nearest(timestamps, frame.pts * base)
            if index in pending:
                pending.discard(index)
                image = frame.to_ndarray(format="rgb24")
                if max_side and max(image.shape[:2]) > max_side:
                    scale = max_side / max(image.shape[:2])
                    image = frame.reformat(
                        width=round(frame.width * scale), height=round(frame.height * scale), format="rgb24"
                    ).to_ndarray()
                yield index, image
            if not pending or index > wanted[-1]:
                break
    if pending:
        raise MediaError(f"{path}: frames {sorted(pending)[:5]} could not be decoded")


def load_audio(path: str | Path, sample_rate: int) -> tuple[np.ndarray, float] | None:
    """The first audio track as mono float32 at ``sample_rate`` and its start time in seconds, or
    None when the file has no audio."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks, start = [], None
            for frame in container.decode(stream):
                if start is None and frame.pts is not None:
                    start = float(frame.pts * stream.time_base)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as err:
        raise MediaError(f"{path}: cannot read audio ({err})") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return samples, start or 0.0


def write_video(
    path: str | Path,
    frames: Iterator[np.ndarray] | list[np.ndarray],
    fps: int,
    audio: tuple[np.ndarray, int] | None = None,
    crf: int = 18,
) -> None:
    """Encode RGB frames as H.264 (yuv420p) at a constant ``fps``, with an optional mono AAC track
    given as (float samples in [-1, 1], sample rate)."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        video.pix_fmt = "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=audio[1], layout="mono")
        for i, image in enumerate(frames):
            if i == 0:
                video.height, video.width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(image[: video.height, : video.width]), format="rgb24"
            )
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples, rate = audio
            step = 1024
            for start in range(0, len(samples), step):
                block = np.ascontiguousarray(samples[start : start + step], dtype=np.float32)[None]
                frame = av.AudioFrame.from_ndarray(block, format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples in [-1, 1]: 16-bit PCM in a ``.wav``, AAC in other containers (an
    audio-only ``.mp4`` or ``.m4a``)."""
    wav = Path(path).suffix.lower() == ".wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le" if wav else "aac", rate=sample_rate, layout="mono")
        step = 1024
        for start in range(0, len(samples), step):
            block = np.clip(np.ascontiguousarray(samples[start : start + step], dtype=np.float32), -1, 1)
            if wav:
                frame = av.AudioFrame.from_ndarray((block * 32767).astype(np.int16)[None], format="s16", layout="mono")
            else:
                frame = av.AudioFrame.from_ndarray(block[None], format="flt", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
