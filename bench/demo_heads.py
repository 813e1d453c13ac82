"""AURA against the baselines on the demo's labelled generated catalogue → bench/results/demo_heads.json.

Writes the catalogue `make demo` writes (20 subjects × 42 generated faces, subject-exclusive
train / val / test), extracts it with the demo's encoders through the real flow into a temporary
store, then trains the demo's heads (flows/demo.py) with its settings over several seeds, plus
AURA at K_max = 150 and 300. It reports the test headline as mean ± std over the seeds, and
K_stable. Not a timing benchmark: the numbers are the heads' scores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import SMOKE, demo_store, machine, publish

K_MAX_SWEEP = (150, 300)  # besides AuraConfig's default 200


def run(seeds: list[int]) -> dict:
    from flows.demo import DEMO_TRAIN, demo_heads_plan
    from heads.tasks import get_task
    from heads.trainer import TrainConfig
    from stages.training.head_steps import train_head

    work = Path(tempfile.mkdtemp(prefix="affectflow-demo-heads-"))
    try:
        store = demo_store(work)
        # AURA against its baselines (the causal graph head, another task, is not in this comparison)
        plan = [e for e in demo_heads_plan(store) if e["task"] in ("fer", "va", "au")]
        plan += [
            {**e, "options": {**e["options"], "k_max": k}, "name": f"aura_k_max{k}"}
            for e in plan
            if e["head"] == "aura"
            for k in K_MAX_SWEEP
        ]
        train = {**DEMO_TRAIN, "epochs": 4} if SMOKE else DEMO_TRAIN
        result = {"machine": machine(), "train": train}
        for entry in plan:
            task, head = entry["task"], entry["head"]
            scores, k_stable = [], []
            for seed in seeds:
                _, _, m = train_head(
                    store,
                    entry["features"],
                    head,
                    task,
                    entry["array"],
                    entry["options"],
                    TrainConfig(**train, seed=seed, progress=False),
                )
                scores.append(m["test"][get_task(task).headline])
                k_stable.append(m["k_stable"])
            name = entry.get("name", head)
            result[f"{task}/{name}"] = {
                "features": f"{entry['features'].split('/')[2]} {entry['array']}",
                "options": entry["options"],
                "headline": get_task(task).headline,
                "mean": round(float(np.mean(scores)), 4),
                "std": round(float(np.std(scores)), 4),
                "seeds": [round(s, 4) for s in scores],
                "k_stable": k_stable if head == "aura" else None,
                "samples": m["samples"],
            }
            print(task, name, result[f"{task}/{name}"], flush=True)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _k(entry: dict) -> str:
    if entry["k_stable"] is None:
        return ""
    per_seed = [np.mean(k) for k in entry["k_stable"]]
    return f"{np.mean(per_seed):.0f}"


def readme_table(r: dict) -> str:
    n = len(r["fer/aura"]["seeds"])
    t = r["train"]
    lines = [
        "<!-- bench:demo_heads:begin -->",
        f"`make bench` on the demo catalogue (subject-exclusive splits; batch {t['batch_size']}, lr {t['lr']:g}, "
        f"warm-up {t['warmup_epochs']}): test headline, mean ± std over {n} seeds; K_stable per branch, averaged.",
        "",
        "| task | features (AURA; baselines) | train / val / test | headline | AURA (K_max 200) | linear probe | MLP "
        "| AURA K_max 150 | AURA K_max 300 | K_stable 150 / 200 / 300 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in ("fer", "va", "au"):
        e = {name: r[f"{task}/{name}"] for name in ("aura", "linear", "mlp", "aura_k_max150", "aura_k_max300")}
        cells = [f"{v['mean']:.3f} ± {v['std']:.3f}" for v in e.values()]
        ks = " / ".join(_k(e[n]) for n in ("aura_k_max150", "aura", "aura_k_max300"))
        split = " / ".join(str(e["aura"]["samples"][k]) for k in ("train", "val", "test"))
        features = f"{e['aura']['features']}; {e['linear']['features']}"
        lines.append(f"| {task} | {features} | {split} | {e['aura']['headline']} | " + " | ".join(cells) + f" | {ks} |")
    lines.append("<!-- bench:demo_heads:end -->")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 5 seeds: on ~500 training images AURA's AU head spreads ±0.04 mean F1 between seeds (the
    # probe ±0.01), and 3 seeds left its mean at the mercy of one or two of them
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, printed and not published (common.SMOKE)")
    args = parser.parse_args()
    result = run(list(range(1 if SMOKE else args.seeds)))
    publish("demo_heads", result, readme_table(result))


if __name__ == "__main__":
    main()
