"""LaScA's training data for one fold: pairs of windows → Δz = z[second] − z[first] and "it rises".

z is the window's description in one of the paper's variants:

* ``features``: the min–max normalised window features x_t of the modality (the prompts step's
  training-fold statistics, recomputed here from the same rows);
* ``text``: the sentence-transformer embedding s_t of the window's prompt for the modality;
* ``fused``: [x_t ‖ s_t].

Modality ``face`` (blendshapes), ``audio`` (MFCCs, RMS, f0) or ``both``. The split is the prompts
step's: pairs of the test fold's subjects are the test set; the others train, with a
subject-exclusive slice of them for validation. A pair joins only windows of one video, hence of
one subject, so no subject is on both sides.
"""

from __future__ import annotations

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, StepGroup
from heads.data import TaskData
from stages.encoders import Encoder
from stages.head_data import subject_folds
from stages.prompt_cache import embed_prompts
from stages.prompts import minmax_apply, minmax_fit, window_features

VARIANTS = ("features", "text", "fused")
MODALITY_PROMPTS = {"face": "face", "audio": "audio", "both": "multimodal"}


def lasca_task_data(
    store: FeatureStore,
    prompts: StepGroup,
    pairs: StepGroup,
    variant: str,
    modality: str,
    encoder: Encoder | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> TaskData:
    """The rank task's splits for one (prompts fold, pairs, variant, modality); ``encoder`` embeds
    the prompts (``text`` and ``fused``) through the store's prompt cache."""
    if variant not in VARIANTS or modality not in MODALITY_PROMPTS:
        raise ValueError(
            f"variant {variant!r} / modality {modality!r}: variants {VARIANTS}, modalities {tuple(MODALITY_PROMPTS)}"
        )
    if variant != "features" and encoder is None:
        raise ValueError(f"the {variant} variant embeds prompts: it needs a sentence encoder")
    meta = prompts.meta
    windows = [GroupReader.open(store, path) for path in meta["windows_paths"]]
    x, _, modalities, ok = window_features(windows)
    keep = [j for j, m in enumerate(modalities) if modality in ("both", m)]
    subjects = windows[0].numpy("subject")
    fold = subject_folds(subjects, meta["folds"])
    train_windows = ok & (fold != meta["test_fold"])
    reader = GroupReader(pairs)
    first, second, label = reader.numpy("first"), reader.numpy("second"), reader.numpy("label")
    parts = []
    if variant in ("features", "fused"):
        parts.append(np.nan_to_num(minmax_apply(x, minmax_fit(x[train_windows]))[:, keep]))
    if variant in ("text", "fused"):
        texts = GroupReader(prompts).numpy(MODALITY_PROMPTS[modality]).tolist()
        used = sorted(set(first.tolist()) | set(second.tolist()))
        vectors, _ = embed_prompts(store, encoder, [texts[i] for i in used])
        s = np.zeros((len(texts), vectors.shape[1]), np.float32)
        s[used] = vectors
        parts.append(s)
    z = np.concatenate(parts, 1).astype(np.float32)
    usable = ok[first] & ok[second]
    pair_fold = fold[first]
    test = np.flatnonzero(usable & (pair_fold == meta["test_fold"]))
    rest = np.flatnonzero(usable & (pair_fold != meta["test_fold"]))
    pair_subjects = subjects[first]
    rng = np.random.default_rng(seed)
    others = np.unique(pair_subjects[rest])
    held = set(rng.permutation(others)[: max(1, round(val_fraction * len(others)))].tolist())
    in_val = np.array([s in held for s in pair_subjects[rest]], bool)
    splits = {"train": rest[~in_val], "val": rest[in_val], "test": test}
    if min(len(r) for r in splits.values()) == 0:
        raise ValueError(
            f"{pairs.path} fold {meta['test_fold']}: an empty split ({ {k: len(v) for k, v in splits.items()} })"
        )
    dz = z[second] - z[first]
    return TaskData(
        x={k: torch.from_numpy(dz[r]) for k, r in splits.items()},
        y={k: torch.from_numpy(label[r].astype(np.float32)[:, None]) for k, r in splits.items()},
        rows=splits,
        n_outputs=1,
        label_names=[f"{pairs.meta['affect']} rises"],
        protocol=(
            f"subject-exclusive {meta['folds']}-fold, test fold {meta['test_fold']}; "
            f"val = {val_fraction:.0%} of training subjects"
        ),
    )
