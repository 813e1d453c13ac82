"""The train-heads flow on cached features of the generated catalogue: protocol, keys, checkpoints."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import affectflow
from featurestore import FeatureStore, GroupReader
from flows.extract import DatasetConfig, EncoderConfig, extract_features
from flows.predict import predict_images
from flows.results import head_results
from flows.train import HeadConfig, train_heads
from heads.trainer import TrainConfig, predict
from stages.extraction.encoders import create_encoder
from stages.synthetic.face_generator import write_generated_dataset, write_partial_labels
from stages.training.head_steps import head_data, load_head
from tests.test_heads import assert_pruned_by_usage

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    face = create_encoder("mediapipe-face").load()
    return write_generated_dataset(tmp_path_factory.mktemp("gen"), face.find_face, per_subject=14)[0]


@pytest.fixture(scope="module")
def blendshapes(generated, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return FeatureStore(store), _extract(generated, "generated", store)


@pytest.fixture(scope="module")
def pain_blendshapes(tmp_path_factory):
    """The pain catalogue (every other face in pain by PSPI, AU43 painted), its blendshapes."""
    face = create_encoder("mediapipe-face").load()
    root = write_generated_dataset(tmp_path_factory.mktemp("pain"), face.find_face, per_subject=10, pain=True)[0]
    store = tmp_path_factory.mktemp("pain-store")
    return FeatureStore(store), _extract(root, "pain", store), root


@pytest.fixture(scope="module")
def ruled_blendshapes(tmp_path_factory):
    """The catalogue with planted AU → AU rules (AUs drawn first, the expression read from them)."""
    face = create_encoder("mediapipe-face").load()
    root = write_generated_dataset(tmp_path_factory.mktemp("ruled"), face.find_face, per_subject=14, au_rules=True)[0]
    store = tmp_path_factory.mktemp("ruled-store")
    return FeatureStore(store), _extract(root, "ruled", store), root


def _extract(root: Path, name: str, store) -> str:
    result = extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(root), name=name)],
        encoders=[EncoderConfig(name="mediapipe-face")],
        store=str(store),
    )
    return result["steps"][0]["path"]


def test_heads_train_by_the_datasets_protocol_and_rerun_is_skipped(blendshapes, monkeypatch):
    fstore, features = blendshapes
    configs = [
        HeadConfig(
            head="aura",
            task="fer",
            features=features,
            array="blendshapes",
            seeds=[0, 1],
            epochs=40,
            lr=3e-3,
            batch_size=64,
            options={"d": 16, "k_max": 64, "hidden": 64, "ctx_dim": 32, "ctx_layers": 1},
        ),
        *[
            HeadConfig(head="linear", task=t, features=features, array="blendshapes", epochs=40, lr=3e-3, batch_size=64)
            for t in ("au", "fer")
        ],
    ]
    result = train_heads(configs, store=fstore.url)
    aura_runs = [r for r in result["runs"] if r["head"] == "aura"]
    assert [r["state"] for r in result["runs"]] == ["new"] * 4
    assert aura_runs[0]["key"] != aura_runs[1]["key"]  # the seed is part of the spec
    metrics = aura_runs[0]["metrics"]
    # the csv `split` column has train / val / test by subject: all three are used as given
    assert metrics["protocol"] == "official train / val / test splits"
    assert all(metrics["samples"][k] > 0 for k in ("train", "val", "test"))
    model, _ = load_head(fstore, aura_runs[0]["path"])
    data = head_data(fstore, aura_runs[0]["path"])[2]
    assert_pruned_by_usage(model, metrics["k_stable"], data.x["train"], data.y["train"])
    # baselines on the same split: the majority class of the training rows, and the linear probe
    source = GroupReader.open(fstore, GroupReader.open(fstore, features).meta["source_path"])
    expression, split = source.numpy("expression"), source.numpy("split")
    train_labels, test_labels = expression[(split == "train") & (expression >= 0)], expression[split == "test"]
    majority = float(np.mean(test_labels[test_labels >= 0] == np.bincount(train_labels).argmax()))
    probe = next(r for r in result["runs"] if r["head"] == "linear" and r["task"] == "fer")["metrics"]["test"]
    # 56 test faces: a head that guesses scores 0.14 ± 0.05 (binomial), so 2 × the majority's accuracy
    # is > 3 standard deviations above guessing; AURA may trail the probe on this small set by a stated margin
    assert probe["accuracy"] > 2 * majority
    for run in aura_runs:
        test = run["metrics"]["test"]
        assert test["accuracy"] > 2 * majority and test["macro_f1"] >= probe["macro_f1"] - 0.15, (test, probe, majority)
    au = next(r for r in result["runs"] if r["head"] == "linear" and r["task"] == "au")["metrics"]["test"]
    assert set(au) >= {"f1_AU12", "f1_AU26", "mean_f1"} and "f1_AU6" not in au  # only the AUs it codes
    (aura_summary,) = [s for s in result["summary"] if s["head"] == "aura"]
    mean, std = aura_summary["test"]["macro_f1"]
    runs_f1 = [r["metrics"]["test"]["macro_f1"] for r in aura_runs]
    assert mean == pytest.approx(np.mean(runs_f1)) and std == pytest.approx(np.std(runs_f1))
    assert "aura | fer" in result["report"]

    # the checkpoint (safetensors + config) reproduces the stored test predictions
    group = GroupReader.open(fstore, aura_runs[0]["path"])
    model, config = load_head(fstore, aura_runs[0]["path"])
    features_reader = GroupReader.open(fstore, features)
    x = features_reader.torch("blendshapes")[group.numpy("row")].float()
    np.testing.assert_allclose(predict(model, x), group.numpy("outputs"), atol=1e-5)
    assert config["labels"][:2] == ["neutral", "happiness"]
    assert json.loads(fstore.get_file(aura_runs[0]["path"], "metrics.json"))["test"] == metrics["test"]

    # calibration (issue 35): the temperature is the NLL minimum on val, so val's NLL can only fall
    # (tests/test_calibration.py shows the ECE of an overconfident head falling on held-out rows)
    calibration = metrics["calibration"]
    assert config["temperature"] == calibration["temperature"] != 1.0
    assert calibration["val"]["calibrated"]["nll"] < calibration["val"]["raw"]["nll"]
    assert {"ece", "count", "confidence", "accuracy"} <= set(calibration["test"]["calibrated"])
    assert fstore.get_file(aura_runs[0]["path"], "calibration.png")[:4] == b"\x89PNG"
    assert "## Calibration" in aura_runs[0]["report"] and "| test |" in aura_runs[0]["report"]
    faces = [f"{source.meta['root_at_creation']}/{p}" for p in source.numpy("path")[group.numpy("row")[:3]]]
    calibrated, raw = (
        predict_images(fstore, aura_runs[0]["path"], [Path(f) for f in faces], raw=r) for r in (False, True)
    )
    t = config["temperature"]
    for c, r, logits in zip(calibrated, raw, group.numpy("outputs")[:3], strict=True):
        assert c["expression"] == r["expression"] and c["calibrated"] and not r["calibrated"]
        assert list(c["scores"].values()) == pytest.approx(np.exp(logits / t) / np.exp(logits / t).sum(), abs=1e-4)
        assert list(r["scores"].values()) == pytest.approx(np.exp(logits) / np.exp(logits).sum(), abs=1e-4)

    again = train_heads(configs, store=fstore.url)
    assert [r["state"] for r in again["runs"]] == ["skipped"] * 4
    assert [r["key"] for r in again["runs"]] == [r["key"] for r in result["runs"]]

    # `affectflow train` on finished heads reads them back without starting a flow run
    import flows.train
    from flows.heads import plan_done, plan_heads
    from flows.run import train_heads_here

    def no_flow(*args, **kwargs):
        raise AssertionError("a flow run was started for finished heads")

    monkeypatch.setattr(flows.train, "train_heads", no_flow)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a server configured: still no run
    done = train_heads_here(configs, store=fstore.url)
    assert [r["key"] for r in done["runs"]] == [r["key"] for r in result["runs"]] and done["flow_run"] is False
    assert done["summary"] == again["summary"] and "report" in done["runs"][0]
    more_seeds = [configs[0].model_copy(update={"seeds": [0, 1, 2]})]
    assert not plan_done(plan_heads(more_seeds, fstore), fstore)  # seed 2 is not trained

    # the store's results table: every run, seeds aggregated exactly as training summarised them
    stored = {(r["head"], r["task"]): r for r in head_results(fstore)}
    assert set(stored) == {(s["head"], s["task"]) for s in result["summary"]}
    for s in result["summary"]:
        row = stored[(s["head"], s["task"])]
        assert (row["test"], row["seeds"], sorted(row["paths"])) == (s["test"], s["seeds"], sorted(s["paths"]))
    frame = affectflow.results(fstore, task="fer")
    assert sorted(frame["head"]) == ["aura", "linear"] and list(frame.loc[frame["head"] == "aura", "runs"]) == [2]
    assert float(frame.loc[frame["head"] == "aura", "headline_mean"].iloc[0]) == aura_summary["test"]["macro_f1"][0]


def test_a_feature_group_as_a_table_with_its_labels_and_its_exports(blendshapes, tmp_path):
    """One row per sample: the features beside the source's labels, split and subject, and the
    group's own status; NumPy and Parquet exports hold the same rows."""
    import pyarrow.parquet as pq

    from featurestore.tables import export_npz, export_parquet

    fstore, features = blendshapes
    reader = GroupReader.open(fstore, features)
    source = GroupReader.open(fstore, reader.meta["source_path"])
    frame = affectflow.table(fstore, "generated/mediapipe", arrays=["blendshapes"])
    assert len(frame) == reader.step.n_samples and (frame["status"] == "ok").sum() == reader.ok_mask().sum()
    np.testing.assert_array_equal(frame["expression"], source.numpy("expression"))
    np.testing.assert_array_equal(frame["subject"], source.numpy("subject"))
    np.testing.assert_array_equal(frame[["valence", "arousal"]].to_numpy(), source.numpy("va"))
    au_names = source.meta["au_names"]
    np.testing.assert_array_equal(frame[au_names].to_numpy(), source.numpy("au"))
    blend = reader.numpy("blendshapes")
    np.testing.assert_array_equal(frame[reader.meta["blendshape_names"]].to_numpy(), blend)  # MediaPipe's names
    assert "mouthSmileLeft" in frame.columns
    with pytest.raises(KeyError, match="no array"):
        affectflow.arrays(fstore, features, arrays=["global"])

    npz = np.load(export_npz(fstore, features, tmp_path / "g.npz"))
    np.testing.assert_array_equal(npz["blendshapes"], blend)
    np.testing.assert_array_equal(npz["split"], source.numpy("split"))
    parquet = pq.read_table(export_parquet(fstore, features, tmp_path / "g.parquet"))
    assert (
        parquet.num_rows == len(blend)
        and json.loads(parquet.schema.metadata[b"affectflow"])["affectflow_path"] == features
    )
    np.testing.assert_array_equal(
        np.stack(parquet.column("blendshapes").to_numpy(zero_copy_only=False)), blend.astype(np.float32)
    )
    assert list(parquet.column("status").to_pylist()) == list(frame["status"])


def test_evaluate_rebuilds_the_split_and_matches_the_stored_test_metrics(blendshapes, tmp_path, monkeypatch):
    fstore, features = blendshapes
    config = HeadConfig(
        head="mlp", task="va", features=features, array="blendshapes", epochs=20, lr=3e-3, batch_size=64
    )
    (run,) = train_heads([config], store=fstore.url)["runs"]
    from typer.testing import CliRunner

    import flows.train
    from flows.cli import app

    # a read starts no (temporary) Prefect server when none is configured: no flow runs
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(flows.train, "evaluate_heads", lambda *a, **k: pytest.fail("evaluate started a flow run"))

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(
        app, ["evaluate", run["path"], "--split", "test", "--store", fstore.url, "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    (evaluated,) = json.loads(out.read_text())
    assert evaluated["metrics"] == pytest.approx(run["metrics"]["test"])
    assert evaluated["samples"] == run["metrics"]["samples"]["test"] and "ccc_mean" in result.output
    val = CliRunner().invoke(app, ["evaluate", run["path"], "--split", "val", "--store", fstore.url])
    assert val.exit_code == 0 and "val (" in val.output
    bad = CliRunner().invoke(app, ["evaluate", run["path"], "--split", "holdout", "--store", fstore.url])
    assert bad.exit_code == 2 and "split 'holdout'" in bad.output


def test_archetype_report_and_predict_agree_with_the_cached_features(blendshapes, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    fstore, features = blendshapes
    config = HeadConfig(
        head="aura",
        task="au",
        features=features,
        array="blendshapes",
        epochs=12,
        lr=3e-3,
        batch_size=64,
        options={"d": 16, "k_max": 48, "hidden": 64, "ctx_dim": 32, "ctx_layers": 1},
    )
    (run,) = train_heads([config], store=fstore.url)["runs"]
    path = run["path"]
    for name in ("report.md", "archetypes.json", "audit.csv", "map.png", "nearest-AU12.png"):
        assert fstore.has_file(path, name), name
    archetypes = json.loads(fstore.get_file(path, "archetypes.json"))
    assert [b["k_stable"] for b in archetypes["branches"]] == run["metrics"]["k_stable"]
    for branch in archetypes["branches"]:  # Table 3: the score bins partition each branch's archetypes
        rows = [t for t in archetypes["table3"] if t["branch"] == branch["name"]]
        assert sum(t["archetypes"] for t in rows) == branch["k_stable"]
        assert sum(t["usage_total"] for t in rows) == pytest.approx(1.0, abs=1e-4)
    assert fstore.get_file(path, "map.png")[:4] == b"\x89PNG" and "Annotation audit" in run["report"]

    # predict on two training images: the same outputs and archetypes as the cached features give
    source = GroupReader.open(fstore, GroupReader.open(fstore, features).meta["source_path"])
    nearest = archetypes["branches"][0]["archetypes"][0]["nearest"][:2]
    images = [f"{source.meta['root_at_creation']}/{n['path']}" for n in nearest] + [str(tmp_path / "missing.png")]
    out = tmp_path / "predict.json"
    result = CliRunner().invoke(app, ["predict", *images, "--head", path, "--store", fstore.url, "--json", str(out)])
    assert result.exit_code == 0, result.output
    predicted = json.loads(out.read_text())
    assert predicted[2]["status"] == "missing_file"
    model, _ = load_head(fstore, path)
    x = GroupReader.open(fstore, features).torch("blendshapes")[[n["row"] for n in nearest]].float()
    outputs, index = model.predict(x)
    for i in range(2):
        probs = 1 / (1 + np.exp(-outputs[i].detach().numpy()))
        assert [predicted[i]["aus"][a] for a in archetypes["labels"]] == pytest.approx(probs.tolist(), abs=1e-5)
        assert [a["archetype"] for a in predicted[i]["archetypes"]] == index[i].tolist()
        assert all(Path(p).is_file() for a in predicted[i]["archetypes"] for p in a["nearest"])
    assert "AU12: archetype #" in result.output
    listing = CliRunner().invoke(app, ["ls", "--store", fstore.url])  # head groups list beside features
    assert listing.exit_code == 0, listing.output
    assert " head " in listing.output  # the kind column of the head groups


def test_predict_frames_each_face_as_the_training_frames_were_framed(generated, tmp_path):
    """Issue 35: a head trained on face crops (the generated faces fill their frames; EfficientNet-Lite0
    features) given a photo with the face small in a larger frame, or two people in one photo, finds
    each face with MediaPipe and crops it to the training frames' measured framing: the features
    come back near the face's own (cosine > 0.9, and 0.1 nearer than the whole photo's) and so do
    the class probabilities (total variation from the crop's 0.03–0.05, against 0.37–0.45 with
    ``--framing whole``), one row per face, left to right; a photo without a face is no_face, and a
    training image (framed as the training frames were) is taken whole."""
    from typer.testing import CliRunner

    from flows.cli import app
    from stages.extraction.extract import encode_files, encoder_of_group
    from stages.training.framing import framing_of

    rows = list(csv.DictReader(open(generated / "manifest.csv")))
    half = tmp_path / "half"  # every third face of the catalogue: EfficientNet on a CPU core takes a while
    (half / "img").mkdir(parents=True)
    for r in rows[::3]:
        os.link(generated / r["path"], half / r["path"])
    writer = csv.DictWriter(open(half / "manifest.csv", "w", newline=""), fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows[::3])
    store = FeatureStore(tmp_path / "store")
    extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(half), name="half")],
        encoders=[EncoderConfig(name="efficientnet-lite0")],
        store=store.url,
    )
    (features,) = [g.path for g in store.list_steps("features") if g.is_complete]
    config = HeadConfig(head="linear", task="fer", features=features, array="global", epochs=30, lr=3e-3)
    (run,) = train_heads([config], store=store.url)["runs"]

    a, b = generated / rows[0]["path"], generated / rows[16]["path"]  # two subjects, two expressions
    face_a, face_b = (Image.open(p).convert("RGB") for p in (a, b))
    side, small = face_a.size[0], face_a.size[0] * 3 // 4
    background = np.random.default_rng(0).integers(90, 160, (2 * side, 2 * side, 3), dtype=np.uint8)
    alone, pair = Image.fromarray(background), Image.fromarray(background)
    alone.paste(face_a.resize((small, small)), (side, side // 3))
    pair.paste(face_a.resize((small, small)), (side // 8, side))
    pair.paste(face_b.resize((small, small)), (side + side // 8, side // 4))
    alone.save(tmp_path / "alone.png")
    pair.save(tmp_path / "pair.png")
    Image.fromarray(data.coffee()).save(tmp_path / "cup.png")
    photos = [a, b, tmp_path / "alone.png", tmp_path / "pair.png", tmp_path / "cup.png"]

    group = GroupReader.open(store, features)
    framing = framing_of(store, group)
    assert framing.scale is not None and framing.seen[0] < framing.scale < framing.seen[1], framing
    framed = encode_files(encoder_of_group(group.meta), photos[:4], framing.scale, framing.seen)
    whole = encode_files(encoder_of_group(group.meta), photos[2:4], None)
    assert framed.file.tolist() == [0, 1, 2, 3, 3] and framed.face.tolist() == [0, 0, 0, 0, 1]
    x, w = framed.outputs["global"].astype(np.float32), whole.outputs["global"].astype(np.float32)

    def cos(u, v):
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    for row, own, photo in ((2, 0, 0), (3, 0, 1), (4, 1, 1)):  # each face against its own crop
        assert cos(x[row], x[own]) > 0.9 and cos(x[row], x[own]) > cos(w[photo], x[own]) + 0.1, (row, own)

    out = tmp_path / "predict.json"
    args = ["predict", *map(str, photos), "--head", run["path"], "--store", store.url, "--json", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    predicted = json.loads(out.read_text())
    assert [(Path(p["image"]).name, p["face"], p["status"]) for p in predicted] == [
        (a.name, 0, "ok"), (b.name, 0, "ok"), ("alone.png", 0, "ok"), ("pair.png", 0, "ok"), ("pair.png", 1, "ok"),
        ("cup.png", None, "no_face"),
    ]  # fmt: skip
    whole_out = tmp_path / "whole.json"
    result_whole = CliRunner().invoke(app, [*args[:-1], str(whole_out), "--framing", "whole"], terminal_width=200)
    assert result_whole.exit_code == 0 and "framing: whole images, as asked" in result_whole.output
    as_whole = {(Path(p["image"]).name): p for p in json.loads(whole_out.read_text())}

    def gap(p: dict, q: dict) -> float:  # total variation between two answers' class probabilities
        return 0.5 * sum(abs(p["scores"][c] - q["scores"][c]) for c in p["scores"])

    gaps = {}
    for row, own in ((2, 0), (3, 0), (4, 1)):
        photo = as_whole[Path(predicted[row]["image"]).name]
        gaps[row] = (gap(predicted[row], predicted[own]), gap(photo, predicted[own]))
    # measured: 0.03–0.05 framed, 0.37–0.45 whole
    assert all(framed < 0.1 and whole > 0.3 for framed, whole in gaps.values()), gaps
    assert "framing: face box ×" in result.output and "pair.png (face 1)" in result.output
    nothing = CliRunner().invoke(
        app, ["predict", str(tmp_path / "cup.png"), "--head", run["path"], "--store", store.url]
    )
    assert nothing.exit_code == 1 and "no_face" in nothing.output


def test_predict_on_a_video_gives_a_timeline_of_its_frames(blendshapes, tmp_path):
    """Issue 35: a generated talking-face video through `predict` at 2.5 frames per second: one row
    per sampled frame with its time, in order, each the answer the same frame gets as a still
    image; the same rows from the CLI's CSV and the Python API's DataFrame, and a timeline plot.
    The answers follow the video's script: this small MLP (macro-F1 0.46 on still test faces) gives
    the script's expression in 0.65 of the frames and in 3 of the 4 held keyframes (the fourth:
    surprise read as fear, the pair it confuses most on stills); where the video holds a face
    still, the answer holds too. (Before the generator drew each keyframe as one expression, its
    keyframes were AU mixtures and the same head followed 0.20 of the frames.)"""
    from typer.testing import CliRunner

    from flows.cli import app
    from stages.extraction.media import probe_video, read_frames
    from stages.synthetic.face_videos import write_generated_videos

    fstore, features = blendshapes
    config = HeadConfig(head="mlp", task="fer", features=features, array="blendshapes", epochs=40, lr=3e-3)
    (run,) = train_heads([config], store=fstore.url)["runs"]
    face = create_encoder("mediapipe-face").load()
    root, _ = write_generated_videos(
        tmp_path / "videos", face.find_face, n_videos=1, seconds=8.0, fps=5, key_every=2.0, hold=0.6
    )
    (video,) = sorted(root.rglob("*.mp4"))
    script = {int(r["frame"]): r["expression"] for r in csv.DictReader(open(video.with_suffix(".csv")))}

    out = tmp_path / "timeline.csv"
    args = ["predict", str(video), "--head", run["path"], "--store", fstore.url, "--fps", "2.5"]
    result = CliRunner().invoke(app, [*args, "--csv", str(out), "--plot", str(tmp_path / "t.png")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(out)))
    times = [float(r["time"]) for r in rows]
    assert len(rows) == (len(script) + 1) // 2 and np.allclose(np.diff(times), 0.4, atol=0.01)
    assert {r["status"] for r in rows} == {"ok"} and all(r["face"] == "0" for r in rows)
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG" and f"{video} at 0.40 s" in result.output

    # every row is its frame's answer as a still (decoded at its own timestamp, framed alike)
    info = probe_video(video)
    stills = []
    for index, rgb in read_frames(video, info.timestamps, [round(t * 5) for t in times]):
        stills.append(tmp_path / f"frame{index:03d}.png")
        Image.fromarray(rgb).save(stills[-1])
    as_stills = predict_images(fstore, run["path"], stills)
    classes = [c for c in rows[0] if c.startswith("p_")]
    for row, still in zip(rows, as_stills, strict=True):
        assert [float(row[c]) for c in classes] == pytest.approx([still["scores"][c[2:]] for c in classes], abs=1e-4)
    followed = np.mean([r["expression"] == script[round(t * 5)] for r, t in zip(rows, times, strict=True)])
    assert followed >= 0.6, followed  # measured 0.65 (docstring)
    # where the video holds a face still (the first 60 % of each 2 s interval), the timeline holds its
    # answer (decoding and framing add no frame-to-frame jitter of their own), the script's in 3 of 4
    held: dict[int, set[str]] = {}
    scripted: dict[int, str] = {}
    for r, t in zip(rows, times, strict=True):
        if (t / 2.0) % 1 < 0.6 - 1e-6:
            held.setdefault(int(t // 2.0), set()).add(r["expression"])
            scripted[int(t // 2.0)] = script[round(t * 5)]
    assert len(held) == 4 and all(len(answers) == 1 for answers in held.values()), held
    assert sum(held[k] == {scripted[k]} for k in held) >= 3, (held, scripted)

    frame = affectflow.predict(fstore, run["path"], [str(video)], fps=2.5)
    assert list(frame["time"]) == pytest.approx(times) and list(frame["expression"]) == [r["expression"] for r in rows]


def test_a_head_step_is_deterministic_for_its_key(blendshapes):
    import torch

    from heads.trainer import TrainConfig
    from stages.training.head_steps import train_head

    fstore, features = blendshapes
    cfg = TrainConfig(epochs=5, lr=3e-3, batch_size=64, seed=3, progress=False)
    first, _, _ = train_head(fstore, features, "mlp", "fer", "blendshapes", {}, cfg)
    outputs = GroupReader(first).numpy("outputs")
    fstore.fs.rm(f"{fstore.root}/{first.path}", recursive=True)
    torch.randn(1000)  # whatever ran before in the process must not change the head
    again, state, _ = train_head(fstore, features, "mlp", "fer", "blendshapes", {}, cfg)
    assert state == "new" and again.key == first.key
    np.testing.assert_array_equal(GroupReader(again).numpy("outputs"), outputs)


def test_training_presets_and_overrides_reach_the_trainer():
    from typer.testing import CliRunner

    from flows.cli import app
    from heads.trainer import TrainConfig

    paper = HeadConfig(head="aura", task="fer", features="f", preset="paper").train_config(3, None)
    assert (paper.lr, paper.batch_size, paper.patience, paper.warmup_epochs, paper.epochs) == (1e-4, 256, 15, 20, 200)
    assert paper.seed == 3
    mixed = HeadConfig(head="aura", task="fer", features="f", preset="paper", lr=3e-4).train_config(0, None)
    assert (mixed.lr, mixed.batch_size) == (3e-4, 256)  # an override wins, the rest is the preset's
    # a preset changes the head options its head declares; the user's options win
    assert HeadConfig(head="aura", task="fer", features="f", preset="paper").head_options == {"ctx_samples": 0}
    chosen = HeadConfig(head="aura", task="fer", features="f", preset="paper", options={"ctx_samples": 64})
    assert chosen.head_options == {"ctx_samples": 64}
    assert HeadConfig(head="aura", task="fer", features="f").head_options == {}
    assert HeadConfig(head="mlp", task="fer", features="f", preset="paper").head_options == {}
    causal = HeadConfig(head="causal", task="au_fer", features="f", preset="causal").train_config(0, None)
    assert (causal.lr, causal.weight_decay, causal.batch_size) == (1e-4, 1e-5, 60)  # the paper's AdamW, 60 a dataset
    fast = HeadConfig(head="aura", task="fer", features="f").train_config(0, None)
    assert fast == TrainConfig(seed=0) and (fast.lr, fast.batch_size, fast.patience) == (1e-3, None, 5)
    from heads.trainer import auto_batch_size  # fast's batch: n / 16 within 32–512

    assert [auto_batch_size(n) for n in (100, 474, 1600, 24_000)] == [32, 32, 100, 512]
    with pytest.raises(ValueError, match="presets: fast, paper"):
        TrainConfig.preset("quick")
    refused = CliRunner().invoke(app, ["train", "--features", "f", "--task", "fer", "--preset", "quick"])
    assert refused.exit_code != 0 and "presets: fast, paper" in refused.output


def test_the_causal_graph_recovers_the_generators_au_rule_and_matches_the_probes(blendshapes):
    """The generated faces' expression is a known function of their AUs (face_generator.PROTOTYPES:
    the most specific prototype whose AUs are all present). The causal head's learned AU→expression
    graph must name each class's rule AUs as its strongest positive edges, with the AUs the rule
    leaves out inhibitory or near zero, while scoring as well as linear probes on the same features."""
    from stages.synthetic.face_generator import PROTOTYPES
    from stages.training.head_steps import train_head

    fstore, features = blendshapes
    runs = {"causal": [], "fer": [], "au": []}
    for seed in (0, 1, 2):  # 168 training faces: one seed's scores move by a few hundredths
        train = TrainConfig.preset("fast", lr=3e-3, batch_size=32, warmup_epochs=0, patience=10, epochs=80, seed=seed)
        runs["causal"].append(train_head(fstore, features, "causal", "au_fer", "blendshapes", {}, train))
        runs["fer"].append(train_head(fstore, features, "linear", "fer", "blendshapes", {}, train)[2]["test"])
        runs["au"].append(train_head(fstore, features, "linear", "au", "blendshapes", {}, train)[2]["test"])
    group, _, metrics = runs["causal"][0]
    model, config = load_head(fstore, group.path)
    graph = model.graphs()["au_expression"].numpy()
    aus, classes = config["labels"][: model.m], config["labels"][model.m :]
    precision = {}
    for c, name in enumerate(classes):
        rule = {f"AU{a}" for a in PROTOTYPES.get(name, ())}
        if not rule:  # neutral: no AU defines it
            continue
        strongest = {aus[i] for i in np.argsort(-graph[:, c])[: len(rule)]}
        precision[name] = len(strongest & rule) / len(rule)
        excluded = [graph[i, c] for i, au in enumerate(aus) if au not in rule]
        rule_mean = np.mean([graph[aus.index(au), c] for au in rule])
        assert rule_mean > 0 and max(excluded) < 0.5 * rule_mean, (name, dict(zip(aus, graph[:, c].round(3))))
    # measured: precision@k 1.0 for every class (the rule's AUs are exactly each class's top edges)
    assert min(precision.values()) >= 0.75 and np.mean(list(precision.values())) >= 0.9, precision
    # and, over 3 seeds, the scores of probes on the same features (measured with one thread per
    # process, as `make test` runs: 0.437 vs 0.432 macro-F1, 0.640 vs 0.649 AU F1); within 0.02.
    # At the demo's size (bench/causal.py, 3 seeds) the full head is at or above both probes.
    causal = {k: np.mean([r[2]["test"][k] for r in runs["causal"]]) for k in ("macro_f1", "mean_f1")}
    probe = {
        "macro_f1": np.mean([r["macro_f1"] for r in runs["fer"]]),
        "mean_f1": np.mean([r["mean_f1"] for r in runs["au"]]),
    }
    assert causal["macro_f1"] >= probe["macro_f1"] - 0.02 and causal["mean_f1"] >= probe["mean_f1"] - 0.02, (
        causal,
        probe,
    )
    assert fstore.get_file(group.path, "graph-au_expression.png")[:4] == b"\x89PNG"
    csv_rows = fstore.get_file(group.path, "graph-au_expression.csv").decode().splitlines()
    assert csv_rows[0] == ",".join(["source", *classes]) and len(csv_rows) == 1 + len(aus)
    graph_md = fstore.get_file(group.path, "graph.md").decode()
    assert "| happiness | AU12" in graph_md  # its strongest edge
    # beside the FACS prototypes (EMFACS): happiness is 6 + 12, and a warp cannot show AU6 (struck)
    assert "| happiness | ~~AU6~~ + AU12 | prototype | AU12 | 1.00 |" in graph_md
    agreement = fstore.get_file(group.path, "prototypes.csv").decode().splitlines()
    assert agreement[0] == "class,kind,aus,coded,graph_top,precision_at_k" and len(agreement) == 1 + 6  # no neutral

    # the report: per-sample sub-graphs (one per class by default, or chosen rows) and the label audit
    from stages.training.head_reports import write_report

    summary = write_report(fstore, group.path)
    gallery = json.loads(fstore.get_file(group.path, "samples.json"))
    assert [s["split"] for s in gallery] == ["test"] * len(gallery) and len(gallery) >= 4
    happy = next(s for s in gallery if s["class"] == "happiness")
    assert happy["aus"][0]["au"] == "AU12" and happy["aus"][0]["contribution"] > 0
    row = happy["row"]
    chosen = write_report(fstore, group.path, samples=[str(row)])["samples"]
    assert [s["row"] for s in chosen] == [row]
    with pytest.raises(ValueError, match="not a labelled, usable row"):
        write_report(fstore, group.path, samples=["999999"])
    assert fstore.get_file(group.path, "audit.csv").decode().startswith("dataset,split,row,path,label,predicted")
    assert summary["checked"] == sum(metrics["samples"].values())
    report = fstore.get_file(group.path, "report.md").decode()
    assert "## Per-sample graphs" in report and "## Label audit" in report


def test_the_causal_au_graph_recovers_the_rules_planted_in_faces_and_a_graph_frozen_at_its_start_does_not(
    ruled_blendshapes,
):
    """Issue 36 on faces (280, MediaPipe blendshapes): the four rules written to the catalogue's
    au_rules.csv are the head's four strongest AU → AU pairs with their signs, the weights grown far
    from the ±0.01 start (measured over 3 seeds: precision 1.00, max |w| 0.15–0.18). Without the
    graph's structural score (``lambda_structure=0``) the AU loss leaves it what the visible AUs do
    not explain (measured 0.25–0.50 at the demo's size); frozen at its start the ranking is chance."""
    from heads.metrics import edge_recovery
    from heads.registry import create_head
    from heads.trainer import fit
    from stages.training.head_steps import head_data, train_head

    fstore, features, root = ruled_blendshapes
    train = TrainConfig(batch_size=32, lr=1e-3, epochs=40, patience=40, warmup_epochs=5, seed=0, progress=False)
    group, _, _ = train_head(fstore, features, "causal", "au_fer", "blendshapes", {}, train)
    model, config = load_head(fstore, group.path)
    aus = config["labels"][: model.m]
    rules = list(csv.DictReader(open(root / "au_rules.csv")))
    planted = [(aus.index(r["source"]), aus.index(r["target"])) for r in rules]
    learnt = model.graphs()["au_au"].numpy()
    recovery = edge_recovery(learnt, planted, 0.01)
    assert recovery["precision_at_k"] >= 0.75 and recovery["max_abs_weight"] > 5 * 0.01, (recovery, learnt.round(3))
    assert all(np.sign(learnt[s, t]) == int(r["sign"]) for (s, t), r in zip(planted, rules, strict=True))

    _, _, data = head_data(fstore, group.path)
    torch.manual_seed(0)
    frozen = create_head("causal", "au_fer", data.x["train"].shape[1], data.n_outputs, 0, tuple(config["labels"]), {})
    frozen.w_aa.requires_grad_(False)
    splits = ((data.x["train"], data.y["train"]), (data.x["val"], data.y["val"]))
    fit(frozen, "au_fer", *splits, data.n_outputs, TrainConfig(**{**train.__dict__, "epochs": 5}))
    chance = edge_recovery(frozen.graphs()["au_au"].numpy(), planted, 0.01)
    assert chance["precision_at_k"] <= 0.5 and chance["max_abs_weight"] <= 0.01, chance


def test_the_faithfulness_objective_on_the_generated_catalogue_against_its_controls(blendshapes):
    """FACR on the generated faces with G = the generator's own AU → expression rule, audited as a
    keyed step by the audit-heads flow against its controls on 5 seeds: the objective raises the
    agreement of the invoked AUs with G (Wilcoxon, one-sided p = 1/32, the least 5 pairs allow), the
    permuted-G control does not gain over no objective, AU F1 does not drop by more than 0.03."""
    from flows.train import audit_heads
    from stages.training.faithfulness_structures import structure_of
    from stages.training.head_steps import train_head

    fstore, features = blendshapes
    train = TrainConfig.preset("fast", lr=1e-2, patience=8, epochs=200, progress=False)
    options = {"structure": "generator", "faithfulness_weight": 1.0}
    group, _, _ = train_head(fstore, features, "facr", "au_fer", "blendshapes", options, train)
    model, config = load_head(fstore, group.path)  # rebuilt from config.json: its G is stored there
    assert torch.equal(model.structure, torch.tensor(config["structure"]["matrix"], dtype=torch.int8))
    (audit,) = audit_heads("faithfulness", [group.path], store=fstore.url, seeds=5)
    result = audit["result"]
    assert audit["path"].startswith("audits/generated/faithfulness/") and audit["state"] == "new"
    means = {variant: summary["mean_agreement"][0] for variant, summary in result["summary"].items()}
    au_f1 = {variant: summary["au_mean_f1"][0] for variant, summary in result["summary"].items()}
    tests = {(t["score"], t["variant"], t["against"]): t for t in result["tests"]}
    # measured (lr 1e-2, patience 8): agreement 1.000 / 0.473 / 0.249 (objective / none / permuted G)
    assert means["objective"] > means["no objective"] + 0.3, means
    assert tests[("mean_agreement", "objective", "no objective")]["p"] <= 0.05, tests
    assert means["permuted G"] <= means["no objective"] + 0.05, means
    assert tests[("mean_agreement", "no objective", "permuted G")]["mean_difference"] >= -0.05
    assert au_f1["objective"] >= au_f1["no objective"] - 0.03, au_f1
    report = fstore.get_file(audit["path"], "report.md").decode()
    assert "| happiness | AU12+ |" in report and "Wilcoxon" in report and " → " in report
    # keyed on the head steps it reads: a rerun (here from the command line) is skipped
    from typer.testing import CliRunner

    from flows.cli import app

    out = Path(fstore.url) / "audit.json"
    ran = CliRunner().invoke(
        app, ["audit", "faithfulness", group.path, "--seeds", "5", "--store", fstore.url, "--json", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    assert f"Mean agreement {result['mean_agreement']:.3f}" in ran.output
    assert json.loads(out.read_text())[0]["mean_agreement"] == result["mean_agreement"]
    (again,) = audit_heads("faithfulness", [group.path], store=fstore.url, seeds=5)
    assert again["state"] == "skipped" and again["path"] == audit["path"]
    refused = CliRunner().invoke(app, ["audit", "fairness", group.path, "--store", fstore.url])
    assert refused.exit_code != 0 and "unknown audit 'fairness'" in refused.output
    step = GroupReader.open(fstore, audit["path"])
    inputs = step.meta["inputs"]
    assert inputs[0] == group.key and len(inputs) == 15  # 3 variants × 5 seeds
    assert step.numpy("mentioned").shape == (result["samples"], 9)  # the generator's 9 AUs
    # the rationales are faithful to the head: an AU they mention moves its prediction when ablated
    assert result["rationale_faithfulness"] > 0.7  # measured 0.80 (seed 0), 0.92 ± 0.02 over the seeds

    # G from a trained CausalAffect head's AU → expression graph, and the causal head audited with it
    causal, _, _ = train_head(fstore, features, "causal", "au_fer", "blendshapes", {}, TrainConfig(progress=False))
    names = config["labels"]
    learned = structure_of(fstore, {"structure": causal.path}, names)
    assert learned[names.index("happiness") - 9, names.index("AU12")] == 1
    (graph_audit,) = audit_heads("faithfulness", [causal.path], store=fstore.url, structure="generator")
    assert 0 <= graph_audit["result"]["mean_agreement"] <= 1 and "runs" not in graph_audit["result"]
    # G from a file is keyed by its content: the same path edited is a new audit
    g = Path(fstore.url) / "g.csv"
    g.write_text("class,au,sign\nhappiness,AU12,1\n")
    (first,) = audit_heads("faithfulness", [causal.path], store=fstore.url, structure=str(g))
    g.write_text("class,au,sign\nhappiness,AU12,1\nanger,AU4,1\n")
    (edited,) = audit_heads("faithfulness", [causal.path], store=fstore.url, structure=str(g))
    assert edited["state"] == "new" and edited["path"] != first["path"]
    assert [c["class"] for c in edited["result"]["classes"] if c["defined"]] == ["happiness", "anger"]
    with pytest.raises(ValueError, match="has no AU layer"):
        linear, _, _ = train_head(fstore, features, "linear", "fer", "blendshapes", {}, TrainConfig(progress=False))
        audit_heads("faithfulness", [linear.path], store=fstore.url)


def test_the_faithfulness_objective_on_generated_pain_with_the_pspi_structure(pain_blendshapes):
    """The same claim on the generated pain labels, with G = the packaged PSPI structure (AU4, 6, 7,
    9, 10, 43 raise pain; the generator shows 4, 7, 10 and 43): over 5 seeds the objective raises the
    agreement of the AUs the reasoner invokes for pain, permuted G does not, AU F1 holds within 0.03."""
    import csv

    from flows.train import audit_heads
    from stages.training.faithfulness_structures import pspi
    from stages.training.head_steps import train_head

    fstore, features, root = pain_blendshapes
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    for row in rows:  # the label is the PSPI the intensities give, AU6 and AU9 not rendered
        value = {au: 5 * float(row[f"intensity_AU{au}"]) for au in (4, 7, 10)}
        score = pspi({**value, 43: float(float(row["intensity_AU43"]) >= 0.25)})
        assert float(row["pspi"]) == pytest.approx(score, abs=1e-3)
        assert (row["expression"] == "pain") == (score >= 4.0)
    assert sum(r["expression"] == "pain" for r in rows) == len(rows) // 2
    train = TrainConfig.preset("fast", lr=1e-2, patience=8, epochs=200, progress=False)
    options = {"structure": "pain", "faithfulness_weight": 1.0}
    group, _, _ = train_head(fstore, features, "facr", "au_fer", "blendshapes", options, train)
    (audit,) = audit_heads("faithfulness", [group.path], store=fstore.url, seeds=5)
    result = audit["result"]
    (pain,) = [c for c in result["classes"] if c["defined"]]  # G defines pain alone
    assert pain["class"] == "pain" and pain["causal"] == ["AU4+", "AU7+", "AU10+", "AU43+"]
    means = {variant: summary["mean_agreement"][0] for variant, summary in result["summary"].items()}
    au_f1 = {variant: summary["au_mean_f1"][0] for variant, summary in result["summary"].items()}
    tests = {(t["score"], t["variant"], t["against"]): t for t in result["tests"]}
    # measured: agreement 0.876 / 0.477 / 0.263 (objective / none / permuted G), AU F1 0.492 / 0.483
    assert means["objective"] > means["no objective"] + 0.1, means
    assert tests[("mean_agreement", "objective", "no objective")]["p"] <= 0.05, tests
    assert means["permuted G"] <= means["no objective"] + 0.05, means
    assert au_f1["objective"] >= au_f1["no objective"] - 0.03, au_f1


def test_the_circumplex_term_on_the_generated_catalogue_reports_its_effect_with_p_values(blendshapes):
    """An MLP with the circumplex term against the uniform-cost and no-term controls on 5 seeds:
    affective distance of errors, macro-F1 and accuracy per variant with paired Wilcoxon p-values,
    and the confusion rows of the rarest classes — reported, not assumed to favour the term."""
    from flows.train import audit_heads
    from stages.training.head_steps import train_head

    fstore, features = blendshapes
    train = TrainConfig(transport="circumplex", progress=False)
    group, _, _ = train_head(fstore, features, "mlp", "fer", "blendshapes", {}, train)
    (audit,) = audit_heads("circumplex", [group.path], store=fstore.url, seeds=5)
    result = audit["result"]
    assert set(result["summary"]) == {"circumplex", "uniform", "none"}
    assert {(t["score"], t["variant"], t["against"]) for t in result["tests"]} >= {
        ("affective_distance", "circumplex", "uniform"),
        ("affective_distance", "circumplex", "none"),
        ("macro_f1", "circumplex", "uniform"),
    }
    assert all(0 < t["p"] <= 1 for t in result["tests"])
    assert 0 < result["affective_distance"] < 2 and result["errors"] > 0  # the unit circle's diameter bounds it
    assert len(result["rarest"]) == 2 and all(sum(r["predicted"].values()) == r["n"] for r in result["rarest"])
    assert "Affective distance of errors" in fstore.get_file(audit["path"], "report.md").decode()
    # the term is part of the head's key: with and without it are two heads
    plain, _, _ = train_head(fstore, features, "mlp", "fer", "blendshapes", {}, TrainConfig(progress=False))
    assert plain.path != group.path and plain.path in result["variants"]["none"]


def test_an_au_only_and_an_expression_only_dataset_train_one_causal_head(blendshapes, generated, tmp_path):
    """Partial labels (CausalAffect's multi-dataset training): the generated catalogue split into an
    AU-only half and an expression-only half (different subjects, each with its own test and val
    subjects) trains one joint head, keyed on both groups and sources, with batches balanced across
    them. On the full catalogue's test faces (subjects neither head trained on) it scores within
    stated noise of the head trained on fully labelled data."""
    from heads.tasks import get_task
    from heads.trainer import evaluate
    from stages.training.head_steps import train_head

    fstore, full = blendshapes
    au_only = _extract(write_partial_labels(generated, tmp_path / "au-only", 0, "au"), "au-only", fstore.root)
    expression_only = _extract(
        write_partial_labels(generated, tmp_path / "expression-only", 1, "expression"), "expression-only", fstore.root
    )
    # the control bench/causal.py sets beside it: the AU half's subjects with every label
    control = write_partial_labels(generated, tmp_path / "half-labelled", 0, "all")
    with open(control / "manifest.csv") as f, open(tmp_path / "au-only" / "manifest.csv") as g:
        rows, au_rows = list(csv.DictReader(f)), list(csv.DictReader(g))
    with open(generated / "manifest.csv") as f:
        assert list(rows[0]) == list(next(csv.DictReader(f)))  # every column kept
    assert [r["path"] for r in rows] == [r["path"] for r in au_rows]  # the AU half's faces
    train = TrainConfig.preset("fast", lr=3e-3, batch_size=32, warmup_epochs=0, patience=10, epochs=80, seed=0)
    joint, state, metrics = train_head(fstore, [au_only, expression_only], "causal", "au_fer", "blendshapes", {}, train)
    assert state == "new" and joint.path.startswith("heads/au-only__expression-only/causal-au_fer/")
    assert joint.meta["features_paths"] == [au_only, expression_only]
    # each dataset's test rows scored apart: AUs only where coded, expressions only where labelled
    by_dataset = metrics["test_by_dataset"]
    assert by_dataset["au-only"]["n"] == 0 and np.isfinite(by_dataset["au-only"]["mean_f1"])
    assert by_dataset["expression-only"]["n"] > 0 and np.isnan(by_dataset["expression-only"]["mean_f1"])
    assert train_head(fstore, [au_only, expression_only], "causal", "au_fer", "blendshapes", {}, train)[1] == "skipped"
    # a dataset without the task's labels is an error naming it; an archetype head over two
    # datasets trains, and its report (one dataset's images) is refused with the reason
    with pytest.raises(ValueError, match=r"au-only.*no sample has the task.s labels; the dataset has .*action units"):
        train_head(fstore, [au_only, expression_only], "linear", "fer", "blendshapes", {}, train)
    quick = TrainConfig.preset("fast", epochs=2, warmup_epochs=1, batch_size=32)
    aura = train_head(fstore, [full, expression_only], "aura", "fer", "blendshapes", {}, quick)[0]
    from stages.training.head_reports import write_report

    with pytest.raises(ValueError, match="archetype reports are per dataset"):
        write_report(fstore, aura.path)

    full_group, _, full_metrics = train_head(fstore, full, "causal", "au_fer", "blendshapes", {}, train)
    model, config = load_head(fstore, joint.path)
    _, _, data = head_data(fstore, full_group.path)
    assert config["labels"] == data.label_names  # the same AUs and classes, in the same order
    scores = evaluate(get_task("au_fer"), predict(model, data.x["test"]), data.y["test"].numpy(), data.n_outputs)
    full_test = full_metrics["test"]
    # measured at seed 0: AU mean F1 0.561 against 0.678, macro-F1 0.348 against 0.459. On this small
    # catalogue (6 training subjects per half) halving each kind of label costs about 0.11; at the
    # demo's size (bench/causal.py --part partial, 3 seeds) the cost is 0.035 ± 0.022 AU F1 and
    # +0.002 ± 0.009 macro-F1. The bound fails when either half's labels go unused (chance: ~0.3 AU
    # F1, ~0.14 macro-F1).
    assert scores["mean_f1"] >= full_test["mean_f1"] - 0.15 and scores["macro_f1"] >= full_test["macro_f1"] - 0.15, (
        scores,
        full_test,
    )
