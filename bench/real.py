"""Every head family on real, public data the project did not generate, against the linear and MLP
baselines on the same cached features.

The data is never committed: each set is built from a public mirror by its script in bench/real/
into ``$AFFECTFLOW_REAL_DATA`` (default ``.real-data/`` in the repository, git-ignored); a set that
is not there is skipped with the command that builds it. Sets and protocols:

* ``facial_expressions`` (bench/real/facial_expressions.py): 13,681 labelled face photos, 8 classes,
  5,618 people; no official split, so 5 person-exclusive folds (scikit-learn's GroupKFold, as
  ``affectflow train --folds 5``). Frozen EfficientNet-Lite0 ``global`` features of the whole photo
  and of MediaPipe's face box × 1.3 (``face_crop=1.3``). Heads: linear, MLP, AURA, AURA with the
  circumplex transport term (FACR's affect-geometry term). No AU labels: FAUD-CLIP, CausalAffect
  and FACR's faithfulness audit do not apply and say so.
* ``ravdess_speech`` (bench/real/ravdess.py): 24 actors' acted speech (1,440 utterances) joined
  into one recording per actor with VA traces from the acted category; no face, so LaScA's audio
  rows (features, text, fused) over 3 s and 5 s windows, τ 0.1 and 0.2, valence and arousal,
  6 actor-exclusive folds; baseline: a logistic regression on the same window differences; and the
  features learner trained 100 epochs instead of the paper's 25 (what the paper's budget costs).

Writes bench/results/real.json (a run of some ``--sets`` keeps the other sets' entries) and the
table in docs/benchmarks.md. ``--smoke`` (tests/test_bench.py) builds both layouts from tiny
stand-in mirrors (noise photos named like the real ones, RAVDESS-named tones) with the real builder
scripts and runs the whole bench on them at small sizes, publishing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from common import REPO, SMOKE, machine, marks, prefect_server, publish

DATA = Path(os.environ.get("AFFECTFLOW_REAL_DATA", REPO / ".real-data"))
SETS = {
    "facial_expressions": {
        "builder": "bench/real/facial_expressions.py",
        "mirror": "github.com/muxspace/facial_expressions",
    },
    "ravdess_speech": {
        "builder": "bench/real/ravdess.py",
        "mirror": "github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only "
        "(or RAVDESS's Audio_Speech_Actors_01-24.zip from zenodo.org/record/1188976, unpacked)",
    },
}
EXPRESSION_FOLDS = 3 if SMOKE else 5
EXPRESSION_HEADS = [  # (row, head, train knobs): the family rows and their baselines
    ("linear probe", "linear", {}),
    ("MLP", "mlp", {}),
    ("AURA", "aura", {}),
    ("AURA + circumplex transport (FACR geometry)", "aura", {"transport": "circumplex"}),
]
NOT_APPLICABLE = {
    "facial_expressions": {
        "FAUD-CLIP": "no AU labels in the set",
        "CausalAffect": "no AU labels in the set (its graphs link AUs to expressions)",
        "FACR faithfulness audit": "no AU labels in the set (it audits an AU layer)",
        "LaScA": "still photos: no windows over time",
    },
    "ravdess_speech": {
        "AURA / FAUD-CLIP / CausalAffect / FACR": "audio only: no face",
    },
}


def missing(name: str) -> str:
    spec = SETS[name]
    return (
        f"{name}: not found under {DATA / name}. Fetch the public mirror {spec['mirror']} and run "
        f"`python {spec['builder']} --mirror <its git dir or folder> --out {DATA / name}` "
        "(or set AFFECTFLOW_REAL_DATA to where the built sets are)"
    )


def built(name: str) -> dict | None:
    path = DATA / name / "build.json"
    return json.loads(path.read_text()) if path.is_file() else None


FRAMINGS = [  # (label, encoder config): the photo as given, and cropped to MediaPipe's face box × 1.3
    ("whole photo", {"name": "efficientnet-lite0"}),
    ("face crop ×1.3", {"name": "efficientnet-lite0", "face_crop": 1.3}),
]


def photo_features(store_dir: Path, name: str, encoder: dict) -> dict:
    """The photo set through one of FRAMINGS' encoders (skipped when done): its extraction step's record."""
    from flows.extract import DatasetConfig, EncoderConfig, extract_features

    summary = extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(DATA / name), name=name)],
        encoders=[EncoderConfig(**encoder)],
        store=str(store_dir),
    )
    (step,) = [r for r in summary["steps"] if r["encoder"].startswith("efficientnet-lite0")]
    return step


def expressions(store_dir: Path, info: dict) -> dict:
    import affectflow

    name = info["dataset"]
    framings = []
    for framing, encoder in FRAMINGS[:1] if SMOKE else FRAMINGS:  # the stand-in photos are noise: no face
        step = photo_features(store_dir, name, encoder)
        rows = []
        for label, head, knobs in EXPRESSION_HEADS:
            folds = []
            for fold in range(1, EXPRESSION_FOLDS + 1):
                t0 = time.perf_counter()
                run = affectflow.train(
                    step["path"], "fer", head, store=str(store_dir), folds=EXPRESSION_FOLDS, test_fold=fold, **knobs
                )
                test = run.metrics["test"]
                folds.append(
                    {
                        "fold": fold,
                        "macro_f1": test["macro_f1"],
                        "accuracy": test["accuracy"],
                        "per_class_f1": {k[3:]: v for k, v in test.items() if k.startswith("f1_")},
                        "train_seconds": round(run.metrics.get("train_seconds", time.perf_counter() - t0), 2),
                        "state": run.state,
                    }
                )
            rows.append({"row": label, "head": head, "train": knobs, "folds": folds, **_summary(folds, "macro_f1")})
        framings.append(
            {"framing": framing, "features": step["path"], "status_counts": step["status_counts"], "rows": rows}
        )
    return {
        "dataset": info,
        "encoder": "efficientnet-lite0",
        "protocol": f"{EXPRESSION_FOLDS} person-exclusive folds (GroupKFold), seed 0",
        "framings": framings,
        "not_applicable": NOT_APPLICABLE[name],
    }


def aura_ablation(store_dir: Path, info: dict) -> dict:
    """AURA's Table 2 rows that apply to expressions on the whole photos (bench/demo_heads.py's rows,
    the paper's index and wording), each over the person-exclusive folds: the ablation on real data.
    Rows 13–14 (global vs patch features) read one extraction with EfficientNet-Lite0's 7 × 7 spatial
    tokens kept, its ``global`` and its ``spatial`` array, so the two rows differ in the input alone."""
    from demo_heads import ablation_rows

    import affectflow

    step = photo_features(store_dir, info["dataset"], FRAMINGS[0][1])
    tokens = photo_features(store_dir, info["dataset"], {**FRAMINGS[0][1], "options": {"tokens": True}})
    rows = []
    for index, (wording, head, options) in ablation_rows("fer").items():
        features, array = step["path"], "global"
        if index in ("13", "14"):
            features, array = tokens["path"], "spatial" if options["input"] == "patch" else "global"
        folds = []
        for fold in range(1, EXPRESSION_FOLDS + 1):
            run = affectflow.train(
                features,
                "fer",
                head,
                store=str(store_dir),
                array=array,
                folds=EXPRESSION_FOLDS,
                test_fold=fold,
                options=options,
            )
            folds.append({"fold": fold, "macro_f1": run.metrics["test"]["macro_f1"], "state": run.state})
        rows.append(
            {
                "row": index,
                "wording": wording,
                "options": options,
                "features": f"{features} {array}",
                "folds": folds,
                **_summary(folds, "macro_f1"),
            }
        )
        print(index, rows[-1]["mean"], flush=True)
    return {"features": step["path"], "tokens": tokens["path"], "rows": rows}


def ablation_table(result: dict) -> str:
    begin, end = marks("real_aura_ablation")
    lines = [begin]
    entry = result["sets"].get("facial_expressions", {}).get("aura_ablation")
    if entry:
        lines += [
            "AURA's Table 2 rows on the real expression photos (facial_expressions, whole photos, EfficientNet-Lite0, "
            f"{EXPRESSION_FOLDS} person-exclusive folds; `bench/real.py --part ablation`; rows 13–14 read one "
            "extraction that keeps the 7 × 7 spatial tokens, its pooled vector and its tokens): "
            "macro-F1, mean ± std over folds.",
            "",
            "| row | configuration | macro-F1 |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['row'] if r['row'].isdigit() else ''} | {r['wording']} | {r['mean']:.3f} ± {r['std']:.3f} |"
            for r in entry["rows"]
        ]
    else:
        lines.append("(not measured: `python bench/real.py --part ablation` with the set built)")
    lines.append(end)
    return "\n".join(lines)


def lasca_fidelity(store_dir: Path, info: dict) -> dict:
    """bench/lasca.py's fidelity rows (the paper's lexicon and template, the lexicon ablation, ours,
    all-mpnet-base-v2) on the actors' voices: audio, 5 s, τ 20 %, the speech grid's folds."""
    from lasca import fidelity

    return fidelity(voices(store_dir, info), LASCA_FOLDS, info["dataset"], ("audio",))


def voices(store_dir: Path, info: dict):
    """The speech set's MFCCs pooled over 3 s and 5 s windows (skipped when done); the store."""
    from featurestore import FeatureStore
    from flows.extract import DatasetConfig, EncoderConfig, WindowConfig, extract_features

    name = info["dataset"]
    extract_features(
        datasets=[DatasetConfig(layout="videofolder", root=str(DATA / name), name=name)],
        encoders=[EncoderConfig(name="mfcc")],
        store=str(store_dir),
        windows=[WindowConfig(length=3), WindowConfig(length=5)],
    )
    return FeatureStore(str(store_dir))


def lasca_fidelity_table(result: dict) -> str:
    from lasca import fidelity_table

    rows = result["sets"].get("ravdess_speech", {}).get("lasca_fidelity")
    if not rows:
        begin, end = marks("real_lasca_fidelity")
        return f"{begin}\n(not measured: `python bench/real.py --part lasca-fidelity` with the set built)\n{end}"
    caption = (
        f"`bench/real.py --part lasca-fidelity`): mean accuracy over {LASCA_FOLDS} actor-exclusive folds of "
        "RAVDESS's voices, 5 s windows, τ 20 %, audio prompts."
    )
    return fidelity_table(rows, "real_lasca_fidelity", ("audio",), caption)


def _summary(folds: list[dict], key: str) -> dict:
    values = np.array([f[key] for f in folds], float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4)}


LASCA_FOLDS = 3 if SMOKE else 6
LONGER_EPOCHS = 5 if SMOKE else 100


def speech(store_dir: Path, info: dict) -> dict:
    from dataclasses import replace

    from flows.lasca import run_lasca_grid
    from stages.training.lasca_steps import LascaGrid

    name = info["dataset"]
    store = voices(store_dir, info)
    grid = LascaGrid(
        name,
        windows=("3s",) if SMOKE else ("3s", "5s"),
        taus=(0.1,) if SMOKE else (0.1, 0.2),
        modalities=("audio",),
        variants=("features", "fused") if SMOKE else ("features", "text", "fused"),
        folds=LASCA_FOLDS,
    )
    t0 = time.perf_counter()
    out = run_lasca_grid(store, grid)
    seconds = time.perf_counter() - t0
    records = out["records"]
    baseline = logistic_baseline(store, records)
    # the paper's learner trains 25 epochs (under 350 Adam steps here): the same learner given
    # LONGER_EPOCHS shows what that budget costs against the linear read-out
    longer = {"epochs": LONGER_EPOCHS, "patience": LONGER_EPOCHS}
    longer_records = run_lasca_grid(store, replace(grid, variants=("features",)), **longer)["records"]
    rows = []
    for variant in grid.variants:
        for affect in grid.affects:
            cell = [r for r in records if r["variant"] == variant and r["affect"] == affect]
            rows.append({"row": f"LaScA {variant}", "affect": affect, **_cell_summary(cell)})
    for affect in grid.affects:
        cell = [r for r in longer_records if r["affect"] == affect]
        rows.append(
            {
                "row": f"LaScA features, {LONGER_EPOCHS} epochs (not the paper's)",
                "affect": affect,
                **_cell_summary(cell),
            }
        )
    for affect in grid.affects:
        cell = [r for r in baseline if r["affect"] == affect]
        rows.append(
            {"row": "logistic regression on Δ features (linear probe)", "affect": affect, **_cell_summary(cell)}
        )
    from heads.lasca_table import grid_tables

    return {
        "dataset": info,
        "encoder": "mfcc (15 MFCCs, RMS, f0 at 25 analysis instants/s)",
        "protocol": f"{out['folds']} actor-exclusive folds; windows {', '.join(grid.windows)}; "
        f"τ {', '.join(f'{t:g}' for t in grid.taus)}",
        "rows": rows,
        "pairs": out["pairs"],
        "learners": len(records),
        "grid_seconds": round(seconds, 1),  # this run's (a rerun finds the learners done)
        "learners_train_seconds": round(sum(_train_seconds(store, r["path"]) for r in records), 1),
        "grid_table": grid_tables(records),
        "records": [{k: v for k, v in r.items() if k != "path"} for r in records],
        "longer_records": [{k: v for k, v in r.items() if k != "path"} for r in longer_records],
        "baseline_records": baseline,
        "not_applicable": NOT_APPLICABLE[name],
    }


def _train_seconds(store, head_path: str) -> float:
    return float(json.loads(store.get_file(head_path, "metrics.json")).get("train_seconds", 0.0))


def _cell_summary(cell: list[dict]) -> dict:
    """Mean ± std of accuracy over every fold, window and τ of one row."""
    values = np.array([r["accuracy"] for r in cell], float)
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std(ddof=1)), 4), "n": len(cell)}


def logistic_baseline(store, records: list[dict]) -> list[dict]:
    """scikit-learn's LogisticRegression on the features variant's own splits (Δ features, the
    same pairs, folds and min–max scaling): LaScA's learner against a linear read-out."""
    from sklearn.linear_model import LogisticRegression

    from featurestore import GroupReader
    from stages.training.lasca_data import lasca_data_of

    out = []
    for r in records:
        if r["variant"] != "features":
            continue
        data = lasca_data_of(store, GroupReader.open(store, r["path"]))
        x = {s: data.x[s].numpy() for s in ("train", "test")}
        y = {s: data.y[s].numpy().reshape(-1) for s in ("train", "test")}
        model = LogisticRegression(max_iter=2000).fit(x["train"], y["train"])
        accuracy = float((model.predict(x["test"]) == y["test"]).mean())
        out.append({k: r[k] for k in ("window", "affect", "tau", "fold")} | {"accuracy": accuracy})
    return out


def tables(result: dict) -> str:
    begin, end = marks("real")
    lines = [begin, ""]
    lines.append(
        "Real, public data the project did not generate (built from public mirrors by bench/real/; "
        "never committed). The sets kept for the project's independent evaluation are not used here. "
        "No AU-coded set with human FACS codes is public in a mirror reachable here (DISFA, BP4D, "
        "UNBC-McMaster, RAF-AU and Aff-Wild2 are released under signed agreements; the public posed one is "
        "kept for independent evaluation), so "
        "FAUD-CLIP, CausalAffect and FACR's faithfulness audit have no real-data row yet."
    )
    fe = result["sets"].get("facial_expressions")
    if fe and "framings" in fe:
        d = fe["dataset"]
        lines += [
            "",
            f"**{d['dataset']}** ({d['source']}; {d['licence']}): {d['images']} photos, {d['subjects']} people, "
            f"classes {d['classes']}. {fe['protocol']}, frozen {fe['encoder']} features of the whole photo, "
            "and of the face MediaPipe finds, cropped to its box × 1.3 (photos without a face found are "
            "left out of that row's folds).",
            "",
            "| features | head | macro-F1 (mean ± std over folds) | vs linear probe | accuracy | train s / fold |",
            "|---|---|---|---|---|---|",
        ]
        for framing in fe["framings"]:
            probe = framing["rows"][0]["mean"]
            ok = framing["status_counts"].get("ok", 0)
            for row in framing["rows"]:
                acc = np.mean([f["accuracy"] for f in row["folds"]])
                secs = np.mean([f["train_seconds"] for f in row["folds"]])
                delta = "—" if row["head"] == "linear" else f"{row['mean'] - probe:+.3f}"
                lines.append(
                    f"| {framing['framing']} ({ok} ok) | {row['row']} | {row['mean']:.3f} ± {row['std']:.3f} | "
                    f"{delta} | {acc:.3f} | {secs:.1f} |"
                )
        classes = list(fe["framings"][0]["rows"][0]["folds"][0]["per_class_f1"])
        lines += [
            "",
            "Per-class F1 (mean over folds):",
            "",
            "| features | head | " + " | ".join(classes) + " |",
            "|---|---|" + "---|" * len(classes),
        ]
        for framing in fe["framings"]:
            for row in framing["rows"]:
                f1 = [np.nanmean([f["per_class_f1"][c] for f in row["folds"]]) for c in classes]
                lines.append(f"| {framing['framing']} | {row['row']} | " + " | ".join(f"{v:.2f}" for v in f1) + " |")
        lines.append("")
        lines += [f"- {k}: not run ({v})." for k, v in fe["not_applicable"].items()]
    rs = result["sets"].get("ravdess_speech")
    if rs and "rows" in rs:
        d = rs["dataset"]
        lines += [
            "",
            f"**{d['dataset']}** ({d['source']}; {d['licence']}): {d['utterances']} utterances, {d['actors']} actors, "
            f"{d['seconds'] / 60:.0f} min, audio only. {rs['protocol']}. Accuracy of the direction of change "
            f"(chance 0.5), mean ± std over folds, windows and τ ({rs['learners']} learners, "
            f"{rs['learners_train_seconds']:.0f} s of learner training in all).",
            "",
            "| model | valence | arousal | vs linear probe (valence, arousal) |",
            "|---|---|---|---|",
        ]
        by = {(r["row"], r["affect"]): r for r in rs["rows"]}
        probe = next(r for r in rs["rows"] if r["row"].startswith("logistic"))["row"]
        for label in dict.fromkeys(r["row"] for r in rs["rows"]):
            cells = [by[label, a] for a in ("valence", "arousal")]
            delta = (
                "—"
                if label == probe
                else ", ".join(f"{by[label, a]['mean'] - by[probe, a]['mean']:+.3f}" for a in ("valence", "arousal"))
            )
            lines.append(
                f"| {label} | " + " | ".join(f"{c['mean']:.3f} ± {c['std']:.3f}" for c in cells) + f" | {delta} |"
            )
        lines.append("")
        lines += [f"- {k}: not run ({v})." for k, v in rs["not_applicable"].items()]
    for name, entry in result["sets"].items():
        if "skipped" in entry:
            lines += ["", f"- {name}: skipped: {entry['skipped']}"]
    lines += ["", end]
    return "\n".join(lines)


def stand_in_mirrors(work: Path) -> None:
    """Tiny folders shaped like the two mirrors, built into ``DATA`` by the real builder scripts."""
    import subprocess
    import sys

    from PIL import Image

    from stages.extraction.media import write_audio

    rng = np.random.default_rng(0)
    faces = work / "facial_expressions-mirror"
    (faces / "images").mkdir(parents=True)
    legend = ["user.id,image,emotion"]
    classes = ["anger", "happiness", "neutral", "sadness", "surprise", "fear"]
    for person in range(6):
        for k, label in enumerate(classes):
            image = f"Person_{person}_{k + 1:04d}.jpg"
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(faces / "images" / image)
            legend.append(f"smoke,{image},{label.upper() if k % 2 else label}")
    (faces / "data").mkdir()
    (faces / "data" / "legend.csv").write_text("\n".join(legend) + "\n")
    speech_mirror = work / "ravdess-mirror"
    for actor in range(1, 7):
        folder = speech_mirror / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            tone = np.sin(2 * np.pi * (120 + 20 * emotion) * np.arange(24000) / 16000) * 0.05 * emotion
            write_audio(folder / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav", tone.astype(np.float32), 16000)
    for name, mirror in (("facial_expressions", faces), ("ravdess_speech", speech_mirror)):
        builder = REPO / SETS[name]["builder"]
        command = [sys.executable, str(builder), "--mirror", str(mirror), "--out", str(DATA / name)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{builder.name} failed:\n{done.stderr[-2000:]}")


# ``--part``: (set, its entry's key, what computes it) for the parts beside the heads' rows
PARTS = {
    "ablation": ("facial_expressions", "aura_ablation", aura_ablation),
    "lasca-fidelity": ("ravdess_speech", "lasca_fidelity", lasca_fidelity),
}
PART_KEYS = {key for _, key, _ in PARTS.values()}


def main() -> None:
    import tempfile

    global DATA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--store", type=Path, default=None, help="[default: <data>/store]")
    parser.add_argument("--smoke", action="store_true", help="tiny stand-in data; nothing published")
    parser.add_argument(
        "--part",
        choices=("heads", "ablation", "lasca-fidelity"),
        default="heads",
        help="ablation: AURA's Table 2 rows on the photos; lasca-fidelity: LaScA's lexicon, template and "
        "sentence-transformer rows on the voices",
    )
    args = parser.parse_args()
    work = tempfile.TemporaryDirectory() if SMOKE else None
    if work is not None:
        DATA = Path(work.name)
        stand_in_mirrors(DATA / "mirrors")
    store = args.store or DATA / "store"
    previous = REPO / "bench" / "results" / "real.json"
    result = {"machine": machine(), "sets": {}}
    if previous.is_file() and not SMOKE:
        result["sets"] = json.loads(previous.read_text()).get("sets", {})
    runners = {"facial_expressions": expressions, "ravdess_speech": speech}
    if args.part in PARTS:  # one extra part: the other entries stay as published
        name, key, run = PARTS[args.part]
        info = built(name)
        if info is None:
            raise SystemExit(missing(name))
        with prefect_server():
            result["sets"].setdefault(name, {})[key] = run(store, info)
        publish("real", result, tables(result), ablation_table(result), lasca_fidelity_table(result))
        return
    with prefect_server():
        for name in args.sets.split(","):
            info = built(name)
            if info is None:
                print(missing(name))
                result["sets"][name] = {"skipped": missing(name)}
                continue
            t0 = time.perf_counter()
            kept = {key: v for key, v in result["sets"].get(name, {}).items() if key in PART_KEYS}  # the parts' rows
            result["sets"][name] = {**runners[name](store, info), **kept}
            result["sets"][name]["seconds"] = round(time.perf_counter() - t0, 1)
    publish("real", result, tables(result), ablation_table(result), lasca_fidelity_table(result))


if __name__ == "__main__":
    main()
