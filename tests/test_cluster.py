"""Real servers on loopback: a Prefect server + process worker running the deployment, and a Dask
scheduler + worker running the chunk tasks."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest

from featurestore import FeatureStore, GroupReader
from tests.conftest import BIN, REPO, cli, free_port, stop, wait_for, write_csv_dataset

pytestmark = pytest.mark.slow


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _run(args: list[str], env: dict, timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_deployment_runs_on_a_real_prefect_server_and_worker(tmp_path):
    data = write_csv_dataset(tmp_path / "ds", 12)
    store = tmp_path / "store"
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    prefect = str(BIN / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        wait_for(lambda: _healthy(f"http://127.0.0.1:{port}/api/health"), 120, "prefect server")
        _run([prefect, "work-pool", "create", "affectflow-process", "--type", "process"], env)
        _run([prefect, "--no-prompt", "deploy", "--all"], env)
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "affectflow-process"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        params = {
            "datasets": [{"layout": "csv", "root": str(data), "name": "faces"}],
            "encoders": [{"name": "test-clip-tiny"}],
            "store": str(store),
        }
        out = _run(
            [
                prefect,
                "deployment",
                "run",
                "extract-features/nightly-demo",
                "--params",
                json.dumps(params),
                "--watch",
                "--watch-timeout",
                "400",
            ],
            env,
            timeout=450,
        )
        assert "Completed" in out, out[-2000:]
        inspected = _run([prefect, "deployment", "inspect", "extract-features/nightly-demo"], env)
        assert "0 3 * * *" in inspected  # the cron schedule from prefect.yaml
    finally:
        if worker is not None:
            stop(worker)
        stop(server)
    (group,) = FeatureStore(store).list_steps("features")
    reader = GroupReader(group)
    assert reader.status_counts() == {"ok": 12} and reader.numpy("global").shape == (12, 32)


def test_chunks_run_on_a_real_dask_scheduler_and_worker(tmp_path):
    from distributed import Client

    data = write_csv_dataset(tmp_path / "ds", 40)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(BIN / "dask")
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        worker = subprocess.Popen(
            [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--dashboard-address", ":0"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            proc = cli(
                "extract",
                "--dataset",
                f"csv={data},name=faces",
                "--encoder",
                "test-clip-tiny",
                "--store",
                str(tmp_path / "store"),
                "--chunk-size",
                "8",
                "--dask-address",
                address,
                "--json",
                str(tmp_path / "r.json"),
            )
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out[-3000:]

            def loaded_models():
                from stages.encoders.base import _loaded

                return _loaded.cache_info().currsize

            # the encoder was loaded inside the Dask worker process, i.e. the chunks ran there
            assert list(client.run(loaded_models).values()) == [1]
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)
    (step,) = json.loads((tmp_path / "r.json").read_text())["steps"]
    assert step["chunks_run"] == 5 and step["status_counts"] == {"ok": 40}
