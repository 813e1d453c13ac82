"""LaScA's learner as a keyed head step, the paper's grid over it, and pair explanations.

A learner is one ``lasca`` head on the ``rank`` task, trained on one (prompts fold, pairs, variant,
modality[, sentence-transformer][, visual windows]) by the one trainer (``fit_head_output``), under
``heads/<dataset>/lasca-rank/<key>``. Its key holds the prompts and pairs groups' keys (so a new τ
re-runs pairs and learners, a new lexicon prompts onward), the text model's weights and the head's
spec, so results, evaluation and the run records treat it like every head.

The grid (:class:`LascaGrid`) is a sweep over window × τ × modality × variant × sentence-transformer ×
affect × fold (:func:`grid_cells`): each (cell, fold) is one head config that plans and trains
through :class:`WindowPairsInput` like every head (flows/lasca.py runs the sweep): prompts per
(window, fold), pairs per (window, affect, τ), prompt embeddings through the store's cache, one
learner per cell and fold. Every piece is a keyed step, so a rerun trains only what is new.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepSpec
from heads.registry import get_head
from heads.trainer import TrainConfig
from stages.extraction.encoders import Encoder, create_encoder
from stages.training.head_inputs import HeadInput, HeadRequest, PlannedInput, register_input
from stages.training.head_steps import HEAD_STEP, fit_head_output, head_spec, load_head
from stages.training.lasca_data import MODALITY_PROMPTS, VARIANTS, lasca_data_of, lasca_task_data, prompt_vectors
from stages.training.pairs import AFFECTS, compute_pairs
from stages.training.prompts import LEXICON_KINDS, TEMPLATES, compute_prompts, read_cue_lexicon

LASCA_HEAD, RANK_TASK = "lasca", "rank"
TEXT_VARIANTS = ("text", "fused")


def text_encoder_ref(encoder: Encoder) -> dict[str, Any]:
    """How to rebuild a text encoder: its name, and a sentence-transformer's folder (any text tower
    embeds prompts: a CLIP text tower carries no path)."""
    path = getattr(encoder, "path", None)
    return {"name": encoder.created_as or encoder.name, **({"path": str(path)} if path is not None else {})}


def lasca_step(
    prompts: StepGroup,
    pairs: StepGroup,
    variant: str,
    modality: str,
    train: TrainConfig,
    options: dict[str, Any],
    encoder: Encoder | None,
    pretrained: StepGroup | None,
    head: str = LASCA_HEAD,
    task: str = RANK_TASK,
) -> Step:
    """``heads/<dataset>/<head>-<task>/<key>`` (LaScA's: ``lasca-rank``): keyed on the prompts fold, the
    pairs, the visual windows (pretrained variant), the text model's weights and the head's spec."""
    if variant in TEXT_VARIANTS and encoder is None:
        raise ValueError(f"the {variant} variant embeds prompts: it needs a sentence encoder")
    base = head_spec(head, task, f"{modality}-{variant}", options, train, None, prompts.meta["test_fold"])
    params = {
        **base.params,
        "folds": prompts.meta["folds"],
        "variant": variant,
        "modality": modality,
        "text": encoder.text_spec_params() if variant in TEXT_VARIANTS else None,
    }
    inputs = (prompts.key, pairs.key, *((pretrained.key,) if pretrained is not None else ()))
    spec = StepSpec(HEAD_STEP, get_head(head).version, params)
    return Step("head", spec, inputs, "heads", (prompts.meta["dataset"], f"{head}-{task}"))


def train_lasca(
    store: FeatureStore,
    prompts: StepGroup,
    pairs: StepGroup,
    variant: str,
    modality: str,
    train: TrainConfig | None = None,
    options: dict[str, Any] | None = None,
    encoder: Encoder | None = None,
    pretrained: StepGroup | None = None,
    head: str = LASCA_HEAD,
    task: str = RANK_TASK,
) -> tuple[StepGroup, str, dict[str, Any]]:
    """Train (or skip) one LaScA learner (or another head that reads pairs); returns (group,
    "skipped" | "new", metrics)."""
    train = train or TrainConfig.preset("lasca", progress=False)
    options = get_head(head).preset_options("lasca", dict(options or {}))
    step = lasca_step(prompts, pairs, variant, modality, train, options, encoder, pretrained, head, task)

    def fit() -> Any:
        text = encoder if variant in TEXT_VARIANTS else None
        data = lasca_task_data(store, prompts, pairs, variant, modality, text, pretrained, seed=train.seed)
        meta = {
            "dataset": prompts.meta["dataset"],
            "features_path": pairs.path,  # what the run records list as the head's input
            "source_path": pairs.meta["windows_path"],
            "prompts_path": prompts.path,
            "pairs_path": pairs.path,
            "pretrained_path": pretrained.path if pretrained is not None else None,
            "text_encoder": text_encoder_ref(text) if text is not None else None,
            "variant": variant,
            "modality": modality,
            "window": pairs.meta["window"],
            "affect": pairs.meta["affect"],
            "tau": pairs.meta["tau"],
        }
        what = f"{head} {variant}/{modality} on {pairs.path}"
        return fit_head_output(head, task, f"{modality}-{variant}", options, train, data, meta, what)

    group, state = store.run_step(step, fit)
    return group, state, json.loads(store.get_file(step.path, "metrics.json"))


# -- the grid ---------------------------------------------------------------------------------------
FACE_ARRAY, VOICE_ARRAY = "blendshapes", "mfcc"


@dataclass(frozen=True)
class LascaGrid:
    """What the paper's grid sweeps (each a tuple; the defaults are the paper's, one sentence model)."""

    dataset: str
    windows: tuple[str, ...] = ("3s", "5s")
    taus: tuple[float, ...] = (0.1, 0.2)
    modalities: tuple[str, ...] = ("face", "audio", "both")
    variants: tuple[str, ...] = ("features", "text", "fused", "pretrained")
    text_models: tuple[str, ...] = ("all-MiniLM-L6-v2",)
    affects: tuple[str, ...] = ("valence", "arousal")
    folds: int = 15
    pretrained_encoder: str = "efficientnet-lite0"
    # a packaged lexicon's name (stages.training.prompts.LEXICONS) or a file; None: the paper's
    lexicon: str | None = None
    lexicon_kind: str = "phrase"
    template: str = "paper"  # the prompt template (stages.training.prompts.TEMPLATES)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, given, known in (
            ("modalities", self.modalities, tuple(MODALITY_PROMPTS)),
            ("variants", self.variants, VARIANTS),
            ("affects", self.affects, AFFECTS),
        ):
            if not given or set(given) - set(known):
                raise ValueError(f"{name} {list(given)}: choose from {', '.join(known)}")
        if self.template not in TEMPLATES or self.lexicon_kind not in LEXICON_KINDS:
            raise ValueError(
                f"template {self.template!r} ({', '.join(TEMPLATES)}) or lexicon kind {self.lexicon_kind!r} "
                f"({', '.join(LEXICON_KINDS)}) unknown"
            )
        if not self.windows or not self.taus or min(self.taus) < 0 or self.folds < 2:
            raise ValueError(f"windows {self.windows}, τ {self.taus} (≥ 0) and folds {self.folds} (≥ 2) are needed")
        if set(self.variants) & set(TEXT_VARIANTS) and not self.text_models:
            raise ValueError("the text and fused variants need a sentence-transformer (text_models)")


def latest_windows(store: FeatureStore, dataset: str, window: str, array: str, encoder: str | None = None) -> StepGroup:
    """The latest complete windows group of ``dataset`` at ``window`` with ``array`` (of ``encoder``)."""
    found = store.latest(
        f"windows/{dataset}",
        lambda g: (
            g.meta["window"] == window
            and (encoder is None or g.meta["encoder"] == encoder)
            and array in GroupReader(g).names()
        ),
    )
    if found is None:
        raise ValueError(
            f"no complete {window} windows group of {dataset} with {array!r}"
            f"{f' from {encoder}' if encoder else ''} in {store.url}: extract the videos with windows first"
        )
    return found


@dataclass(frozen=True)
class WindowSets:
    """The window groups a grid reads at one window length, and its number of folds there."""

    face: StepGroup | None  # blendshape windows, where the dataset has faces
    voice: StepGroup | None  # MFCC windows, where the dataset has a voice
    visual: StepGroup | None  # the pretrained variant's visual-encoder windows
    folds: int  # the grid's folds, fewer when there are fewer subjects

    @property
    def described(self) -> list[StepGroup]:
        """The groups the prompts describe (a speech corpus has no face windows to describe)."""
        return [g for g in (self.face, self.voice) if g is not None]

    @property
    def labelled(self) -> StepGroup:
        """The windows the pairs are made from: the face's where the dataset has them (a pair's
        windows must have features in every modality a grid may read, so its rows compare the
        same pairs), else the voice's."""
        return self.face if self.face is not None else self.voice


def window_sets(store: FeatureStore, grid: LascaGrid, window: str) -> WindowSets:
    """The windows of ``grid``'s dataset at ``window``: the face's and the voice's wherever the
    dataset has them, whichever modalities the grid reads, so every cell of a grid (and the same
    cell trained alone with ``--cell``) reads the same pairs and prompts. A speech-only set (no
    face windows, or none with a face) runs the audio rows alone; its face rows, or the audio rows
    of a silent set, are refused with the reason."""
    reads_face = bool(set(grid.modalities) & {"face", "both"})
    try:
        face = latest_windows(store, grid.dataset, window, FACE_ARRAY)
    except ValueError as err:
        if reads_face:
            raise ValueError(f"{err} (the face and both rows need them; a speech-only set runs --modality audio)")
        face = None
    if face is not None and not GroupReader(face).ok_mask().any():
        if reads_face:
            raise ValueError(
                f"{face.path}: no {window} window of {grid.dataset} has a face (MediaPipe found none in any "
                f"frame, or the recordings have no picture): its face and both rows cannot run; "
                "run the audio rows alone (--modality audio)"
            )
        face = None  # recordings without a picture: nothing of the face to pair or describe
    try:
        voice = latest_windows(store, grid.dataset, window, VOICE_ARRAY)
    except ValueError:
        if set(grid.modalities) & {"audio", "both"}:
            raise
        voice = None  # face rows alone: a silent video set runs them
    visual = (
        latest_windows(store, grid.dataset, window, "global", grid.pretrained_encoder)
        if "pretrained" in grid.variants
        else None
    )
    sets = WindowSets(face, voice, visual, 0)
    subjects = GroupReader(sets.labelled).numpy("subject")
    return replace(sets, folds=min(grid.folds, len(np.unique(subjects))))


def grid_cells(store: FeatureStore, grid: LascaGrid) -> tuple[list[tuple[dict[str, Any], int]], dict, dict]:
    """The grid as the sweep it is: ([(cell, test fold)] in the order its tables read: window, fold,
    modality, variant, sentence-transformer, affect, τ), the pair counts of each (window, affect, τ)
    and the prompt statistics of each window (fold 1). Each cell is a ``--cell`` of
    :class:`WindowPairsInput` over the grid's lexicon and template; pairs and prompts are keyed steps,
    made (or found done) here."""
    lexicon = read_cue_lexicon(grid.lexicon)
    shared = {
        "pretrained_encoder": grid.pretrained_encoder,
        "lexicon": grid.lexicon,
        "lexicon_kind": grid.lexicon_kind,
        "template": grid.template,
    }
    cells, prompt_stats, pair_counts = [], {}, {}
    for window in grid.windows:
        sets = window_sets(store, grid, window)
        for affect in grid.affects:
            for tau in grid.taus:
                pairs, _ = compute_pairs(store, sets.labelled, affect, tau)
                pair_counts[f"{window} {affect} τ={tau:g}"] = int(GroupReader(pairs).shape("label")[0])
        prompts, _ = compute_prompts(store, sets.described, lexicon, grid.lexicon_kind, sets.folds, 1, grid.template)
        prompt_stats[window] = prompt_statistics(GroupReader(prompts))
        for test_fold in range(1, sets.folds + 1):
            for modality, variant, text_model, affect, tau in _cells(grid):
                cell = {"window": window, "affect": affect, "tau": tau, "modality": modality, "variant": variant}
                cells.append(({**cell, **shared, **({"text_model": text_model} if text_model else {})}, test_fold))
    return cells, pair_counts, prompt_stats


# -- one cell, as `affectflow train --task rank --head lasca --cell …` trains it -----------------------------
# a cell's choices and their defaults (the check: arousal, 5 s, τ 20 %, both modalities, fused)
CELL_DEFAULTS: dict[str, Any] = {
    "window": "5s",
    "affect": "arousal",
    "tau": 0.2,
    "modality": "both",
    "variant": "fused",
    "text_model": "all-MiniLM-L6-v2",
    "pretrained_encoder": "efficientnet-lite0",
    "lexicon": None,
    "lexicon_kind": "phrase",
    "template": "paper",
}


def cell_grid(dataset: str, cell: dict[str, Any], folds: int | None = None) -> LascaGrid:
    """The one-cell grid of ``cell`` (its choices over CELL_DEFAULTS) on the video ``dataset``."""
    if unknown := sorted(set(cell) - set(CELL_DEFAULTS)):
        raise ValueError(f"LaScA cell keys {unknown}: choose from {', '.join(CELL_DEFAULTS)}")
    c = {**CELL_DEFAULTS, **cell}
    return LascaGrid(
        dataset,
        (str(c["window"]),),
        (float(c["tau"]),),
        (c["modality"],),
        (c["variant"],),
        (c["text_model"],),
        (c["affect"],),
        folds or LascaGrid.folds,
        c["pretrained_encoder"],
        c["lexicon"],
        c["lexicon_kind"],
        c["template"],
    )


@dataclass(frozen=True)
class CellInputs:
    """What one learner of a one-cell grid reads, as store paths and a model name (a plan carries
    them to the process or Prefect task that trains it)."""

    prompts: str
    pairs: str
    pretrained: str | None
    text_model: str | None
    variant: str
    modality: str

    def open(self, store: FeatureStore) -> tuple[StepGroup, StepGroup, Encoder | None, StepGroup | None]:
        encoder = text_encoder(self.text_model) if self.text_model else None
        pretrained = store.open_step(self.pretrained) if self.pretrained else None
        return store.open_step(self.prompts), store.open_step(self.pairs), encoder, pretrained


def cell_inputs(
    store: FeatureStore, grid: LascaGrid, test_fold: int, found: dict[tuple, Any] | None = None
) -> CellInputs:
    """The prompts (of ``test_fold``) and pairs a one-cell grid's learner reads, computed or found
    done (both keyed steps), and its pretrained windows and text model where its variant needs them.
    ``found``: what earlier cells of the same planning pass looked up (window groups, lexicon, prompts,
    pairs), reused: a sweep's cells share them, and finding the latest windows lists the store."""
    (window,), (affect,), (tau,), (variant,), (modality,) = (
        grid.windows,
        grid.affects,
        grid.taus,
        grid.variants,
        grid.modalities,
    )
    found = {} if found is None else found

    def memo(key: tuple, make):
        if key not in found:
            found[key] = make()
        return found[key]

    sets_key = (grid.dataset, window, grid.modalities, "pretrained" in grid.variants, grid.pretrained_encoder)
    sets = memo(("windows", *sets_key, grid.folds), lambda: window_sets(store, grid, window))
    if not 1 <= test_fold <= sets.folds:
        raise ValueError(f"test fold {test_fold}: the {grid.dataset} windows make folds 1–{sets.folds}")
    if variant == "pretrained" and modality != "face":
        raise ValueError("the pretrained variant reads a visual encoder's windows: modality face only")
    lexicon = memo(("lexicon", grid.lexicon), lambda: read_cue_lexicon(grid.lexicon))
    described = tuple(g.path for g in sets.described)
    prompts_key = ("prompts", described, grid.lexicon, grid.lexicon_kind, sets.folds, test_fold, grid.template)
    prompts = memo(
        prompts_key,
        lambda: compute_prompts(
            store, sets.described, lexicon, grid.lexicon_kind, sets.folds, test_fold, grid.template
        )[0],
    )
    pairs = memo(
        ("pairs", sets.labelled.path, affect, tau), lambda: compute_pairs(store, sets.labelled, affect, tau)[0]
    )
    text = grid.text_models[0] if variant in TEXT_VARIANTS else None
    visual = sets.visual.path if variant == "pretrained" else None
    return CellInputs(prompts.path, pairs.path, visual, text, variant, modality)


@register_input
class WindowPairsInput(HeadInput):
    """LaScA's: a video dataset's pairs of consecutive windows and their prompts, for one cell of the
    grid (``request.cell`` over CELL_DEFAULTS) and test fold; the prompts and pairs are keyed steps of
    their own, made (or found done) when planning, since the learner's key holds theirs."""

    kinds = ("pairs",)
    preset = "lasca"
    takes_cell = True

    def plan(self, store: FeatureStore, request: HeadRequest) -> PlannedInput:
        return self.plan_many(store, [request])[0]

    def plan_many(self, store: FeatureStore, requests: list[HeadRequest]) -> list[PlannedInput]:
        """The cells of one planning pass (a grid's sweep) share their window lookups, prompts and pairs."""
        found: dict[tuple, Any] = {}
        return [self._plan(store, r, found) for r in requests]

    def _plan(self, store: FeatureStore, request: HeadRequest, found: dict[tuple, Any]) -> PlannedInput:
        if not isinstance(request.features, str):
            raise ValueError(f"{request.head} reads one video dataset's windows: give one --features (its name)")
        grid = cell_grid(request.features, request.cell or {}, request.folds)
        inputs = cell_inputs(store, grid, request.test_fold, found)
        prompts, pairs, encoder, pretrained = inputs.open(store)
        r = request
        step = lasca_step(
            prompts, pairs, inputs.variant, inputs.modality, r.train, r.options, encoder, pretrained, r.head, r.task
        )
        return PlannedInput(step, inputs, request.features)

    def prepare(self, store: FeatureStore, request: HeadRequest, planned: CellInputs) -> None:
        """The prompts' embeddings, made once into the store's cache: the processes then only read them."""
        if planned.variant in TEXT_VARIANTS:
            prompt_vectors(store, planned.prompts, MODALITY_PROMPTS[planned.modality], text_encoder(planned.text_model))

    def train(
        self, store: FeatureStore, request: HeadRequest, planned: CellInputs
    ) -> tuple[StepGroup, str, dict[str, Any]]:
        prompts, pairs, encoder, pretrained = planned.open(store)
        r = request
        return train_lasca(
            store,
            prompts,
            pairs,
            planned.variant,
            planned.modality,
            r.train,
            r.options,
            encoder,
            pretrained,
            r.head,
            r.task,
        )


@functools.cache
def text_encoder(name: str) -> Encoder:
    """One sentence encoder object per name and process: the prompt vectors' cache is per object."""
    return create_encoder(name)


def _cells(grid: LascaGrid):
    """(modality, variant, text model | None, affect, τ) of one fold; pretrained is visual: face only."""
    for modality in grid.modalities:
        for variant in grid.variants:
            if variant == "pretrained" and modality != "face":
                continue
            for text_model in grid.text_models if variant in TEXT_VARIANTS else (None,):
                for affect in grid.affects:
                    for tau in grid.taus:
                        yield modality, variant, text_model, affect, tau


def prompt_statistics(prompts: GroupReader, top: int = 5) -> dict[str, Any]:
    """Per prompt kind (face, audio, multimodal): windows, unique prompts, the ``top`` most frequent
    with their counts, and a histogram of how many windows share a prompt (1, 2–4, 5–9, 10–49, ≥ 50)."""
    out = {}
    for kind in MODALITY_PROMPTS.values():
        texts = [t for t in prompts.numpy(kind).tolist() if t]
        counts = Counter(texts)
        bins = {"1": 0, "2–4": 0, "5–9": 0, "10–49": 0, "≥50": 0}
        for n in counts.values():
            bins["1" if n == 1 else "2–4" if n < 5 else "5–9" if n < 10 else "10–49" if n < 50 else "≥50"] += 1
        out[kind] = {"windows": len(texts), "unique": len(counts), "top": counts.most_common(top), "histogram": bins}
    return out


# -- explanations -----------------------------------------------------------------------------------
def explain_pair(store: FeatureStore, head_path: str, pair: int) -> dict[str, Any]:
    """For pair ``pair`` (row of the learner's pairs group): the salient cues that appeared and
    disappeared from the first window to the second (the prompts' phrases, of the learner's
    modality), the learner's predicted direction and probability, and the label."""
    head = GroupReader.open(store, head_path)
    meta = head.meta
    prompts, pairs = GroupReader.open(store, meta["prompts_path"]), GroupReader.open(store, meta["pairs_path"])
    if not 0 <= pair < pairs.shape("label")[0]:
        raise ValueError(f"{meta['pairs_path']} has {pairs.shape('label')[0]} pairs, not a pair {pair}")
    first, second = int(pairs.numpy("first")[pair]), int(pairs.numpy("second")[pair])
    salient, phrases = prompts.numpy("salient"), prompts.meta["cues"]
    modality = meta["modality"]
    shown = [j for j, m in enumerate(prompts.meta["modalities"]) if modality in ("both", m)]

    def cues(mask: np.ndarray) -> list[str]:  # a feature the lexicon does not describe has no cue
        return [phrases[j] for j in shown if mask[j] and phrases[j]]

    data = lasca_data_of(store, head)
    x = _pair_input(data, pair)
    model, _ = load_head(store, head_path)
    with torch.no_grad():
        logit = float(model.predict(x[None])[0][0, 0])
    probability = 1 / (1 + np.exp(-logit))
    return {
        "pair": pair,
        "windows": [first, second],
        "video": str(pairs.numpy("video")[pair]),
        "affect": meta["affect"],
        "appeared": cues(salient[second] & ~salient[first]),
        "disappeared": cues(salient[first] & ~salient[second]),
        "kept": cues(salient[first] & salient[second]),
        "predicted": "rises" if probability >= 0.5 else "falls",
        "probability_rises": round(float(probability), 4),
        "label": "rises" if pairs.numpy("label")[pair] == 1 else "falls",
        "prompts": [str(prompts.numpy(MODALITY_PROMPTS[modality])[w]) for w in (first, second)],
    }


def _pair_input(data, pair: int):
    """Δz of one pair, from whichever split holds it (a pair with a window without features is in none)."""
    for split, rows in data.rows.items():
        where = np.flatnonzero(rows == pair)
        if where.size:
            return data.x[split][int(where[0])]
    raise ValueError(f"pair {pair} has a window without features: it is in no split")
