"""Short labelled videos from the face generator, with a spoken audio track.

Each video follows one subject through smooth AU-intensity trajectories: keyframes every
``key_every`` seconds drawn as in :func:`face_generator.sample_intensities` (a random expression),
eased with a cosine between keyframes, so expression, AU occurrence and valence/arousal change
smoothly and are known for every frame. The sound is real synthetic speech from Debian's
``espeak-ng`` when it is installed; otherwise a voice-like signal (a glottal harmonic series with
an intonation contour and syllable envelope) that is *not* speech — the report says which.

Layout written (the ``videofolder`` source reads it)::

    <root>/<split>/<subject>/<name>.mp4   H.264 + AAC
    <root>/<split>/<subject>/<name>.csv   frame, timestamp, expression, valence, arousal, AU<n>
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from stages.media import write_video
from stages.synthetic.face_generator import (
    AUS,
    PROTOTYPES,
    build_subjects,
    labels_from_intensities,
    sample_intensities,
)

SENTENCES = [
    "The weather was lovely this morning, so we walked along the river.",
    "I really did not expect to see you here today.",
    "Please put the books back on the shelf when you are done.",
    "That was the strangest thing that has ever happened to me.",
]


def speech(seconds: float, sample_rate: int, index: int) -> tuple[np.ndarray, str]:
    """(mono float32 samples of exactly ``seconds``, "espeak-ng" | "synthesised")."""
    n = int(round(seconds * sample_rate))
    if shutil.which("espeak-ng"):
        import librosa

        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            text = " ".join(SENTENCES[(index + k) % len(SENTENCES)] for k in range(3))
            subprocess.run(
                ["espeak-ng", "-w", str(wav), "-s", "150", "-v", "en", text], check=True, capture_output=True
            )
            samples, _ = librosa.load(wav, sr=sample_rate, mono=True)
        samples = np.resize(samples, n) if samples.size < n else samples[:n]
        return samples.astype(np.float32), "espeak-ng"
    return _voice_like(n, sample_rate, index), "synthesised"


def _voice_like(n: int, sample_rate: int, seed: int) -> np.ndarray:
    """Not speech: harmonics of a 110–190 Hz intonation contour under a 4 Hz syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.28))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = sum(np.sin(k * phase) / k**1.2 for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6.28)), 0, None) ** 2
    return (0.25 * voice * envelope / np.abs(voice).max()).astype(np.float32)


def trajectory(n_frames: int, fps: int, key_every: float, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, len(AUS)) intensities: cosine-eased between keyframes of random expressions."""
    classes = ["neutral", *PROTOTYPES]
    n_keys = int(np.ceil(n_frames / fps / key_every)) + 1
    keys = np.array(
        [[sample_intensities(classes[rng.integers(len(classes))], rng)[au] for au in AUS] for _ in range(n_keys)]
    )
    position = np.arange(n_frames) / fps / key_every
    k = np.floor(position).astype(int)
    ease = (1 - np.cos(np.pi * (position - k))) / 2
    return keys[k] + (keys[k + 1] - keys[k]) * ease[:, None]


def write_generated_videos(
    root: str | Path,
    detect,
    n_videos: int = 4,
    seconds: float = 8.0,
    fps: int = 10,
    key_every: float = 1.5,
    sample_rate: int = 16000,
    seed: int = 0,
    **subject_options,
) -> tuple[Path, dict]:
    """Write ``n_videos`` labelled videos (subject-exclusive splits); returns (root, report)."""
    root = Path(root)
    subjects, _ = build_subjects(detect, seed=seed, **subject_options)
    rng = np.random.default_rng(seed + 2)
    audio_kinds = set()
    n_frames = int(round(seconds * fps))
    for v in range(n_videos):
        subject = subjects[v % len(subjects)]
        split = "test" if v % 4 == 3 else "train"
        folder = root / split / subject.name
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{subject.name}_v{v:02d}"
        intensities = trajectory(n_frames, fps, key_every, rng)
        samples, kind = speech(seconds, sample_rate, v)
        audio_kinds.add(kind)
        rows = []
        for i, values in enumerate(intensities):
            labels = labels_from_intensities(dict(zip(AUS, values.tolist())))
            rows.append(
                [
                    i,
                    round(i / fps, 6),
                    labels.expression,
                    labels.valence,
                    labels.arousal,
                    *[labels.aus[au] for au in AUS],
                ]
            )
        if not (folder / f"{name}.mp4").exists():
            frames = (subject.render(dict(zip(AUS, values.tolist()))) for values in intensities)
            write_video(folder / f"{name}.mp4", frames, fps, (samples, sample_rate))
        with open(folder / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["frame", "timestamp", "expression", "valence", "arousal", *[f"AU{au}" for au in AUS]])
            writer.writerows(rows)
    return root, {"videos": n_videos, "seconds": seconds, "fps": fps, "audio": sorted(audio_kinds)}
