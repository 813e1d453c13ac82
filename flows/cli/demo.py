"""``affectflow demo``: the main job end to end, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
) -> None:
    """The main job end to end, offline: write the demo catalogues (real photos; generated labelled
    faces and videos), extract them, list the store, then train AURA, a linear probe and an MLP for
    expressions, valence–arousal and AUs, CausalAffect's graph head, FAUD-CLIP, FACR's reasoner and an
    MLP with the circumplex term on the generated faces, print their reports, audit the last two
    against their controls, and run a small LaScA grid on the videos' windows."""
    from flows.demo import DEMO_VIDEOS, demo_extractions
    from stages.extraction.encoders import create_encoder
    from stages.synthetic.demo_catalogue import write_demo_catalogue
    from stages.synthetic.face_generator import write_generated_dataset
    from stages.synthetic.face_videos import write_generated_videos

    photos = write_demo_catalogue(data / "photos")
    console.print(f"real-photo catalogue: {photos}/manifest.csv")
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
    for name, params in demo_extractions(str(data)).items():  # what the nightly-demo deployments run
        if encoder and name == "nightly-demo":
            params = {**params, "encoders": [parse_encoder(e).model_dump() for e in encoder]}
        extract_or_fail(
            store=store, storage_options=cli_storage(storage_option), storage_secret=storage_secret, **params
        )
    fstore = cli_store(store, storage_option, storage_secret)
    _accepted_per_subject(fstore, "generated")
    ls(store=store, storage_option=storage_option, storage_secret=storage_secret)
    runs = _demo_heads(fstore)
    _demo_audits(fstore, runs)
    _demo_lasca(fstore)


def _demo_heads(fstore) -> list[dict]:
    """The demo's heads (flows/demo.py), their reports and the summary table; their runs."""
    from flows.demo import demo_head_configs
    from flows.run import train_heads_here

    store = fstore.url
    result = train_heads_here(demo_head_configs(fstore), store=store, storage_options=fstore.storage_options)
    for run in result["runs"]:
        if text := run.get("report") or run.get("graph_report"):  # a graph head's report starts with its graph.md
            console.print(text)
        if "graph_report" in run:
            console.print(f"AU → expression heatmap: {store}/{run['path']}/graph-au_expression.png")
        if fstore.has_file(run["path"], "attention.png"):
            console.print(f"AU attention sheet: {store}/{run['path']}/attention.png")
    print_training(result, store)
    return result["runs"]


def _demo_audits(fstore, runs: list[dict]) -> None:
    """FACR's faithfulness audit of the demo's reasoner and the circumplex audit of its MLP with the
    transport term, each against its controls on DEMO_AUDIT_SEEDS seeds, printed."""
    from flows.audits import audit_heads_here
    from flows.demo import DEMO_AUDIT_SEEDS

    facr = [r["path"] for r in runs if r["head"] == "facr"]
    circumplex = [r["path"] for r in runs if r["train"].get("transport") == "circumplex"]
    for kind, paths in (("faithfulness", facr), ("circumplex", circumplex)):
        for audit in audit_heads_here(kind, paths, fstore.url, fstore.storage_options, seeds=DEMO_AUDIT_SEEDS):
            console.print(audit["markdown"])
            console.print(f"{kind} audit: {fstore.url}/{audit['path']}/report.md")


def _demo_lasca(fstore) -> None:
    """The demo's small LaScA grid on the generated videos' windows (flows/demo.py), printed."""
    from flows.demo import demo_lasca_grid
    from flows.lasca import lasca_grid

    result = lasca_grid(demo_lasca_grid(), fstore.url, fstore.storage_options)
    console.print(result["report"])


def _accepted_per_subject(fstore, dataset: str) -> None:
    """How many images of each generated subject the face model accepted (the rest: no_face)."""
    from featurestore import GroupReader

    face = GroupReader(fstore.latest(f"features/{dataset}/mediapipe-face"))
    subjects = GroupReader.open(fstore, face.meta["source_path"]).numpy("subject")
    ok = face.ok_mask()
    counts = {s: f"{int(ok[subjects == s].sum())}/{int((subjects == s).sum())}" for s in dict.fromkeys(subjects)}
    console.print("face model accepted per generated subject: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
