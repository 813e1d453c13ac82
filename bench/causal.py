"""CausalAffect's graph head → bench/results/causal.json and causal_ablation.json, tables in docs/benchmarks.md.

1. Speed: seconds to early stop (the ``fast`` preset, the CLI's default) of the causal head on
   20,000 cached 1,280-d samples with 12 AUs and 7 expressions (the synthetic features of
   ``common.write_cached_features``), through the real head step; target ``train_seconds`` ≤ 120.
2. Ablation: the 15 variants below on the demo's generated faces with the generator's planted AU →
   AU rules (``au_rules=True``: face_generator.AU_RULES, the AUs drawn first and the expression read
   from them; MediaPipe blendshapes; the AU → expression
   rule is the generator's ``PROTOTYPES``), 3 seeds each with the demo's training settings: the
   expression macro-F1, the AU mean F1, their mean (the headline), and for variants with a global
   graph its precision@k: per class, the share of the rule's k AUs among the k strongest AU → class
   edges, averaged over the classes the rule defines; and the planted AU → AU rules among the
   global AU → AU graph's strongest pairs (heads/metrics.edge_recovery). The rows are the paper's
   15 (appendix A, Table 1). The partial-label part reads the demo's own catalogue (no rules).
3. AU → AU recovery (``--part recovery``): the causal head (every module, the demo's training
   settings) on the same faces, 3 seeds: precision@k of the four planted pairs among the graph's k
   strongest, the planted signs, the largest and median |w| against the ±0.01 initialisation, and
   the same ranking read off the training labels alone (co-occurrence, partial correlations) →
   ``au_au_recovery`` in causal.json; under ``cached_features`` the same at the paper's settings
   (``--preset causal``) on cached features with four planted rules (stages/synthetic/planted_aus.py,
   2,000 training rows).
4. Sensitivity (``--part sensitivity``): the paper's appendix F.3 rows (the gate's sharpness γ 5 /
   10 / 20, the feature- and logit-level weights δ, η at 0.5) on the full head, same faces and
   settings, 3 seeds, beside the paper's numbers → causal_sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import REPO, SMOKE, demo_store, machine, marks, publish, write_cached_features

MODULES = ("dis", "gc", "sac", "cf", "dag")
# The paper's 15 rows (appendix A, Table 1), in its order: the acyclicity penalty acts on the global
# AU → AU graph, so it is on wherever GC is but in row 14 (w/o DAG); without GC, CF intervenes along
# each sample's SAC edges (heads/causal.py)
VARIANTS = {
    "1 backbone": (),
    "2 +Dis": ("dis",),
    "3 +GC": ("gc", "dag"),
    "4 +GC +Dis": ("gc", "dis", "dag"),
    "5 +GC +CF": ("gc", "cf", "dag"),
    "6 +GC +Dis +CF": ("gc", "dis", "cf", "dag"),
    "7 +SAC": ("sac",),
    "8 +SAC +Dis": ("sac", "dis"),
    "9 +SAC +CF": ("sac", "cf"),
    "10 +SAC +Dis +CF": ("sac", "dis", "cf"),
    "11 +GC +SAC": ("gc", "sac", "dag"),
    "12 +GC +SAC +Dis": ("gc", "sac", "dis", "dag"),
    "13 +GC +SAC +CF": ("gc", "sac", "cf", "dag"),
    "14 w/o DAG": ("dis", "gc", "sac", "cf"),
    "15 full (+Dis +GC +SAC +CF +DAG)": MODULES,
}


def options(modules: tuple[str, ...]) -> dict[str, bool]:
    return {f"use_{m}": m in modules for m in MODULES}


def speed(store, features: str, n: int) -> dict:
    from heads.trainer import TrainConfig
    from stages.training.head_steps import train_head

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


def planted_pairs(labels: list[str], m: int) -> list[tuple[int, int, int]] | None:
    """(source, target, sign) indices of face_generator.AU_RULES among a head's AUs; None on features
    without the rules' AUs (a smoke run's synthetic features)."""
    from stages.synthetic.face_generator import AU_RULES

    aus = labels[:m]
    if not {f"AU{au}" for r in AU_RULES for au in (r.source, r.target)} <= set(aus):
        return None
    return [(aus.index(f"AU{r.source}"), aus.index(f"AU{r.target}"), r.sign) for r in AU_RULES]


def rule_recovery(model, labels: list[str]) -> dict[str, float] | None:
    """The global AU → AU graph against the generator's planted AU_RULES (heads/metrics.edge_recovery),
    with the share of the planted edges whose learnt sign is the rule's."""
    from heads.metrics import edge_recovery

    planted = planted_pairs(labels, model.m)
    if planted is None:
        return None
    graph = model.graphs()["au_au"].numpy()
    signs = float(np.mean([np.sign(graph[s, t]) == sign for s, t, sign in planted]))
    return {**edge_recovery(graph, [(s, t) for s, t, _ in planted], model.config.init_range), "signs_right": signs}


def face_recovery(store, features: str, array: str, seeds: list[int]) -> dict:
    """The causal head (every module, the demo's training settings) on the faces with planted AU → AU
    rules, per seed: the rules among its AU → AU graph's k strongest pairs; beside it the same ranking
    read straight off the training labels, by co-occurrence (|P(t | s) − P(t)|, the larger direction)
    and by partial correlation — what a graph that only memorised the labels would find."""
    from flows.demo import DEMO_TRAIN
    from heads.graph_report import cooccurrence, partial_correlations
    from heads.metrics import edge_recovery
    from heads.trainer import TrainConfig
    from stages.training.head_steps import head_data, load_head, train_head

    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    runs = []
    for seed in seeds:
        config = TrainConfig(**train, seed=seed, progress=False)
        head, _, m = train_head(store, features, "causal", "au_fer", array, options(MODULES), config)
        model, saved = load_head(store, head.path)
        runs.append({**rule_recovery(model, saved["labels"]), "joint_f1": m["test"]["joint_f1"]})
    model, saved = load_head(store, head.path)
    planted = [(s, t) for s, t, _ in planted_pairs(saved["labels"], model.m)]
    labels = head_data(store, head.path)[2].y["train"][:, : model.m].numpy()
    lift = np.abs(cooccurrence(labels) - (labels == 1).mean(0)[None, :])
    statistics = {
        "cooccurrence": edge_recovery(np.nan_to_num(lift), planted, 0.0)["precision_at_k"],
        "partial_correlation": edge_recovery(np.nan_to_num(partial_correlations(labels)), planted, 0.0)[
            "precision_at_k"
        ],
    }
    keys = ("precision_at_k", "max_abs_weight", "median_abs_weight", "signs_right", "joint_f1")
    return {
        **{k: float(np.mean([r[k] for r in runs])) for k in keys},
        "precision_at_k_std": float(np.std([r["precision_at_k"] for r in runs])),
        "init_scale": runs[0]["init_scale"],
        "labels_alone": statistics,
        "n_train": int(len(labels)),
        "train": train,
        "seeds": seeds,
        "runs": runs,
    }


def train_rows(store, features: str, array: str, seeds: list[int], variants: dict[str, dict]) -> dict:
    """Each variant (name → the causal head's options) trained on every seed with the demo's
    settings: its test scores as mean ± std, and with a global graph the AU → expression rule's
    precision@k and the planted AU → AU rules' recovery."""
    from flows.demo import DEMO_TRAIN
    from heads.trainer import TrainConfig
    from stages.training.head_steps import load_head, train_head

    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    rows = {}
    for name, head_options in variants.items():
        runs = []
        graph = head_options.get("use_gc", True)
        for seed in seeds:
            config = TrainConfig(**train, seed=seed, progress=False)
            head, _, m = train_head(store, features, "causal", "au_fer", array, head_options, config)
            model, saved = load_head(store, head.path)
            precision = rule_precision(model, saved["labels"]) if graph else None
            rules = rule_recovery(model, saved["labels"]) if graph else None
            scores = {k: m["test"][k] for k in ("joint_f1", "macro_f1", "mean_f1")}
            runs.append({**scores, "precision_at_k": precision, "au_au": rules})
        rows[name] = {
            "options": head_options,
            **{
                k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))]
                for k in ("joint_f1", "macro_f1", "mean_f1")
            },
            "precision_at_k": None if not graph else float(np.mean([r["precision_at_k"] for r in runs])),
            "au_au": None
            if runs[0]["au_au"] is None
            else {k: float(np.mean([r["au_au"][k] for r in runs])) for k in runs[0]["au_au"]},
            "runs": runs,
        }
        print(name, rows[name]["joint_f1"], flush=True)
    described = f"{features.split('/')[1]} {features.split('/')[2]} {array}"
    return {"machine": machine(), "seeds": seeds, "train": train, "features": described, "rows": rows}


def ablation(store, features: str, array: str, seeds: list[int]) -> dict:
    """The paper's 15 rows (a smoke run: 3 of them)."""
    variants = dict(list(VARIANTS.items())[:: 7 if SMOKE else 1])
    return train_rows(store, features, array, seeds, {name: options(m) for name, m in variants.items()})


# Appendix F.3, Table 3: the counterfactual gate's sharpness γ and the level weights δ (consistency)
# and η (discrepancy) at the feature and logit levels, with the paper's RAF-DB expression accuracy
# and BP4D AU F1 for each row; every other setting is the full head's
SENSITIVITY = {
    "γ = 20": ({"cf_gamma": 20.0}, (84.1, 66.7)),
    "γ = 10 (all weights 1)": ({}, (85.0, 67.1)),
    "γ = 5": ({"cf_gamma": 5.0}, (84.3, 66.2)),
    "feature 0.5, logit 1": ({"delta_feat": 0.5, "eta_feat": 0.5}, (83.2, 66.3)),
    "feature 1, logit 0.5": ({"delta_logit": 0.5, "eta_logit": 0.5}, (84.5, 66.6)),
    "all 0.5": ({"delta_feat": 0.5, "eta_feat": 0.5, "delta_logit": 0.5, "eta_logit": 0.5}, (83.0, 66.1)),
}


def sensitivity(store, features: str, array: str, seeds: list[int]) -> dict:
    """The paper's sensitivity rows on the full head (a smoke run: 2 of them)."""
    rows = dict(list(SENSITIVITY.items())[: 2 if SMOKE else None])
    return train_rows(store, features, array, seeds, {k: {**options(MODULES), **o} for k, (o, _) in rows.items()})


def sensitivity_table(r: dict) -> str:
    begin, end = marks("causal_sensitivity")
    lines = [
        begin,
        f"`bench/causal.py --part sensitivity` on {r['features']} (the full head, the demo's training settings), "
        f"mean ± std over {len(r['seeds'])} seeds, beside the paper's appendix F.3 (Table 3: RAF-DB expression "
        "accuracy, BP4D AU F1, %).",
        "",
        "| setting | joint F1 | expression macro-F1 | AU mean F1 | AU → AU precision@k | paper RAF-DB | paper BP4D |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        cells = [f"{row[k][0]:.3f} ± {row[k][1]:.3f}" for k in ("joint_f1", "macro_f1", "mean_f1")]
        rules = row.get("au_au")
        au_au = "—" if rules is None else f"{rules['precision_at_k']:.2f}"
        raf, bp4d = SENSITIVITY[name][1]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {au_au} | {raf} | {bp4d} |")
    return "\n".join([*lines, end])


def probes(store, features: str, array: str, seeds: list[int]) -> dict:
    """The linear probes on the same features and settings: the expression and AU scores the causal
    head must reach (one probe per task, as the demo trains them)."""
    from flows.demo import DEMO_TRAIN
    from heads.trainer import TrainConfig
    from stages.training.head_steps import train_head

    train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
    runs = []
    for seed in seeds:
        config = TrainConfig(**train, seed=seed, progress=False)
        fer = train_head(store, features, "linear", "fer", array, {}, config)[2]["test"]["macro_f1"]
        au = train_head(store, features, "linear", "au", array, {}, config)[2]["test"]["mean_f1"]
        runs.append({"macro_f1": fer, "mean_f1": au, "joint_f1": (fer + au) / 2})
    return {k: [float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs]))] for k in runs[0]}


def stand_in_recovery(seeds: list[int]) -> dict:
    import torch

    from heads.metrics import edge_recovery
    from heads.registry import create_head, get_head
    from heads.trainer import TrainConfig, fit
    from stages.synthetic.planted_aus import AU_NAMES, CLASSES, FEATURE_DIM, PLANTED, planted_au_features

    n_train = 300 if SMOKE else 2000
    outputs, names = len(AU_NAMES) + len(CLASSES), AU_NAMES + CLASSES
    runs = []
    for seed in seeds:
        train, val = (
            tuple(map(torch.from_numpy, planted_au_features(n, seed + k))) for n, k in ((n_train, 0), (400, 100))
        )
        torch.manual_seed(seed)
        paper = get_head("causal").preset_options("causal", {})  # the appendix's head: no expression gain
        head = create_head("causal", "au_fer", FEATURE_DIM, outputs, 0, names, {}, **paper)
        config = TrainConfig.preset("causal", seed=seed, progress=False, **({"epochs": 4} if SMOKE else {}))
        fit(head, "au_fer", train, val, outputs, config)
        graph = head.graphs()["au_au"].numpy()
        signs = [bool(np.sign(graph[s, t] + graph[t, s]) == sign) for s, t, sign in PLANTED]
        runs.append({**edge_recovery(graph, [(s, t) for s, t, _ in PLANTED], head.config.init_range), "signs": signs})
    summary = {
        k: float(np.mean([r[k] for r in runs])) for k in ("precision_at_k", "max_abs_weight", "median_abs_weight")
    }
    return {
        **summary,
        "precision_at_k_std": float(np.std([r["precision_at_k"] for r in runs])),
        "init_scale": runs[0]["init_scale"],
        "signs_right": float(np.mean([np.mean(r["signs"]) for r in runs])),
        "n_train": n_train,
        "planted": [list(p) for p in PLANTED],
        "seeds": seeds,
        "runs": runs,
    }


def recovery_table(r: dict) -> str:
    begin, end = marks("causal_au_au")
    lines = [begin]
    if "precision_at_k" in r:  # the faces (not in a smoke run)
        alone = r["labels_alone"]
        lines += [
            "`bench/causal.py --part recovery` on faces: the causal head (every module, the demo's training "
            f"settings) on the demo's catalogue drawn with the generator's four planted AU → AU rules "
            f"({r['n_train']:,} training faces, MediaPipe blendshapes; AUs first, the expression read from "
            f"them: face_generator.AU_RULES), {len(r['seeds'])} seeds; beside it the same ranking read straight "
            "off the training labels.",
            "",
            "| figure | value |",
            "|---|---|",
            "| precision@k (k = 4 planted pairs among the 36) | "
            f"{r['precision_at_k']:.2f} ± {r['precision_at_k_std']:.2f} |",
            f"| planted signs right | {r['signs_right']:.2f} |",
            f"| max / median off-diagonal \\|w\\| | {r['max_abs_weight']:.3f} / {r['median_abs_weight']:.4f} |",
            f"| initialisation | ±{r['init_scale']} |",
            f"| joint F1 (test) | {r['joint_f1']:.3f} |",
            f"| labels alone: co-occurrence lift, partial correlation | {alone['cooccurrence']:.2f}, "
            f"{alone['partial_correlation']:.2f} |",
            "",
        ]
    c = r["cached_features"]
    lines += [
        f"On cached feature rows ({c['n_train']:,}, stages/synthetic/planted_aus.py: four rules, the targets "
        f"weakly visible), `--preset causal`, every module on, {len(c['seeds'])} seeds: precision@k "
        f"{c['precision_at_k']:.2f} ± {c['precision_at_k_std']:.2f}, signs right {c['signs_right']:.2f}, max / "
        f"median \\|w\\| {c['max_abs_weight']:.3f} / {c['median_abs_weight']:.4f}.",
        end,
    ]
    return "\n".join(lines)


def partial_labels(store, generated: Path, work: Path, full: str, seeds: list[int]) -> dict:
    """One causal head on an AU-only half and an expression-only half of the generated faces
    (different subjects; face_generator.write_partial_labels) against the head on the fully labelled
    catalogue and, the control for how many labels each sees, the head on the AU half's subjects
    with every label (as many AU labels as the partial head, and as many expression labels); all
    scored on the full catalogue's test faces, per seed."""
    from flows.demo import DEMO_TRAIN
    from flows.extract import DatasetConfig, EncoderConfig, extract_features
    from heads.trainer import TrainConfig, evaluate, predict
    from stages.synthetic.face_generator import write_partial_labels
    from stages.training.head_steps import head_data, load_head, train_head

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
        f"{len(r['seeds'])} seeds; precision@k: the rule's AUs among each class's strongest AU → class edges; "
        "AU → AU: the generator's planted rules (face_generator.AU_RULES) among the global AU → AU graph's k "
        "strongest pairs, and its largest |w| (initialisation ±0.01).",
        "",
        "| variant | joint F1 | expression macro-F1 | AU mean F1 | precision@k "
        "| AU → AU precision@k | AU → AU max \\|w\\| |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        cells = [f"{row[k][0]:.3f} ± {row[k][1]:.3f}" for k in ("joint_f1", "macro_f1", "mean_f1")]
        p = "—" if row["precision_at_k"] is None else f"{row['precision_at_k']:.2f}"
        rules = row.get("au_au")
        au_au = "— | —" if rules is None else f"{rules['precision_at_k']:.2f} | {rules['max_abs_weight']:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {p} | {au_au} |")
    probe = r["probes"]
    cells = [f"{probe[k][0]:.3f} ± {probe[k][1]:.3f}" for k in ("joint_f1", "macro_f1", "mean_f1")]
    lines.append("| linear probes (`fer`, `au`), for reference | " + " | ".join(cells) + " | — | — | — |")
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
        "--part",
        choices=("all", "speed", "recovery", "ablation", "sensitivity", "partial"),
        default="all",
        help="run one part only",
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
        seeds = list(range(1 if SMOKE else args.seeds))
        faces = None  # the demo's faces with the planted rules, built once for the parts that read them

        def face_group() -> tuple[FeatureStore, str]:
            nonlocal faces
            if faces is None:
                faces = demo_store(work, encoders=("mediapipe-face",), au_rules=True)
            (group,) = [g for g in faces.list_steps("features/generated/mediapipe-face") if g.is_complete]
            return faces, group.path

        if args.part in ("all", "recovery"):
            published = REPO / "bench" / "results" / "causal.json"
            fast = fast if args.part == "all" else json.loads(published.read_text())
            recovery = {} if SMOKE else face_recovery(*face_group(), "blendshapes", seeds)  # a smoke run: no faces
            recovery["cached_features"] = stand_in_recovery(seeds)
            fast = {**fast, "au_au_recovery": recovery}
            publish("causal", fast, speed_table(fast), recovery_table(recovery))
        if args.part in ("speed", "recovery"):
            return
        if args.part in ("all", "ablation"):
            if SMOKE:  # the same code on the synthetic features: no face extraction
                table = {
                    **ablation(synthetic, features, "global", seeds),
                    "probes": probes(synthetic, features, "global", seeds),
                }
            else:
                store, group = face_group()
                table = {
                    **ablation(store, group, "blendshapes", seeds),
                    "probes": probes(store, group, "blendshapes", seeds),
                }
            publish("causal_ablation", table, ablation_table(table))
        if args.part in ("all", "sensitivity"):
            store, group = (synthetic, features) if SMOKE else face_group()
            table = sensitivity(store, group, "global" if SMOKE else "blendshapes", seeds)
            publish("causal_sensitivity", table, sensitivity_table(table))
        if args.part in ("all", "partial"):
            # the demo's own catalogue (every class in every subject's faces, drawn expression first):
            # the rules' catalogue reads classes off random AUs, and a half of a smoke-sized one can
            # miss a rare class
            plain = demo_store(work / "plain", encoders=("mediapipe-face",))
            (group,) = [g for g in plain.list_steps("features/generated/mediapipe-face") if g.is_complete]
            result = {
                **partial_labels(plain, work / "plain" / "generated", work, group.path, seeds),
                "machine": machine(),
            }
            publish("causal_partial", result, partial_table(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
