"""Retraining a head from the shell and from Python → bench/results/retrain.json and its table in docs/benchmarks.md.

On the demo store (``--store`` when it holds the demo's generated faces, else extracted here into a
temporary one), for a linear probe and for AURA on expressions from the MediaPipe blendshapes, with
the demo's training settings and a seed no earlier run used (so nothing is skipped):

* the whole ``affectflow train`` command, timed from outside, against the head's own training
  seconds, split into start-up and imports (the command's wall time minus what it measured
  itself), the head step's store reads and writes (step minus training) and the rest of the
  orchestration (planning, the report, the summary);
* retrains through the Python API in a warm process (``affectflow.train``) after the first, against their
  training seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is the script's directory, so it is on sys.path
from common import REPO, SMOKE, demo_store, machine, publish

HEADS = ("linear", "aura")
TARGETS = {"aura_command_vs_training": 1.3, "overhead_s": 4.0, "api_warm_vs_training": 1.05}


def features_of(store_url: str) -> str | None:
    from featurestore import FeatureStore
    from flows.demo import demo_heads_plan

    try:
        plan = demo_heads_plan(FeatureStore(store_url))
    except ValueError:
        return None
    return next(e["features"] for e in plan if e["task"] == "fer")


def command(store: str, features: str, head: str, seed: int, out: Path) -> dict:
    """The command a user types (the trainer's defaults), timed from outside."""
    args = [str(Path(sys.executable).parent / "affectflow"), "train", "--features", features, "--task", "fer"]
    args += ["--head", head, "--array", "blendshapes", "--seed", str(seed), "--store", store, "--json", str(out)]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["state"] == "new" and not result["flow_run"], (run["state"], result["flow_run"])
    training = run["metrics"]["train_seconds"]
    return {
        "head": head,
        "seed": seed,
        "command_s": round(wall, 2),
        "training_s": round(training, 2),
        "command_vs_training": round(wall / training, 3),
        "overhead_s": round(wall - training, 2),
        "startup_and_imports_s": round(wall - result["seconds"], 2),
        "store_reads_and_writes_s": round(run["step_seconds"] - training, 2),
        "orchestration_s": round(result["seconds"] - run["step_seconds"], 2),
    }


def api(store: str, features: str, seeds: list[int]) -> dict:
    """AURA retrains in one process: the calls after the first find the features and splits in
    memory. Their seconds against their training seconds, summed (early stopping makes one run's
    training anywhere from one to twenty seconds here)."""
    code = (
        "import json, sys, affectflow\n"
        "runs = [affectflow.train(sys.argv[1], 'fer', 'aura', store=sys.argv[2], array='blendshapes', seed=s)"
        " for s in map(int, sys.argv[3:])]\n"
        "print(json.dumps([[r.state, r.seconds, r.metrics['train_seconds']] for r in runs]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, features, store, *map(str, seeds)], check=True, capture_output=True, text=True
    )
    first, *warm = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(r[0] == "new" for r in [first, *warm])
    seconds, training = sum(r[1] for r in warm), sum(r[2] for r in warm)
    return {
        "first_call_s": round(first[1], 2),
        "warm_calls": len(warm),
        "warm_calls_s": round(seconds, 2),
        "warm_training_s": round(training, 2),
        "api_warm_vs_training": round(seconds / training, 3),
    }


def table(result: dict) -> str:
    lines = [
        "<!-- bench:retrain:begin -->",
        f"Measured by `make bench` on {result['machine']['cpus']} CPUs (torch {result['machine']['torch']}, "
        "no GPU), on the demo store (blendshapes of the generated faces, expressions, the trainer's defaults), "
        "new seeds so nothing is skipped. No Prefect server: the command trains in its own process. Start-up "
        "and imports: torch, zarr, the CLI; orchestration includes the head's report (AURA: matplotlib's "
        "import and the feature map).",
        "",
        "| `affectflow train` | command | training | command ÷ training | overhead | start-up + imports | "
        "store reads + writes | orchestration + report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["commands"]:
        lines.append(
            f"| `--head {r['head']}` | {r['command_s']:.1f} s | {r['training_s']:.1f} s | "
            f"{r['command_vs_training']:.2f} | {r['overhead_s']:.1f} s | {r['startup_and_imports_s']:.1f} s | "
            f"{r['store_reads_and_writes_s']:.2f} s | {r['orchestration_s']:.2f} s |"
        )
    a = result["api"]
    lines += [
        "",
        f"Python API, warm process (`affectflow.train`, AURA): first call {a['first_call_s']:.1f} s; the "
        f"{a['warm_calls']} calls after it {a['warm_calls_s']:.1f} s for {a['warm_training_s']:.1f} s of training "
        f"(**{a['api_warm_vs_training']:.3f}×**).",
        "",
        "Targets: AURA command ÷ training ≤ 1.3, overhead ≤ 4 s for both heads, warm API calls ≤ 1.05× their "
        f"training. Met: {', '.join(f'{k} {v}' for k, v in result['met'].items())}.",
        "<!-- bench:retrain:end -->",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(REPO / "store"), help="a store holding the demo (make demo)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000 + 1000, help="first unused seed")
    parser.add_argument("--smoke", action="store_true", help="a tiny demo store, printed and not published")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="affectflow-retrain-"))
    try:
        store = args.store
        features = features_of(store) if Path(store).exists() and not SMOKE else None
        if features is None:  # a fresh clone: make the demo's features here
            store = str(demo_store(work).url)
            features = features_of(store)
        # what is measured: a retrain with no Prefect server (a smoke run's store came from the test's)
        os.environ.pop("PREFECT_API_URL", None)
        commands = [command(store, features, h, args.seed + i, work / f"{h}.json") for i, h in enumerate(HEADS)]
        result = {
            "machine": machine(),
            "commands": commands,
            "api": api(store, features, [args.seed + 10 + i for i in range(4)]),
        }
        aura = next(c for c in commands if c["head"] == "aura")
        result["met"] = {
            "aura_command_vs_training": aura["command_vs_training"] <= TARGETS["aura_command_vs_training"],
            "overhead_s": all(c["overhead_s"] <= TARGETS["overhead_s"] for c in commands),
            "api_warm_vs_training": result["api"]["api_warm_vs_training"] <= TARGETS["api_warm_vs_training"],
        }
        publish("retrain", result, table(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
