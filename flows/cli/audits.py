"""Report and audit commands: ``report``, ``audit``."""

from __future__ import annotations

import json
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
    head_paths,
)


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
        paths = head_paths(cli_store(store, storage_option, storage_secret), head)
        reports = head_reports(
            paths,
            store=store,
            storage_options=cli_storage(storage_option),
            storage_secret=storage_secret,
            force=force,
            prototypes=str(prototypes) if prototypes else None,
            samples=sample or None,
        )
    except (ValueError, KeyError) as err:
        fail(err)
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
        paths = head_paths(cli_store(store, storage_option, storage_secret), head)
        audits = audit_heads(
            kind,
            paths,
            store=store,
            storage_options=cli_storage(storage_option),
            storage_secret=storage_secret,
            seeds=seeds,
            structure=structure,
            threshold=threshold,
            measure=measure,
        )
    except (ValueError, KeyError, TypeError) as err:
        fail(err)
    for a in audits:
        console.print(a["markdown"])
        console.print(f"files: {store}/{a['path']}/ (report.md, audit.json)")
    if json_out:
        json_out.write_text(json.dumps([a["result"] for a in audits], indent=1, default=str))
