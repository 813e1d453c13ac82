"""What `make demo` prints, at this commit → bench/results/demo.json and its table in docs/benchmarks.md.

Runs `affectflow demo` (what `make demo` runs) in a fresh directory, then reads every head run
back from its store with ``flows.results.head_results`` (the numbers `train` printed: a test shows
they are the same). The JSON records ``code_digest()`` of the code the demo runs, and
tests/test_readme.py fails when docs/benchmarks.md's demo table is not this JSON's rendering or the digest is
not the current code's: the page cannot show another commit's demo. Rerun it (~8 min on 2 cores) after a
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
from common import catalogue_digest, code_digest, machine, marks, publish

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
    calibrated = [row for row in r["rows"] if row.get("calibration")]
    if calibrated:
        lines += [
            "",
            "The class heads' probabilities, calibrated by a temperature fitted on val (expected calibration "
            "error, 15 bins, raw → calibrated):",
            "",
            "| head | task | T | ECE val | ECE test |",
            "|---|---|---|---|---|",
        ]
        for row in calibrated:
            c = row["calibration"]
            cells = [f"{c[s][0]:.3f} → {c[s][1]:.3f}" if s in c else "—" for s in ("val", "test")]
            lines.append(
                f"| {row.get('variant', row['head'])} | {row['task']} | {c['temperature']:.2f} | "
                + " | ".join(cells)
                + " |"
            )
    if r.get("audits"):
        lines += ["", "Its audits, each head against its controls on 5 seeds (Wilcoxon p, one-sided):", ""]
        lines += ["| audit | head | against its controls |", "|---|---|---|"]
        lines += [f"| {a['audit']} | {a['head']} | {a['text']} |" for a in r["audits"]]
    return "\n".join([*lines, END])


def calibration_of(store: str, paths: list[str]) -> dict | None:
    """A class head's temperature and its ECE before and after on val and test (the first seed's)."""
    import json

    from featurestore import FeatureStore

    c = json.loads(FeatureStore(store).get_file(paths[0], "metrics.json")).get("calibration")
    if not c or "val" not in c:
        return None
    return {
        "temperature": c["temperature"],
        **{s: [c[s]["raw"]["ece"], c[s]["calibrated"]["ece"]] for s in ("val", "test") if s in c},
    }


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
    from stages.training.audits import get_audit

    fstore = FeatureStore(store)
    out = []
    for group in fstore.list_steps("audits"):
        a = json.loads(fstore.get_file(group.path, "audit.json"))
        if a["audit"] == "faithfulness":
            head = f"facr au_fer, G = {a['structure']}"
        else:
            head = f"{a['head']} fer + circumplex term"
        text = get_audit(a["audit"]).headline(a)
        out.append({"audit": a["audit"], "head": head, "text": text, "summary": a["summary"], "tests": a["tests"]})
    return sorted(out, key=lambda a: a["audit"], reverse=True)


def main() -> None:
    from flows.results import head_results

    work = Path(tempfile.mkdtemp(prefix="affectflow-demo-"))
    try:
        t0 = time.perf_counter()
        printed = subprocess.run(
            [str(Path(sys.executable).parent / "affectflow"), "demo", "--store", "store", "--data", "demo-data"],
            cwd=work,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        seconds = time.perf_counter() - t0
        sys.stdout.write(printed)
        order = {"aura": 0, "linear": 1, "mlp": 2}
        rows = sorted(
            head_results(str(work / "store")),
            key=lambda r: (r["task"], order.get(r["head"], 9), r["array"], variant(r)),
        )
        r = {
            "code_digest": code_digest(),
            # the generated faces it trained on (tests/test_face.py rebuilds them and compares)
            "catalogue_digest": catalogue_digest(work / "demo-data" / "generated"),
            "machine": machine(),
            "seconds": seconds,
            "printed_lines": len(printed.splitlines()),  # what the user reads at the default verbosity
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
                    "calibration": calibration_of(str(work / "store"), row["paths"]),
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
