"""The benchmarks that train on the demo catalogue's extracted stores run to their end at smoke
sizes (tests/test_bench.py has the others): the module's runs share one built store per encoder
set (bench/common.demo_store), copied by each."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, run_bench_smoke
from tests.test_bench import BENCHES

DEMO_STORE_BENCHES = ["demo_heads", "retrain", "faud", "causal"]


def test_every_bench_make_bench_runs_has_a_smoke_test():
    """Each bench/<name>.py `make bench` runs is one of the two files' smokes (the demo's bench:
    tests/test_readme.py)."""
    import re

    ran = set(re.findall(r"bench/(\w+)\.py", (REPO / "Makefile").read_text()))
    assert ran - {"demo"} == set(BENCHES) | set(DEMO_STORE_BENCHES)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", DEMO_STORE_BENCHES)
def test_the_bench_runs_to_its_end(name, tmp_path, smoke_cache, monkeypatch, capsys):
    run_bench_smoke(name, tmp_path, smoke_cache, monkeypatch, capsys)
