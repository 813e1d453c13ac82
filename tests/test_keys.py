"""Step keys and manifest keys: stable for the same inputs, different for any change that matters."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurestore.fingerprint as fingerprint
from featurestore import StepSpec, UnhashableSpecError, step_key
from stages.extraction.encoders import create_encoder
from stages.extraction.extract import feature_step
from stages.extraction.images import Preprocess
from stages.extraction.sources import build_manifest
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


def _flip_byte_in_place(path: Path, offset: int | None = None) -> None:
    """Change one byte of ``path`` without changing its size (a wrong key that hashed sizes would miss it)."""
    size = path.stat().st_size
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert path.stat().st_size == size


def test_encoder_weights_preprocessing_and_options_enter_the_key():
    tiny = create_encoder("test-clip-tiny")
    key = feature_step(tiny, "src", "d").key
    assert key == feature_step(create_encoder("test-clip-tiny"), "src", "d").key
    assert key != feature_step(create_encoder("test-clip-tiny", seed=1), "src", "d").key  # other weights
    assert key != feature_step(create_encoder("test-clip-tiny", tokens=True), "src", "d").key  # other outputs
    assert key != feature_step(tiny, "other-source", "d").key
    other_pre = create_encoder("test-clip-tiny")
    other_pre.preprocess = Preprocess(64, (0.5,) * 3, (0.5,) * 3)
    assert key != feature_step(other_pre, "src", "d").key
    effnet = create_encoder("efficientnet-lite0")
    assert effnet.weights_digest().startswith("file:")
    assert feature_step(effnet, "src", "d").key != key


def test_a_local_weights_file_changed_in_place_changes_the_key(tmp_path):
    """``open_clip:<arch>@file.pt``: the key follows the file's bytes, not its name or size."""
    import torch

    weights = tmp_path / "tiny.pt"
    torch.save(create_encoder("test-clip-tiny").build().state_dict(), weights)
    name = f"open_clip:affectflow-test-vit@{weights}"
    key = feature_step(create_encoder(name), "src", "d").key
    assert key == feature_step(create_encoder(name), "src", "d").key
    _flip_byte_in_place(weights)
    assert feature_step(create_encoder(name), "src", "d").key != key, (
        "one flipped byte in the weights file must change the key"
    )


def test_the_device_does_not_enter_the_key():
    """Where it runs is a knob, not part of the result: loading on a device leaves spec and key alone."""
    unloaded = create_encoder("test-clip-tiny")
    key = feature_step(unloaded, "src", "d").key
    loaded = create_encoder("test-clip-tiny").load("cpu")
    assert loaded.spec_params() == unloaded.spec_params() and feature_step(loaded, "src", "d").key == key


def test_manifest_key_follows_content_not_location(tmp_path):
    a = write_csv_dataset(tmp_path / "a", 6)
    key = build_manifest("csv", a).key
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, moved)
    assert build_manifest("csv", moved).key == key, "moving the dataset must not change the key"
    _flip_byte_in_place(moved / "img" / "00003.jpg")
    assert build_manifest("csv", moved).key != key, "changing one image's bytes (same size) must change the key"
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


def _age(root: Path, seconds: float = 60) -> None:
    """Set every file's mtime ``seconds`` in the past (older than the stat cache's racy window)."""
    past = time.time() - seconds
    for path in root.rglob("*"):
        os.utime(path, (past, past))


def test_stat_cache_skips_rehashing_unchanged_files(tmp_path, monkeypatch):
    root = write_csv_dataset(tmp_path / "c", 5)
    _age(root)
    cache = fingerprint.StatCache(tmp_path / "stat.sqlite3")
    calls = []
    real = fingerprint.file_digest
    monkeypatch.setattr(fingerprint, "file_digest", lambda p: calls.append(p) or real(p))
    first = build_manifest("csv", root, stat_cache=cache).key
    assert len(calls) == 6  # five images and the manifest
    calls.clear()
    assert build_manifest("csv", root, stat_cache=cache).key == first
    assert calls == []


def test_a_same_size_rewrite_within_one_timestamp_tick_is_not_hidden_by_the_stat_cache(tmp_path):
    """A file rewritten in place within the file system's timestamp tick keeps size and mtime; a
    stat cache that trusted it would keep the old digest. Recently modified files are never cached."""
    root = write_csv_dataset(tmp_path / "r", 3)
    cache = fingerprint.StatCache(tmp_path / "stat.sqlite3")
    target = root / "img" / "00001.jpg"
    before = build_manifest("csv", root, stat_cache=cache).key
    stat = target.stat()
    _flip_byte_in_place(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same tick: size and mtime unchanged
    assert build_manifest("csv", root, stat_cache=cache).key != before
