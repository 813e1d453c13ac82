"""Readable feature-group selectors: exact parts win over prefixes; ambiguity lists the candidates."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import FeatureStore, Step, StepOutput, StepSpec
from featurestore.selectors import SelectorError, select_group, select_groups


def _group(store: FeatureStore, dataset: str, encoder: str, key: str, params: dict, complete: bool = True):
    step = Step("features", StepSpec("extract", 1, params), (), "features", (dataset, encoder), key=key)
    if complete:
        store.run_step(step, lambda: StepOutput({"global": np.zeros((4, 2), np.float16)}, {"dataset": dataset}))
    else:
        store.create_step(step, n_samples=4, arrays={}, chunk_size=2)
    return step.path


def test_a_selector_resolves_by_parts_and_lists_candidates_when_ambiguous(tmp_path):
    store = FeatureStore(str(tmp_path / "s"))
    clip = _group(store, "rafdb", "open_clip-ViT-B-16-my_ckpt", "a1b2", {"encoder": "open_clip"})
    lite = _group(store, "rafdb", "efficientnet-lite0", "c3d4", {"encoder": "efficientnet-lite0"})
    tokens = _group(store, "rafdb", "efficientnet-lite0", "e5f6", {"encoder": "efficientnet-lite0", "tokens": True})
    _group(store, "rafdb", "efficientnet-lite0-x", "0000", {"encoder": "other"})
    _group(store, "fer2013", "efficientnet-lite0", "9999", {"encoder": "efficientnet-lite0"}, complete=False)

    assert select_group(store, "rafdb/open_clip", "features").path == clip  # prefix, case-insensitive
    assert select_group(store, "RAFDB/Open_Clip-vit-b-16", "features").path == clip
    assert select_group(store, lite, "features").path == lite  # a full path
    assert select_group(store, "features/rafdb/efficientnet-lite0/e5", "features").path == tokens  # key prefix
    # the exact name beats the longer one it is a prefix of, leaving the two spec variants to choose from
    assert {g.path for g in select_groups(store, "rafdb/efficientnet-lite0", "features")} == {lite, tokens}
    with pytest.raises(SelectorError, match="2 complete groups") as err:
        select_group(store, "rafdb/efficientnet-lite0", "features")
    assert lite in str(err.value) and tokens in str(err.value) and '"tokens": true' in str(err.value)
    with pytest.raises(SelectorError, match="no complete group"):
        select_group(store, "fer2013/efficientnet", "features")
    with pytest.raises(SelectorError, match="no features group matches 'affectnet/clip'.*features/rafdb"):
        select_group(store, "affectnet/clip", "features")
