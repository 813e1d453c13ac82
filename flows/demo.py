"""What `affectflow demo` extracts and trains, shared with the demo deployments in prefect.yaml
(a test keeps them equal) and with bench/demo_heads.py, so all of them run the same steps.

Expressions and valence–arousal: AURA, the linear probe and the MLP on the generated faces'
MediaPipe blendshapes. AUs: AURA on EfficientNet-Lite0's 7 × 7 spatial tokens through its patch
path (the paper's AU setting: a light transformer over patch tokens, one projector per AU), and the
linear probe and MLP on the same map average-pooled (the group's ``global``), and FAUD-CLIP's
behaviour-prompted detector on the same tokens (its attention sheet in its report).

LaScA: a small grid (:func:`demo_lasca_grid`) on the generated videos' 5 s windows.

The catalogue is small (about 500 training images), so the heads train on the ``fast`` preset's
lr 1e-3 with batches of 32 (16 per epoch; the preset's 512 would be one step an epoch), archetype
resets for 10 warm-up epochs, and the patience and epoch cap small sets need (15, 200).
"""

from __future__ import annotations

from typing import Any

from featurestore import FeatureStore, GroupReader

# 20 generated subjects × 42 images: 504 / 168 / 168 by the catalogue's subject-exclusive splits
DEMO_PER_SUBJECT = 42
DEMO_IMAGE_ENCODERS = [{"name": "efficientnet-lite0", "options": {"tokens": True}}, {"name": "mediapipe-face"}]
DEMO_TRAIN = {"batch_size": 32, "lr": 1e-3, "warmup_epochs": 10, "patience": 15, "epochs": 200}
# the generated videos: 8 subjects × 1 minute, a new expression every 4 s (LaScA's pairs need the
# 5 s windows' arousal to move), speech following arousal
DEMO_VIDEOS = {"n_videos": 8, "seconds": 60.0, "fps": 5, "key_every": 4.0}


def demo_extractions(data: str = "./demo-data") -> dict[str, dict[str, Any]]:
    """Deployment name → its extract-features parameters (all but the store), for the catalogues
    `affectflow demo` writes under ``data``: the real photos and generated faces with EfficientNet-
    Lite0 (patch tokens) and MediaPipe; the generated videos with MediaPipe and MFCCs, pooled over
    3 s and 5 s windows."""
    return {
        "nightly-demo": {
            "datasets": [
                {"layout": "csv", "root": f"{data}/photos", "name": "demo"},
                {"layout": "csv", "root": f"{data}/generated", "name": "generated"},
            ],
            "encoders": DEMO_IMAGE_ENCODERS,
        },
        "nightly-demo-videos": {
            "datasets": [{"layout": "videofolder", "root": f"{data}/videos", "name": "videos"}],
            "encoders": [{"name": "mediapipe-face"}, {"name": "mfcc"}],
            "windows": [{"length": 3.0}, {"length": 5.0}],
        },
    }


def demo_lasca_grid(dataset: str = "videos"):
    """The demo's small LaScA grid: arousal on 5 s windows, τ 20 %, features and fused per modality,
    4 subject-exclusive folds (the paper's full grid: ``affectflow lasca`` with its defaults)."""
    from stages.training.lasca_steps import LascaGrid  # here: the CLI imports this module, and it imports torch

    return LascaGrid(
        dataset, ("5s",), (0.2,), ("face", "audio", "both"), ("features", "fused"), affects=("arousal",), folds=4
    )


def _latest(fstore: FeatureStore, prefix: str, array: str) -> str:
    group = fstore.latest(prefix, lambda g: array in GroupReader(g).names())
    if group is None:
        raise ValueError(f"no complete group with {array!r} under {prefix} in {fstore.url}: run `affectflow demo`")
    return group.path


def demo_head_configs(fstore: FeatureStore) -> list:
    """The demo's heads (HeadConfig) with the demo's training settings, on the latest demo features
    in the store."""
    from flows.heads import HeadConfig  # here: the CLI imports this module, and flows.heads imports torch

    return [HeadConfig(**{**DEMO_TRAIN, **entry}) for entry in demo_heads_plan(fstore)]


# head plans a `train-heads` run can name instead of listing heads (the deployment's `plan`)
HEAD_PLANS = {"demo": demo_head_configs}
DEMO_AUDIT_SEEDS = 5  # the demo's audits train each head's controls on this many seeds


def demo_heads_plan(fstore: FeatureStore, dataset: str = "generated") -> list[dict[str, Any]]:
    """(head, task, features, array, options[, training knobs]) of every demo head."""
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
    # CausalAffect's AU → expression graph on the blendshapes, whose AU rule the generator knows
    plan.append({"head": "causal", "task": "au_fer", "features": faces, "array": "blendshapes", "options": {}})
    # FACR's reasoner with the faithfulness objective over the generator's own AU → expression rule
    # (lr 1e-2: at the demo's 1e-3 its class map has not grown by the time validation stops improving)
    plan.append(
        {
            "head": "facr",
            "task": "au_fer",
            "features": faces,
            "array": "blendshapes",
            "options": {"structure": "generator", "faithfulness_weight": 1.0},
            "lr": 1e-2,
        }
    )
    # the expression MLP again with the circumplex transport term (its controls: the audit's)
    plan.append(
        {
            "head": "mlp",
            "task": "fer",
            "features": faces,
            "array": "blendshapes",
            "options": {},
            "transport": "circumplex",
        }
    )
    # FAUD-CLIP on the spatial tokens with the packaged sentence-transformer's fixed prompt embeddings;
    # its preset's cosine schedule over 40 epochs, at the demo's lr and batch
    plan.append(
        {
            "head": "faud",
            "task": "au",
            "features": image,
            "array": "spatial",
            "options": {"context": 0},
            **{"preset": "faud", "lr": 1e-3, "batch_size": 32, "epochs": 40, "patience": 10, "warmup_epochs": 1},
        }
    )
    return plan
