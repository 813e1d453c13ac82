"""The ``extract-features`` flow: datasets × encoders → feature groups, one task per chunk.

The flow only wires steps together. Skipping and resuming come from the store (step keys, done
masks, ``complete`` marks), not from Prefect's result cache, so a Prefect cache miss still skips
finished chunks and a killed run resumes where it stopped.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from pydantic import BaseModel, Field
from tqdm import tqdm

from featurestore import FeatureStore, GroupReader
from flows.runners import chunk_runner
from stages.encoders import create_encoder
from stages.extract import ChunkReport, extract_chunk, feature_key, open_feature_group, write_source
from stages.sources import build_manifest, get_source

MAX_LISTED_FAILURES = 50


class DatasetConfig(BaseModel):
    layout: str = Field(description="registered source layout: rafdb, affectnet, imagefolder, csv")
    root: str = Field(description="dataset root directory")
    name: str | None = Field(None, description="name in the store (default: the layout)")
    options: dict[str, Any] = Field(default_factory=dict, description="layout options")

    @property
    def store_name(self) -> str:
        return self.name or self.layout


class EncoderConfig(BaseModel):
    name: str = Field(description="registered encoder name or open_clip:<arch>@<tag|path>")
    options: dict[str, Any] = Field(default_factory=dict)


@task(cache_policy=NO_CACHE, task_run_name="source {dataset.layout}:{dataset.root}")
def prepare_source(store_url: str, storage_options: dict, dataset: DatasetConfig) -> dict[str, Any]:
    store = FeatureStore(store_url, storage_options)
    manifest = build_manifest(dataset.layout, dataset.root, dataset.store_name, **dataset.options)
    group, state = write_source(store, manifest)
    return {"path": group.group.path, "key": group.key, "samples": group.n_samples, "state": state}


# Our own step keys decide reuse (see module docstring), so Prefect's cache is off for chunks.
extract_chunk_task = task(extract_chunk, name="extract-chunk", cache_policy=NO_CACHE)


def _summary_markdown(rows: list[dict[str, Any]], failures: list[tuple]) -> str:
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
    if failures:
        lines += ["", f"## Failed samples (first {MAX_LISTED_FAILURES})", "", "| row | path | status | detail |",
                  "|---|---|---|---|"]
        for row, path, status, detail in failures[:MAX_LISTED_FAILURES]:
            lines.append(f"| {row} | `{path}` | {status} | {detail.replace('|', '/')} |")
    return "\n".join(lines)


def _run_chunks(runner, group, todo: list[int], parameters: dict[str, Any], label: str) -> list[ChunkReport]:
    """Submit one task per undone chunk; on failures, let the others finish (their work is kept)."""
    logger = get_run_logger()
    futures = [
        runner.submit(extract_chunk_task.with_options(task_run_name=f"{label}/chunk-{i}"),
                      parameters={**parameters, "chunk": i})
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
    decode_workers: int = 2,
    device: str | None = None,
    dask_address: str | None = None,
    dask_workers: int = 0,
) -> dict[str, Any]:
    """Run frozen encoders over datasets into the feature store, skipping and resuming by step key."""
    logger = get_run_logger()
    storage_options = storage_options or {}
    # Fail fast on configuration, before any work: store, layouts, roots, encoders.
    fstore = FeatureStore(store, storage_options)
    for d in datasets:
        get_source(d.layout)
    built = [(e, create_encoder(e.name, **e.options)) for e in encoders]
    for _, enc in built:
        enc.weights_digest()

    rows: list[dict[str, Any]] = []
    failures: list[tuple] = []
    with ExitStack() as stack:
        runner = None  # started on first need, once per flow run: a LocalCluster is not free
        for d in datasets:
            src = prepare_source(store, storage_options, d)
            source_group = fstore.open_step(src["path"])
            logger.info("source %s: %d samples, key %s (%s)", d.store_name, src["samples"], src["key"][:12], src["state"])
            for cfg, enc in built:
                t0 = time.perf_counter()
                reports: list[ChunkReport] = []
                with fstore.lock(feature_key(enc, source_group.key)):
                    group, state, todo = open_feature_group(fstore, d.store_name, source_group, enc, chunk_size)
                    logger.info("%s × %s: %s, %d of %d chunks to run", d.store_name, enc.name, state, len(todo),
                                group.n_chunks)
                    if todo:
                        if runner is None:
                            runner = stack.enter_context(chunk_runner(dask_address, dask_workers))
                        chunk_parameters = dict(
                            store_url=store,
                            storage_options=storage_options,
                            feature_path=group.group.path,
                            dataset_root=d.root,
                            encoder_name=cfg.name,
                            encoder_options=cfg.options,
                            batch_size=batch_size,
                            decode_workers=decode_workers,
                            device=device,
                        )
                        reports = _run_chunks(runner, group, todo, chunk_parameters, f"{d.store_name}/{enc.name}")
                    if not group.is_complete:
                        group.mark_complete()
                seconds = time.perf_counter() - t0
                counts = GroupReader(group).status_counts()
                computed = sum(r.samples for r in reports)
                for r in reports:
                    failures.extend(r.failures)
                rows.append(
                    {
                        "dataset": d.store_name,
                        "encoder": enc.name,
                        "key": group.key,
                        "path": group.group.path,
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
                )
    markdown = _summary_markdown(rows, failures)
    create_markdown_artifact(markdown=markdown, key="extract-features-summary", description="extract-features run")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    report_dir = f"{fstore.root}/reports/extract-features"
    fstore.fs.makedirs(report_dir, exist_ok=True)
    fstore.fs.pipe_file(f"{report_dir}/{stamp}.md", markdown.encode())
    for r in rows:
        failed = sum(v for k, v in r["status_counts"].items() if k != "ok")
        logger.info(
            "%s × %s: %s; %d chunks run of %d; %d ok, %d failed %s",
            r["dataset"], r["encoder"], r["state"], r["chunks_run"], r["chunks"], r["ok"], failed,
            {k: v for k, v in r["status_counts"].items() if k != "ok"},
        )
    return {"steps": rows, "failures": failures[:MAX_LISTED_FAILURES], "report": markdown}

