"""``affectflow extract``: datasets, encoders, windows and prompts into the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.common import (
    SecretOpt,
    StorageOpt,
    StoreOpt,
    app,
    cli_storage,
    console,
    fail,
    key_values,
)


def parse_dataset(text: str):
    """``LAYOUT=ROOT[,key=value…]``; the key ``name`` sets the dataset's name in the store."""
    from flows.extract import DatasetConfig

    head, *rest = text.split(",")
    layout, sep, root = head.partition("=")
    if not sep or not root:
        raise typer.BadParameter(f"--dataset {text!r}: expected LAYOUT=ROOT[,key=value...], e.g. rafdb=/data/RAF-DB")
    options = key_values(rest, f"--dataset {text!r}")
    name = options.pop("name", None)
    return DatasetConfig(layout=layout, root=root, name=name, options=options)


def parse_encoder(text: str):
    """``NAME[,key=value…]``, e.g. ``clip-vit-b-16,tokens=true``; ``face_crop=1.3`` crops each image to
    the mediapipe-face box scaled by 1.3 first (the face step runs before it)."""
    from flows.extract import EncoderConfig

    name, *rest = text.split(",")
    options = key_values(rest, f"--encoder {text!r}")
    face_crop = options.pop("face_crop", None)
    return EncoderConfig(name=name, options=options, face_crop=face_crop)


def parse_window(text: str):
    """``SECONDS[,hop=S][,au_pool=max|mean]`` → a window config."""
    from pydantic import ValidationError

    from flows.extract import WindowConfig

    head, *rest = text.split(",")
    try:
        return WindowConfig(length=float(head), **key_values(rest, f"--window {text!r}"))
    except (ValueError, ValidationError) as err:
        raise typer.BadParameter(f"--window {text!r}: {err}") from None


def parse_prompts(text: str):
    """``NAME=FILE`` → a prompt set named NAME with one prompt per line of FILE."""
    from flows.extract import LexiconConfig
    from stages.extraction.lexicon import read_prompts

    name, sep, path = text.partition("=")
    if not sep or not path:
        raise typer.BadParameter(f"--prompts {text!r}: expected NAME=FILE, e.g. expressions=prompts.txt")
    return LexiconConfig(name=name, prompts=read_prompts(path))


@app.command()
def extract(
    dataset: Annotated[list[str], typer.Option(help="LAYOUT=ROOT[,key=value...] (repeatable)")],
    encoder: Annotated[list[str], typer.Option(help="NAME[,key=value...] (repeatable)")],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    chunk_size: Annotated[int | None, typer.Option(help="samples per chunk (default: ~4 MB chunks)")] = None,
    batch_size: int = 32,
    decode_workers: Annotated[
        int | None,
        typer.Option(
            help="decode threads per chunk; 0 decodes on the task thread (default: the cores torch leaves free)"
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
    dask_address: Annotated[str | None, typer.Option(help="run chunks on this Dask scheduler")] = None,
    dask_workers: Annotated[int, typer.Option(help="run chunks on a temporary LocalCluster of N workers")] = 0,
    prompts: Annotated[
        list[str],
        typer.Option(
            help="NAME=FILE: embed the prompts in FILE (one per line) with every text-tower encoder (repeatable)"
        ),
    ] = [],
    window: Annotated[
        list[str],
        typer.Option(
            help="SECONDS[,hop=S][,au_pool=max|mean]: pool frame features of video datasets over fixed windows "
            "(repeatable, e.g. --window 3 --window 5)"
        ),
    ] = [],
    json_out: Annotated[Path | None, typer.Option("--json", help="write the run summary as JSON")] = None,
) -> None:
    """Run frozen encoders over datasets into the feature store (reruns skip, killed runs resume)."""
    result = extract_or_fail(
        datasets=[parse_dataset(d) for d in dataset],
        encoders=[parse_encoder(e) for e in encoder],
        store=store,
        storage_options=cli_storage(storage_option),
        storage_secret=storage_secret,
        chunk_size=chunk_size,
        batch_size=batch_size,
        decode_workers=decode_workers,
        device=device,
        dask_address=dask_address,
        dask_workers=dask_workers,
        lexicons=[parse_prompts(p) for p in prompts],
        windows=[parse_window(w) for w in window],
    )
    if json_out:
        json_out.write_text(json.dumps(result, indent=1))


def extract_or_fail(show: bool = True, **params: Any) -> dict[str, Any]:
    """Run (or skip) an extraction, print its summary (``show``); a bad input or store ends the
    command with its message. Configs may be given as dicts (flows.demo's plan)."""
    from pydantic import TypeAdapter

    from featurestore import StoreError
    from flows.extract import DatasetConfig, EncoderConfig, WindowConfig
    from flows.extract import extract as run_extract
    from stages.extraction.encoders import EncoderError
    from stages.extraction.sources import SourceError

    kinds = {"datasets": DatasetConfig, "encoders": EncoderConfig, "windows": WindowConfig}
    for name, kind in kinds.items():
        if params.get(name) is not None:
            params[name] = TypeAdapter(list[kind]).validate_python(params[name])
    try:
        result = run_extract(**params)
    except (StoreError, EncoderError, SourceError, ValueError, OSError) as err:
        fail(err)
    if show:
        print_summary(result)
    return result


def print_summary(result: dict[str, Any]) -> None:
    table = Table(title="extract-features")
    for col in ("dataset", "encoder", "key", "state", "chunks run", "samples", "ok", "failed", "s"):
        table.add_column(col)
    for r in result["steps"]:
        failed = {k: v for k, v in r["status_counts"].items() if k != "ok"}
        table.add_row(
            r["dataset"],
            r["encoder"],
            r["key"][:12],
            r["state"],
            f"{r['chunks_run']}/{r['chunks']}",
            str(r["samples"]),
            str(r["ok"]),
            json.dumps(failed) if failed else "-",
            f"{r['seconds']:.1f}",
        )
    console.print(table)
    for r in result.get("windows", []):
        console.print(
            f"windows {r['window']} of {r['dataset']} × {r['encoder']}: {r['windows']} windows, "
            f"key {r['key'][:12]} ({r['state']})"
        )
    for r in result.get("lexicons", []):
        console.print(
            f"lexicon {r['lexicon']} × {r['encoder']}: {r['prompts']} prompts, key {r['key'][:12]} ({r['state']})"
        )
    if not result.get("flow_run", True):
        console.print("every step is complete in the store: nothing to run, no flow run started")
