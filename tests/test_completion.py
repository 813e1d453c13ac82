"""Completion is explicit: a chunk is done when its flag says so, never because data exists."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import ArraySpec, FeatureStore, GroupReader, Step, StepSpec
from featurestore.completion import META

PATH = "features/x/enc/k"


def test_a_chunk_of_fill_values_is_done_only_after_its_flag(tmp_path):
    """Zarr v3 writes no object for a chunk equal to the fill value, so "the chunk exists" can mean
    neither done nor undone: a chunk of all-NaN features (every frame without a face) must count as
    done exactly when its flag is set, and the group as complete only when every flag is."""
    store = FeatureStore(str(tmp_path / "s"))
    step = Step("features", StepSpec("t", 1, {}), (), "features", ("x", "enc"), key="k")
    assert step.path == PATH
    group = store.create_step(step, n_samples=8, arrays={"v": ArraySpec((3,), np.float16, np.nan)}, chunk_size=4)
    group.write("v", np.full((4, 3), np.nan, np.float16))  # the fill value: no chunk object
    assert FeatureStore(str(tmp_path / "s")).open_step(PATH).undone_chunks() == [0, 1]
    group.mark_chunk_done(0)
    reopened = FeatureStore(str(tmp_path / "s")).open_step(PATH)
    assert reopened.undone_chunks() == [1] and not reopened.is_complete
    with pytest.raises(RuntimeError, match=r"chunks \[1\] not done"):
        reopened.mark_complete()
    reopened.write("v", np.ones((4, 3), np.float16), start=4)
    reopened.mark_chunk_done(1)
    reopened.mark_complete()
    final = FeatureStore(str(tmp_path / "s")).open_step(PATH)
    assert final.is_complete and final.undone_chunks() == []
    values = GroupReader(final).numpy("v")
    assert np.isnan(values[:4]).all() and (values[4:] == 1).all()


def test_latest_is_the_group_completed_last_not_the_last_zarr_lists(tmp_path):
    """Two complete groups of one dataset and encoder: the later one has the smaller key, so a
    listing by name puts it first; ``latest`` returns it, honours ``where``, skips an
    incomplete group, and still orders a group stored with a seconds-only completion time."""
    store = FeatureStore(str(tmp_path / "s"))

    def complete(key: str, done: bool = True):
        step = Step("features", StepSpec("t", 1, {"key": key}), (), "features", ("x", "enc"), key=key)
        group = store.create_step(step, n_samples=4, arrays={"v": ArraySpec((1,), np.float16)}, chunk_size=4)
        group.write("v", np.ones((4, 1), np.float16))
        group.mark_chunk_done(0)
        if done:
            group.mark_complete()
        return group

    older = complete("zz")
    meta = older.meta
    meta["completed_at"] = "2026-01-01T00:00:00+00:00"  # as groups were stamped before microseconds
    older.group.attrs[META] = meta
    newer = complete("aa")
    complete("00", done=False)
    # by name the older sorts last; Zarr lists members in an order of its store's (by name on most,
    # as the directory gives them on a local one): neither is completion order
    listed = [g.path for g in store.list_steps("features/x") if g.is_complete]
    assert sorted(listed)[-1] == older.path, listed
    assert store.latest("features/x").path == newer.path
    assert store.latest("features/x", lambda g: g.path.endswith("zz")).path == older.path
    assert store.latest("features/none") is None
