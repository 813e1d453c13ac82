"""Head benchmark → bench/results/heads.json and the tables in docs/benchmarks.md.

1. Time to train each AURA head (expressions, AUs, valence–arousal) to its early stop on 20,000
cached 512-d samples, through the real ``train-head`` step (store reads, protocol split, training,
pruning, checkpoint), and inference samples/s of the trained head (projector → nearest archetype
→ φ) over all 20,000.

The samples are synthetic CLIP-like embeddings, written into a real store as a source and a
float16 feature group: unit-norm 512-d vectors made of an expression direction, AU directions,
valence/arousal directions, a per-subject identity offset and isotropic noise. Labels come from the same
latent factors (AUs from per-expression prototypes, VA around per-expression centres), and the
split is subject-exclusive (70 / 15 / 15 % of 400 subjects). Only the timings are the point; the
scores are reported so a regression in learning shows up too.

2. Expressions at the CLI's defaults (the ``fast`` preset) on 24,000 × 1,280 samples (the size of
FER2013's training split and of EfficientNet-Lite0's feature) whose classes have in-the-wild shares
(25 % down to 1.5 %) and a weak expression direction, for AURA, the linear probe and the MLP side by
side: seconds to early stop, macro-F1, the rarest class's F1, and AURA's archetypes per class.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import SMOKE, machine, publish, write_cached_features

# (head, preset): the CLI's defaults for all three, and the paper preset for AURA and the MLP
DEFAULTS_RUNS = (("aura", "fast"), ("linear", "fast"), ("mlp", "fast"), ("aura", "paper"), ("mlp", "paper"))
FAST_REPEATS = 3  # timings of the fast-preset runs: the fastest of 3, alternated (see run_defaults)


# expression shares like in-the-wild sets (FER2013, AffectNet), by canonical expression index
# (neutral, happiness, sadness, surprise, fear, disgust, anger): one class ~25 %, one 1.5 %
IN_THE_WILD = (0.25, 0.20, 0.18, 0.15, 0.12, 0.085, 0.015)


def inference_rate(store, head_path: str, features_path: str, device: str | None, repeat: int = 3) -> float:
    import torch

    from featurestore import GroupReader
    from heads.trainer import device_of, predict
    from stages.training.head_steps import load_head

    model, _ = load_head(store, head_path)
    model.to(device_of(device))
    x = GroupReader.open(store, features_path).torch("global").float()
    predict(model, x[:4096])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predict(model, x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def run(n: int, dim: int, device: str | None) -> dict:
    from featurestore import FeatureStore
    from heads.tasks import get_task
    from heads.trainer import KNOBS, TrainConfig
    from stages.training.head_steps import train_head

    work = Path(tempfile.mkdtemp(prefix="affectflow-bench-heads-"))
    try:
        store = FeatureStore(str(work / "store"))
        features = write_cached_features(store, n, dim)
        train = {k: getattr(TrainConfig(), k) for k in KNOBS}  # batch_size None: auto, recorded per head
        result = {"machine": machine(), "samples": n, "dim": dim, "device": device or "default", "train": train}
        smoke = {"epochs": 4} if SMOKE else {}  # a smoke run: the code path, not the scores or times
        for task in ("fer", "au", "va"):
            t0 = time.perf_counter()
            group, _, metrics = train_head(
                store, features, "aura", task, "global", {}, TrainConfig(device=device, progress=False, **smoke)
            )
            result[f"aura_{task}"] = {
                "train_seconds": round(metrics["train_seconds"], 2),
                "step_seconds": round(time.perf_counter() - t0, 2),
                "epochs_run": metrics["epochs_run"],
                "best_epoch": metrics["best_epoch"],
                "batch_size": metrics["batch_size"],
                "k_stable": metrics["k_stable"],
                "test_" + get_task(task).headline: round(metrics["test"][get_task(task).headline], 4),
                "infer_samples_per_s": round(inference_rate(store, group.path, features, device)),
            }
            print(task, result[f"aura_{task}"], flush=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_defaults(n: int, dim: int, device: str | None) -> dict:
    """AURA, linear and MLP on imbalanced expressions, every head option at its default, with the
    trainer's default preset (and AURA and the MLP with the paper preset, for the scores it reaches)."""
    from featurestore import FeatureStore
    from heads.registry import get_head
    from heads.report import analyse, table3
    from heads.trainer import KNOBS, TrainConfig
    from stages.extraction.sources.labels import EXPRESSIONS
    from stages.training.head_steps import head_data, load_head, train_head

    work = Path(tempfile.mkdtemp(prefix="affectflow-bench-defaults-"))
    try:
        # the fast runs are timed FAST_REPEATS times, alternated, each in a store of its own (a head
        # step is keyed: in the same store a retrain is skipped); the fastest is kept, as the other
        # benches keep the best of alternated runs, because one run on this shared 2-core VM varies
        # by ±10 % and the AURA ÷ MLP target is a ratio of two such runs
        repeats = 1 if SMOKE else FAST_REPEATS  # a smoke run times nothing
        stores = [FeatureStore(str(work / f"store-{k}")) for k in range(repeats)]
        features = [write_cached_features(s, n, dim, shares=IN_THE_WILD, expression=0.025) for s in stores][0]
        rare = EXPRESSIONS[int(np.argmin(IN_THE_WILD))]  # the label ids are canonical expression indices
        result = {
            "samples": n,
            "dim": dim,
            "shares": IN_THE_WILD,
            "train": {k: getattr(TrainConfig(), k) for k in KNOBS},
            "fast_repeats": repeats,
        }
        timings: dict[str, list[float]] = {}
        for repeat in range(repeats):
            for head, preset in DEFAULTS_RUNS:
                if preset != "fast" and repeat:
                    continue
                store = stores[repeat]
                smoke = {"epochs": 3} if SMOKE else {}  # the paper preset's 200 epochs: the code path, not the scores
                train = TrainConfig.preset(preset, device=device, progress=False, **smoke)
                options = get_head(head).preset_options(preset, {})
                group, _, metrics = train_head(store, features, head, "fer", "global", options, train)
                timings.setdefault(f"{head}/{preset}", []).append(round(metrics["train_seconds"], 2))
                if repeat:
                    continue
                row = {
                    "batch_size": metrics["batch_size"],
                    "epochs_run": metrics["epochs_run"],
                    "test_macro_f1": round(metrics["test"]["macro_f1"], 4),
                    "test_accuracy": round(metrics["test"]["accuracy"], 4),
                    f"test_f1_{rare}": round(metrics["test"][f"f1_{rare}"], 4),
                }
                if head == "aura":
                    model, _ = load_head(store, group.path)
                    data = head_data(store, group.path)[2]
                    table = table3("fer", analyse(model, data, "fer"), data.label_names)
                    row["archetypes_per_class"] = {t["bin"]: t["archetypes"] for t in table}
                    row["catch_all"] = sum(t["catch_all"] for t in table)
                result[f"{head}/{preset}"] = row
                print(head, preset, row, flush=True)
        for run, seconds in timings.items():
            result[run]["train_seconds"] = min(seconds)
            result[run]["train_seconds_runs"] = seconds
        result["rarest"] = rare
        seconds = {run: result[run]["train_seconds"] for run in ("aura/fast", "mlp/fast", "aura/paper")}
        result["aura_vs_mlp_seconds"] = round(seconds["aura/fast"] / seconds["mlp/fast"], 2)
        result["fast_vs_paper_seconds_aura"] = round(seconds["aura/fast"] / seconds["aura/paper"], 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def defaults_table(r: dict) -> str:
    t, rare = r["train"], r["rarest"]
    lines = [
        "<!-- bench:heads-defaults:begin -->",
        f"Expressions at the CLI's defaults (preset `fast`: batch {r['aura/fast']['batch_size']} (auto), lr "
        f"{t['lr']:g}, warm-up "
        f"{t['warmup_epochs']}, patience {t['patience']}) on {r['samples']:,} cached {r['dim']}-d samples with "
        f"in-the-wild class shares ({rare} {100 * min(r['shares']):.1f} %), same run; the fast preset's "
        f"seconds are the fastest of {r['fast_repeats']} alternated runs (one run varies by ±10 % here):",
        "",
        f"| head | preset | train to early stop | epochs | test macro-F1 | accuracy | F1 of {rare} | "
        "archetypes per class |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for head, preset in DEFAULTS_RUNS:
        h = r[f"{head}/{preset}"]
        per_class = ", ".join(f"{c} {k}" for c, k in h.get("archetypes_per_class", {}).items()) or "—"
        lines.append(
            f"| `{head}` | {preset} | {h['train_seconds']:.1f} s | {h['epochs_run']} | {h['test_macro_f1']:.3f} | "
            f"{h['test_accuracy']:.3f} | {h[f'test_f1_{rare}']:.3f} | {per_class} |"
        )
    aura = r["aura/fast"]
    lines += [
        "",
        f"At the defaults AURA's seconds ÷ the MLP's: {r['aura_vs_mlp_seconds']:.2f} (target ≤ 2); AURA ≤ 120 s: "
        f"{aura['train_seconds'] <= 120}; AURA fast ÷ paper seconds: {r['fast_vs_paper_seconds_aura']:.2f}. "
        f"Catch-all archetypes: {aura['catch_all']}.",
        "<!-- bench:heads-defaults:end -->",
    ]
    return "\n".join(lines)


def readme_table(r: dict) -> str:
    m = r["machine"]
    where = f"GPU {m['cuda']}" if m["cuda"] and r["device"] != "cpu" else f"{m['cpus']} CPUs, no GPU"
    t = r["train"]
    lines = [
        "<!-- bench:heads:begin -->",
        f"Measured by `make bench` on {where} ({m['processor']}, torch {m['torch']}, {m['torch_threads']} torch "
        f"threads): AURA heads with default options on {r['samples']:,} cached {r['dim']}-d samples, batch "
        f"{r['aura_fer']['batch_size']} (auto), lr {t['lr']:g}, warm-up {t['warmup_epochs']} epochs, "
        f"patience {t['patience']}.",
        "",
        "| head | train to early stop | epochs | K_stable | test headline | inference | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in ("fer", "au", "va"):
        h = r[f"aura_{task}"]
        headline = next(k for k in h if k.startswith("test_"))
        k = h["k_stable"]
        k_text = str(k[0]) if len(k) == 1 else f"{min(k)}–{max(k)} per branch"
        lines.append(
            f"| `aura_{task}` | {h['train_seconds']:.1f} s | {h['epochs_run']} | {k_text} | "
            f"{headline[5:]} {h[headline]:.3f} | {h['infer_samples_per_s']:,} samples/s | ≤ 60 s |"
        )
    lines.append("<!-- bench:heads:end -->")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, printed and not published (common.SMOKE)")
    args = parser.parse_args()
    if SMOKE:
        args.samples, args.dim = 600, 32
    result = run(args.samples, args.dim, args.device)
    result["defaults"] = run_defaults(*((1_000, 32) if SMOKE else (24_000, 1_280)), args.device)
    publish("heads", result, readme_table(result), defaults_table(result["defaults"]))


if __name__ == "__main__":
    main()
