"""CausalAffect's graph head → bench/results/causal.json and causal_ablation.json, tables in docs/benchmarks.md.

1. Speed: seconds to early stop (the ``fast`` preset, the CLI's default) of the causal head on
   20,000 cached 1,280-d samples with 12 AUs and 7 expressions (the synthetic features of
   ``common.write_cached_features``), through the real head step; target ``train_seconds`` ≤ 120.
2. Ablation: the 15 variants below on the demo's generated faces (MediaPipe blendshapes; the AU →
   expression rule is the generator's ``PROTOTYPES``), 3 seeds each with the demo's training
   settings: the expression macro-F1, the AU mean F1, their mean (the headline), and for variants
   with a global graph its precision@k: per class, the share of the rule's k AUs among the k
   strongest AU → class edges, averaged over the classes the rule defines. The paper's ablation has
   15 rows over the same switches; its exact rows are not public, so these are the combinations the
   switches allow (CF and DAG act on the global graph, so they need GC).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import SMOKE, demo_store, machine, marks, publish, write_cached_features

MODULES = ("dis", "gc", "sac", "cf", "dag")
VARIANTS = {
    "backbone": (),
    "+Dis": ("dis",),
    "+GC": ("gc",),
    "+GC +DAG": ("gc", "dag"),
    "+SAC": ("sac",),
    "+GC +SAC": ("gc", "sac"),
    "+GC +SAC +DAG": ("gc", "sac", "dag"),
    "+GC +CF": ("gc", "cf"),
    "+GC +SAC +CF": ("gc", "sac", "cf"),
    "+Dis +GC": ("dis", "gc"),
    "+Dis +GC +DAG": ("dis", "gc", "dag"),
    "+Dis +SAC": ("dis", "sac"),
    "+Dis +GC +SAC": ("dis", "gc", "sac"),
    "+Dis +GC +SAC +DAG": ("dis", "gc", "sac", "dag"),
    "full (+Dis +GC +SAC +CF +DAG)": MODULES,
}


def options(modules: tuple[str, ...]) -> dict[str, bool]:
    return {f"use_{m}": m in modules for m in MODULES}


def speed(store, features: str, n: int) -> dict:
    from heads.trainer import TrainConfig
    from stages.head_steps import train_head

    train = TrainConfig.preset("fast", progress=False, **({"epochs": 4} if SMOKE else {}))
    t0 = time.perf_counter()
    _, _, m = train_head(store, features, "causal", "au_fer", "global", {}, train)
    return {
        "n_samples": n,
        "dim": 1280,
        "train_seconds": m["train_seconds"],
        "step_seconds": time.perf_counter() - t0,
        "epochs_run": m["epochs_run"],
        "best_epoch": m["best_epoch"],
        "batch_size": m["batch_size"],
        "test": {k: m["test"][k] for k in ("joint_f1", "macro_f1", "mean_f1")},
    }


def rule_precision(model, labels: list[str]) -> float:
    """Mean over the rule's classes of the share of its AUs among the class's strongest edges."""
    from stages.synthetic.face_generator import PROTOTYPES

    graph = model.graphs()["au_expression"].numpy()
    aus, classes = labels[: model.m], labels[model.m :]
    shares = []
    for c, name in enumerate(classes):
        rule = {f"AU{a}" for a in PROTOTYPES.get(name, ())}
        if rule:
            strongest = {aus[i] for i in np.argsort(-graph[:, c])[: len(rule)]}
            shares.append(len(strongest & rule) / len(rule))
    return float(np.mean(shares))


def ablation(store, features: str, array: str, seeds: list[int]) -> dict:
    from flows.demo import DEMO_TRAIN
    from heads.trainer import TrainConfig
    from stages.head_steps import load_head, train_head

    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    variants = dict(list(VARIANTS.items())[:: 7 if SMOKE else 1])  # a smoke run: 3 of them
    rows = {}
    for name, modules in variants.items():
        runs = []
        for seed in seeds:
            config = TrainConfig(**train, seed=seed, progress=False)
            head, _, m = train_head(store, features, "causal", "au_fer", array, options(modules), config)
            model, saved = load_head(store, head.path)
            graph = rule_precision(model, saved["labels"]) if "gc" in modules else None
            runs.append({**{k: m["test"][k] for k in ("joint_f1", "macro_f1", "mean_f1")}, "precision_at_k": graph})
        rows[name] = {
            "modules": list(modules),
            **{
                k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))]
                for k in ("joint_f1", "macro_f1", "mean_f1")
            },
            "precision_at_k": None if "gc" not in modules else float(np.mean([r["precision_at_k"] for r in runs])),
            "runs": runs,
        }
        print(name, rows[name]["joint_f1"], flush=True)
    described = f"{features.split('/')[1]} {features.split('/')[2]} {array}"
    return {"machine": machine(), "seeds": seeds, "train": train, "features": described, "rows": rows}


def probes(store, features: str, array: str, seeds: list[int]) -> dict:
    """The linear probes on the same features and settings: the expression and AU scores the causal
    head must reach (one probe per task, as the demo trains them)."""
    from flows.demo import DEMO_TRAIN
    from heads.trainer import TrainConfig
    from stages.head_steps import train_head

    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    runs = []
    for seed in seeds:
        config = TrainConfig(**train, seed=seed, progress=False)
        fer = train_head(store, features, "linear", "fer", array, {}, config)[2]["test"]["macro_f1"]
        au = train_head(store, features, "linear", "au", array, {}, config)[2]["test"]["mean_f1"]
        runs.append({"macro_f1": fer, "mean_f1": au, "joint_f1": (fer + au) / 2})
    return {k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))] for k in runs[0]}


def partial_labels(store, generated: Path, work: Path, full: str, seeds: list[int]) -> dict:
    """One causal head on an AU-only half and an expression-only half of the generated faces
    (different subjects; face_generator.write_partial_labels) against the head on the fully labelled
    catalogue and, the control for how many labels each sees, the head on the AU half's subjects
    with every label (as many AU labels as the partial head, and as many expression labels); all
    scored on the full catalogue's test faces, per seed."""
    from flows.demo import DEMO_TRAIN
    from flows.extract import DatasetConfig, EncoderConfig, extract_features
    from heads.trainer import TrainConfig, evaluate, predict
    from stages.head_steps import head_data, load_head, train_head
    from stages.synthetic.face_generator import write_partial_labels

    halves = {"au-only": (0, "au"), "expression-only": (1, "expression"), "half-labelled": (0, "all")}
    groups = []
    for name, (half, keep) in halves.items():
        root = write_partial_labels(generated, work / name, half, keep)
        result = extract_features(
            datasets=[DatasetConfig(layout="csv", root=str(root), name=name)],
            encoders=[EncoderConfig(name="mediapipe-face")],
            store=store.url,
        )
        groups.append(result["steps"][0]["path"])
    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    runs = []
    for seed in seeds:
        config = TrainConfig(**train, seed=seed, progress=False)
        whole, _, m = train_head(store, full, "causal", "au_fer", "blendshapes", {}, config)
        _, _, data = head_data(store, whole.path)
        scores = {}
        for side, inputs in (("partial", groups[:2]), ("half", groups[2])):
            head = train_head(store, inputs, "causal", "au_fer", "blendshapes", {}, config)[0]
            model, saved = load_head(store, head.path)
            assert saved["labels"] == data.label_names, (saved["labels"], data.label_names)
            scores[side] = evaluate("au_fer", predict(model, data.x["test"]), data.y["test"].numpy(), data.n_outputs)
        for k in ("joint_f1", "macro_f1", "mean_f1"):
            runs.append({"seed": seed, "metric": k, "full": m["test"][k], **{s: v[k] for s, v in scores.items()}})
    out = {"seeds": seeds, "train": train, "features": groups, "runs": runs}
    for k in ("joint_f1", "macro_f1", "mean_f1"):
        mine = [r for r in runs if r["metric"] == k]
        for side in ("full", "partial", "half"):
            out[f"{side}_{k}"] = [float(np.mean([r[side] for r in mine])), float(np.std([r[side] for r in mine]))]
        for name, other in (("gap", "full"), ("gap_half", "half")):
            gaps = [r["partial"] - r[other] for r in mine]
            out[f"{name}_{k}"] = [float(np.mean(gaps)), float(np.std(gaps))]
    return out


def speed_table(r: dict) -> str:
    begin, end = marks("causal")
    m = r["machine"]
    return "\n".join(
        [
            begin,
            f"`bench/causal.py` on {m['cpus']} CPUs (torch {m['torch']}, {m['torch_threads']} threads): "
            f"the causal head (every module on) to its early stop on {r['n_samples']:,} cached {r['dim']}-d "
            f"samples, 12 AUs and 7 expressions, fast preset (batch {r['batch_size']}).",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| `train_seconds` | {r['train_seconds']:.1f} s ({r['epochs_run']} epochs, best {r['best_epoch']}) "
            "| ≤ 120 s |",
            f"| head step (store reads, split, training, checkpoint, graphs) | {r['step_seconds']:.1f} s | |",
            f"| test joint / expression / AU F1 | {r['test']['joint_f1']:.3f} / {r['test']['macro_f1']:.3f} / "
            f"{r['test']['mean_f1']:.3f} | |",
            end,
        ]
    )


def ablation_table(r: dict) -> str:
    begin, end = marks("causal_ablation")
    lines = [
        begin,
        f"`bench/causal.py` ablation on {r['features']} (the demo's training settings), mean ± std over "
        f"{len(r['seeds'])} seeds; precision@k: the rule's AUs among each class's strongest AU → class edges.",
        "",
        "| variant | joint F1 | expression macro-F1 | AU mean F1 | precision@k |",
        "|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        cells = [f"{row[k][0]:.3f} ± {row[k][1]:.3f}" for k in ("joint_f1", "macro_f1", "mean_f1")]
        p = "—" if row["precision_at_k"] is None else f"{row['precision_at_k']:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {p} |")
    probe = r["probes"]
    cells = [f"{probe[k][0]:.3f} ± {probe[k][1]:.3f}" for k in ("joint_f1", "macro_f1", "mean_f1")]
    lines.append("| linear probes (`fer`, `au`), for reference | " + " | ".join(cells) + " | — |")
    return "\n".join([*lines, end])


def partial_table(r: dict) -> str:
    begin, end = marks("causal_partial")
    lines = [
        begin,
        "`bench/causal.py` partial labels: one causal head on an AU-only half and an expression-only half of "
        "the generated faces (different subjects, batches balanced across the two) against the head on the "
        "fully labelled catalogue, and against the control with as many labels of each kind as the partial "
        "head sees (the AU half's subjects with every label), all scored on the full catalogue's test faces; "
        f"mean ± std over {len(r['seeds'])} seeds.",
        "",
        "| score | fully labelled | half, every label | partial labels | partial − full | partial − half |",
        "|---|---|---|---|---|---|",
    ]
    for k, name in (("joint_f1", "joint F1"), ("macro_f1", "expression macro-F1"), ("mean_f1", "AU mean F1")):
        cells = [f"{r[f'{side}_{k}'][0]:.3f} ± {r[f'{side}_{k}'][1]:.3f}" for side in ("full", "half", "partial")]
        gaps = [f"{r[g][0]:+.3f} ± {r[g][1]:.3f}" for g in (f"gap_{k}", f"gap_half_{k}")]
        lines.append(f"| {name} | " + " | ".join(cells + gaps) + " |")
    return "\n".join([*lines, end])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--part", choices=("all", "speed", "ablation", "partial"), default="all", help="run one part only"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, printed and not published (common.SMOKE)")
    args = parser.parse_args()
    from featurestore import FeatureStore

    work = Path(tempfile.mkdtemp(prefix="affectflow-causal-"))
    try:
        synthetic = FeatureStore(str(work / "speed"))
        n = 600 if SMOKE else args.samples
        features = write_cached_features(synthetic, n, 1280)
        if args.part in ("all", "speed"):
            fast = {**speed(synthetic, features, n), "machine": machine()}
            publish("causal", fast, speed_table(fast))
        if args.part == "speed":
            return
        seeds = list(range(1 if SMOKE else args.seeds))
        faces = None  # the demo's faces, built once for both parts that read them
        if args.part in ("all", "ablation"):
            if SMOKE:  # the same code on the synthetic features: no face extraction
                table = {
                    **ablation(synthetic, features, "global", seeds),
                    "probes": probes(synthetic, features, "global", seeds),
                }
            else:
                faces = demo_store(work)
                (group,) = [g for g in faces.list_steps("features/generated/mediapipe-face") if g.is_complete]
                table = {
                    **ablation(faces, group.path, "blendshapes", seeds),
                    "probes": probes(faces, group.path, "blendshapes", seeds),
                }
            publish("causal_ablation", table, ablation_table(table))
        if args.part in ("all", "partial"):
            if faces is None:
                faces = demo_store(work, encoders=("mediapipe-face",))
            (group,) = [g for g in faces.list_steps("features/generated/mediapipe-face") if g.is_complete]
            result = {**partial_labels(faces, work / "generated", work, group.path, seeds), "machine": machine()}
            publish("causal_partial", result, partial_table(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
