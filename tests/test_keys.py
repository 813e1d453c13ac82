"""Step keys and manifest keys: stable for the same inputs, different for any change that matters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurestore.fingerprint as fingerprint
from featurestore import StepSpec, UnhashableSpecError, step_key
from stages.encoders import create_encoder
from stages.extract import feature_key
from stages.images import Preprocess
from stages.sources import build_manifest
from tests.conftest import write_csv_dataset

json_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4), max_leaves=12
)
params = st.dictionaries(st.text(min_size=1), json_values, min_size=1, max_size=6)


@given(params, st.lists(st.text(min_size=1), max_size=3))
def test_same_spec_same_key_whatever_the_dict_order(p, inputs):
    shuffled = dict(reversed(list(p.items())))
    assert step_key(StepSpec("s", 1, p), inputs) == step_key(StepSpec("s", 1, shuffled), inputs)


@given(params, st.data())
def test_any_param_change_changes_the_key(p, data):
    name = data.draw(st.sampled_from(sorted(p)))
    new_value = data.draw(json_values.filter(lambda v: v != p[name] and repr(v) != repr(p[name])))
    changed = {**p, name: new_value}
    assert step_key(StepSpec("s", 1, p)) != step_key(StepSpec("s", 1, changed))


@given(params, st.integers(1, 50))
def test_version_and_inputs_change_the_key(p, version):
    base = step_key(StepSpec("s", version, p), ["a"])
    assert base != step_key(StepSpec("s", version + 1, p), ["a"])
    assert base != step_key(StepSpec("s", version, p), ["b"])


@pytest.mark.parametrize("bad", [Path("/x"), float("nan"), object(), {1: "int key"}, {"a": {3}}])
def test_values_without_canonical_json_are_refused(bad):
    with pytest.raises(UnhashableSpecError):
        step_key(StepSpec("s", 1, {"p": bad}))


def test_encoder_weights_preprocessing_and_options_enter_the_key():
    tiny = create_encoder("test-clip-tiny")
    key = feature_key(tiny, "src")
    assert key == feature_key(create_encoder("test-clip-tiny"), "src")
    assert key != feature_key(create_encoder("test-clip-tiny", seed=1), "src")  # other weights
    assert key != feature_key(create_encoder("test-clip-tiny", tokens=True), "src")  # other outputs
    assert key != feature_key(tiny, "other-source")
    other_pre = create_encoder("test-clip-tiny")
    other_pre.preprocess = Preprocess(64, (0.5,) * 3, (0.5,) * 3)
    assert key != feature_key(other_pre, "src")
    effnet = create_encoder("efficientnet-lite0")
    assert effnet.weights_digest().startswith("file:")
    assert feature_key(effnet, "src") != key


def test_manifest_key_follows_content_not_location(tmp_path):
    a = write_csv_dataset(tmp_path / "a", 6)
    key = build_manifest("csv", a).key
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, moved)
    assert build_manifest("csv", moved).key == key, "moving the dataset must not change the key"
    (moved / "img" / "00003.jpg").write_bytes((moved / "img" / "00003.jpg").read_bytes() + b"\0")
    assert build_manifest("csv", moved).key != key, "changing one image's bytes must change the key"
    (a / "manifest.csv").write_text((a / "manifest.csv").read_text().replace("s1,", "s9,"))
    assert build_manifest("csv", a).key != key, "changing a label file must change the key"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=64))
def test_any_content_change_changes_the_manifest_key(tmp_path, payload):
    root = write_csv_dataset(tmp_path / "p", 3)
    before = build_manifest("csv", root).key
    target = root / "img" / "00001.jpg"
    original = target.read_bytes()
    target.write_bytes(original + payload)
    try:
        assert build_manifest("csv", root).key != before
    finally:
        target.write_bytes(original)


def test_stat_cache_skips_rehashing_unchanged_files(tmp_path, monkeypatch):
    root = write_csv_dataset(tmp_path / "c", 5)
    cache = fingerprint.StatCache(tmp_path / "stat.sqlite3")
    calls = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: calls.append(p) or real(p))
    first = build_manifest("csv", root, stat_cache=cache).key
    assert len(calls) == 6  # five images and the manifest
    calls.clear()
    assert build_manifest("csv", root, stat_cache=cache).key == first
    assert calls == []
