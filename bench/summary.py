"""The README's summary: each method beside its baselines on the demo's generated faces and videos
and on real, public data, rendered from bench/results/ (``publish`` rewrites it after every bench;
tests/test_readme.py checks the README holds exactly this rendering). Every figure is a mean ± std
over the seeds or folds its bench ran; the full tables are in docs/benchmarks.md."""

from __future__ import annotations

import json

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import REPO, marks

BEGIN, END = marks("summary")


def _load(name: str) -> dict:
    return json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())


def _fmt(values, what: str = "") -> str:
    """Mean ± std (n − 1, as bench/real.py reports folds) of several values; one value as it is."""
    values = np.asarray(values, dtype=float)
    text = f"{values[0]:.3f}" if len(values) == 1 else f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    return text + (f" ({what})" if what else "")


def summary_table() -> str:
    heads, demo, real = _load("demo_heads"), _load("demo"), _load("real")["sets"]
    seeds = lambda key: heads[key]["seeds"]  # noqa: E731
    n = len(seeds("fer/aura"))
    photos = real["facial_expressions"]
    whole = photos["framings"][0]
    folds = {r["row"]: [f["macro_f1"] for f in r["folds"]] for r in whole["rows"]}
    speech = {(r["row"], r["affect"]): r for r in real["ravdess_speech"]["rows"]}
    rank = {r["array"]: r["mean"] for r in demo["rows"] if r["task"] == "rank"}
    demo_row = {(r["head"], r["task"]): r["mean"] for r in demo["rows"] if r.get("variant", r["head"]) == r["head"]}

    def ravdess(row: str) -> str:
        r = speech[(row, "arousal")]
        return f"{r['mean']:.3f} ± {r['std']:.3f}"

    k = len(folds["AURA"])
    no_au = "— (no public FACS-coded set here)"
    rows = [
        (
            "AURA, expressions (macro-F1)",
            _fmt(seeds("fer/aura"), f"{n} seeds"),
            f"probe {_fmt(seeds('fer/linear'))}, MLP {_fmt(seeds('fer/mlp'))}",
            f"{photos['dataset']['images']:,} web photos, {k} folds: {_fmt(folds['AURA'])}",
            f"probe {_fmt(folds['linear probe'])}, MLP {_fmt(folds['MLP'])}",
        ),
        (
            "AURA, AUs (mean F1)",
            _fmt(seeds("au/aura"), f"{n} seeds"),
            f"probe {_fmt(seeds('au/linear'))}, MLP {_fmt(seeds('au/mlp'))}",
            no_au,
            "",
        ),
        (
            "AURA, valence–arousal (CCC)",
            _fmt(seeds("va/aura"), f"{n} seeds"),
            f"probe {_fmt(seeds('va/linear'))}, MLP {_fmt(seeds('va/mlp'))}",
            "—",
            "",
        ),
        (
            "CausalAffect (joint F1)",
            _fmt([demo_row[("causal", "au_fer")]], "seed 0"),
            "",
            no_au,
            "",
        ),
        (
            "FAUD-CLIP (AU mean F1)",
            _fmt([demo_row[("faud", "au")]], "seed 0"),
            f"probe {demo_row[('linear', 'au')]:.3f}, MLP {demo_row[('mlp', 'au')]:.3f}",
            no_au,
            "",
        ),
        (
            "LaScA, arousal change (accuracy)",
            _fmt([rank["both-fused"]], "seed 0"),
            f"features alone {rank['both-features']:.3f}",
            f"RAVDESS speech, 24 actors: {ravdess('LaScA fused')}",
            f"probe {ravdess('logistic regression on Δ features (linear probe)')}",
        ),
        (
            "circumplex term on AURA (macro-F1)",
            "",
            "",
            f"web photos: {_fmt(folds['AURA + circumplex transport (FACR geometry)'])}",
            f"AURA alone {_fmt(folds['AURA'])}",
        ),
    ]
    lines = [
        BEGIN,
        "| method (score) | generated | baselines | real data | baselines |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(row)} |" for row in rows),
        END,
    ]
    return "\n".join(lines)
