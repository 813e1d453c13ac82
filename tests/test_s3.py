"""The store on an S3-compatible server (moto in server mode on loopback), through s3fs/fsspec."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest
import s3fs

from featurestore import FeatureStore, GroupReader
from featurestore.locks import LeaseLock, LeaseLost
from tests.conftest import BIN, cli, crash, free_port, stop, wait_for, write_csv_dataset

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


def test_lease_lock_excludes_and_expires(s3):
    fs = s3fs.S3FileSystem(endpoint_url=s3, skip_instance_cache=True)
    a = LeaseLock(fs, "affect-bucket/locks/k1", ttl=1.0)
    b = LeaseLock(fs, "affect-bucket/locks/k1", ttl=1.0)
    assert a.try_acquire()
    assert not b.try_acquire()
    time.sleep(1.5)
    assert not b.try_acquire(), "a live holder keeps renewing its lease"
    a._stop.set()  # the holder is killed: no more renewals
    a._renewer.join()
    wait_for(b.try_acquire, 10, "the dead holder's lease to expire")
    with pytest.raises(LeaseLost):
        a.release()
    b.release()
    c = LeaseLock(fs, "affect-bucket/locks/k1", ttl=1.0)
    assert c.try_acquire(), "a released lease is free at once"
    c.release()


def test_extract_kill_resume_and_read_on_s3(s3, tmp_path):
    data = write_csv_dataset(tmp_path / "ds", 64)
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

    def some_done():
        store_now = FeatureStore(url, {"endpoint_url": s3})
        try:
            groups = store_now.list_steps("features")
        except KeyError:
            return False
        return groups and 1 <= groups[0].done_mask().sum() < 8

    proc = cli(*args, start_new_session=True)
    wait_for(some_done, 300, "a chunk on S3")
    crash(proc)
    (partial,) = FeatureStore(url, {"endpoint_url": s3}).list_steps("features")
    done_before = int(partial.done_mask().sum())

    resumed = cli(*args, "--json", str(tmp_path / "r.json"))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]
    (step,) = json.loads((tmp_path / "r.json").read_text())["steps"]
    assert step["state"] == "resumed" and step["chunks_run"] == 8 - done_before

    local = cli(*args[:5], "--store", str(tmp_path / "local"), "--chunk-size", "8", "--batch-size", "8")
    out, _ = local.communicate(timeout=600)
    assert local.returncode == 0, out[-3000:]
    remote = GroupReader(FeatureStore(url, {"endpoint_url": s3}).list_steps("features")[0])
    (ref_group,) = FeatureStore(tmp_path / "local").list_steps("features")
    reference = GroupReader(ref_group)
    assert remote.meta["key"] == reference.meta["key"]
    for name in reference.names():
        np.testing.assert_array_equal(remote.numpy(name), reference.numpy(name), err_msg=name)
    assert remote.dask("global").shape == (64, 1280)
    assert store.fs.ls(f"affect-bucket/store/.affectflow-locks/{remote.meta['key']}")  # the lease lived on S3
