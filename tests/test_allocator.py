"""The allocator setting (stages/extraction/allocator.py) is in force where encoders run, can be switched
off, and changes no number."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from featurestore import FeatureStore, GroupReader
from stages.extraction.allocator import SETTINGS
from tests.conftest import BIN, REPO


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without the glibc variables a tuned pytest process exports."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "AFFECTFLOW_MALLOC"}
    return {**env, **extra}


def _info(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [str(BIN / "affectflow"), "info", "--json"], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)["allocator"]


def test_a_fresh_cli_process_keeps_large_buffers_and_the_off_switch_restores_glibcs_defaults():
    tuned = _info(_environment())
    assert tuned["setting"] == "tuned" and tuned["large_buffers_mapped"] is False
    off = _info(_environment(AFFECTFLOW_MALLOC="system"))
    assert off["setting"] == "system" and off["large_buffers_mapped"] is True  # the probe tells them apart
    preset = _info(_environment(MALLOC_ARENA_MAX="2"))  # a user's own glibc variables are left alone
    assert preset["setting"] == "environment"


@pytest.mark.parametrize("switch", ["tuned", "system"])
def test_dask_workers_the_project_starts_get_the_setting_from_their_start(switch, monkeypatch):
    from distributed import Client, LocalCluster

    from flows.runners import local_cluster_kwargs
    from stages.extraction.allocator import status

    for variable in SETTINGS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AFFECTFLOW_MALLOC", switch)
    with LocalCluster(**local_cluster_kwargs(1), dashboard_address=":0") as cluster, Client(cluster) as client:
        (worker,) = client.run(status).values()
    assert worker["setting"] == switch and worker["large_buffers_mapped"] is (switch == "system")


def test_extraction_is_bit_identical_with_and_without_the_setting(tmp_path, prefect_api):
    from stages.synthetic.demo_catalogue import write_photo_dataset

    root = write_photo_dataset(tmp_path / "data", 12, sizes=(48, 224))
    running = {}
    for switch in ("tuned", "system"):  # side by side: two fresh CLI processes
        args = ["extract", "--dataset", f"csv={root},name=photos", "--encoder", "efficientnet-lite0"]
        args += ["--store", str(tmp_path / switch), "--batch-size", "4"]
        env = _environment(AFFECTFLOW_MALLOC=switch, **prefect_api)  # the session's server: no temporary one each
        running[switch] = subprocess.Popen(
            [str(BIN / "affectflow"), *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    groups = {}
    for switch, process in running.items():
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        (group,) = FeatureStore(tmp_path / switch).list_steps("features")
        groups[switch] = GroupReader(group)
    for name in groups["tuned"].names():
        np.testing.assert_array_equal(groups["tuned"].numpy(name), groups["system"].numpy(name), err_msg=name)
