"""Real servers on loopback: a Prefect server and process worker running every shipped deployment,
a Dask scheduler and worker running the cluster deployment's chunk tasks, and infra/local-server.sh."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from featurestore import FeatureStore
from flows.demo import demo_heads_plan
from stages.extraction.allocator import SETTINGS
from stages.extraction.allocator import status as allocator_status
from tests.conftest import BIN, REPO, free_port, stop, wait_for

pytestmark = pytest.mark.slow


def _run(args: list[str], env: dict, timeout: float = 300, cwd: Path = REPO) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _api(base: str, route: str, body: dict | None = None) -> list | dict:
    """A call to the Prefect server's REST API (POST with ``body``, else GET), retried on the
    statuses Prefect's own client retries (429, 502, 503: the run's server answers 503 while its
    SQLite database is busy with both test workers' runs), with its backoff."""
    import time

    data = None if body is None else json.dumps(body).encode()
    for attempt in range(6):
        request = urllib.request.Request(f"{base}{route}", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as error:
            if error.code not in (429, 502, 503) or attempt == 5:
                raise
        time.sleep(2**attempt)


def _run_states(base: str, deployment: str) -> list[str]:
    """The state of every flow run of one deployment, through the server's REST API; a failed
    run fails the test."""
    (found,) = [d for d in _api(base, "/deployments/filter", {}) if d["name"] == deployment]
    states = [
        r["state_type"] for r in _api(base, "/flow_runs/filter", {"deployments": {"id": {"any_": [found["id"]]}}})
    ]
    assert not {"FAILED", "CRASHED"} & set(states), f"{deployment}: {states}"
    return states


def _write_demo_data(root: Path) -> None:
    """The demo's three catalogues at small sizes (the photos' first 8 of 202 rows, 3 generated
    faces per subject, one 6 s video), where the shipped deployments look for them. The heads
    read only the generated faces; the photos and the video are only extracted (suite time)."""
    from stages.extraction.encoders import create_encoder
    from stages.synthetic.demo_catalogue import write_demo_catalogue
    from stages.synthetic.face_generator import write_generated_dataset
    from stages.synthetic.face_videos import write_generated_videos

    detect = create_encoder("mediapipe-face").load().find_face
    manifest = write_demo_catalogue(root / "photos") / "manifest.csv"
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:9]))
    write_generated_dataset(root / "generated", detect, per_subject=3)
    write_generated_videos(root / "videos", detect, n_videos=1, seconds=6.0)


def test_shipped_deployments_run_as_shipped_trigger_the_heads_and_use_the_dask_cluster(tmp_path, prefect_api):
    """Every deployment of prefect.yaml, deployed as shipped on a real Prefect server and process
    worker, run with its shipped parameters. What the test changes: the working directory (a folder
    holding the demo's catalogues at small sizes, with ./store empty, and links to the
    code and prefect.yaml), and the Prefect Variable the cluster deployment reads, set to a real
    Dask scheduler on loopback. The server is the session's (conftest's harness: a real server
    with its event triggers; one start fewer in the suite), with a Prefect home of the test's own.

    cluster-demo (started by `prefect deployment run`) extracts on the Dask worker; nightly-demo
    then finds every step done (the same keys: the demo's extraction); its completion triggers
    demo-heads, which trains the demo's heads; the videos deployment, run beside them, extracts the
    videos and their windows. (A head step found done is skipped: tests/test_train_heads.py reruns
    the train-heads flow.)"""
    from distributed import Client
    from prefect.workers.process import ProcessWorker

    from flows.demo import demo_extractions

    work = tmp_path / "work"
    work.mkdir()
    (work / "prefect.yaml").symlink_to(REPO / "prefect.yaml")  # entrypoints are modules: no code here
    dask_port = free_port()
    base = prefect_api["PREFECT_API_URL"]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), **prefect_api}
    prefect, dask = str(BIN / "prefect"), str(BIN / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    address = f"tcp://127.0.0.1:{dask_port}"
    # the servers, the worker and `prefect deploy` start side by side, the catalogues are written
    # meanwhile: none of them needs another's work until a deployment runs (suite time)
    started = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(dask_port), "--dashboard-address", ":0"], **quiet
        )
    ]
    started.append(
        subprocess.Popen(
            # the worker command infra/dask/README.md documents, in an environment without glibc's variables
            [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--dashboard-address", ":0"]
            + ["--preload", "stages.extraction.allocator"],
            cwd=work,
            env={k: v for k, v in env.items() if k not in SETTINGS},
            stdout=open(tmp_path / "dask-worker.log", "w"),  # shown when a run fails
            stderr=subprocess.STDOUT,
        )
    )
    try:
        # the pool and the variable through the REST API (each CLI call is a Prefect import: suite time)
        template = ProcessWorker.get_default_base_job_template()  # what `prefect work-pool create` sends
        _api(base, "/work_pools/", {"name": "affectflow-process", "type": "process", "base_job_template": template})
        _api(base, "/variables/", {"name": "dask_scheduler_address", "value": address})  # before deploying
        deploy_log = tmp_path / "deploy.log"
        deploy = subprocess.Popen(
            [prefect, "--no-prompt", "deploy", "--all"],
            cwd=work,
            env=env,
            stdout=open(deploy_log, "w"),
            stderr=subprocess.STDOUT,
        )
        started.append(deploy)
        worker_log = open(tmp_path / "worker.log", "w")  # the flow runs' output: shown when a run fails
        started.append(
            subprocess.Popen(
                [prefect, "worker", "start", "--pool", "affectflow-process"],
                cwd=work,
                # it looks for runs every second rather than every 10 s: each of the six runs is picked
                # up at once (suite time; nothing else about the worker changes)
                env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
        )
        _write_demo_data(work / "demo-data")
        assert deploy.wait(300) == 0, deploy_log.read_text()[-2000:]
        deployed = {d["name"]: d for d in _api(base, "/deployments/filter", {})}
        # the deployments carry flows/demo.py's plan: what `affectflow demo` extracts
        for name, params in demo_extractions("./demo-data").items():
            shipped = deployed[name]["parameters"]
            assert {k: v for k, v in shipped.items() if k != "store"} == json.loads(json.dumps(params))
            assert shipped["store"] == "./store"
        # the cron schedule from prefect.yaml
        assert [s["schedule"]["cron"] for s in deployed["nightly-demo"]["schedules"]] == ["0 3 * * *"]

        def start(deployment: str, command: bool = False) -> str:
            """A flow run of a deployment with its shipped parameters, by `prefect deployment run`
            (``command``), else through the REST API as that command creates it (one Prefect import
            fewer: suite time); its id."""
            if command:
                out = _run([prefect, "deployment", "run", deployment], env, cwd=work)
                return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
            return _api(base, f"/deployments/{deployed[deployment.split('/')[1]]['id']}/create_flow_run", {})["id"]

        def finish(flow_run: str, client: Client | None = None) -> None:
            """Wait for a flow run's end, read through the REST API (`--watch` returned ~4 s after the
            run had ended); anything but COMPLETED fails the test with the worker's output."""

            def ended() -> str | None:
                state = _api(base, f"/flow_runs/{flow_run}")["state_type"]
                return state if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

            state = wait_for(ended, 500, f"flow run {flow_run}")
            if state != "COMPLETED":
                logs = {name: (tmp_path / name).read_text()[-4000:] for name in ("worker.log", "dask-worker.log")}
                # what the Dask worker's tasks were doing when the run gave up
                stacks = client.call_stack() if client is not None else {}
                raise AssertionError(f"{flow_run}: {state}\n{logs}\nDask task stacks: {stacks}")

        # the videos' run, started first and waited for at the end: the worker runs it beside the
        # cluster run (whose chunks are the Dask worker's), the nightly run and the heads it triggers
        # (suite time)
        videos_run = start("extract-features/nightly-demo-videos")
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            finish(start("extract-features/cluster-demo", command=True), client)

            def loaded_models():
                from stages.extraction.encoders.base import _loaded

                return _loaded.cache_info().currsize

            # both image encoders were loaded inside the Dask worker process: the chunks ran there
            assert list(client.run(loaded_models).values()) == [2]
            (allocator,) = client.run(allocator_status).values()  # set by the preload, at the worker's start
            assert allocator["setting"] == "tuned" and allocator["large_buffers_mapped"] is False
        store = FeatureStore(str(work / "store"))
        features = {g.path: g for g in store.list_steps("features")}
        assert {p.split("/")[1] for p in features} - {"videos"} == {"demo", "generated"}  # videos: the other run

        def chunk_times() -> set[int]:  # of the image groups (the videos' run may still be writing its own)
            return {
                p.stat().st_mtime_ns
                for d in ("demo", "generated")
                for p in (work / "store" / "features" / d).rglob("c/*")
            }

        before = chunk_times()
        finish(start("extract-features/nightly-demo"))  # after the equivalent extraction: every step skipped
        assert chunk_times() == before
        wait_for(lambda: _run_states(base, "demo-heads").count("COMPLETED") == 1, 900, "the triggered demo-heads run")
        heads = [g.path for g in store.list_steps("heads")]
        # every head of the demo's plan (AURA, probe and MLP for three tasks; the causal graph head; FAUD-CLIP;
        # FACR's reasoner; the MLP with the circumplex term)
        assert len(heads) == len(demo_heads_plan(store)) == 13 and all(g.is_complete for g in store.list_steps("heads"))

        finish(videos_run)
        videos = [g for g in store.list_steps("features/videos") if g.is_complete]
        assert {g.path.split("/")[2] for g in videos} == {"mediapipe-face", "mfcc"}
        assert len([g for g in store.list_steps("windows") if g.is_complete]) == 4  # 2 encoders × 3 s, 5 s
    finally:
        for proc in reversed(started):
            stop(proc)


def test_local_server_script_starts_and_stops_cleanly(tmp_path, migrated_prefect_db):
    """infra/local-server.sh, run as `make install` leaves a checkout (no environment active): start
    records both PIDs and deploys prefect.yaml; stop ends the worker and then the server with
    SIGTERM (no SIGKILL needed), and status tells. Its server starts on a database already migrated
    by this Prefect, as on any start after a user's first (the run's server ran the migrations)."""
    (tmp_path / "prefect-home").mkdir()
    shutil.copyfile(migrated_prefect_db, tmp_path / "prefect-home" / "prefect.db")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_PORT": str(port),
        "AFFECTFLOW_PREFECT_STATE": str(tmp_path / "state"),
    }
    env.pop("PREFECT_API_URL", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != BIN)  # not activated
    script = ["bash", str(REPO / "infra" / "local-server.sh")]
    pids = {}
    try:
        out = _run([*script, "start"], env)
        assert f"http://127.0.0.1:{port}" in out and "stop:" in out
        pids = {name: int((tmp_path / "state" / f"{name}.pid").read_text()) for name in ("server", "worker")}
        assert all(_alive(pid) for pid in pids.values())
        assert _run([*script, "status"], env).count(": running") == 2
        deployed = _api(f"http://127.0.0.1:{port}/api", "/deployments/filter", {})
        assert {d["name"] for d in deployed} == {"nightly-demo", "nightly-demo-videos", "demo-heads", "cluster-demo"}
        stopped = _run([*script, "stop"], env)
        assert "stopped worker" in stopped and "stopped server" in stopped and "SIGKILL" not in stopped
        assert not any(_alive(pid) for pid in pids.values())
        assert _run([*script, "status"], env).count(": stopped") == 2
    finally:
        for pid in pids.values():  # only if the script failed to: the PIDs it started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        # a zombie (exited, not yet reaped by its parent) is not running
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False
