"""FAUD-CLIP's head → bench/results/faud.json, tables in README.md and docs/benchmarks.md.

1. Speed: training seconds per epoch of the faud head (defaults: width 128, four tree-attention
   blocks, interaction, fixed prompts) on 5,000 cached token grids, 7 × 7 × 1,280 (EfficientNet-Lite0's
   ``spatial``) and 14 × 14 × 512 (ViT-B/16's ``patch_proj``), in memory through the trainer: fields
   ``epoch_seconds_7x7``, ``epoch_seconds_14x14``.
2. Cost: one tree-attention layer (3 levels, top-2) against plain multi-head attention, every token
   a query, on 7 × 7, 14 × 14 and 28 × 28 grids: seconds per batch (forward + backward) and bytes
   allocated per batch (torch's profiler), and the keys each query scores.
3. Accuracy: on the demo's generated faces (EfficientNet-Lite0 spatial tokens; AU occurrence known),
   3 subject-exclusive folds × seeds: mean AU F1 of the paper's ablation rows (baseline, + feature
   interaction, + tree attention, + learnable prompts), the attention variants side by side (tree,
   self, CBAM, activation) and the linear probe on the pooled map; and where each AU's tree-attention
   map looks (mass on its face region against a uniform map, heads/attention_report.py).
4. Small data (``small_data``): the regime where FAUD-CLIP fell to half the linear probe on a real
   AU-coded set — 700 training faces, AUs at 4–35 % (stages/synthetic/small_au_grids.py: 7 × 7 × 32
   token grids) — per seed the linear probe on the pooled grid, the head (``SMALL_HEAD``: width 32,
   one tree-attention block, fixed prompts) with the faud preset at the paper's 12 epochs alone
   (``min_steps 0``: ~130 steps) and with the preset's 1,000-step floor: mean F1 and each AU's F1.

``--store DIR``: a store that already holds the demo's generated faces (else they are generated
and extracted into a temporary one); ``--parts speed,cost,accuracy,small_data``: what to run (a part not run
keeps its earlier published numbers); ``--seeds 0,1,2``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import REPO, SMOKE, demo_store, machine, marks, publish

AUS = [f"AU{n}" for n in (1, 2, 4, 6, 9, 12, 15, 17, 25, 26, 5, 20)]
ABLATION = {
    "baseline": {"attention": "none", "interaction": False, "context": 0},
    "+ feature interaction": {"attention": "none", "interaction": True, "context": 0},
    "+ tree attention": {"attention": "tree", "interaction": True, "context": 0},
    "+ learnable prompts (full)": {"attention": "tree", "interaction": True, "context": 16},
}
VARIANTS = ("tree", "self", "cbam", "activation")
# the small-data part's head: the regression test's (tests/test_faud.py), whose 1,000 steps take
# ~40 s where the default head's (width 128, four blocks) take ~7 min on 2 CPUs
SMALL_HEAD = {"context": 0, "width": 32, "layers": 1, "levels": 2, "top_k": 1}


def epoch_seconds(n: int, side: int, dim: int) -> float:
    """Seconds of one training epoch (the faud preset's batch 64) of the default head on ``n`` token grids."""
    import torch

    from heads.base import PromptText
    from heads.registry import create_head
    from heads.trainer import TrainConfig, fit

    torch.manual_seed(0)
    x = torch.randn(n, side * side, dim)
    y = (torch.rand(n, len(AUS)) < 0.3).long()
    text = PromptText(len(AUS), 384, embeddings=torch.randn(len(AUS), 384))
    head = create_head("faud", "au", dim, len(AUS), side * side, tuple(AUS), {"text": text}, context=0)
    config = TrainConfig.preset("faud", epochs=1, progress=False)
    val = (x[:64], y[:64])
    t0 = time.perf_counter()
    fit(head, "au", (x, y), val, len(AUS), config)
    return time.perf_counter() - t0


def attention_cost(side: int, batch: int, width: int = 128, heads: int = 4) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from heads.tree_attention import TreeAttention

    torch.manual_seed(0)
    tokens = torch.randn(batch, side * side, width)
    tree = TreeAttention(width, heads, levels=3, top_k=2)
    plain = torch.nn.MultiheadAttention(width, heads, batch_first=True)
    runs = {
        "tree": lambda: tree(tokens, tokens, (side, side)),
        "plain": lambda: plain(tokens, tokens, tokens, need_weights=False)[0],
    }
    out = {"grid": f"{side}x{side}", "tokens": side * side, "batch": batch}
    for name, run in runs.items():
        run().sum().backward()  # warm-up
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run().sum().backward()
            times.append(time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            run().sum().backward()
        allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.key_averages())
        out[name] = {"seconds": min(times), "bytes_allocated": int(allocated)}
    coarse_side = -(-(-(-side // 2)) // 2)  # two ceil-halvings: the third level's side
    # every coarsest region, then the 4 children of each of the top 2 at the two finer levels
    out["keys_per_query"] = {"tree": coarse_side**2 + 2 * 4 * 2, "plain": side * side}
    return out


def without_splits(root: Path, out: Path) -> Path:
    """The generated catalogue without its split column (images hard-linked): a dataset without an
    official split, which ``--folds`` cuts into subject-exclusive folds."""
    import csv
    import os
    import shutil

    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "img").exists():
        shutil.copytree(root / "img", out / "img", copy_function=os.link)
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != "split"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return out


def folds_features(store, work: Path) -> str:
    """The demo's generated faces as a dataset without official splits, extracted (EfficientNet-Lite0
    tokens, MediaPipe landmarks for the maps' locality) into ``store``: its token group's path."""
    from featurestore import GroupReader
    from flows.demo import DEMO_IMAGE_ENCODERS, _latest
    from flows.extract import DatasetConfig, EncoderConfig, extract_features

    tokens = GroupReader.open(store, _latest(store, "features/generated/efficientnet-lite0", "spatial"))
    root = Path(GroupReader.open(store, tokens.meta["source_path"]).meta["root_at_creation"])
    copy = without_splits(root, work / "generated-folds")
    extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(copy), name="generated-folds")],
        encoders=[EncoderConfig(**e) for e in DEMO_IMAGE_ENCODERS],
        store=store.url,
    )
    return _latest(store, "features/generated-folds/efficientnet-lite0", "spatial")


def accuracy(store, seeds: list[int], work: Path) -> dict:
    from heads.trainer import TrainConfig
    from stages.training.head_reports import write_map_report
    from stages.training.head_steps import load_head, train_head

    features = folds_features(store, work)
    folds = [1] if SMOKE else [1, 2, 3]
    train = {"lr": 1e-3, "batch_size": 32, "epochs": 2 if SMOKE else 40, "patience": 10, "warmup_epochs": 1}

    def runs(head: str, array: str, options: dict) -> dict:
        scores, maps = [], []
        for seed in seeds:
            for fold in folds:
                preset = "faud" if head == "faud" else "fast"
                config = TrainConfig.preset(preset, seed=seed, progress=False, **train)
                group, _, m = train_head(store, features, head, "au", array, options, config, test_fold=fold, folds=3)
                scores.append(m["test"]["mean_f1"])
                if head == "faud" and options.get("attention", "tree") == "tree":
                    maps.append(write_map_report(store, group.path, load_head(store, group.path)[0])["locality"])
        row = {"mean_f1": [float(np.mean(scores)), float(np.std(scores))], "runs": scores}
        if maps:
            row["locality"] = {
                r["au"]: {"region": r["region"], "ratio": float(np.mean([m[i]["ratio"] for m in maps]))}
                for i, r in enumerate(maps[0])
            }
        print(head, options, row["mean_f1"], flush=True)
        return row

    probe = runs("linear", "global", {})
    # a smoke run: the full head (learnable context) and the tree variant (whose maps the report measures)
    rows = {k: v for k, v in ABLATION.items() if not SMOKE or k == "+ learnable prompts (full)"}
    ablation = {name: runs("faud", "spatial", options) for name, options in rows.items()}
    # the "+ tree attention" row's options with each attention kind: its tree row is the same steps
    variants = {
        v: runs("faud", "spatial", {"attention": v, "interaction": True, "context": 0})
        for v in VARIANTS[: 1 if SMOKE else None]
    }
    return {"seeds": seeds, "folds": folds, "train": train, "probe": probe, "ablation": ablation, "variants": variants}


def small_data(seeds: list[int], work: Path) -> dict:
    from featurestore import FeatureStore
    from heads.trainer import TrainConfig
    from stages.synthetic.cached_features import write_feature_group
    from stages.synthetic.small_au_grids import AU_NAMES, PREVALENCE, small_au_grids
    from stages.training.head_steps import train_head

    rows: dict[str, list[dict]] = {"probe": [], "paper_12_epochs": [], "preset_step_floor": []}
    for seed in seeds:
        store = FeatureStore(str(work / f"small-{seed}"))
        features = write_feature_group(store, f"small-{seed}", *small_au_grids(seed, cells=49, dim=32), AU_NAMES)
        epochs = {"epochs": 1} if SMOKE else {}
        runs = {
            "probe": ("linear", "global", TrainConfig(progress=False, seed=seed)),
            "paper_12_epochs": (
                "faud",
                "spatial",
                TrainConfig.preset("faud", min_steps=0, seed=seed, progress=False, **epochs),
            ),
            "preset_step_floor": ("faud", "spatial", TrainConfig.preset("faud", seed=seed, progress=False, **epochs)),
        }
        for name, (head, array, config) in runs.items():
            options = SMALL_HEAD if head == "faud" else {}
            m = train_head(store, features, head, "au", array, options, config)[2]
            rows[name].append(
                {
                    "mean_f1": m["test"]["mean_f1"],
                    "steps": m.get("epochs_run", 0) * m.get("steps_per_epoch", 0),
                    "per_au": {au: m["test"][f"f1_{au}"] for au in AU_NAMES},
                }
            )
            print("small data", seed, name, round(m["test"]["mean_f1"], 3), flush=True)
    summary = {
        name: {
            "mean_f1": [float(np.mean([r["mean_f1"] for r in runs])), float(np.std([r["mean_f1"] for r in runs]))],
            "per_au": {au: float(np.mean([r["per_au"][au] for r in runs])) for au in AU_NAMES},
            "steps": [r["steps"] for r in runs],
            "runs": [r["mean_f1"] for r in runs],
        }
        for name, runs in rows.items()
    }
    return {"seeds": seeds, "prevalence": dict(zip(AU_NAMES, PREVALENCE, strict=True)), **summary}


def table(r: dict) -> str:
    begin, end = marks("faud")
    m = r["machine"]
    lines = [
        begin,
        f"`bench/faud.py` on {m['cpus']} CPUs (torch {m['torch']}, {m['torch_threads']} threads).",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    if "speed" in r:
        s = r["speed"]
        lines += [
            f"| `epoch_seconds_7x7` ({s['n']:,} grids of 7 × 7 × 1,280, batch 64) | {s['epoch_seconds_7x7']:.1f} s |",
            f"| `epoch_seconds_14x14` ({s['n']:,} grids of 14 × 14 × 512, batch 64) "
            f"| {s['epoch_seconds_14x14']:.1f} s |",
        ]
    if "cost" in r:
        lines += ["", "| grid | tree s / batch | plain s / batch | tree MB | plain MB | keys per query tree / plain |"]
        lines += ["|---|---|---|---|---|---|"]
        for c in r["cost"]:
            lines.append(
                f"| {c['grid']} (batch {c['batch']}) | {c['tree']['seconds']:.3f} | {c['plain']['seconds']:.3f} | "
                f"{c['tree']['bytes_allocated'] / 1e6:.0f} | {c['plain']['bytes_allocated'] / 1e6:.0f} | "
                f"{c['keys_per_query']['tree']} / {c['keys_per_query']['plain']} |"
            )
    if "accuracy" in r:
        a = r["accuracy"]
        lines += [
            "",
            f"Generated faces, EfficientNet-Lite0 7 × 7 tokens, {len(a['folds'])} subject-exclusive folds × "
            f"seeds {a['seeds']}: mean AU F1 (mean ± std over folds and seeds).",
            "",
            "| head | mean AU F1 |",
            "|---|---|",
            f"| linear probe (pooled map) | {a['probe']['mean_f1'][0]:.3f} ± {a['probe']['mean_f1'][1]:.3f} |",
        ]
        for name, row in {**a["ablation"], **{f"attention = {k}": v for k, v in a["variants"].items()}}.items():
            lines.append(f"| faud {name} | {row['mean_f1'][0]:.3f} ± {row['mean_f1'][1]:.3f} |")
        tree = a["variants"]["tree"].get("locality", {})
        if tree:
            lines += [
                "",
                "Tree-attention maps: mass on the AU's region ÷ a uniform map's (test faces, mean over runs).",
            ]
            lines += ["", "| AU | region | ratio |", "|---|---|---|"]
            lines += [f"| {au} | {v['region']} | {v['ratio']:.2f} |" for au, v in tree.items()]
    if "small_data" in r:
        s = r["small_data"]
        names = {
            "probe": "linear probe (pooled grid)",
            "paper_12_epochs": "faud (width 32, one block), the paper's 12 epochs alone",
            "preset_step_floor": "faud (width 32, one block), `--preset faud` (1,000-step floor)",
        }
        aus = list(s["prevalence"])
        lines += [
            "",
            f"Small data (stages/synthetic/small_au_grids.py: 700 training grids of 7 × 7 × 32, seeds {s['seeds']}): "
            "mean AU F1 (mean ± std over seeds) and each AU's F1 (mean over seeds); prevalence in the header.",
            "",
            "| head | steps | mean F1 | " + " | ".join(f"{au} ({s['prevalence'][au]:.0%})" for au in aus) + " |",
            "|---|---|---|" + "---|" * len(aus),
        ]
        for key, label in names.items():
            row = s[key]
            steps = "–" if key == "probe" else f"{int(np.mean(row['steps']))}"
            cells = " | ".join(f"{row['per_au'][au]:.2f}" for au in aus)
            lines.append(f"| {label} | {steps} | {row['mean_f1'][0]:.3f} ± {row['mean_f1'][1]:.3f} | {cells} |")
    return "\n".join([*lines, end])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--store", default=None)
    parser.add_argument("--parts", default="speed,cost,accuracy,small_data")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    parts = args.parts.split(",")
    previous = REPO / "bench" / "results" / "faud.json"
    result = json.loads(previous.read_text()) if previous.exists() and not SMOKE else {}
    result["machine"] = machine()
    if "speed" in parts:
        n = 64 if SMOKE else 5000
        result["speed"] = {
            "n": n,
            "epoch_seconds_7x7": epoch_seconds(n, 7, 1280),
            "epoch_seconds_14x14": epoch_seconds(n, 14, 512),
        }
        print("speed:", result["speed"], flush=True)
    if "cost" in parts:
        result["cost"] = [attention_cost(side, 2 if SMOKE else 16) for side in ((7, 14) if SMOKE else (7, 14, 28))]
    if "accuracy" in parts:
        seeds = [0] if SMOKE else [int(s) for s in args.seeds.split(",")]
        if args.store:
            from featurestore import FeatureStore

            with tempfile.TemporaryDirectory() as work:
                result["accuracy"] = accuracy(FeatureStore(args.store), seeds, Path(work))
        else:
            with tempfile.TemporaryDirectory() as work:
                store = demo_store(Path(work), ("efficientnet-lite0", "mediapipe-face"))
                result["accuracy"] = accuracy(store, seeds, Path(work))
    if "small_data" in parts:
        with tempfile.TemporaryDirectory() as work:
            result["small_data"] = small_data([0] if SMOKE else [int(s) for s in args.seeds.split(",")], Path(work))
    publish("faud", result, table(result))


if __name__ == "__main__":
    main()
