"""Every benchmark runs to its end at smoke sizes (``--smoke``: tiny inputs, nothing published), as
`make bench` runs it from a fresh clone (`python bench/<name>.py` from the repository root), by runpy
in the test's process (conftest.run_bench_smoke). Their flow runs go to the session's Prefect
server, so no bench starts its own (suite time). The
benches that train on the demo catalogue's stores are in tests/test_bench_demo_store.py: two files,
so the two test workers share the smokes (suite time)."""

from __future__ import annotations

import pytest

from tests.conftest import run_bench_smoke

BENCHES = ["extract", "face", "heads", "lasca", "audits", "real"]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", BENCHES)
def test_the_bench_runs_to_its_end(name, tmp_path, smoke_cache, monkeypatch, capsys):
    run_bench_smoke(name, tmp_path, smoke_cache, monkeypatch, capsys)
