"""Real subprocesses: SIGKILL mid-run then resume, and two concurrent runs of the same step."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zarr

import featurestore.store as store_module
from featurestore import ArraySpec, FeatureStore, GroupReader, Step, StepSpec
from stages.extraction.encoders import create_encoder
from stages.extraction.extract import feature_step
from stages.extraction.sources import build_manifest
from tests.conftest import cli, crash_after_chunks, crashed, run_cli, wait_for, write_csv_dataset

pytestmark = pytest.mark.slow

N_IMAGES, CHUNK = 96, 8
N_CHUNKS = N_IMAGES // CHUNK


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_csv_dataset(tmp_path_factory.mktemp("resume"), N_IMAGES)


def _args(dataset, store, json_out=None):
    args = [
        "extract",
        "--dataset",
        f"csv={dataset},name=faces",
        "--encoder",
        "efficientnet-lite0",
        "--store",
        str(store),
        "--chunk-size",
        str(CHUNK),
        "--batch-size",
        str(CHUNK),
    ]
    return args + (["--json", str(json_out)] if json_out else [])


def _feature_groups(store):
    try:
        return FeatureStore(store).list_steps("features")
    except KeyError:
        return []


def _finish(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _assert_same_group(store_a, store_b):
    (a,), (b,) = _feature_groups(store_a), _feature_groups(store_b)
    assert a.key == b.key and a.is_complete and b.is_complete
    ra, rb = GroupReader(a), GroupReader(b)
    for name in ra.names():
        np.testing.assert_array_equal(ra.numpy(name), rb.numpy(name), err_msg=name)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory, prefect_harness):
    """What an uninterrupted run writes: the same command, in this process (the runs under test
    are processes of their own)."""
    store = tmp_path_factory.mktemp("ref") / "store"
    run_cli(*_args(dataset, store))
    return store


CRASH_AFTER = 3


def test_sigkill_mid_run_resumes_only_missing_chunks_bit_for_bit(dataset, reference, tmp_path, prefect_api):
    store = tmp_path / "store"
    crash = {**crash_after_chunks(CRASH_AFTER), **prefect_api}
    crashed(cli(*_args(dataset, store), env=crash, start_new_session=True))
    (partial,) = _feature_groups(store)
    done_before = int(partial.done_mask().sum())
    assert not partial.is_complete and done_before == CRASH_AFTER

    summary = tmp_path / "resume.json"
    _finish(cli(*_args(dataset, store, summary), env=prefect_api))
    (step,) = json.loads(summary.read_text())["steps"]
    assert step["state"] == "resumed"
    assert step["chunks_run"] == N_CHUNKS - done_before
    _assert_same_group(store, reference)


def test_a_run_waits_for_the_step_lock_and_finishes_no_chunk_while_it_is_held(
    dataset, reference, tmp_path, prefect_api
):
    """The test holds the step's lock itself: the run must write its source, then wait; no feature
    chunk may be done until the lock is released (a no-op lock would let the run compute at once)."""
    store = tmp_path / "store"
    fstore = FeatureStore(store)
    key = feature_step(create_encoder("efficientnet-lite0"), build_manifest("csv", dataset, "faces").key, "faces").key
    summary = tmp_path / "run.json"
    with fstore.lock(key):
        proc = cli(*_args(dataset, store, summary), env=prefect_api)
        wait_for(lambda: FeatureStore(store).list_steps("sources"), 120, "the run to write its source group")
        # an unlocked run gets its first chunk done within a few seconds of its source; this one must not
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run finished while the test held the step lock"
            groups = _feature_groups(store)
            assert not groups or groups[0].done_mask().sum() == 0, "a chunk finished while the lock was held"
            time.sleep(0.25)
    _finish(proc)
    (step,) = json.loads(summary.read_text())["steps"]
    assert step["state"] == "new" and step["chunks_run"] == N_CHUNKS and step["key"] == key
    _assert_same_group(store, reference)


def test_two_concurrent_runs_of_one_step_do_not_interleave(dataset, reference, tmp_path, prefect_api):
    store = tmp_path / "store"
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [cli(*_args(dataset, store, out), env=prefect_api) for out in outs]
    for p in procs:
        _finish(p)
    steps = [json.loads(o.read_text())["steps"][0] for o in outs]
    # the lock serialises them: one computes every chunk, the other waits and then skips
    assert sorted(s["chunks_run"] for s in steps) == [0, N_CHUNKS]
    assert sorted(s["state"] for s in steps) == ["new", "skipped"]
    _assert_same_group(store, reference)


def test_a_run_that_loses_the_race_to_create_a_new_store_opens_the_winners(tmp_path, monkeypatch):
    """Two first runs on a new store both find no root group; zarr's ``mode="a"`` then raises in
    the one whose create comes second (seen in the test above). It must open the other's root."""
    real_open_group = zarr.open_group
    calls = []

    def other_run_wins_first(*args, **kwargs):
        calls.append(kwargs["mode"])
        if len(calls) == 1:
            real_open_group(*args, **{**kwargs, "mode": "w-"})  # the other run creates the root now
            raise zarr.errors.ContainsGroupError("A group exists in store at path ''.")
        return real_open_group(*args, **kwargs)

    monkeypatch.setattr(store_module.zarr, "open_group", other_run_wins_first)
    store = FeatureStore(str(tmp_path / "store"))
    assert calls == ["a", "r+"]
    assert store.list_steps("features") == []  # a new store: nothing under any prefix yet
    assert store.root_group.attrs["affectflow_store_format"] == store_module.STORE_FORMAT
    status = {"status": ArraySpec((), np.int8, 0)}
    step = Step("features", StepSpec("t", 1, {}), (), "features", ("x", "y"), key="k")
    store.create_step(step, n_samples=2, arrays=status)
    assert [g.path for g in FeatureStore(str(tmp_path / "store")).list_steps("features")] == ["features/x/y/k"]
