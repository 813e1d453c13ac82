"""What `make demo` prints, at this commit → bench/results/demo.json and the README's demo table.

Runs `affectflow demo` (what `make demo` runs) in a fresh directory, then reads every head run
back from its store with ``flows.results.head_results`` (the numbers `train` printed: a test shows
they are the same). The JSON records ``code_digest()`` of the code the demo runs, and
tests/test_readme.py fails when the README's table is not this JSON's rendering or the digest is
not the current code's: the README cannot show another commit's demo. Rerun it (2–3 min) after a
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
        lines.append(f"| {row['head']} | {row['task']} | {features} | {row['headline']} {row['mean']:.3f} |")
    return "\n".join([*lines, END])


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
        rows = sorted(head_results(str(work / "store")), key=lambda r: (r["task"], order.get(r["head"], 9), r["array"]))
        r = {
            "code_digest": code_digest(),
            "machine": machine(),
            "seconds": seconds,
            "rows": [
                {
                    "head": row["head"],
                    "task": row["task"],
                    "features": row["features"],
                    "array": row["array"],
                    "headline": row["headline"],
                    "mean": row["test"][row["headline"]][0],
                    "test": row["test"],
                }
                for row in rows
            ],
        }
        publish("demo", r, readme_table(r))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
