"""Every benchmark runs to its end at smoke sizes (``--smoke``: tiny inputs, nothing published), the
way `make bench` starts it from a fresh clone: `python bench/<name>.py` from the repository root.
Their flow runs go to the session's Prefect server, so no bench starts its own (suite time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from prefect.settings import PREFECT_API_URL

from tests.conftest import REPO

BENCHES = ["extract", "face", "heads", "demo_heads", "retrain", "causal", "lasca", "faud", "audits", "real"]


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> str:
    """Where the smoke runs keep the demo catalogue's stores (bench/common.demo_store): built by the
    first bench that reads one, copied by the others."""
    return str(tmp_path_factory.mktemp("bench-smoke-cache"))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", BENCHES)
def test_the_bench_runs_to_its_end(name, tmp_path, smoke_cache):
    assert f"bench/{name}.py" in (REPO / "Makefile").read_text()  # what `make bench` runs
    done = subprocess.run(
        [sys.executable, f"bench/{name}.py", "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "TMPDIR": str(tmp_path),
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            "AFFECTFLOW_BENCH_SMOKE_CACHE": smoke_cache,
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["machine"]["cpus"] >= 1
    assert "<!-- bench:" in done.stdout  # its docs/benchmarks.md table was built (printed, not written)
