"""The README cannot drift from the CLI or the benches: its walkthrough runs verbatim here, its
summary table is what bench/results/ holds, and it stays a quickstart (≤ 8 KB)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, run_cli, write_csv_dataset

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BENCHMARKS = REPO / "docs" / "benchmarks.md"
MARK = "<!-- walkthrough: tests/test_readme.py runs this block verbatim -->"


def test_the_readme_demo_table_is_what_this_commits_demo_printed():
    """bench/demo.py runs `affectflow demo` and renders its head runs into the README; the JSON it
    writes records the digest of the code the demo ran, which must be this checkout's."""
    import importlib.util
    import sys

    sys.path.append(str(REPO / "bench"))  # bench/demo.py imports its sibling `common`
    spec = importlib.util.spec_from_file_location("bench_demo", REPO / "bench" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    result = json.loads((REPO / "bench" / "results" / "demo.json").read_text())
    assert result["code_digest"] == demo.code_digest(), (
        "the code changed since bench/results/demo.json: run `python bench/demo.py` to refresh the README's demo table"
    )
    assert demo.readme_table(result) in BENCHMARKS.read_text(), "the demo table is not bench/results/demo.json's"
    # `make demo` tells a short story at its default verbosity (the logs go to demo-data/demo.log)
    assert result["printed_lines"] <= 80, result["printed_lines"]
    trained = {(h, t) for h in ("aura", "linear", "mlp") for t in ("fer", "va", "au")} | {
        ("causal", "au_fer"),
        ("faud", "au"),
        ("facr", "au_fer"),
    }
    assert {(r["head"], r["task"]) for r in result["rows"]} == trained | {
        ("lasca", "rank")
    }  # every head `make demo` trains
    # the audits: FACR's faithfulness and the circumplex term's, each against its controls
    assert [a["audit"] for a in result["audits"]] == ["faithfulness", "circumplex"]
    # LaScA's demo grid: features and fused for each modality (flows/demo.py's demo_lasca_grid)
    assert sorted(r["array"] for r in result["rows"] if r["task"] == "rank") == [
        f"{m}-{v}" for m in ("audio", "both", "face") for v in ("features", "fused")
    ]


def walkthrough() -> str:
    text = README.read_text()
    assert MARK in text, "the README's walkthrough block lost its marker"
    block = re.match(r"\s*```bash\n(.*?)```", text[text.index(MARK) + len(MARK) :], re.S)
    assert block, "the marker is not followed by a bash block"
    return block.group(1)


def test_the_readme_is_a_quickstart_and_its_summary_is_the_benches_results():
    """README ≤ 8 KB with the two set-up commands before anything else is run; its summary table is
    bench/summary.py's rendering of bench/results/ (every bench rewrites it when it publishes)."""
    import sys

    sys.path.append(str(REPO / "bench"))
    from summary import summary_table

    text = README.read_text()
    assert len(text.encode()) <= 8192, f"README.md is {len(text.encode())} bytes: move detail to docs/"
    first_command = text.index("```bash")
    assert text.index("make demo", first_command) < text.index("make test", first_command) < text.index(MARK)
    assert summary_table() in text, "the README's summary is not bench/results/'s: run a bench, or bench/summary.py"


def write_own_photos(root: Path, n: int = 72) -> Path:
    """``photos/``: real photos listed in a manifest.csv with an expression and a subject per row and
    no split column (the README's own-photos case)."""
    photos = write_csv_dataset(root / "photos", n)
    classes = ("neutral", "happiness", "sadness", "surprise")
    rows = [f"img/{i:05d}.jpg,{classes[i % len(classes)]},p{i % 12}" for i in range(n)]
    (photos / "manifest.csv").write_text("\n".join(["path,expression,subject", *rows]) + "\n")
    return photos


@pytest.mark.slow
def test_the_readme_walkthrough_runs_verbatim_on_ones_own_photos_offline(tmp_path, prefect_api):
    write_own_photos(tmp_path)
    env = {**os.environ, **prefect_api, "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "features/mine/efficientnet-lite0/" in out
    assert "no official split: subject-exclusive 20 % test, then val from the rest" in out  # the protocol stated
    assert "head runs in ./store" in out and "macro_f1" in out  # results
    assert "00000.jpg" in out and "archetype #" in out  # predict's answer and its archetype
    # the stored runs, read in this process (a new interpreter's imports show nothing here: suite time)
    rows = json.loads(run_cli("results", "--store", str(tmp_path / "store"), "--json", "-"))
    assert sorted(r["head"] for r in rows) == ["aura", "linear"] and {r["dataset"] for r in rows} == {"mine"}
