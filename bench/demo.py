"""What `make demo` prints, at this commit → bench/results/demo.json and its table in docs/benchmarks.md.

Runs `affectflow demo` (what `make demo` runs) in a fresh directory, then reads every head run
back from its store with ``flows.results.head_results`` (the numbers `train` printed: a test shows
they are the same). The JSON records ``code_digest()`` of the code the demo runs, and
tests/test_readme.py fails when docs/benchmarks.md's demo table is not this JSON's rendering or the digest is
not the current code's: the page cannot show another commit's demo. Rerun it (2–3 min) after a
change to that code. No ``--smoke``: it has no smaller form than the demo itself, and the test
checks its rendering and digest on every run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is the script's directory, so it is on sys.path
from common import code_digest, machine, marks, publish

BEGIN, END = marks("demo")


def readme_table(r: dict) -> str:
    lines = [
        BEGIN,
        f"What `make demo` printed at this commit (seed 0; {r['seconds']:.0f} s on {r['machine']['cpus']} CPUs;"
        " `bench/demo.py` writes this table and a test checks it is this code's):",
        "",
        "| head | task | features | headline (test) |",
        "|---|---|---|---|",
    ]
    for row in r["rows"]:
        features = row["features"].split("/")[2] + ("" if row["array"] == "global" else f" `{row['array']}`")
        if row["task"] == "rank":  # a LaScA learner: its modality and variant over the videos' 5 s windows
            features = "5 s windows, {} {}".format(*row["array"].split("-"))
        seeds = f" ({row['seeds']} seeds)" if row.get("seeds", 1) > 1 else ""
        lines.append(
            f"| {row.get('variant', row['head'])} | {row['task']} | {features} | "
            f"{row['headline']} {row['mean']:.3f}{seeds} |"
        )
    if r.get("audits"):
        lines += ["", "Its audits, each head against its controls on 5 seeds (Wilcoxon p, one-sided):", ""]
        lines += ["| audit | head | against its controls |", "|---|---|---|"]
        lines += [f"| {a['audit']} | {a['head']} | {a['text']} |" for a in r["audits"]]
    return "\n".join([*lines, END])


def variant(row: dict) -> str:
    """The head, and what sets an audit's variants apart (the transport term, FACR's objective)."""
    name = row["head"]
    if (transport := row["train"].get("transport", "none")) != "none":
        name += f" + {transport} term"
    if row["head"] == "facr":
        name += " + objective" if row["options"].get("faithfulness_weight") else ""
        name += ", permuted G" if row["options"].get("permuted") else ""
    return name


def audit_rows(store: str) -> list[dict]:
    """Every audit in the demo's store: its headline against each control, with the p-values."""
    import json

    from featurestore import FeatureStore

    fstore = FeatureStore(store)
    out = []
    for group in fstore.list_steps("audits"):
        a = json.loads(fstore.get_file(group.path, "audit.json"))
        s, tests = a["summary"], {(t["score"], t["variant"], t["against"]): t["p"] for t in a["tests"]}
        if a["audit"] == "faithfulness":
            text = (
                f"agreement with G {s['objective']['mean_agreement'][0]:.3f} vs "
                f"{s['no objective']['mean_agreement'][0]:.3f} without the objective "
                f"(p {tests[('mean_agreement', 'objective', 'no objective')]:.3f}) and "
                f"{s['permuted G']['mean_agreement'][0]:.3f} with permuted G; AU F1 "
                f"{s['objective']['au_mean_f1'][0]:.3f} vs {s['no objective']['au_mean_f1'][0]:.3f}"
            )
            head = f"facr au_fer, G = {a['structure']}"
        else:
            text = (
                f"affective distance of errors {s['circumplex']['affective_distance'][0]:.3f} vs "
                f"{s['uniform']['affective_distance'][0]:.3f} uniform cost "
                f"(p {tests[('affective_distance', 'circumplex', 'uniform')]:.3f}), "
                f"{s['none']['affective_distance'][0]:.3f} no term "
                f"(p {tests[('affective_distance', 'circumplex', 'none')]:.3f}); macro-F1 "
                f"{s['circumplex']['macro_f1'][0]:.3f} / {s['uniform']['macro_f1'][0]:.3f} / "
                f"{s['none']['macro_f1'][0]:.3f}"
            )
            head = f"{a['head']} fer + circumplex term"
        out.append({"audit": a["audit"], "head": head, "text": text, "summary": s, "tests": a["tests"]})
    return sorted(out, key=lambda a: a["audit"], reverse=True)


def main() -> None:
    from flows.results import head_results

    work = Path(tempfile.mkdtemp(prefix="affectflow-demo-"))
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).parent / "affectflow"), "demo", "--store", "store", "--data", "demo-data"],
            cwd=work,
            check=True,
        )
        seconds = time.perf_counter() - t0
        order = {"aura": 0, "linear": 1, "mlp": 2}
        rows = sorted(
            head_results(str(work / "store")),
            key=lambda r: (r["task"], order.get(r["head"], 9), r["array"], variant(r)),
        )
        r = {
            "code_digest": code_digest(),
            "machine": machine(),
            "seconds": seconds,
            "rows": [
                {
                    "head": row["head"],
                    "variant": variant(row),
                    "seeds": len(row["seeds"]),
                    "task": row["task"],
                    "features": row["features"],
                    "array": row["array"],
                    "headline": row["headline"],
                    "mean": row["test"][row["headline"]][0],
                    "test": row["test"],
                }
                for row in rows
            ],
            "audits": audit_rows(str(work / "store")),
        }
        publish("demo", r, readme_table(r))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
