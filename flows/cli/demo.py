"""``affectflow demo``: the main job end to end, offline."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from flows.cli.common import (
    SecretOpt,
    StorageOpt,
    StoreOpt,
    app,
    cli_storage,
    cli_store,
    console,
    fail,
)
from flows.cli.extract import extract_or_fail, parse_encoder
from flows.cli.heads import print_training
from flows.cli.store import ls
from flows.demo import DEMO_PER_SUBJECT


@app.command()
def demo(
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    data: Annotated[Path, typer.Option(help="where to write the demo catalogues")] = Path("./demo-data"),
    encoder: Annotated[
        list[str], typer.Option(help="image encoders (default: efficientnet-lite0,tokens=true and mediapipe-face)")
    ] = [],
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="the logs, progress bars and every report in full on the terminal")
    ] = False,
) -> None:
    """The main job end to end, offline: write the demo catalogues (real photos; generated labelled
    faces and videos), extract them, then train AURA, a linear probe and an MLP for expressions,
    valence–arousal and AUs, CausalAffect's graph head, FAUD-CLIP, FACR's reasoner and an MLP with
    the circumplex term on the generated faces, audit the last two against their controls, and run
    a small LaScA grid on the videos' windows. Prints what was extracted, what was trained (each
    head's test score beside the linear probe's) and where the reports are; the logs go to
    DATA/demo.log (``-v``: to the terminal, with every report in full)."""
    data.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext() if verbose else _logs_to(data / "demo.log"):
        _run_demo(store, storage_option, storage_secret, data, encoder, verbose)


def _run_demo(store: str, storage_option: list[str], storage_secret, data: Path, encoder: list[str], verbose: bool):
    from flows.demo import DEMO_VIDEOS, demo_extractions
    from stages.extraction.encoders import create_encoder
    from stages.synthetic.demo_catalogue import write_demo_catalogue
    from stages.synthetic.face_generator import write_generated_dataset
    from stages.synthetic.face_videos import write_generated_videos

    console.rule("1 · the catalogues")
    photos = write_demo_catalogue(data / "photos")
    console.print(f"real photos: {photos}/manifest.csv")
    faces = create_encoder("mediapipe-face")
    try:
        faces.load()
    except Exception as err:  # the model file is fetched by `make install` / `affectflow fetch-models`
        fail(err)
    generated, report = write_generated_dataset(data / "generated", faces.find_face, per_subject=DEMO_PER_SUBJECT)
    console.print(
        f"generated labelled faces: {generated}/manifest.csv — {report['subjects']} subjects × "
        f"{report['per_subject']} images"
    )
    videos, video_report = write_generated_videos(data / "videos", faces.find_face, **DEMO_VIDEOS)
    console.print(
        f"generated labelled videos: {videos} — {video_report['videos']} × {video_report['seconds']:g} s at "
        f"{video_report['fps']} fps, audio: {', '.join(video_report['audio'])}"
    )
    console.rule("2 · extracted (stage 1: frozen encoders into the store)")
    extractions = []
    for name, params in demo_extractions(str(data)).items():  # what the nightly-demo deployments run
        if encoder and name == "nightly-demo":
            params = {**params, "encoders": [parse_encoder(e).model_dump() for e in encoder]}
        extractions.append(
            extract_or_fail(
                show=verbose,
                store=store,
                storage_options=cli_storage(storage_option),
                storage_secret=storage_secret,
                **params,
            )
        )
    fstore = cli_store(store, storage_option, storage_secret)
    if verbose:
        _accepted_per_subject(fstore, "generated")
        ls(store=store, storage_option=storage_option, storage_secret=storage_secret)
    else:
        _print_extracted(extractions)
    console.rule("3 · trained (stage 2: heads on the cached features)")
    runs = _demo_heads(fstore, verbose)
    console.rule("4 · audits and LaScA")
    _demo_audits(fstore, runs, verbose)
    _demo_lasca(fstore, verbose)
    _demo_timeline(fstore, runs, data)
    if not verbose:
        console.print(
            f"full logs: {data / 'demo.log'} (or `affectflow demo -v`); a head's report: `affectflow report PATH`"
        )


@contextlib.contextmanager
def _logs_to(path: Path) -> Iterator[None]:
    """Standard error (the flows' logs, progress bars, the encoders' native logs, child processes'
    output) into ``path`` while the demo runs, so the terminal keeps the story; on an error, its
    last lines are shown."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 2)
        os.environ["TQDM_DISABLE"] = "1"  # progress bars redraw: in a file they are noise
        try:
            yield
        except BaseException as err:
            sys.stderr.flush()
            os.dup2(saved, 2)
            if not isinstance(err, typer.Exit | KeyboardInterrupt):
                tail = path.read_text(errors="replace").splitlines()[-20:]
                console.print("\n".join(tail))
                console.print(f"[bold red]the demo failed:[/] {err!r} (full log: {path})")
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.environ.pop("TQDM_DISABLE", None)


def _print_extracted(extractions: list[dict[str, Any]]) -> None:
    """One table of every dataset × encoder the demo extracted, and its window sets."""
    table = Table()
    for col in ("dataset", "encoder", "samples", "ok", "not ok", "state", "s"):
        table.add_column(col)
    for result in extractions:
        for r in result["steps"]:
            failed = {k: v for k, v in r["status_counts"].items() if k != "ok"}
            bad = ", ".join(f"{v} {k}" for k, v in failed.items()) or "-"
            table.add_row(
                r["dataset"], r["encoder"], str(r["samples"]), str(r["ok"]), bad, r["state"], f"{r['seconds']:.0f}"
            )
    console.print(table)
    windows = [w for result in extractions for w in result.get("windows", [])]
    if windows:
        sets = sorted({w["window"] for w in windows})
        console.print(
            f"windows: {sum(w['windows'] for w in windows)} over {len(windows)} sets "
            f"({', '.join(sets)} × {', '.join(sorted({w['encoder'] for w in windows}))})"
        )


def _demo_heads(fstore, verbose: bool) -> list[dict]:
    """The demo's heads (flows/demo.py): their table and report paths (``verbose``: every report in
    full and the training table); their runs."""
    from flows.demo import demo_head_configs
    from flows.run import train_heads_here

    store = fstore.url
    configs = demo_head_configs(fstore)
    result = train_heads_here(configs, store=store, storage_options=fstore.storage_options, progress=verbose)
    if not verbose:
        _print_heads(result, store)
        return result["runs"]
    for run in result["runs"]:
        if text := run.get("report") or run.get("graph_report"):  # a graph head's report starts with its graph.md
            console.print(text)
        if "graph_report" in run:
            console.print(f"AU → expression heatmap: {store}/{run['path']}/graph-au_expression.png")
        if fstore.has_file(run["path"], "attention.png"):
            console.print(f"AU attention sheet: {store}/{run['path']}/attention.png")
    print_training(result, store)
    return result["runs"]


def _print_heads(result: dict[str, Any], store: str) -> None:
    """Each head's test headline (mean ± std over its seeds) beside the linear probe's on the same
    task and features, then where each report is."""
    summary = result["summary"]
    # the probe on the same task and feature group (pooled, where the head reads its spatial tokens)
    probes = {(r["task"], r["features"]): r for r in summary if r["head"] == "linear"}
    table = Table()
    for col in ("head", "task", "features", "seeds", "test score", "linear probe"):
        table.add_column(col)

    def score(row: dict, headline: str) -> str:  # ± only where there is a spread to show
        mean, std = row["test"][headline]
        return f"{mean:.3f}" + (f" ± {std:.3f}" if len(row["seeds"]) > 1 else "")

    for row in summary:
        probe = probes.get((row["task"], row["features"]))
        beside = "" if probe is None or probe is row else score(probe, row["headline"])
        variant = row["head"] + (" + circumplex" if row["train"].get("transport") == "circumplex" else "")
        features = row["features"].split("/")[2] + ("" if row["array"] == "global" else f" {row['array']}")
        table.add_row(
            variant,
            row["task"],
            features,
            str(len(row["seeds"])),
            f"{row['headline']} {score(row, row['headline'])}",
            beside,
        )
    console.print(table)
    reports = [r["path"] for r in result["runs"] if "report" in r or "graph_report" in r]
    console.print(f"reports (report.md, figures, audit.csv) under {store}/:")
    for path in reports:
        console.print(f"  {path}")


def _demo_audits(fstore, runs: list[dict], verbose: bool) -> None:
    """FACR's faithfulness audit of the demo's reasoner and the circumplex audit of its MLP with the
    transport term, each against its controls on DEMO_AUDIT_SEEDS seeds, printed."""
    from flows.audits import audit_heads_here
    from flows.demo import DEMO_AUDIT_SEEDS
    from stages.training.audits import get_audit

    facr = [r["path"] for r in runs if r["head"] == "facr"]
    circumplex = [r["path"] for r in runs if r["train"].get("transport") == "circumplex"]
    for kind, paths in (("faithfulness", facr), ("circumplex", circumplex)):
        for audit in audit_heads_here(kind, paths, fstore.url, fstore.storage_options, seeds=DEMO_AUDIT_SEEDS):
            if verbose:
                console.print(audit["markdown"])
            else:
                console.print(
                    f"{kind} audit, against its controls on {DEMO_AUDIT_SEEDS} seeds: "
                    + get_audit(kind).headline(audit["result"])
                )
            console.print(f"{kind} audit: {fstore.url}/{audit['path']}/report.md")


def _demo_lasca(fstore, verbose: bool) -> None:
    """The demo's small LaScA grid on the generated videos' windows (flows/demo.py): its accuracy
    table (``verbose``: the whole report)."""
    from flows.demo import demo_lasca_grid
    from flows.lasca import grid_tables, lasca_grid

    grid = demo_lasca_grid()
    result = lasca_grid(grid, fstore.url, fstore.storage_options)
    console.print(result["report"] if verbose else grid_tables(result["records"], grid.pretrained_encoder))


def _demo_timeline(fstore, runs: list[dict], data: Path) -> None:
    """`predict` on one of the generated videos with the AURA expression head, one frame a second:
    its timeline as CSV and a plot in DATA, and how often it agrees with the video's script."""
    import csv

    from flows.predict import predict_images, timeline_png, write_rows_csv

    video = sorted((data / "videos").rglob("*.mp4"))[0]
    (head,) = [r["path"] for r in runs if r["head"] == "aura" and r["task"] == "fer"]
    results = predict_images(fstore, head, [video], fps=1.0)
    write_rows_csv(data / "timeline.csv", results)
    (data / "timeline.png").write_bytes(timeline_png(results) or b"")
    script = list(csv.DictReader(open(video.with_suffix(".csv"))))  # the expression of every frame
    stamps = np.array([float(r["timestamp"]) for r in script])
    ok = [r for r in results if r["status"] == "ok"]
    said = [script[int(np.abs(stamps - r["time"]).argmin())]["expression"] for r in ok]
    agree = sum(r["expression"] == s for r, s in zip(ok, said, strict=True)) / max(len(ok), 1)
    console.print(
        f"video timeline (predict {video.name} --head aura-fer --fps 1): {len(ok)} frames, the script's expression "
        f"in {agree:.0%} of them; {data / 'timeline.csv'}, {data / 'timeline.png'}"
    )


def _accepted_per_subject(fstore, dataset: str) -> None:
    """How many images of each generated subject the face model accepted (the rest: no_face)."""
    from featurestore import GroupReader

    face = GroupReader(fstore.latest(f"features/{dataset}/mediapipe-face"))
    subjects = GroupReader.open(fstore, face.meta["source_path"]).numpy("subject")
    ok = face.ok_mask()
    counts = {s: f"{int(ok[subjects == s].sum())}/{int((subjects == s).sum())}" for s in dict.fromkeys(subjects)}
    console.print("face model accepted per generated subject: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
