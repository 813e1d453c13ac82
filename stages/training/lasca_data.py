"""LaScA's training data for one fold: pairs of windows → Δz = z[second] − z[first] and "it rises".

z is the window's description in one of the paper's variants:

* ``features``: the min–max normalised window features x_t of the modality (the prompts step's
  training-fold statistics, recomputed here from the same rows);
* ``text``: the sentence-transformer embedding s_t of the window's prompt for the modality;
* ``fused``: [x_t ‖ s_t];
* ``pretrained``: the paper's pretrained-encoder baseline, a frozen visual encoder's window features
  (EfficientNet-Lite0's or CLIP's ``global``, from a windows group over the same videos), min–max
  normalised like x_t. Visual only: it takes modality ``face``.

Modality ``face`` (blendshapes), ``audio`` (MFCCs, RMS, f0) or ``both``. The split is the prompts
step's: pairs of the test fold's subjects are the test set; the others train, with a
subject-exclusive slice of them for validation. A pair joins only windows of one video, hence of
one subject, so no subject is on both sides.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, StepGroup
from heads.data import TaskData
from stages.extraction.encoders import Encoder, create_encoder
from stages.training.head_data import subject_folds
from stages.training.prompt_cache import embed_prompts
from stages.training.prompts import minmax_apply, minmax_fit, window_features

VARIANTS = ("features", "text", "fused", "pretrained")
MODALITY_PROMPTS = {"face": "face", "audio": "audio", "both": "multimodal"}


def lasca_task_data(
    store: FeatureStore,
    prompts: StepGroup,
    pairs: StepGroup,
    variant: str,
    modality: str,
    encoder: Encoder | None = None,
    pretrained: StepGroup | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> TaskData:
    """The rank task's splits for one (prompts fold, pairs, variant, modality); ``encoder`` embeds
    the prompts (``text`` and ``fused``) through the store's prompt cache; ``pretrained`` is the
    visual encoder's windows group of the ``pretrained`` variant."""
    if variant not in VARIANTS or modality not in MODALITY_PROMPTS:
        raise ValueError(
            f"variant {variant!r} / modality {modality!r}: variants {VARIANTS}, modalities {tuple(MODALITY_PROMPTS)}"
        )
    if variant in ("text", "fused") and encoder is None:
        raise ValueError(f"the {variant} variant embeds prompts: it needs a sentence encoder")
    if (variant == "pretrained") != (pretrained is not None) or (variant == "pretrained" and modality != "face"):
        raise ValueError("the pretrained variant, and it alone, takes a visual windows group, with modality face")
    meta = prompts.meta
    windows, x, modalities, ok, subjects, fold = _window_table(store, tuple(meta["windows_paths"]), meta["folds"])
    keep = [j for j, m in enumerate(modalities) if modality in ("both", m)]
    train_windows = ok & (fold != meta["test_fold"])
    reader = GroupReader(pairs)
    first, second, label = reader.numpy("first"), reader.numpy("second"), reader.numpy("label")
    parts = []
    if variant in ("features", "fused"):
        parts.append(np.nan_to_num(minmax_apply(x, minmax_fit(x[train_windows]))[:, keep]))
    if variant == "pretrained":
        parts.append(np.nan_to_num(_pretrained_features(pretrained, windows[0], train_windows)))
        ok = ok & GroupReader(pretrained).ok_mask()
    if variant in ("text", "fused"):
        parts.append(prompt_vectors(store, prompts.path, MODALITY_PROMPTS[modality], encoder))
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


# The grid asks for the same windows and prompts for every cell and fold; a group's content never
# changes under its key (its path holds it), so what is read from one is kept for the next call.
@functools.lru_cache(maxsize=4)
def _window_table(store: FeatureStore, paths: tuple[str, ...], folds: int):
    """(readers, features, modalities, ok, subjects, subject fold) of windows groups."""
    windows = [GroupReader.open(store, path) for path in paths]
    x, _, modalities, ok = window_features(windows)
    subjects = windows[0].numpy("subject")
    fold = subject_folds(subjects, folds)
    for shared in (x, ok, subjects, fold):
        shared.flags.writeable = False
    return windows, x, modalities, ok, subjects, fold


@functools.lru_cache(maxsize=24)
def prompt_vectors(store: FeatureStore, prompts_path: str, kind: str, encoder: Encoder) -> np.ndarray:
    """The embedding of every window's ``kind`` prompt (zeros where the window has none), through
    the store's prompt cache."""
    texts = GroupReader.open(store, prompts_path).numpy(kind).tolist()
    present = [i for i, t in enumerate(texts) if t]
    vectors, _ = embed_prompts(store, encoder, [texts[i] for i in present])
    s = np.zeros((len(texts), vectors.shape[1]), np.float32)
    s[present] = vectors
    s.flags.writeable = False
    return s


def _pretrained_features(pretrained: StepGroup, windows: GroupReader, train_windows: np.ndarray) -> np.ndarray:
    """The visual encoder's window ``global`` features, min–max normalised on the training windows;
    its windows must be the prompts' (same videos and starts, in order)."""
    reader = GroupReader(pretrained)
    for column in ("video", "start"):
        if not np.array_equal(reader.numpy(column), windows.numpy(column)):
            raise ValueError(f"{pretrained.path}: its windows are not those of {windows.path} ({column} differs)")
    x = reader.numpy("global").astype(np.float64)
    return minmax_apply(x, minmax_fit(x[train_windows & reader.ok_mask()]))


def lasca_data_of(store: FeatureStore, head: GroupReader) -> TaskData:
    """A trained learner's splits, rebuilt from the groups and text model it was trained on."""
    meta, params = head.meta, head.meta["spec"]["params"]
    ref = meta.get("text_encoder")
    encoder = create_encoder(**ref) if ref else None
    pretrained = store.open_step(meta["pretrained_path"]) if meta.get("pretrained_path") else None
    return lasca_task_data(
        store,
        store.open_step(meta["prompts_path"]),
        store.open_step(meta["pairs_path"]),
        meta["variant"],
        meta["modality"],
        encoder,
        pretrained,
        seed=params["train"]["seed"],
    )
