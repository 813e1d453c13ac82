"""The extract-features flow in process (thread runner, temporary Prefect server, real Zarr on disk)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from featurestore import FeatureStore, GroupReader, SampleStatus, StoreError
from featurestore.h5 import export_h5, import_h5
from flows.extract import DatasetConfig, EncoderConfig, LexiconConfig, extract, extract_features
from flows.heads import HeadConfig
from stages.extraction.encoders import EncoderError, ImageEncoder, create_encoder
from stages.extraction.images import decode_image
from stages.extraction.sources import SourceError
from tests.conftest import BIN, REPO, run_cli, write_bad_files, write_csv_dataset

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    bad = write_bad_files(root)
    return write_csv_dataset(root, 20, extra_rows=[f"{p},bad,test" for p in bad.values()])


def _run(dataset: Path, store: Path, encoder="test-clip-tiny", **kw):
    return extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(dataset), name="faces")],
        encoders=[EncoderConfig(name=encoder, options=kw.pop("options", {}))],
        store=str(store),
        **kw,
    )


def test_bad_samples_get_statuses_and_good_ones_match_the_encoder(dataset, tmp_path, monkeypatch):
    result = _run(dataset, tmp_path / "store", chunk_size=8, batch_size=4)
    (step,) = result["steps"]
    assert step["state"] == "new" and step["chunks"] == 4 and step["chunks_run"] == 4
    counts = step["status_counts"]
    assert counts == {"ok": 24, "decode_error": 1, "empty_file": 1, "missing_file": 1, "not_an_image": 1}
    assert {f[2] for f in result["failures"]} == {"decode_error", "empty_file", "missing_file", "not_an_image"}
    assert "missing_file" in result["report"] and "| faces | test-clip-tiny |" in result["report"]

    reader = GroupReader.open(FeatureStore(tmp_path / "store"), step["path"])
    feats, status = reader.numpy("global"), reader.status()
    assert feats.dtype == np.float16 and feats.shape == (28, 32)
    assert np.isnan(feats[status != SampleStatus.OK]).all() and np.isfinite(feats[status == SampleStatus.OK]).all()
    # every stored row equals a direct forward pass of that row's image (to float16 precision)
    enc = create_encoder("test-clip-tiny").load("cpu")
    src = GroupReader.open(FeatureStore(tmp_path / "store"), reader.meta["source_path"])
    rows = np.flatnonzero(status == SampleStatus.OK)[:6]
    pixels = [decode_image(dataset / str(src.numpy("path")[r]), enc.preprocess).pixels for r in rows]
    direct = enc.encode(torch.from_numpy(np.stack(pixels)))["global"].numpy().astype(np.float16)
    np.testing.assert_allclose(feats[rows].astype(np.float32), direct.astype(np.float32), rtol=0, atol=2e-3)

    # rerun: O(1) skip, not a single forward pass
    calls = []
    monkeypatch.setattr(ImageEncoder, "encode", lambda self, x: calls.append(1))
    again = _run(dataset, tmp_path / "store", chunk_size=8, batch_size=4)
    assert again["steps"][0]["state"] == "skipped" and again["steps"][0]["chunks_run"] == 0
    assert again["steps"][0]["key"] == step["key"] and calls == []

    # the command-line entry point checks the same keys first and starts no flow run at all
    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs_before = client.count_flow_runs()
        quick = extract(
            [DatasetConfig(layout="csv", root=str(dataset), name="faces")],
            [EncoderConfig(name="test-clip-tiny")],
            store=str(tmp_path / "store"),
            chunk_size=8,
        )
        assert client.count_flow_runs() == runs_before
    assert quick["flow_run"] is False and calls == []
    assert [(s["state"], s["key"], s["status_counts"]) for s in quick["steps"]] == [("skipped", step["key"], counts)]


def test_tokens_are_raw_and_projected_views_of_the_same_patches(dataset, tmp_path):
    result = _run(dataset, tmp_path / "store", options={"tokens": True})
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), result["steps"][0]["path"])
    raw, proj = reader.numpy("patch_raw"), reader.numpy("patch_proj")
    assert raw.shape == (28, 16, 64) and proj.shape == (28, 16, 32)
    visual = create_encoder("test-clip-tiny").load("cpu").model.visual
    ok = reader.ok_mask()
    with torch.no_grad():
        again = visual.ln_post(torch.from_numpy(raw[ok].astype(np.float32))) @ visual.proj
    np.testing.assert_allclose(again.numpy(), proj[ok].astype(np.float32), atol=2e-2)


def test_a_rerun_that_finds_every_step_done_never_imports_torch(dataset, tmp_path, prefect_api):
    """The command's and the encoders' modules import torch where a model is built or run
    (stages/extraction/encoders/base.py): a rerun with nothing to do skips without it (~2.5 s of
    every such process, and of every run that sends its chunks to a Dask cluster)."""
    args = ["extract", "--dataset", f"csv={dataset},name=faces", "--encoder", "efficientnet-lite0"]
    args += ["--encoder", "mediapipe-face", "--store", str(tmp_path / "store")]
    run_cli(*args)
    rerun = subprocess.run(
        [str(BIN / "affectflow"), *args],
        env={**os.environ, **prefect_api, "PYTHONPROFILEIMPORTTIME": "1"},
        capture_output=True,
        text=True,
    )
    assert rerun.returncode == 0 and "nothing to run" in rerun.stdout, rerun.stdout + rerun.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in rerun.stderr.splitlines() if line.startswith("import time:")}
    assert "stages.extraction.encoders.efficientnet_lite" in imported and "torch" not in imported


def test_prompt_sets_are_embedded_once_by_the_text_tower(dataset, tmp_path):
    prompts = tmp_path / "expressions.txt"
    prompts.write_text(
        "# basic expressions\na photo of a happy face\n\na photo of a sad face\na photo of a fearful face\n"
    )
    args = [
        "extract",
        "--dataset",
        f"csv={dataset},name=faces",
        "--encoder",
        "test-clip-tiny",
        "--encoder",
        "efficientnet-lite0",
        "--store",
        str(tmp_path / "store"),
        "--prompts",
        f"expressions={prompts}",
        "--json",
        str(tmp_path / "out.json"),
    ]
    run_cli(*args)
    (lex,) = json.loads((tmp_path / "out.json").read_text())["lexicons"]
    assert (lex["lexicon"], lex["encoder"], lex["state"], lex["prompts"]) == ("expressions", "test-clip-tiny", "new", 3)
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), lex["path"])
    assert list(reader.numpy("prompt")) == [
        "a photo of a happy face",
        "a photo of a sad face",
        "a photo of a fearful face",
    ]
    direct = create_encoder("test-clip-tiny").encode_text(list(reader.numpy("prompt"))).numpy()
    np.testing.assert_allclose(reader.numpy("text").astype(np.float32), direct, atol=2e-3, rtol=1e-2)

    # same prompts → skipped without a flow run; one changed prompt → a new key
    run_cli(*args)
    again = json.loads((tmp_path / "out.json").read_text())
    assert again["flow_run"] is False and again["lexicons"][0]["state"] == "skipped"
    prompts.write_text("a photo of a happy face\na photo of a sad face\n")
    run_cli(*args)
    changed = json.loads((tmp_path / "out.json").read_text())["lexicons"][0]
    assert changed["state"] == "new" and changed["key"] != lex["key"] and changed["prompts"] == 2


def test_packaged_efficientnet_has_real_imagenet_weights():
    from matplotlib import cbook

    enc = create_encoder("efficientnet-lite0").load("cpu")
    px = decode_image(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), enc.preprocess).pixels
    x = torch.from_numpy(px)[None].permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(enc.preprocess.mean).view(1, 3, 1, 1)) / torch.tensor(enc.preprocess.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = enc.classify(x).softmax(-1).topk(3).indices[0].tolist()
    assert top[0] == 652  # "military uniform", the classic answer for this photo
    assert 457 in top or 834 in top  # bow tie / suit
    out = enc.encode(torch.from_numpy(px)[None])
    assert out["global"].shape == (1, 1280)


def test_bad_configuration_fails_fast_with_what_to_fix(dataset, tmp_path):
    with pytest.raises(EncoderError, match="unknown encoder 'clip-b32'.*efficientnet-lite0"):
        _run(dataset, tmp_path / "s", encoder="clip-b32")
    with pytest.raises(SourceError, match="unknown dataset layout"):
        extract_features(
            datasets=[DatasetConfig(layout="raf-db", root=str(dataset))],
            encoders=[EncoderConfig(name="test-clip-tiny")],
            store=str(tmp_path / "s"),
        )
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="--store"):
        _run(dataset, blocker / "store")
    with pytest.raises(ValueError, match="need an encoder with a text tower"):
        _run(dataset, tmp_path / "s", encoder="efficientnet-lite0", lexicons=[LexiconConfig(name="x", prompts=["a"])])
    with pytest.raises(EncoderError, match="neither a checkpoint file nor a known tag"):
        create_encoder("open_clip:ViT-B-32@no-such-tag")
    # an encoder option written beside `options` would have been dropped, and the run would have
    # extracted (or skipped as finished) the group without it
    with pytest.raises(ValidationError, match="tokens\n  Extra inputs are not permitted"):
        EncoderConfig(name="efficientnet-lite0", tokens=True)
    with pytest.raises(ValidationError, match="epoch\n  Extra inputs are not permitted"):
        HeadConfig(head="aura", task="fer", features="generated/efficientnet-lite0", epoch=3)


def test_h5_export_import_round_trip(dataset, tmp_path):
    result = _run(dataset, tmp_path / "store")
    path = result["steps"][0]["path"]
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), path)
    export_h5(reader, tmp_path / "g.h5")
    other = FeatureStore(tmp_path / "other")
    assert import_h5(other, tmp_path / "g.h5") == path
    back = GroupReader.open(other, path)
    assert back.meta["key"] == reader.meta["key"]
    for name in reader.names():
        np.testing.assert_array_equal(back.numpy(name), reader.numpy(name))
    lazy = back.dask("global").astype("float32")
    assert lazy.numblocks[0] == reader.step.n_chunks
    assert float(np.nansum(lazy.compute())) == pytest.approx(float(np.nansum(reader.numpy("global").astype("f4"))))


def test_inline_decoding_gives_the_same_group_as_decode_threads(dataset, tmp_path):
    threaded = _run(dataset, tmp_path / "a", chunk_size=8, batch_size=4)["steps"][0]
    inline = _run(dataset, tmp_path / "b", chunk_size=8, batch_size=4, decode_workers=0)["steps"][0]
    assert inline["key"] == threaded["key"] and inline["status_counts"] == threaded["status_counts"]
    a = GroupReader.open(FeatureStore(tmp_path / "a"), threaded["path"]).numpy("global")
    b = GroupReader.open(FeatureStore(tmp_path / "b"), inline["path"]).numpy("global")
    np.testing.assert_array_equal(a, b)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width`` × ``height`` and holds no pixels: the size check must
    answer before any decode is attempted."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


def test_too_large_bad_crop_and_path_escape_are_statuses_of_a_flow_run_and_the_device_is_no_part_of_the_key(
    tmp_path, monkeypatch
):
    from PIL import Image
    from skimage import data

    import stages.extraction.extract
    from stages.extraction.sources.affectnet import HEADER

    root = tmp_path / "affectnet"
    images = root / "Manually_Annotated_Images" / "1"
    images.mkdir(parents=True)
    for name in ("good.jpg", "box-outside.jpg"):
        Image.fromarray(data.astronaut()).save(images / name)
    _png_header_only(images / "huge.png", 20_000, 20_000)
    Image.fromarray(data.astronaut()).save(tmp_path / "secret.jpg")
    rows = [
        "1/good.jpg,100,50,200,220,,1,0.5,0.2",
        "1/box-outside.jpg,5000,5000,10,10,,1,0.5,0.2",  # AffectNet's face box, outside the 512 × 512 photo
        "1/huge.png,0,0,20000,20000,,2,-0.5,0.1",
        "1/../../../secret.jpg,0,0,100,100,,3,0.1,0.1",
    ]
    (root / "training.csv").write_text(",".join(HEADER) + "\n" + "\n".join(rows) + "\n")
    opened: list[str] = []
    real_decode = stages.extraction.extract.decode_image

    def recording_decode(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(stages.extraction.extract, "decode_image", recording_decode)

    def run(**kw):
        return extract_features(
            datasets=[DatasetConfig(layout="affectnet", root=str(root), name="an")],
            encoders=[EncoderConfig(name="test-clip-tiny")],
            store=str(tmp_path / "store"),
            **kw,
        )

    result = run()
    (step,) = result["steps"]
    assert step["status_counts"] == {"ok": 1, "bad_crop": 1, "too_large": 1, "path_escape": 1}
    failures = {path.split("/")[-1]: (status, detail) for _, path, status, detail in result["failures"]}
    assert failures["huge.png"] == ("too_large", "20000x20000 exceeds 268435456 pixels")
    assert (
        failures["box-outside.jpg"][0] == "bad_crop" and "outside the 512x512 image" in failures["box-outside.jpg"][1]
    )
    assert failures["secret.jpg"] == ("path_escape", "path escapes the dataset root; not read")
    assert "secret.jpg" not in opened, "a path outside the dataset root must never be opened"
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), step["path"])
    assert [SampleStatus(s).label for s in reader.status()] == ["ok", "bad_crop", "too_large", "path_escape"]
    assert np.isfinite(reader.numpy("global")[0]).all() and np.isnan(reader.numpy("global")[1:]).all()
    # where it runs is a knob: naming the device finds the same step, complete
    again = run(device="cpu")["steps"][0]
    assert (again["state"], again["key"], again["chunks_run"]) == ("skipped", step["key"], 0)


def test_predict_refuses_a_head_whose_encoder_weights_changed_after_extraction(tmp_path):
    """A checkpoint file edited after extraction: new images would be encoded by other weights than
    the cached ones, so predict must refuse (and rebuilds an ``open_clip:…@file`` encoder to know)."""
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.train import HeadConfig, train_heads

    weights = tmp_path / "tiny.pt"
    torch.save(create_encoder("test-clip-tiny").build().state_dict(), weights)
    root = write_csv_dataset(tmp_path / "ds", 45)
    classes, splits = ("happy", "sad", "neutral"), ("train", "train", "train", "val", "test")
    rows = [f"img/{i:05d}.jpg,{classes[i % 3]},s{i},{splits[i % 5]}" for i in range(45)]
    (root / "manifest.csv").write_text("path,expression,subject,split\n" + "\n".join(rows) + "\n")
    store = str(tmp_path / "store")
    extracted = extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(root), name="faces")],
        encoders=[EncoderConfig(name=f"open_clip:affectflow-test-vit@{weights}")],
        store=store,
    )
    features = extracted["steps"][0]["path"]
    (head,) = train_heads([HeadConfig(head="linear", task="fer", features=features, epochs=2)], store=store)["runs"]
    image = str(root / "img" / "00000.jpg")
    ok = CliRunner().invoke(app, ["predict", image, "--head", head["path"], "--store", store])
    assert ok.exit_code == 0 and "00000.jpg: happiness" in ok.output, ok.output
    size = weights.stat().st_size
    with open(weights, "r+b") as f:  # one byte, in place
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    refused = CliRunner().invoke(app, ["predict", image, "--head", head["path"], "--store", store])
    assert refused.exit_code == 2 and "does not match the one that wrote the features" in refused.output


def test_clip_weights_offline_name_the_checkpoint_path_form(tmp_path):
    """No hub cache and no network: the error says what to pass instead (run apart, so no hub
    client state of this process leaks in)."""
    code = (
        "from stages.extraction.encoders import EncoderError, create_encoder\n"
        "try:\n    create_encoder('clip-vit-b-32').weights_digest()\n"
        "except EncoderError as err:\n    print(err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "weights for ViT-B-32@openai are not in the local cache" in done.stdout, done.stdout + done.stderr
    assert "open_clip:ViT-B-32@/path/to/checkpoint" in done.stdout
