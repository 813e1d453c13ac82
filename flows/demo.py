"""What `affectflow demo` trains, shared with bench/demo_heads.py so both run the same heads.

Expressions and valence–arousal: AURA, the linear probe and the MLP on the generated faces'
MediaPipe blendshapes. AUs: AURA on EfficientNet-Lite0's 7 × 7 spatial tokens through its patch
path (the paper's AU setting: a light transformer over patch tokens, one projector per AU), and the
linear probe and MLP on the same map average-pooled (the group's ``global``).

The catalogue is small (about 500 training images, 16 batches of 32 per epoch), so the heads train
with lr 1e-3 rather than the paper's 1e-4, and archetype resets run for 10 warm-up epochs.
"""

from __future__ import annotations

from typing import Any

from featurestore import FeatureStore, GroupReader

# 20 generated subjects × 42 images: 504 / 168 / 168 by the catalogue's subject-exclusive splits
DEMO_PER_SUBJECT = 42
DEMO_ENCODERS = ["efficientnet-lite0,tokens=true", "mediapipe-face"]
DEMO_TRAIN = {"batch_size": 32, "lr": 1e-3, "warmup_epochs": 10}


def _latest(fstore: FeatureStore, prefix: str, array: str) -> str:
    groups = [g for g in fstore.list_steps(prefix) if g.is_complete and array in GroupReader(g).names()]
    if not groups:
        raise ValueError(f"no complete group with {array!r} under {prefix} in {fstore.url}: run `affectflow demo`")
    return groups[-1].path


def demo_heads_plan(fstore: FeatureStore, dataset: str = "generated") -> list[dict[str, Any]]:
    """(head, task, features, array, options) of every demo head."""
    faces = _latest(fstore, f"features/{dataset}/mediapipe-face", "blendshapes")
    image = _latest(fstore, f"features/{dataset}/efficientnet-lite0", "spatial")
    plan = [
        {"head": head, "task": task, "features": faces, "array": "blendshapes", "options": {}}
        for task in ("fer", "va")
        for head in ("aura", "linear", "mlp")
    ]
    plan.append({"head": "aura", "task": "au", "features": image, "array": "spatial", "options": {"input": "patch"}})
    plan += [
        {"head": head, "task": "au", "features": image, "array": "global", "options": {}} for head in ("linear", "mlp")
    ]
    return plan
