"""The ``extract-features`` flow: datasets × encoders → feature groups, one task per chunk.

The flow only wires steps together. Skipping and resuming come from the store (step keys, done
masks, ``complete`` marks), not from Prefect's result cache, so a Prefect cache miss still skips
finished chunks and a killed run resumes where it stopped.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from featurestore import FeatureStore, GroupReader, Step
from flows.credentials import store_options
from flows.runners import chunk_runner
from stages.extraction.allocator import keep_large_buffers
from stages.extraction.encoders import Encoder, create_encoder, loaded_encoder
from stages.extraction.extract import (
    ChunkReport,
    FaceCrop,
    extract_chunk,
    feature_arrays,
    feature_meta,
    feature_step,
    source_step,
    write_source,
)
from stages.extraction.lexicon import embed_lexicon, lexicon_step
from stages.extraction.sources import Manifest, build_manifest, get_source
from stages.extraction.windows import WindowSpec, compute_windows, windows_step

# A flow-run process runs encoders on task threads: the allocator is set before any thread starts
# (stages/extraction/allocator.py; AFFECTFLOW_MALLOC=system leaves glibc's defaults).
keep_large_buffers()

MAX_LISTED_FAILURES = 50


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt or misplaced field is an error, never ignored

    layout: str = Field(description="registered source layout: rafdb, affectnet, imagefolder, csv")
    root: str = Field(description="dataset root directory")
    name: str | None = Field(None, description="name in the store (default: the layout)")
    options: dict[str, Any] = Field(default_factory=dict, description="layout options")

    @property
    def store_name(self) -> str:
        return self.name or self.layout


class EncoderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="registered encoder name or open_clip:<arch>@<tag|path>")
    options: dict[str, Any] = Field(default_factory=dict)
    face_crop: float | None = Field(None, gt=0, description="crop images to the mediapipe-face box × this scale")


FACE_ENCODER = "mediapipe-face"


class LexiconConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="name of the prompt set in the store, e.g. expressions")
    prompts: list[str] = Field(min_length=1, description="the prompts, in order")


class WindowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    length: float = Field(gt=0, description="window length in seconds (LaScA: 3 and 5)")
    hop: float | None = Field(None, gt=0, description="seconds between window starts (default: the length)")
    au_pool: str = Field("max", description="AU labels over a window: max (occurrence) or mean")

    def spec(self) -> WindowSpec:
        return WindowSpec(self.length, self.hop, self.au_pool)


def _encoder_order(encoders: list[EncoderConfig]) -> list[EncoderConfig]:
    """Run order: the face encoder first when another encoder crops to its boxes (added if it was
    not asked for: its group is an input of the cropped steps)."""
    configs = list(encoders)
    if any(c.face_crop for c in configs):
        if any(c.name == FACE_ENCODER and c.face_crop for c in configs):
            raise ValueError(f"{FACE_ENCODER} finds the face boxes; it cannot itself be face-cropped")
        faces = next((c for c in configs if c.name == FACE_ENCODER), EncoderConfig(name=FACE_ENCODER))
        configs = [faces] + [c for c in configs if c is not faces]
    return configs


@dataclass
class PlannedFeatures:
    config: EncoderConfig
    encoder: Encoder
    step: Step
    face_crop: FaceCrop | None
    windows: list[tuple[WindowConfig, Step]]


@dataclass
class PlannedDataset:
    config: DatasetConfig
    manifest: Manifest
    source: Step
    features: list[PlannedFeatures]


@dataclass
class ExtractionPlan:
    """Every step of a run, keyed before anything runs: the flow executes it, and a run whose steps
    are all complete starts no flow at all."""

    datasets: list[PlannedDataset]
    lexicons: list[tuple[EncoderConfig, Encoder, LexiconConfig, Step]]

    def steps(self) -> list[Step]:
        out = []
        for d in self.datasets:
            out.append(d.source)
            for f in d.features:
                out += [f.step] + [w for _, w in f.windows]
        return out + [step for *_, step in self.lexicons]


def plan_extraction(
    datasets: list[DatasetConfig],
    encoders: list[EncoderConfig],
    lexicons: list[LexiconConfig] | None = None,
    windows: list[WindowConfig] | None = None,
) -> ExtractionPlan:
    """Parse and fingerprint each dataset (stat-cached) and key every step from it."""
    built = [(c, create_encoder(c.name, **c.options)) for c in _encoder_order(encoders)]
    if text_only := [enc.name for _, enc in built if enc.modality == "text"]:
        raise ValueError(
            f"{', '.join(text_only)}: sentence encoders embed prompts, not frames (stages/training/prompt_cache.py)"
        )
    for _, enc in built:
        enc.weights_digest()  # fail fast: weights missing or unreadable
    text_encoders = [(cfg, enc) for cfg, enc in built if enc.has_text_tower]
    if lexicons and not text_encoders:
        raise ValueError(
            f"prompt sets {[x.name for x in lexicons]} need an encoder with a text tower (open_clip); "
            f"got {[e.name for _, e in built]}"
        )
    planned = []
    for d in datasets:
        manifest = build_manifest(d.layout, d.root, d.store_name, **d.options)
        videos = "timestamp" in manifest.labels
        features, faces = [], None
        for cfg, enc in built:
            crop = FaceCrop(cfg.face_crop, faces.key, faces.path) if cfg.face_crop else None
            step = feature_step(enc, manifest.key, d.store_name, crop)
            if cfg.name == FACE_ENCODER:
                faces = step
            per_window = [
                (w, windows_step(w.spec(), d.store_name, enc.name, step.key, manifest.key)) for w in windows or []
            ]
            features.append(PlannedFeatures(cfg, enc, step, crop, per_window if videos else []))
        planned.append(PlannedDataset(d, manifest, source_step(manifest), features))
    lexicon_steps = [
        (cfg, enc, lex, lexicon_step(enc, lex.prompts, lex.name))
        for cfg, enc in text_encoders
        for lex in lexicons or []
    ]
    return ExtractionPlan(planned, lexicon_steps)


@task(cache_policy=NO_CACHE, task_run_name="windows {window.length}s {features_path}")
def windows_task(
    store_url: str, storage_options: dict, features_path: str, source_path: str, window: WindowConfig
) -> dict[str, Any]:
    fstore = FeatureStore(store_url, storage_options)
    group, state = compute_windows(
        fstore, fstore.open_step(features_path), fstore.open_step(source_path), window.spec()
    )
    return _windows_row(group, state)


def _windows_row(group, state: str) -> dict[str, Any]:
    meta = group.meta
    return {
        "dataset": meta["dataset"],
        "encoder": meta["encoder"],
        "window": meta["window"],
        "key": group.key,
        "path": group.path,
        "state": state,
        "windows": group.n_samples,
    }


@task(cache_policy=NO_CACHE, task_run_name="source {manifest.dataset}")
def prepare_source(store_url: str, storage_options: dict, manifest: Manifest) -> dict[str, Any]:
    group, state = write_source(FeatureStore(store_url, storage_options), manifest)
    return {"path": group.path, "key": group.key, "samples": group.n_samples, "state": state}


@task(cache_policy=NO_CACHE, task_run_name="lexicon {lexicon.name}/{encoder.name}")
def embed_lexicon_task(
    store_url: str, storage_options: dict, encoder: EncoderConfig, lexicon: LexiconConfig, device: str | None
) -> dict[str, Any]:
    fstore = FeatureStore(store_url, storage_options)
    group, state = embed_lexicon(
        fstore, lexicon.name, loaded_encoder(encoder.name, encoder.options, device), lexicon.prompts
    )
    return _lexicon_row(lexicon.name, group, state)


def _lexicon_row(name: str, group, state: str) -> dict[str, Any]:
    return {
        "lexicon": name,
        "encoder": group.meta["encoder"],
        "key": group.key,
        "path": group.path,
        "state": state,
        "prompts": group.n_samples,
    }


# Our own step keys decide reuse (see module docstring), so Prefect's cache is off for chunks.
extract_chunk_task = task(extract_chunk, name="extract-chunk", cache_policy=NO_CACHE)


def _summary_markdown(
    rows: list[dict[str, Any]],
    failures: list[tuple],
    lexicon_rows: list[dict[str, Any]],
    window_rows: list[dict[str, Any]],
) -> str:
    lines = [
        "# extract-features",
        "",
        "| dataset | encoder | key | state | chunks run / total | samples | ok | failed (by status) | s | img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        failed = ", ".join(f"{k}: {v}" for k, v in r["status_counts"].items() if k != "ok") or "–"
        lines.append(
            f"| {r['dataset']} | {r['encoder']} | `{r['key'][:12]}` | {r['state']} | "
            f"{r['chunks_run']} / {r['chunks']} | {r['samples']} | {r['ok']} | {failed} | "
            f"{r['seconds']:.1f} | {r['images_per_s']:.1f} |"
        )
    if lexicon_rows:
        lines += [
            "",
            "## Prompt embeddings",
            "",
            "| lexicon | encoder | key | state | prompts |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['lexicon']} | {r['encoder']} | `{r['key'][:12]}` | {r['state']} | {r['prompts']} |"
            for r in lexicon_rows
        ]
    if window_rows:
        lines += [
            "",
            "## Windows",
            "",
            "| dataset | encoder | window | key | state | windows |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['dataset']} | {r['encoder']} | {r['window']} | `{r['key'][:12]}` | {r['state']} | {r['windows']} |"
            for r in window_rows
        ]
    if failures:
        lines += [
            "",
            f"## Failed samples (first {MAX_LISTED_FAILURES})",
            "",
            "| row | path | status | detail |",
            "|---|---|---|---|",
        ]
        for row, path, status, detail in failures[:MAX_LISTED_FAILURES]:
            lines.append(f"| {row} | `{path}` | {status} | {detail.replace('|', '/')} |")
    return "\n".join(lines)


def _summary_row(
    dataset: DatasetConfig,
    encoder: str,
    group,
    state: str,
    reports: list[ChunkReport],
    seconds: float,
    face_crop: float | None = None,
) -> dict[str, Any]:
    counts = GroupReader(group).status_counts()
    computed = sum(r.samples for r in reports)
    return {
        "dataset": dataset.store_name,
        "encoder": encoder if face_crop is None else f"{encoder} (face crop ×{face_crop:g})",
        "key": group.key,
        "path": group.path,
        "state": state,
        "chunks": group.n_chunks,
        "chunks_run": len(reports),
        "samples": group.n_samples,
        "samples_computed": computed,
        "ok": counts.get("ok", 0),
        "status_counts": counts,
        "seconds": seconds,
        "images_per_s": computed / seconds if computed else 0.0,
    }


def _run_chunks(runner, group, todo: list[int], parameters: dict[str, Any], label: str) -> list[ChunkReport]:
    """Submit one task per undone chunk; on failures, let the others finish (their work is kept)."""
    logger = get_run_logger()
    futures = [
        runner.submit(
            extract_chunk_task.with_options(task_run_name=f"{label}/chunk-{i}"), parameters={**parameters, "chunk": i}
        )
        for i in todo
    ]
    todo_samples = sum(stop - start for start, stop in map(group.chunk_bounds, todo))
    reports, errors = [], []
    with tqdm(total=group.n_samples, initial=group.n_samples - todo_samples, desc=label, unit="img") as bar:
        for future in as_completed(futures):
            try:
                report: ChunkReport = future.result()
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            reports.append(report)
            bar.update(report.samples)
            logger.info("chunk %d: %d/%d ok in %.2fs", report.chunk, report.ok, report.samples, report.seconds)
    if errors:
        raise RuntimeError(
            f"{len(errors)} chunk(s) of {label} failed and were not marked done (rerun to resume): {errors[:3]}"
        )
    return reports


@flow(name="extract-features", log_prints=True)
def extract_features(
    datasets: list[DatasetConfig],
    encoders: list[EncoderConfig],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    chunk_size: int | None = None,
    batch_size: int = 32,
    decode_workers: int | None = None,
    device: str | None = None,
    dask_address: str | None = None,
    dask_workers: int = 0,
    lexicons: list[LexiconConfig] | None = None,
    windows: list[WindowConfig] | None = None,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """Run frozen encoders over datasets into the feature store, skipping and resuming by step key.

    ``lexicons``: prompt sets embedded by every encoder that has a text tower (CLIP-like).
    ``windows``: fixed windows pooled over every feature group of a video source.
    ``storage_secret``: a Prefect Secret block with the store's credentials, read inside the run.
    """
    logger = get_run_logger()
    storage_options = store_options(storage_options, storage_secret)
    # Fail fast on configuration, before any work: store, layouts, roots, encoders.
    if dask_address is not None and not dask_address.strip():
        # what a deployment's "{{ prefect.variables.… }}" becomes when the Variable was not set at deploy time
        raise ValueError(
            "dask_address is empty: set the Prefect Variable the deployment names (e.g. "
            "`prefect variable set dask_scheduler_address tcp://host:8786`) and deploy it again"
        )
    fstore = FeatureStore(store, storage_options)
    for d in datasets:
        get_source(d.layout)
    plan = plan_extraction(datasets, encoders, lexicons, windows)
    rows: list[dict[str, Any]] = []
    window_rows: list[dict[str, Any]] = []
    failures: list[tuple] = []
    with ExitStack() as stack:
        runner = None  # started on first need, once per flow run: a LocalCluster is not free
        for d in plan.datasets:
            src = prepare_source(store, storage_options, d.manifest)
            logger.info(
                "source %s: %d samples, key %s (%s), %s",
                d.manifest.dataset,
                src["samples"],
                src["key"][:12],
                src["state"],
                d.manifest.counts(),
            )
            for f in d.features:
                t0 = time.perf_counter()
                reports: list[ChunkReport] = []
                meta = feature_meta(d.manifest.dataset, f.encoder, src["path"], f.face_crop, f.config.options)
                arrays = feature_arrays(f.encoder)
                with fstore.chunked_step(f.step, src["samples"], arrays, chunk_size, meta) as (group, state, todo):
                    logger.info(
                        "%s × %s: %s, %d of %d chunks to run", d.manifest.dataset, f.encoder.name, state, len(todo),
                        group.n_chunks,
                    )  # fmt: skip
                    if todo:
                        if runner is None:
                            runner = stack.enter_context(chunk_runner(dask_address, dask_workers))
                        chunk_parameters = dict(
                            store_url=store,
                            storage_options=storage_options,
                            feature_path=group.path,
                            dataset_root=d.config.root,
                            encoder_name=f.config.name,
                            encoder_options=f.config.options,
                            batch_size=batch_size,
                            decode_workers=decode_workers,
                            device=device,
                        )
                        label = f"{d.manifest.dataset}/{f.encoder.name}"
                        reports = _run_chunks(runner, group, todo, chunk_parameters, label)
                for r in reports:
                    failures.extend(r.failures)
                rows.append(
                    _summary_row(
                        d.config, f.encoder.name, group, state, reports, time.perf_counter() - t0, f.config.face_crop
                    )
                )
                window_rows += [
                    windows_task(store, storage_options, group.path, src["path"], window) for window, _ in f.windows
                ]
    lexicon_rows = [embed_lexicon_task(store, storage_options, cfg, lex, device) for cfg, _, lex, _ in plan.lexicons]
    markdown = _summary_markdown(rows, failures, lexicon_rows, window_rows)
    create_markdown_artifact(markdown=markdown, key="extract-features-summary", description="extract-features run")
    fstore.file_report("extract-features", markdown)
    for r in rows:
        failed = sum(v for k, v in r["status_counts"].items() if k != "ok")
        logger.info(
            "%s × %s: %s; %d chunks run of %d; %d ok, %d failed %s",
            r["dataset"],
            r["encoder"],
            r["state"],
            r["chunks_run"],
            r["chunks"],
            r["ok"],
            failed,
            {k: v for k, v in r["status_counts"].items() if k != "ok"},
        )
    return {
        "steps": rows,
        "lexicons": lexicon_rows,
        "windows": window_rows,
        "failures": failures[:MAX_LISTED_FAILURES],
        "report": markdown,
    }


def completed_steps(
    plan: ExtractionPlan, store: str = "./store", storage_options: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]] | None:
    """Summary rows when every step of ``plan`` is complete in the store, else None: a finished
    rerun then costs no flow run (no temporary server, no engine start-up)."""
    t0 = time.perf_counter()
    fstore = FeatureStore(store, storage_options or {})
    if not all(fstore.is_complete(step) for step in plan.steps()):
        return None
    seconds = time.perf_counter() - t0
    rows, window_rows = [], []
    for d in plan.datasets:
        for f in d.features:
            group = fstore.open_step(f.step.path)
            rows.append(_summary_row(d.config, f.encoder.name, group, "skipped", [], seconds, f.config.face_crop))
            window_rows += [_windows_row(fstore.open_step(w.path), "skipped") for _, w in f.windows]
    lexicon_rows = [_lexicon_row(lex.name, fstore.open_step(step.path), "skipped") for _, _, lex, step in plan.lexicons]
    return rows, lexicon_rows, window_rows


def extract(
    datasets: list[DatasetConfig],
    encoders: list[EncoderConfig],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    lexicons: list[LexiconConfig] | None = None,
    windows: list[WindowConfig] | None = None,
    storage_secret: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """What ``affectflow extract`` runs: nothing when every step is complete, else the flow (given
    the public options and the Secret block's name: the credentials are read inside the run)."""
    here = store_options(storage_options, storage_secret)
    done = completed_steps(plan_extraction(datasets, encoders, lexicons, windows), store, here)
    if done is not None:
        rows, lexicon_rows, window_rows = done
        return {
            "steps": rows,
            "lexicons": lexicon_rows,
            "windows": window_rows,
            "failures": [],
            "report": _summary_markdown(rows, [], lexicon_rows, window_rows),
            "flow_run": False,
        }
    result = extract_features(
        datasets=datasets,
        encoders=encoders,
        store=store,
        storage_options=storage_options,
        lexicons=lexicons,
        windows=windows,
        storage_secret=storage_secret,
        **options,
    )
    return {**result, "flow_run": True}
