"""The store on an S3-compatible server (moto in server mode on loopback), through s3fs/fsspec."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import s3fs
from typer.testing import CliRunner

from featurestore import FeatureStore, GroupReader
from featurestore.locks import LeaseLock, LeaseLost
from flows.cli import app
from flows.extract import DatasetConfig, EncoderConfig, extract_features
from stages.extraction.sources.labels import EXPRESSIONS
from tests.conftest import BIN, cli, crash_after_chunks, crashed, free_port, stop, wait_for, write_csv_dataset

pytestmark = pytest.mark.slow

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in CREDS.items():
                env.setenv(name, value)
            fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
            wait_for(lambda: _try(fs.ls, ""), 30, "moto server")
            fs.mkdir("affect-bucket")
            yield endpoint
    finally:
        stop(proc)


def _try(fn, *args):
    try:
        fn(*args)
        return True
    except Exception:
        return False


def test_lease_lock_excludes_renews_and_expires_by_the_clock(s3):
    """Expiry on a fake wall clock shared by both contenders: no sleeping, no timing window. The
    TTL is long enough that the background renewer never fires here: renewals are the test's."""
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    now = [1_000_000.0]

    def lease(ttl=600.0):
        return LeaseLock(fs, "affect-bucket/locks/k1", ttl=ttl, clock=lambda: now[0])

    a, b = lease(), lease()
    assert a.try_acquire()
    assert not b.try_acquire()
    now[0] += 500
    assert a.renew(), "the holder renews: its lease now runs to +1100"
    now[0] += 500
    assert not b.try_acquire(), "a renewed lease is still held after its first TTL has passed"
    now[0] += 101  # past the renewed expiry with no renewal since: the holder died
    assert b.try_acquire() and b.generation == a.generation + 1
    assert not a.renew() and a.lost, "a holder that finds a newer generation knows it lost"
    with pytest.raises(LeaseLost):
        a.release()
    b.release()
    assert b.holder()["released"] is True
    c = lease()
    assert c.try_acquire(), "a released lease is free at once, before its expiry"
    c.release()


def test_the_lease_ttl_is_60_s_or_the_environments_and_a_bad_value_is_refused(monkeypatch):
    from featurestore.locks import lease_ttl

    monkeypatch.delenv("AFFECTFLOW_LEASE_TTL", raising=False)
    assert lease_ttl() == 60.0
    monkeypatch.setenv("AFFECTFLOW_LEASE_TTL", "5")
    assert lease_ttl() == 5.0
    for bad in ("0", "-3", "soon", "nan"):
        monkeypatch.setenv("AFFECTFLOW_LEASE_TTL", bad)
        with pytest.raises(ValueError, match="AFFECTFLOW_LEASE_TTL"):
            lease_ttl()


def test_the_holder_renews_its_lease_in_the_background(s3):
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    a = LeaseLock(fs, "affect-bucket/locks/k2", ttl=0.9)  # renews every 0.3 s
    assert a.try_acquire()
    first = a.holder()["expires_at"]
    wait_for(lambda: a.holder()["expires_at"] > first, 60, "the background renewal")
    a.release()
    assert a.holder()["released"] is True and not a.lost


def test_contenders_for_one_generation_exactly_one_wins(s3, monkeypatch):
    """Every contender lists the same generations before any of them writes, so all of them try to
    create the same lease object: the conditional put (If-None-Match) must let exactly one win."""
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    n = 6
    listed_together = threading.Barrier(n)
    real_generations = LeaseLock._generations
    first_listing = set()

    def generations_in_step(self):
        gens = real_generations(self)
        if id(self) not in first_listing:
            first_listing.add(id(self))
            listed_together.wait(timeout=60)
        return gens

    monkeypatch.setattr(LeaseLock, "_generations", generations_in_step)
    locks = [LeaseLock(fs, "affect-bucket/locks/race", ttl=600) for _ in range(n)]
    with ThreadPoolExecutor(n) as pool:
        won = list(pool.map(LeaseLock.try_acquire, locks))
    assert sum(won) == 1, won
    (winner,) = [lock for lock, w in zip(locks, won) if w]
    assert winner.generation == 1 and winner.holder()["owner"] == winner.owner
    winner.release()


def test_extract_kill_resume_and_read_on_s3(s3, tmp_path, prefect_api):
    n = 32  # four chunks of 8: two done before the crash, two after it (each extraction is a CLI process)
    data = write_csv_dataset(tmp_path / "ds", n)
    manifest = (data / "manifest.csv").read_text().splitlines()  # + expressions: a head trains on it below
    rows = [f"{line},{EXPRESSIONS[i % 7]}" for i, line in enumerate(manifest[1:])]
    (data / "manifest.csv").write_text("\n".join([manifest[0] + ",expression", *rows]) + "\n")
    url = "s3://affect-bucket/store"
    args = [
        "extract",
        "--dataset",
        f"csv={data},name=faces",
        "--encoder",
        "efficientnet-lite0",
        "--store",
        url,
        "--storage-option",
        f"endpoint_url={s3}",
        "--chunk-size",
        "8",
        "--batch-size",
        "8",
    ]
    store = FeatureStore(url, {"endpoint_url": s3})

    # the killed run's lease is taken over 5 s after its last renewal, not the default 60 (suite time)
    short_lease = {"AFFECTFLOW_LEASE_TTL": "5"}
    crashed(cli(*args, env={**crash_after_chunks(2), **prefect_api, **short_lease}, start_new_session=True))
    (partial,) = FeatureStore(url, {"endpoint_url": s3}).list_steps("features")
    done_before = int(partial.done_mask().sum())
    assert done_before == 2 and not partial.is_complete

    resumed = cli(*args, "--json", str(tmp_path / "r.json"), env={**prefect_api, **short_lease})
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    (step,) = json.loads((tmp_path / "r.json").read_text())["steps"]
    assert step["state"] == "resumed" and step["chunks_run"] == n // 8 - done_before

    # the reference: the same extraction into a local store, in this process (the command's code path
    # ran twice above)
    extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(data), name="faces")],
        encoders=[EncoderConfig(name="efficientnet-lite0")],
        store=str(tmp_path / "local"),
        chunk_size=8,
        batch_size=8,
    )
    remote = GroupReader(FeatureStore(url, {"endpoint_url": s3}).list_steps("features")[0])
    (ref_group,) = FeatureStore(tmp_path / "local").list_steps("features")
    reference = GroupReader(ref_group)
    assert remote.meta["key"] == reference.meta["key"]
    for name in reference.names():
        np.testing.assert_array_equal(remote.numpy(name), reference.numpy(name), err_msg=name)
    assert remote.dask("global").shape == (n, 1280)
    # the lease lived on S3, and the finished run released it
    lease = LeaseLock(store.fs, f"affect-bucket/store/.affectflow-locks/{remote.meta['key']}")
    assert lease.holder()["released"] is True

    # every command that opens a store takes the same two store options (in process: same CLI code)
    s3_store = ["--store", url, "--storage-option", f"endpoint_url={s3}"]
    invoke = CliRunner().invoke
    listed = invoke(app, ["ls", *s3_store])
    assert listed.exit_code == 0 and "features/faces/efficientnet-lite0" in listed.output, listed.output
    head = ["--task", "fer", "--head", "linear", "--epochs", "5", "--batch-size", "16"]
    trained = invoke(
        app, ["train", "--features", "faces/efficientnet", *head, "--json", str(tmp_path / "t.json"), *s3_store]
    )
    assert trained.exit_code == 0, trained.output
    training = json.loads((tmp_path / "t.json").read_text())
    (summary,), (run,) = training["summary"], training["runs"]
    assert run["features"] == remote.path  # the selector named the one complete group
    listed = invoke(app, ["results", "--json", "-", *s3_store])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert (row["head"], row["headline"]) == ("linear", "macro_f1")
    assert row["headline_mean"] == pytest.approx(summary["test"]["macro_f1"][0], abs=1e-12)  # what train printed
    evaluated = invoke(app, ["evaluate", "faces/linear-fer", "--json", str(tmp_path / "e.json"), *s3_store])
    assert evaluated.exit_code == 0, evaluated.output
    (evaluation,) = json.loads((tmp_path / "e.json").read_text())
    assert evaluation["metrics"]["macro_f1"] == pytest.approx(run["metrics"]["test"]["macro_f1"], abs=1e-6)


SECRET = "s3cr3t-affectflow-7f3a9c"  # a value to look for everywhere afterwards
KEY_ID = "AKIA-AFFECTFLOW-TEST"


def test_credentials_from_a_secret_block_reach_s3_and_nowhere_else(s3, tmp_path, prefect_api):
    """Extract, train and audit on S3 with the credentials in a Prefect Secret block (the CLI
    processes have no AWS_* variables: without the block the store cannot be reached); afterwards
    the secret is in no flow or task run, log or artifact of the Prefect server, nor in the store."""
    import asyncio
    import os

    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter

    Secret(value={"key": KEY_ID, "secret": SECRET}).save("afs-store-creds", overwrite=True)
    data = write_csv_dataset(tmp_path / "faces", 24)
    rows = (data / "manifest.csv").read_text().splitlines()  # with expressions, so a head can train
    labelled = [f"{rows[0]},expression"] + [f"{r},{EXPRESSIONS[k % 3]}" for k, r in enumerate(rows[1:])]
    (data / "manifest.csv").write_text("\n".join(labelled) + "\n")
    url = "s3://affect-bucket/secret-store"
    store = ["--store", url, "--storage-option", f"endpoint_url={s3}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | prefect_api

    def run(*args: str, secret: bool = True) -> tuple[int, str]:
        command = [str(BIN / "affectflow"), *args, *store, *(["--storage-secret", "afs-store-creds"] if secret else [])]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout + done.stderr

    extract = ["extract", "--dataset", f"csv={data},name=faces", "--encoder", "efficientnet-lite0"]
    code, out = run(*extract, secret=False)
    assert code != 0  # no credentials in the environment: the store is out of reach without the block
    code, out = run(*extract)
    assert code == 0, out[-3000:]
    code, out = run(
        "train", "--features", "faces/efficientnet-lite0", "--task", "fer", "--head", "linear", "--epochs", "5"
    )
    assert code == 0, out[-3000:]
    code, out = run("audit", "circumplex", "faces/linear-fer")
    assert code == 0, out[-3000:]
    assert SECRET not in out

    async def everything() -> str:
        async with get_client() as client:
            flows = await client.read_flow_runs()
            tasks = await client.read_task_runs()
            logs = await client.read_logs(LogFilter())
            artifacts = await client.read_artifacts()
        assert {"extract-features", "train-heads", "audit-heads"} <= {(await _flow_name(f.flow_id)) for f in flows}
        runs = [f for f in flows if f.parameters.get("storage_secret") == "afs-store-creds"]
        assert len(runs) >= 3  # the runs got the block's name, not its value
        return json.dumps([x.model_dump(mode="json") for x in (*flows, *tasks, *logs, *artifacts)])

    async def _flow_name(flow_id) -> str:
        async with get_client() as client:
            return (await client.read_flow(flow_id)).name

    recorded = asyncio.run(everything())
    assert SECRET not in recorded and KEY_ID not in recorded
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    for path in fs.find("affect-bucket/secret-store"):
        if fs.size(path) < 1_000_000:
            body = fs.cat(path)
            assert SECRET.encode() not in body and KEY_ID.encode() not in body, path
