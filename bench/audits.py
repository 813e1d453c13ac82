"""Audit cost → bench/results/audits.json and its table in docs/benchmarks.md.

A full faithfulness audit is every AU × both interventions (do(AU = 0), do(AU = 1)) × every sample,
plus each sample's rationale and the ablation check of the AUs it names. On 20,000 cached 512-d
samples (the synthetic CLIP-like features of bench/heads.py: 12 AUs, 7 expressions, a
subject-exclusive split) this trains FACR's reasoner (objective on, G = the EMFACS prototypes) and
CausalAffect's head (every module on), then times

* the audit step end to end through ``run_audit`` (the store's test split rebuilt, the head loaded,
  the audit, its files written): ``step_seconds`` and the test samples it covered;
* the audit itself (``heads.faithfulness.audit``) over all 20,000 samples in memory:
  ``all_seconds`` and samples per second;
* the circumplex audit step of an expression MLP trained with the circumplex term.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

# bench/ is the script's directory, so it is on sys.path
from common import SMOKE, machine, marks, publish, write_cached_features

BEGIN, END = marks("audits")


def run(n: int, dim: int) -> dict:
    import torch

    from featurestore import FeatureStore, GroupReader
    from heads.faithfulness import audit
    from heads.trainer import TrainConfig
    from stages.extraction.sources.labels import FACS_NAMES, au_number
    from stages.training.audits import run_audit
    from stages.training.faithfulness_structures import structure_of
    from stages.training.head_steps import head_data, load_head, train_head

    work = Path(tempfile.mkdtemp(prefix="affectflow-bench-audits-"))
    try:
        store = FeatureStore(str(work / "store"))
        features = write_cached_features(store, n, dim)
        train = TrainConfig(epochs=2 if SMOKE else 10, progress=False)  # the audit is timed, not the heads
        heads = {
            "facr": train_head(
                store,
                features,
                "facr",
                "au_fer",
                options={"structure": "prototypes", "faithfulness_weight": 1.0},
                train=train,
            )[0].path,
            "causal": train_head(store, features, "causal", "au_fer", train=train)[0].path,
        }
        out: dict = {"samples": n, "dim": dim, "heads": {}}
        for name, path in heads.items():
            t0 = time.perf_counter()
            _, state, result = run_audit(store, "faithfulness", path, structure="prototypes")
            step_seconds = time.perf_counter() - t0
            model, config = load_head(store, path)
            _, _, data = head_data(store, path)
            x = torch.cat([data.x[s] for s in ("train", "val", "test")])
            y = torch.cat([data.y[s] for s in ("train", "val", "test")])
            names = config["labels"]
            m = len(names) - 7
            g = structure_of(store, {"structure": "prototypes"}, names)
            t0 = time.perf_counter()
            audit(model, x, y[:, m], g, names[:m], {a: FACS_NAMES[au_number(a)] for a in names[:m]}, names[m:])
            all_seconds = time.perf_counter() - t0
            out["heads"][name] = {
                "step_seconds": step_seconds,
                "state": state,
                "test_samples": result["samples"],
                "all_samples": int(x.shape[0]),
                "all_seconds": all_seconds,
                "samples_per_second": x.shape[0] / all_seconds,
                "aus": m,
                "mean_agreement": result["mean_agreement"],
            }
        mlp = train_head(store, features, "mlp", "fer", train=TrainConfig(transport="circumplex", progress=False))[0]
        t0 = time.perf_counter()
        _, _, circumplex = run_audit(store, "circumplex", mlp.path)
        out["circumplex"] = {
            "step_seconds": time.perf_counter() - t0,
            "test_samples": circumplex["samples"],
            "affective_distance": circumplex["affective_distance"],
        }
        out["features"] = GroupReader.open(store, features).path
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def readme_table(r: dict) -> str:
    m = r["machine"]
    lines = [
        BEGIN,
        f"`bench/audits.py` on {m['cpus']} CPUs (torch {m['torch']}): a full faithfulness audit (every AU × "
        f"do(0), do(1) × every sample, rationales and their ablation check) of heads trained on "
        f"{r['samples']:,} cached {r['dim']}-d samples ({next(iter(r['heads'].values()))['aus']} AUs, 7 classes).",
        "",
        "| head | audit step (test split) | all samples in memory | samples/s |",
        "|---|---|---|---|",
    ]
    for name, h in r["heads"].items():
        lines.append(
            f"| {name} | {h['step_seconds']:.1f} s ({h['test_samples']:,} samples) | "
            f"{h['all_seconds']:.1f} s ({h['all_samples']:,}) | {h['samples_per_second']:,.0f} |"
        )
    c = r["circumplex"]
    lines.append(f"| mlp + circumplex term: circumplex audit | {c['step_seconds']:.1f} s ({c['test_samples']:,}) | | |")
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, printed and not published (common.SMOKE)")
    args = parser.parse_args()
    if SMOKE:
        args.samples, args.dim = 600, 32
    result = {**run(args.samples, args.dim), "machine": machine()}
    publish("audits", result, readme_table(result))


if __name__ == "__main__":
    main()
