"""Completion is explicit: a chunk is done when its flag says so, never because data exists."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import ArraySpec, FeatureStore, GroupReader, Step, StepSpec

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
