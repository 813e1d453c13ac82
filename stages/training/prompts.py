"""LaScA's language side, before any model: window features → salient cues → prompts.

* **Normalisation**: min–max per feature with the training fold's statistics only (:func:`minmax_fit`);
  a feature constant in training maps to 0.
* **Salience** (:func:`salient_mask`): per window, its normalised values are split in two by Otsu's
  threshold (scikit-image's ``threshold_otsu`` over the window's distinct values: the split
  maximising the between-group variance); the upper group is salient. A window whose values are
  all equal has no salient feature.
* **Lexicon** (:func:`read_cue_lexicon`): each blendshape and voice feature → a short label (a
  physical cue, then an affect cue). ``paper`` (the default) is the paper's own (appendix B.1–B.2,
  Tables 8–9: 43 blendshapes and 13 MFCCs, verbatim), with this project's phrases for the 13
  features of its encoders the paper does not use (loudness, pitch, MFCCs 13–14, 9 blendshapes);
  ``affectflow`` is this project's earlier one, a phrase for every feature (MFCC bands named); or a
  user's file, where a row with an empty phrase and name is never described. ``name`` is the
  feature-name lexicon of the paper's lexicon ablation. Its content digest keys what is built from it.
* **Templates** (:func:`window_prompts`): the labels of the salient features in the lexicon's
  order, a facial prompt, an audio prompt and a multimodal prompt. ``paper`` (appendix B.3,
  equations 7–9): the labels joined by ", " and one ``<|endoftext|>`` marker; the multimodal prompt
  is the two stripped of their markers, joined by " | ", with one marker at the end. ``sentence``:
  this project's earlier "The face shows …; the voice shows …." Deterministic: the same mask always
  gives the same text.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepOutput, StepSpec
from stages.extraction.sources.labels import DATA

MODALITIES = ("face", "audio")
LEXICON_KINDS = ("phrase", "name")  # the paper's lexicon ablation: affect-aware phrases or feature names
# the packaged lexicons by name (stages/extraction/sources/data/); the first is the default
LEXICONS = {"paper": "lasca_lexicon_paper.csv", "affectflow": "lasca_lexicon.csv"}
TEMPLATES = ("paper", "sentence")
END_OF_TEXT = "<|endoftext|>"  # the paper's terminal marker (appendix B.3)


@dataclass(frozen=True)
class CueLexicon:
    features: tuple[str, ...]  # in the file's order: the order cues take in a prompt
    modality: dict[str, str]
    phrase: dict[str, str]
    name: dict[str, str]
    digest: str  # xxh3-128 of the file's bytes

    def text(self, feature: str, kind: str = "phrase") -> str:
        if kind not in LEXICON_KINDS:
            raise ValueError(f"lexicon kind {kind!r} is not one of {LEXICON_KINDS}")
        return getattr(self, kind)[feature]


def read_cue_lexicon(path: str | Path | None = None) -> CueLexicon:
    """A packaged lexicon by name (LEXICONS; None: ``paper``) or a user's file with its columns
    (feature, modality, phrase, name). A feature whose phrase and name are both empty is never
    described; a bad row is an error naming its line."""
    name = str(path or "paper")
    path = DATA / LEXICONS[name] if name in LEXICONS else Path(name)
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    body = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    features, modality, phrase, name = [], {}, {}, {}
    for (n, _), row in zip(body[1:], csv.DictReader(line for _, line in body)):
        where = f"{path}:{n}"
        feature = (row.get("feature") or "").strip()
        if not feature or feature in modality:
            raise ValueError(f"{where}: feature {feature!r} is empty or repeated")
        if row.get("modality") not in MODALITIES:
            raise ValueError(f"{where}: modality {row.get('modality')!r} is not one of {MODALITIES}")
        if bool((row.get("phrase") or "").strip()) != bool((row.get("name") or "").strip()):
            raise ValueError(f"{where}: {feature} needs a phrase and a name, or neither (never described)")
        features.append(feature)
        modality[feature], phrase[feature], name[feature] = row["modality"], row["phrase"].strip(), row["name"].strip()
    if not features:
        raise ValueError(f"{path}: no rows (columns feature, modality, phrase, name)")
    return CueLexicon(tuple(features), modality, phrase, name, xxhash.xxh3_128_hexdigest(raw))


def minmax_fit(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(minimum, range) per feature over the training windows (NaN rows ignored; range 1 where constant)."""
    low, high = np.nanmin(x_train, 0), np.nanmax(x_train, 0)
    span = high - low
    return low, np.where(span > 0, span, 1.0)


def minmax_apply(x: np.ndarray, fitted: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Windows scaled by the training statistics: [0, 1] inside the training range, beyond it outside."""
    low, span = fitted
    return (x - low) / span


def salient_mask(x: np.ndarray) -> np.ndarray:
    """Per window (row), the features above Otsu's threshold on that window's normalised values."""
    from skimage.filters import threshold_otsu

    mask = np.zeros(x.shape, bool)
    for i, row in enumerate(x):
        values = row[np.isfinite(row)]
        if values.size < 2 or values.min() == values.max():
            continue  # nothing stands out of a flat window
        # the window's distinct values as the histogram: Otsu's split between two of them, exactly
        # (256 bins would put a value that shares the threshold's bin on either side)
        distinct, counts = np.unique(values, return_counts=True)
        mask[i] = np.isfinite(row) & (row > threshold_otsu(hist=(counts, distinct)))
    return mask


def window_prompts(
    mask: np.ndarray, features: list[str], lexicon: CueLexicon, kind: str = "phrase", template: str = "paper"
) -> dict[str, list[str]]:
    """The facial, audio and multimodal prompt of every window (row of ``mask`` over ``features``):
    the salient described features' texts in the lexicon's order, in the ``template``'s form."""
    if missing := [f for f in features if f not in lexicon.modality]:
        raise ValueError(f"features without a lexicon entry: {missing[:5]}{' …' if len(missing) > 5 else ''}")
    if template not in TEMPLATES:
        raise ValueError(f"template {template!r} is not one of {TEMPLATES}")
    rank = {f: k for k, f in enumerate(lexicon.features)}
    order = sorted(range(len(features)), key=lambda j: rank[features[j]])
    out: dict[str, list[str]] = {"face": [], "audio": [], "multimodal": []}
    for row in mask:
        cues = {
            m: [
                text
                for j in order
                if row[j] and lexicon.modality[features[j]] == m and (text := lexicon.text(features[j], kind))
            ]
            for m in MODALITIES
        }
        if template == "paper":  # equations 7–9: concat(labels) <|endoftext|>; strip(face) | strip(audio) <|endoftext|>
            face, audio = ", ".join(cues["face"]), ", ".join(cues["audio"])
            for name, parts in (("face", (face,)), ("audio", (audio,)), ("multimodal", (face, "|", audio))):
                out[name].append(" ".join(part for part in (*parts, END_OF_TEXT) if part))
            continue
        face = f"The face shows {'; '.join(cues['face'])}" if cues["face"] else "The face shows nothing salient"
        audio = f"The voice shows {'; '.join(cues['audio'])}" if cues["audio"] else "The voice shows nothing salient"
        out["face"].append(face + ".")
        out["audio"].append(audio + ".")
        out["multimodal"].append(f"{face}; {audio[0].lower()}{audio[1:]}.")
    return out


# -- the step: (windows groups of one video set, lexicon, fold) → prompts/<dataset>/<window>/<key> --------
PROMPTS_STEP = "prompts"
PROMPTS_STEP_VERSION = 3  # 2: the cue of each feature and its modality in the meta; 3: the template
VOICE_ARRAYS = ("mfcc", "rms", "f0")  # the voice encoder's window arrays, in this order


def window_features(groups: list[GroupReader]) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """(values (N, F), feature names, each feature's modality, rows every group has features for) of
    windows groups over the same videos and window (a face group's blendshapes, a voice group's
    MFCCs, RMS and f0)."""
    columns, names, modalities, ok = [], [], [], np.ones(groups[0].shape("status")[0], bool)
    for group in groups:
        ok &= group.ok_mask()
        if "blendshapes" in group.names():
            columns.append(group.numpy("blendshapes"))
            names += list(group.meta["blendshape_names"])
            modalities += ["face"] * columns[-1].shape[1]
        for array in (a for a in VOICE_ARRAYS if a in group.names()):
            values = group.numpy(array)
            columns.append(values)
            names += [f"{array}_{k}" for k in range(values.shape[1])] if array == "mfcc" else [array]
            modalities += ["audio"] * values.shape[1]
    if not columns:
        raise ValueError(f"{[g.path for g in groups]}: no blendshapes or voice features to describe")
    return np.concatenate(columns, 1).astype(np.float64), names, modalities, ok


def prompts_step(
    windows: list[StepGroup], lexicon: CueLexicon, kind: str, folds: int, test_fold: int, template: str = "paper"
) -> Step:
    """Keyed on the windows groups, the lexicon's content and kind, the template, and the fold whose
    training windows give the min–max statistics: a new lexicon re-runs prompts onward, a new τ does not."""
    options = {"kind": kind, "template": template, "folds": folds, "test_fold": test_fold}
    spec = StepSpec(PROMPTS_STEP, PROMPTS_STEP_VERSION, options)
    inputs = (*sorted(g.key for g in windows), f"lexicon:{lexicon.digest}")
    meta = windows[0].meta
    return Step("prompts", spec, inputs, "prompts", (meta["dataset"], meta["window"]))


def compute_prompts(
    store: FeatureStore,
    windows: list[StepGroup],
    lexicon: CueLexicon,
    kind: str = "phrase",
    folds: int = 15,
    test_fold: int = 1,
    template: str = "paper",
) -> tuple[StepGroup, str]:
    """Each window's salient features and its facial, audio and multimodal prompts, normalised with
    the statistics of the training windows of subject-exclusive fold ``test_fold`` of ``folds``
    (fewer folds when the videos have fewer subjects). Windows without features get empty prompts."""
    from stages.training.head_data import subject_folds

    def build() -> StepOutput:
        readers = [GroupReader(g) for g in windows]
        if len({g.meta["window"] for g in windows}) > 1 or len({r.shape("status")[0] for r in readers}) > 1:
            raise ValueError(f"{[g.path for g in windows]}: prompts need windows of one length over the same videos")
        x, names, modalities, ok = window_features(readers)
        subjects = readers[0].numpy("subject")
        k = min(folds, len(np.unique(subjects)))
        train = ok & (subject_folds(subjects, k) != test_fold)
        mask = salient_mask(minmax_apply(x, minmax_fit(x[train]))) & ok[:, None]
        prompts = window_prompts(mask, names, lexicon, kind, template)
        arrays = {m: np.where(ok, np.array(p, dtype=str), "") for m, p in prompts.items()}
        arrays["salient"] = mask
        meta = {
            "dataset": windows[0].meta["dataset"],
            "window": windows[0].meta["window"],
            "windows_paths": [g.path for g in windows],
            "features": names,
            "modalities": modalities,
            "cues": [lexicon.text(f, kind) for f in names],  # what explanations show for each feature
            "lexicon": lexicon.digest,
            "kind": kind,
            "template": template,
            "folds": k,
            "test_fold": test_fold,
        }
        return StepOutput(arrays, meta)

    return store.run_step(prompts_step(windows, lexicon, kind, folds, test_fold, template), build)
