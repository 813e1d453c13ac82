"""LaScA's learner as a keyed head step, the paper's grid over it, and pair explanations.

A learner is one ``lasca`` head on the ``rank`` task, trained on one (prompts fold, pairs, variant,
modality[, sentence-transformer][, visual windows]) by the one trainer (``fit_head_output``), under
``heads/<dataset>/lasca-rank/<key>``. Its key holds the prompts and pairs groups' keys (so a new τ
re-runs pairs and learners, a new lexicon prompts onward), the text model's weights and the head's
spec, so results, evaluation and the run records treat it like every head.

The grid (:func:`run_lasca_grid`) walks modality × window × τ × variant × sentence-transformer ×
affect × fold: prompts per (window, fold), pairs per (window, affect, τ), prompt embeddings through
the store's cache, one learner per cell and fold. Every piece is a keyed step, so a rerun trains
only what is new; new learners train side by side in processes (:func:`train_learners`).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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

    face: StepGroup | None  # blendshape windows: read when a face or both row is in the grid
    voice: StepGroup | None  # MFCC windows: read when an audio or both row is in the grid
    visual: StepGroup | None  # the pretrained variant's visual-encoder windows
    folds: int  # the grid's folds, fewer when there are fewer subjects

    @property
    def described(self) -> list[StepGroup]:
        """The groups the prompts describe (a speech corpus has no face windows to describe)."""
        return [g for g in (self.face, self.voice) if g is not None]

    @property
    def labelled(self) -> StepGroup:
        """The windows the pairs are made from: the face's when the grid reads faces (a pair's
        windows must have features in every modality the grid reads), else the voice's."""
        return self.face if self.face is not None else self.voice


def window_sets(store: FeatureStore, grid: LascaGrid, window: str) -> WindowSets:
    """The windows each modality of ``grid`` needs: a speech-only set (no face) runs the audio rows
    alone, and a face row over videos where no frame has a face is refused with the reason."""
    face = voice = None
    if set(grid.modalities) & {"face", "both"}:
        try:
            face = latest_windows(store, grid.dataset, window, FACE_ARRAY)
        except ValueError as err:
            raise ValueError(f"{err} (the face and both rows need them; a speech-only set runs --modality audio)")
        if not GroupReader(face).ok_mask().any():
            raise ValueError(
                f"{face.path}: no {window} window of {grid.dataset} has a face (MediaPipe found none in any "
                f"frame, or the recordings have no picture): its face and both rows cannot run; "
                "run the audio rows alone (--modality audio)"
            )
    try:
        voice = latest_windows(store, grid.dataset, window, VOICE_ARRAY)
    except ValueError:
        if set(grid.modalities) & {"audio", "both"}:
            raise
        # face rows alone: a silent video set runs them; with a voice, its prompts are the full grid's
    visual = (
        latest_windows(store, grid.dataset, window, "global", grid.pretrained_encoder)
        if "pretrained" in grid.variants
        else None
    )
    sets = WindowSets(face, voice, visual, 0)
    subjects = GroupReader(sets.labelled).numpy("subject")
    return replace(sets, folds=min(grid.folds, len(np.unique(subjects))))


def run_lasca_grid(
    store: FeatureStore, grid: LascaGrid, train: TrainConfig | None = None, workers: int | None = None
) -> dict[str, Any]:
    """Every learner of the grid (trained or skipped) as records, with the pair counts and the
    prompt statistics of each window set. The learners train in ``workers`` processes (None: one
    per CPU core when there are enough learners to train, see :func:`learner_workers`)."""
    train = train or TrainConfig.preset("lasca", progress=False)
    lexicon = read_cue_lexicon(grid.lexicon)
    learners: list[tuple[CellInputs, dict[str, Any]]] = []
    prompt_stats, pair_counts = {}, {}
    for window in grid.windows:
        sets = window_sets(store, grid, window)
        visual, k = sets.visual, sets.folds
        pairs = {}
        for affect in grid.affects:
            for tau in grid.taus:
                pairs[affect, tau], _ = compute_pairs(store, sets.labelled, affect, tau)
                pair_counts[f"{window} {affect} τ={tau:g}"] = int(GroupReader(pairs[affect, tau]).shape("label")[0])
        for test_fold in range(1, k + 1):
            prompts, _ = compute_prompts(store, sets.described, lexicon, grid.lexicon_kind, k, test_fold, grid.template)
            if test_fold == 1:
                prompt_stats[window] = prompt_statistics(GroupReader(prompts))
            for modality, variant, text_model, affect, tau in _cells(grid):
                inputs = CellInputs(
                    prompts.path,
                    pairs[affect, tau].path,
                    visual.path if variant == "pretrained" else None,
                    text_model,
                    variant,
                    modality,
                )
                cell = {"modality": modality, "variant": variant, "text_model": text_model, "window": window}
                learners.append((inputs, {**cell, "affect": affect, "tau": tau, "fold": test_fold}))
    trained, n_workers = train_learners(store, [inputs for inputs, _ in learners], train, grid.options, workers)
    records = [
        {**cell, "accuracy": metrics["test"]["accuracy"], "pairs": metrics["samples"], "state": state, "path": path}
        for (_, cell), (path, state, metrics) in zip(learners, trained)
    ]
    return {
        "records": records,
        "prompts": prompt_stats,
        "pairs": pair_counts,
        "folds": grid.folds,
        "workers": n_workers,
    }


# -- training many learners at once ------------------------------------------------------------------
# A learner is small (at most 1,280 → 250 → 125 → 1 on batches of 200): one process keeps two CPU
# cores about half busy, and the per-operation overhead dominates the smallest. Learners of a grid
# are independent keyed steps, so separate single-threaded processes train them side by side: on 2
# cores the paper's grid trains 1.74× faster than in one two-threaded process (bench/lasca.py), and
# a machine with more cores gains more. A pool costs a few seconds to start (each process imports
# torch), so it is used when every process gets at least this many learners.
LEARNERS_PER_WORKER = 16


def learner_workers(pending: int, workers: int | None = None) -> int:
    """The processes to train ``pending`` learners in: ``workers`` when given, else one per CPU
    core this process may use, but only as many as get ``LEARNERS_PER_WORKER`` learners each (one
    in a daemonic process, e.g. a Dask worker's task, which may not start processes)."""
    if workers is not None:
        return workers
    if multiprocessing.current_process().daemon:
        return 1
    # the cores this process may run on (Linux); every core where that is not known (macOS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, pending // LEARNERS_PER_WORKER))


def train_learners(
    store: FeatureStore,
    learners: list[CellInputs],
    train: TrainConfig,
    options: dict[str, Any],
    workers: int | None = None,
) -> tuple[list[tuple[str, str, dict[str, Any]]], int]:
    """Train (or skip) each learner; returns ([(path, "new" | "skipped", metrics)] in order, the
    processes used). Done learners are read here; the rest train in this process or, with more than
    one worker, in a pool of spawned single-threaded processes (each learner's step takes its lock,
    so they never write the same group). A failing learner stops the pool and raises: the learners
    already done are stored, and a rerun trains only the rest."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers {workers}: at least 1")
    steps = [learner_step(store, inputs, train, options) for inputs in learners]
    pending = [i for i, step in enumerate(steps) if not store.is_complete(step)]
    n = learner_workers(len(pending), workers) if pending else 1
    results: list[Any] = [None] * len(learners)
    if n > 1:
        for i in pending:  # embeddings of new prompts made once here, so the processes only read the cache
            inputs = learners[i]
            if inputs.variant in TEXT_VARIANTS:
                kind = MODALITY_PROMPTS[inputs.modality]
                prompt_vectors(store, inputs.prompts, kind, text_encoder(inputs.text_model))
        pool = learner_pool(store, n)
        try:
            futures = {i: pool.submit(_train_in_worker, learners[i], train, options) for i in pending}
            for i, future in futures.items():
                results[i] = future.result()
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"the learners' processes stopped abruptly ({err}). They are spawned: a script that starts "
                "the grid must do so under `if __name__ == '__main__':`; or pass workers=1 (--workers 1)"
            ) from err
        finally:
            pool.shutdown(cancel_futures=True)
    for i, inputs in enumerate(learners):
        if results[i] is None:
            results[i] = _train_here(store, inputs, train, options)
    return results, n


def learner_step(store: FeatureStore, inputs: CellInputs, train: TrainConfig, options: dict[str, Any]) -> Step:
    prompts, pairs, encoder, pretrained = inputs.open(store)
    options = get_head(LASCA_HEAD).preset_options("lasca", dict(options))
    return lasca_step(prompts, pairs, inputs.variant, inputs.modality, train, options, encoder, pretrained)


def _train_here(
    store: FeatureStore, inputs: CellInputs, train: TrainConfig, options: dict[str, Any]
) -> tuple[str, str, dict[str, Any]]:
    prompts, pairs, encoder, pretrained = inputs.open(store)
    group, state, metrics = train_lasca(
        store, prompts, pairs, inputs.variant, inputs.modality, train, options, encoder, pretrained
    )
    return group.path, state, metrics


def learner_pool(store: FeatureStore, n: int) -> ProcessPoolExecutor:
    """``n`` spawned processes training into ``store``, this process's torch threads shared among
    them; each leaves when this process dies (killed too), so a killed grid leaves none behind."""
    threads = max(1, torch.get_num_threads() // n)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    return ProcessPoolExecutor(n, context, _start_worker, (store.url, store.storage_options, threads, os.getpid()))


_WORKER_STORE: list[FeatureStore] = []  # the store a pool process trains into, opened once


def _start_worker(url: str, storage_options: dict[str, Any], threads: int, parent: int | None = None) -> None:
    torch.set_num_threads(threads)
    _WORKER_STORE.append(FeatureStore(url, storage_options))
    parent = os.getppid() if parent is None else parent
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()


def _exit_with_parent(parent: int) -> None:
    """A pool process whose parent is gone would wait for work forever (it holds its work queue's
    write end itself, so it never reads an end of file): it leaves, mid-learner too — that step's
    group stays incomplete and the next run trains it again."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _train_in_worker(inputs: CellInputs, train: TrainConfig, options: dict[str, Any]):
    return _train_here(_WORKER_STORE[0], inputs, train, options)


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


def cell_inputs(store: FeatureStore, grid: LascaGrid, test_fold: int) -> CellInputs:
    """The prompts (of ``test_fold``) and pairs a one-cell grid's learner reads, computed or found
    done (both keyed steps), and its pretrained windows and text model where its variant needs them."""
    (window,), (affect,), (tau,), (variant,), (modality,) = (
        grid.windows,
        grid.affects,
        grid.taus,
        grid.variants,
        grid.modalities,
    )
    sets = window_sets(store, grid, window)
    if not 1 <= test_fold <= sets.folds:
        raise ValueError(f"test fold {test_fold}: the {grid.dataset} windows make folds 1–{sets.folds}")
    if variant == "pretrained" and modality != "face":
        raise ValueError("the pretrained variant reads a visual encoder's windows: modality face only")
    lexicon = read_cue_lexicon(grid.lexicon)
    prompts, _ = compute_prompts(
        store, sets.described, lexicon, grid.lexicon_kind, sets.folds, test_fold, grid.template
    )
    pairs, _ = compute_pairs(store, sets.labelled, affect, tau)
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
        if not isinstance(request.features, str):
            raise ValueError(f"{request.head} reads one video dataset's windows: give one --features (its name)")
        inputs = cell_inputs(store, cell_grid(request.features, request.cell or {}, request.folds), request.test_fold)
        prompts, pairs, encoder, pretrained = inputs.open(store)
        r = request
        step = lasca_step(
            prompts, pairs, inputs.variant, inputs.modality, r.train, r.options, encoder, pretrained, r.head, r.task
        )
        return PlannedInput(step, inputs, request.features)

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
