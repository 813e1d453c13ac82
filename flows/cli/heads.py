"""Head commands: ``train``, ``lasca``, ``predict``, ``evaluate``."""

from __future__ import annotations

import json
import re
from collections import Counter
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
    cli_store,
    console,
    fail,
    head_paths,
    key_values,
)


def _head_options(options: dict[str, Any], head: str, heads: list[str]) -> dict[str, Any]:
    """``key`` options go to every head, ``HEAD.key`` ones to that head only."""
    out = {}
    for key, value in options.items():
        scope, dot, name = key.rpartition(".")
        if dot and scope not in heads:
            raise ValueError(f"--option {key}: {scope!r} is not one of the heads trained here ({', '.join(heads)})")
        if not dot or scope == head:
            out[name] = value
    return out


@app.command()
def train(
    features: Annotated[
        list[str],
        typer.Option(
            help="feature group: DATASET/ENCODER (the only complete match, e.g. rafdb/open_clip) or its path; "
            "repeated: one head trained on every dataset together (e.g. disfa/open_clip and rafdb/open_clip)"
        ),
    ],
    task: Annotated[str, typer.Option(help="fer, va, au, au_fer or rank (LaScA: --features names the video dataset)")],
    head: Annotated[
        list[str],
        typer.Option(help="aura, linear, mlp, causal, faud, facr, lasca or a plugin's head (repeatable)"),
    ] = ["aura"],
    array: Annotated[str, typer.Option(help="feature array: global, patch_proj, blendshapes, mfcc …")] = "global",
    option: Annotated[
        list[str],
        typer.Option(help="head option key=value (every head) or HEAD.key=value (one head), e.g. aura.k_max=300"),
    ] = [],
    plugin: Annotated[list[str], typer.Option(help="module to import first: its heads and tasks register")] = [],
    seed: Annotated[list[int], typer.Option(help="seeds; several give mean ± std (repeatable)")] = [0],
    preset: Annotated[
        str | None,
        typer.Option(
            help="training preset: fast, paper (AURA's lr 1e-4, batch 256), causal (CausalAffect's AdamW), "
            "lasca (MLPClassifier's) or faud (FAUD-CLIP's AdamW and cosine schedule) [default: fast; lasca for rank]"
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="[default: the preset's, fast 100, paper 200]")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="[default: the preset's, fast: the training set / 16 within 32–512, paper 256]")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="[default: the preset's, fast 1e-3, paper 1e-4]")] = None,
    patience: Annotated[int | None, typer.Option(help="[default: the preset's, fast 5, paper 15]")] = None,
    warmup_epochs: Annotated[
        int | None, typer.Option(help="epochs with usage-aware archetype resets [default: fast 3, paper 5]")
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            help="the fewest optimiser steps: a small set's epochs, patience and warm-up are stretched to reach it "
            "[default: the preset's (faud 1,000, others 0; see docs/methods.md#step-budget); 0 when --epochs is given]"
        ),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            help="a transport term on the class loss (fer, au_fer): circumplex (Russell's distances between the "
            "classes, data/circumplex.csv) or uniform (every error the same cost: the control) [default: none]"
        ),
    ] = None,
    transport_weight: Annotated[float | None, typer.Option(help="the transport term's weight [default: 1.0]")] = None,
    report: Annotated[bool, typer.Option(help="write the interpretability report of archetype heads")] = True,
    test_fold: Annotated[
        list[int],
        typer.Option(
            "--test-fold",
            "--fold",
            help="test fold(s), repeatable: DISFA/BP4D's own or of --folds; the folds pool into mean ± std "
            "[default: 1, or every fold with --folds]",
        ),
    ] = [],
    folds: Annotated[
        int | None,
        typer.Option(
            help="subject-exclusive k-fold on a dataset without an official split (CK+): trains every fold, mean ± std"
        ),
    ] = None,
    expressions: Annotated[
        str | None,
        typer.Option(
            help="expression view: basic7 (RAF-DB's seven), affectnet8 (+ contempt) or canonical indices 0,1,…"
        ),
    ] = None,
    cell: Annotated[
        list[str],
        typer.Option(
            help="rank task (LaScA): the grid's cell as key=value, repeatable: window (5s), affect (arousal), tau "
            "(0.2), modality (both), variant (fused), text_model, pretrained_encoder, lexicon (paper), lexicon_kind, "
            "template (paper)"
        ),
    ] = [],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: cuda if available)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the run summary as JSON")] = None,
) -> None:
    """Train heads on cached features (keyed: a rerun with the same inputs is skipped)."""
    from flows.heads import HeadConfig
    from flows.run import train_heads_here
    from heads.registry import load_plugins
    from stages.extraction.sources.labels import expression_view

    options = key_values(option, "--option")
    try:
        load_plugins(plugin)
        configs = [
            HeadConfig(
                head=h,
                task=task,
                features=features[0] if len(features) == 1 else features,
                array=array,
                seeds=seed,
                preset=preset,
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                patience=patience,
                warmup_epochs=warmup_epochs,
                min_steps=min_steps,
                transport=transport,
                transport_weight=transport_weight,
                report=report,
                test_fold=fold,
                folds=folds,
                expressions=expression_view(expressions),
                options=_head_options(options, h, head),
                cell=key_values(cell, "--cell") or None,
            )
            for h in head
            for fold in (test_fold or (range(1, folds + 1) if folds else [1]))
        ]
        result = train_heads_here(
            configs,
            store=store,
            storage_options=cli_storage(storage_option),
            device=device,
            storage_secret=storage_secret,
        )
    except ValueError as err:
        fail(err)
    print_training(result, store)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1, default=str))


def print_training(result: dict, store: str) -> None:
    table = Table(title="train-heads (test split)")
    for col in ("head", "task", "runs", "headline", "mean ± std", "K_stable", "train s"):
        table.add_column(col)
    for row in result["summary"]:
        mean, std = row["test"][row["headline"]]
        k = row["k_stable"][0]
        table.add_row(
            row["head"],
            row["task"],
            f"{len(row['seeds'])} seeds" + (f" × {len(row['folds'])} folds" if row["folds"] else ""),
            row["headline"],
            f"{mean:.3f} ± {std:.3f}",
            "" if k is None else str(k[0]) if len(k) == 1 else f"{min(k)}–{max(k)} per branch",
            f"{row['train_seconds']:.1f}",
        )
    console.print(table)
    for row in result["summary"]:
        protocol = row["protocol"]
        if row["folds"]:  # the rows pool every test fold: say so rather than the first fold's protocol
            folds = f"{row['folds'][0]}–{row['folds'][-1]}" if len(row["folds"]) > 1 else str(row["folds"][0])
            protocol = re.sub(r"test fold \d+", f"mean ± std over test folds {folds}", protocol)
        console.print(f"protocol ({row['head']}, {row['task']}): {protocol}")
    for run in result["runs"]:
        if "report" in run:
            beside = "samples.json, audit.csv" if "graph_report" in run else "nearest-*.png, map.png, audit.csv"
            console.print(f"report: {store}/{run['path']}/report.md (+ {beside})")
        if "graph_report" in run:
            console.print(f"graphs: {store}/{run['path']}/graph.md (+ graph-au_expression.png, graph-au_au.png, *.csv)")


@app.command()
def lasca(
    dataset: Annotated[
        str, typer.Option(help="video or speech dataset with face and/or voice windows (speech only: --modality audio)")
    ],
    window: Annotated[list[str], typer.Option(help="window sets, e.g. 3s (repeatable)")] = ["3s", "5s"],
    tau: Annotated[list[float], typer.Option(help="relative-change thresholds τ (repeatable)")] = [0.1, 0.2],
    modality: Annotated[list[str], typer.Option(help="face, audio, both (repeatable)")] = ["face", "audio", "both"],
    variant: Annotated[list[str], typer.Option(help="features, text, fused, pretrained (repeatable)")] = [
        "features",
        "text",
        "fused",
        "pretrained",
    ],
    text_model: Annotated[
        list[str], typer.Option(help="sentence-transformers (repeatable); `affectflow encoders` lists them")
    ] = ["all-MiniLM-L6-v2"],
    affect: Annotated[list[str], typer.Option(help="valence, arousal (repeatable)")] = ["valence", "arousal"],
    folds: Annotated[int, typer.Option(help="subject-exclusive folds (fewer when there are fewer subjects)")] = 15,
    pretrained: Annotated[str, typer.Option(help="visual encoder of the pretrained row")] = "efficientnet-lite0",
    lexicon: Annotated[
        str,
        typer.Option(help="a packaged lexicon (paper: the paper's Tables 8–9; affectflow) or your CSV file"),
    ] = "paper",
    lexicon_kind: Annotated[str, typer.Option(help="phrase, or name (the lexicon ablation)")] = "phrase",
    template: Annotated[
        str, typer.Option(help="prompt template: paper (labels, ' | ', <|endoftext|>) or sentence")
    ] = "paper",
    out: Annotated[Path | None, typer.Option(help="write the tables here (markdown)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="processes training learners side by side [default: one per core when ≥ 16 each]"),
    ] = None,
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
) -> None:
    """LaScA's grid: preference learners of valence/arousal change between consecutive windows, per
    modality × window × τ × variant × sentence-transformer × affect × fold (each a keyed step), printed
    in the paper's table layout with Wilcoxon tests and the prompt statistics."""
    from flows.run import run_lasca
    from stages.training.lasca_steps import LascaGrid

    try:
        grid = LascaGrid(
            dataset,
            tuple(window),
            tuple(tau),
            tuple(modality),
            tuple(variant),
            tuple(text_model),
            tuple(affect),
            folds,
            pretrained,
            None if lexicon == "paper" else lexicon,
            lexicon_kind,
            template,
        )
        result = run_lasca(grid, store, cli_storage(storage_option), out, workers, storage_secret)
    except (ValueError, KeyError) as err:
        fail(err)
    console.print(result["report"])


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="image and video files")],
    head: Annotated[str, typer.Option(help="trained head: DATASET/HEAD-TASK (the only complete match) or its path")],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    nearest: Annotated[int, typer.Option(help="nearest training examples shown per archetype")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the predictions as JSON")] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="the head's unscaled class probabilities (default: calibrated on val)")
    ] = False,
    framing: Annotated[
        str,
        typer.Option(
            help="auto: each face cropped as the head's training frames framed faces (measured once); "
            "whole: whole images; a number: the face box × it"
        ),
    ] = "auto",
    fps: Annotated[
        float, typer.Option(help="a video's frames per second to predict (the frame on screen at each k / fps)")
    ] = 2.0,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write one row per face and frame as CSV")] = None,
    plot: Annotated[
        Path | None, typer.Option(help="draw each video's class probabilities over time into this PNG")
    ] = None,
) -> None:
    """Predict with a trained head on images and videos, one row per face (each framed as the head's
    training frames framed faces) and, in a video, per frame sampled at --fps: the answer (class
    probabilities calibrated by the temperature fitted on the head's validation split), the
    archetype that decided it and its nearest examples."""
    from featurestore.selectors import select_group
    from flows.predict import predict_images, timeline_png, write_rows_csv

    try:
        fstore = cli_store(store, storage_option, storage_secret)
        path = select_group(fstore, head, "heads").path
        results = predict_images(fstore, path, images, nearest, raw, framing, fps)
    except (ValueError, KeyError) as err:
        fail(err)
    if results:
        console.print(f"framing: {results[0]['framing']}")
    faces = Counter((r["image"], r["time"]) for r in results)  # a face index is news where there are several
    for r in results:
        name = r["image"] + (f" at {r['time']:.2f} s" if r["time"] is not None else "")
        name += f" (face {r['face']})" if faces[(r["image"], r["time"])] > 1 else ""
        if r["status"] != "ok":
            console.print(f"[red]{name}: {r['status']}[/red] {r.get('detail', '')}")
            continue
        if "expression" in r:
            top = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:3]
            answer = f"{r['expression']}  (" + ", ".join(f"{k} {v:.2f}" for k, v in top) + ")"
            if not r["calibrated"]:
                answer += " [uncalibrated: " + ("--raw" if raw else "the head was trained before calibration") + "]"
        elif "valence" in r:
            answer = f"valence {r['valence']:+.2f}, arousal {r['arousal']:+.2f}"
        else:
            answer = "AUs present: " + (", ".join(r["present"]) or "none")
        console.print(f"[bold]{name}[/bold]: {answer}")
        for a in r.get("archetypes", []):
            console.print(
                f"  {a['branch']}: archetype #{a['archetype']} ({a['says']}, usage {100 * a['usage']:.1f} %) "
                f"nearest: {', '.join(a['nearest'])}"
            )
    if json_out:
        json_out.write_text(json.dumps(results, indent=1))
    if csv_out:
        write_rows_csv(csv_out, results)
    if plot and (png := timeline_png(results)) is not None:
        plot.write_bytes(png)
        console.print(f"timeline: {plot}")
    if results and all(r["status"] != "ok" for r in results):
        raise typer.Exit(1)  # nothing could be read: a script must not take this for predictions


@app.command()
def evaluate(
    head: Annotated[
        list[str], typer.Argument(help="trained heads: DATASET/HEAD-TASK (every complete match) or heads/… paths")
    ],
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics as JSON")] = None,
) -> None:
    """Every metric of trained heads on a split: table here, markdown artifact in Prefect, JSON on request."""
    from flows.run import evaluate_heads_here

    try:
        paths = head_paths(cli_store(store, storage_option, storage_secret), head)
        result = evaluate_heads_here(
            paths, split=split, store=store, storage_options=cli_storage(storage_option), storage_secret=storage_secret
        )
    except (ValueError, KeyError) as err:
        fail(err)
    for r in result["results"]:
        table = Table(title=f"{r['head']} · {r['task']} · {r['split']} ({r['samples']} samples)")
        table.add_column("metric")
        table.add_column("value")
        for k, v in r["metrics"].items():
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        console.print(table)
        console.print(f"{r['path']}: {r['protocol']}")
    if json_out:
        json_out.write_text(json.dumps(result["results"], indent=1))
