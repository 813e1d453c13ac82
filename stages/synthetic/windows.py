"""Window groups written directly, as the windows step writes them: synthetic inputs for LaScA's
prompts, pairs and learners (tests, bench/lasca.py) where the signal must be exactly known.

What they are not: windows of videos. Each "video" is one subject's row of windows 5 s apart; the
features are whatever the caller passes.
"""

from __future__ import annotations

import numpy as np

from featurestore import FeatureStore, Step, StepGroup, StepOutput, StepSpec
from stages.extraction.encoders.face_landmarker import BLENDSHAPE_NAMES


def write_face_and_voice_windows(
    store: FeatureStore,
    subjects: int,
    per: int,
    arousal: np.ndarray,
    blendshapes: np.ndarray,
    voice: dict[str, np.ndarray],
    face_status: np.ndarray | None = None,
    dataset: str = "clips",
) -> tuple[list[StepGroup], np.ndarray]:
    """A face (``blendshapes``) and a voice (``voice``: mfcc, rms, f0) windows group over the same
    ``subjects`` × ``per`` windows, valence 0 and ``arousal``; returns (groups, each window's subject)."""
    n = subjects * per
    common = {
        "video": np.repeat([f"v{i}" for i in range(subjects)], per),
        "start": np.tile(np.arange(per) * 5.0, subjects),
        "subject": np.repeat([f"s{i}" for i in range(subjects)], per),
        "split": np.array([""] * n),
        "va": np.stack([np.zeros(n), arousal], 1).astype(np.float32),
        "status": np.zeros(n, np.int8),
        "status_detail": np.array([""] * n),
    }
    face = {**common, "blendshapes": blendshapes.astype(np.float32)}
    if face_status is not None:
        face["status"] = face_status
    groups = []
    for name, table, extra in (
        ("mediapipe-face", face, {"blendshape_names": BLENDSHAPE_NAMES}),
        ("mfcc", {**common, **voice}, {}),
    ):
        meta = {"dataset": dataset, "encoder": name, "window": "5s", **extra}
        step = Step("windows", StepSpec("windows", 1, {}), (name,), "windows", (dataset, name, "5s"))
        groups.append(store.run_step(step, lambda table=table, meta=meta: StepOutput(table, meta))[0])
    return groups, common["subject"]


def arousal_walk_windows(store: FeatureStore, subjects: int, per: int) -> list[StepGroup]:
    """Face and voice windows whose jaw opening and loudness follow a smooth arousal random walk
    (one video per subject, the other features noise)."""
    rng = np.random.default_rng(0)
    n = subjects * per
    arousal = np.tanh(np.concatenate([np.cumsum(rng.normal(0, 0.15, per)) for _ in range(subjects)]))
    blend = rng.random((n, 52)) * 0.3
    blend[:, BLENDSHAPE_NAMES.index("jawOpen")] = 0.5 + 0.45 * arousal + rng.normal(0, 0.01, n)
    voice = {
        "mfcc": rng.standard_normal((n, 15)).astype(np.float32),
        "rms": (0.5 + 0.45 * arousal + rng.normal(0, 0.01, n))[:, None],
        "f0": rng.random((n, 1)),
    }
    return write_face_and_voice_windows(store, subjects, per, arousal, blend, voice)[0]
