"""Video + audio: frame rows with exact timestamps, MFCCs aligned to them, and 3 s / 5 s windows."""

from __future__ import annotations

import csv
import shutil

import av
import librosa
import numpy as np
import pytest

from featurestore import FeatureStore, GroupReader, SampleStatus
from flows.extract import DatasetConfig, EncoderConfig, WindowConfig, extract
from stages.extraction.encoders import create_encoder
from stages.extraction.media import load_audio, probe_video, sample_frames, write_video
from stages.extraction.sources import build_manifest
from stages.synthetic.face_videos import write_generated_videos

pytestmark = pytest.mark.usefixtures("prefect_harness")
FPS, SECONDS = 10, 7.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    face = create_encoder("mediapipe-face").load()
    root, report = write_generated_videos(
        tmp_path_factory.mktemp("videos"), face.find_face, n_videos=2, seconds=SECONDS, fps=FPS, n_morphs=1, n_lfw=0
    )
    assert report["audio"] == (["espeak-ng"] if shutil.which("espeak-ng") else ["synthesised"])
    silent = root / "train" / "silent"
    silent.mkdir(parents=True)
    write_video(silent / "silent_v00.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 12, FPS)
    # SEWA-like continuous VA from two raters, sampled every 0.5 s
    (silent / "silent_v00.va.csv").write_text(
        "time,valence_r1,valence_r2,arousal_r1,arousal_r2\n"
        "0.0,0.2,0.4,-0.2,0.0\n0.5,0.6,0.8,0.2,0.4\n1.0,-0.2,0.0,0.0,0.0\n"
    )
    return root


@pytest.fixture(scope="module")
def run(videos, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = extract(
        [DatasetConfig(layout="videofolder", root=str(videos), name="vids")],
        [EncoderConfig(name="mediapipe-face"), EncoderConfig(name="mfcc")],
        store=str(store),
        windows=[WindowConfig(length=3), WindowConfig(length=5)],
        chunk_size=32,
        batch_size=8,
    )
    return FeatureStore(store), result


def test_frame_rows_carry_exact_timestamps_and_labels(videos, run):
    fstore, result = run
    face = GroupReader.open(fstore, result["steps"][0]["path"])
    source = GroupReader.open(fstore, face.meta["source_path"])
    video, ts, frame = source.numpy("video").astype(str), source.numpy("timestamp"), source.numpy("frame")
    generated = sorted({v for v in video if "silent" not in v})
    assert len(generated) == 2 and len(video) == 2 * int(SECONDS * FPS) + 12
    for name in generated:
        rows = video == name
        np.testing.assert_allclose(ts[rows], np.arange(int(SECONDS * FPS)) / FPS, atol=1e-9)
        assert (frame[rows] == np.arange(int(SECONDS * FPS))).all()
        with open(videos / f"{name}.csv") as f:
            labels = list(csv.DictReader(f))
        np.testing.assert_allclose(source.numpy("va")[rows, 0], [float(r["valence"]) for r in labels], atol=1e-6)
    # the tracker found the face in every generated frame; the grey silent video has none
    status = face.status()
    silent = np.char.find(video, "silent") >= 0
    assert (status[~silent] == SampleStatus.OK).all() and (status[silent] == SampleStatus.NO_FACE).all()


def test_mfcc_rows_are_aligned_to_frame_timestamps(videos, run):
    fstore, result = run
    mfcc = GroupReader.open(fstore, result["steps"][1]["path"])
    source = GroupReader.open(fstore, mfcc.meta["source_path"])
    video = source.numpy("video").astype(str)
    status = mfcc.status()
    assert (status[np.char.find(video, "silent") >= 0] == SampleStatus.NO_AUDIO).all()
    name = sorted(set(video))[0]
    rows = np.flatnonzero(video == name)
    samples, start = load_audio(videos / f"{name}.mp4", 16000)
    assert start == 0.0 and abs(samples.size / 16000 - SECONDS) < 0.1
    # librosa's own framing: a centred STFT with hop = one video frame puts frame k at k / fps
    mel = librosa.feature.melspectrogram(
        y=samples, sr=16000, n_fft=1024, hop_length=16000 // FPS, win_length=640, n_mels=40, center=True
    )
    direct = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=15).T[: rows.size]
    stored = mfcc.numpy("mfcc")[rows]
    assert stored.shape == (int(SECONDS * FPS), 15) and (status[rows] == SampleStatus.OK).all()
    np.testing.assert_allclose(stored, direct, rtol=1e-3, atol=1e-2)
    rms = np.sqrt(np.mean(np.pad(samples, 320)[np.arange(rows.size)[:, None] * 1600 + np.arange(640)] ** 2, axis=1))
    np.testing.assert_allclose(mfcc.numpy("rms")[rows, 0], rms, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("length", [3, 5])
def test_windows_equal_a_direct_numpy_computation(run, length):
    fstore, result = run
    (row,) = [w for w in result["windows"] if w["encoder"] == "mediapipe-face" and w["window"] == f"{length}s"]
    windows = GroupReader.open(fstore, row["path"])
    face = GroupReader.open(fstore, windows.meta["feature_path"])
    source = GroupReader.open(fstore, windows.meta["source_path"])
    video, ts = source.numpy("video").astype(str), source.numpy("timestamp")
    blend, ok = face.numpy("blendshapes").astype(np.float64), face.status() == SampleStatus.OK
    va, au, expr = source.numpy("va"), source.numpy("au"), source.numpy("expression")
    expected = []
    for name in dict.fromkeys(video.tolist()):
        t = ts[video == name]
        for start in np.arange(t[0], t[-1] + 1e-9, length):
            rows = np.flatnonzero((video == name) & (ts >= start - 1e-9) & (ts < start + length - 1e-9))
            good = rows[ok[rows]]
            expected.append(
                (
                    name,
                    start,
                    rows.size,
                    good.size / rows.size,
                    blend[good].mean(0) if good.size else np.full(52, np.nan),
                    np.nanmean(va[rows], 0) if np.isfinite(va[rows]).any() else np.full(2, np.nan),
                    au[rows].max(0),
                    np.bincount(expr[rows][expr[rows] >= 0]).argmax() if (expr[rows] >= 0).any() else -1,
                )
            )
    assert windows.step.n_samples == len(expected) == sum(int(np.ceil(n / (length * FPS))) for n in (70, 70, 12))
    assert list(windows.numpy("video").astype(str)) == [e[0] for e in expected]
    np.testing.assert_allclose(windows.numpy("start"), [e[1] for e in expected])
    assert list(windows.numpy("n_frames")) == [e[2] for e in expected]
    np.testing.assert_allclose(windows.numpy("valid_fraction"), [e[3] for e in expected])
    np.testing.assert_allclose(windows.numpy("blendshapes"), np.array([e[4] for e in expected]), rtol=1e-5, atol=1e-6)
    labelled = [e[0] != "train/silent/silent_v00" for e in expected]
    coded = [windows.meta["au_names"].index(a) for a in windows.meta["au_annotated"]]
    np.testing.assert_allclose(windows.numpy("va")[labelled], np.array([e[5] for e in expected])[labelled], atol=1e-6)
    np.testing.assert_array_equal(
        windows.numpy("au")[labelled][:, coded], np.array([e[6] for e in expected])[labelled][:, coded]
    )
    assert np.isnan(np.delete(windows.numpy("au"), coded, axis=1)).all()  # AUs the generator does not code
    assert list(windows.numpy("expression")) == [e[7] for e in expected]


def test_rerun_skips_every_step_without_a_flow_run(videos, run):
    fstore, first = run
    again = extract(
        [DatasetConfig(layout="videofolder", root=str(videos), name="vids")],
        [EncoderConfig(name="mediapipe-face"), EncoderConfig(name="mfcc")],
        store=fstore.url,
        windows=[WindowConfig(length=3), WindowConfig(length=5)],
    )
    assert again["flow_run"] is False
    assert {s["state"] for s in again["steps"]} == {"skipped"} and len(again["windows"]) == 4
    assert sorted(w["key"] for w in again["windows"]) == sorted(w["key"] for w in first["windows"])


def test_variable_frame_rate_video_keeps_each_frames_own_timestamp(tmp_path):
    path = tmp_path / "vfr.mp4"
    stamps_ms = [0, 100, 150, 400, 450, 900]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        from fractions import Fraction

        stream.time_base = Fraction(1, 1000)
        for i, ms in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = probe_video(path)
    np.testing.assert_allclose(info.timestamps, np.array(stamps_ms) / 1000, atol=1e-9)
    assert info.variable_frame_rate and not info.has_audio
    # at 10 fps: the frame on screen at 0, .1, .2, … .9 s
    assert sample_frames(info.timestamps, 10).tolist() == [0, 1, 2, 3, 4, 5]
    assert sample_frames(info.timestamps, 4).tolist() == [0, 2, 4]
    manifest = build_manifest("videofolder", tmp_path, "vfr", fps=10)
    np.testing.assert_allclose(manifest.labels["timestamp"], [0, 0.1, 0.15, 0.4, 0.45, 0.9])


def test_continuous_va_is_rater_averaged_and_interpolated_and_videos_are_reported(videos):
    m = build_manifest("videofolder", videos, "vids")
    rows = m.labels["video"] == "train/silent/silent_v00"
    t = m.labels["timestamp"][rows]
    mean_v, mean_a = np.array([0.3, 0.7, -0.1]), np.array([-0.1, 0.3, 0.0])
    inside = t <= 1.0
    va = m.labels["va"][rows][inside]
    np.testing.assert_allclose(va[:, 0], np.interp(t[inside], [0, 0.5, 1.0], mean_v), atol=1e-6)
    np.testing.assert_allclose(va[:, 1], np.interp(t[inside], [0, 0.5, 1.0], mean_a), atol=1e-6)
    assert np.isnan(m.labels["va"][rows][t > 1.0]).all()  # after the last annotation: none, not extrapolated
    notes = {"videos": 3, "unreadable": 0, "variable_frame_rate": 0, "without_audio": 1, "audio_only": 0}
    assert m.counts()["notes"] == notes


def test_each_keyframe_is_one_expressions_face_and_held_frames_are_its_still():
    """The generator's video script: every keyframe is one expression drawn as a still is (its
    prototype's AUs on, every other AU off), held for ``hold`` of its interval. (Its AUs were once
    drawn from a new expression each, so the keyframes were mixtures labelled by accident: an AU5
    face read as neutral.)"""
    from stages.synthetic.face_generator import AU_THRESHOLD, AUS, PROTOTYPES, labels_from_intensities
    from stages.synthetic.face_videos import trajectory

    fps, key_every, hold = 5, 2.0, 0.6
    intensities = trajectory(80, fps, key_every, np.random.default_rng(7), hold)
    interval = int(fps * key_every)
    shown = set()
    for start in range(0, 80, interval):
        held = intensities[start : start + int(interval * hold)]
        assert np.allclose(held, held[0])  # still while held
        key = dict(zip(AUS, held[0].tolist(), strict=True))
        label = labels_from_intensities(key).expression
        on = {au for au, v in key.items() if v >= AU_THRESHOLD}
        assert on == set(PROTOTYPES.get(label, ())), (label, key)  # exactly its prototype's AUs
        shown.add(label)
    assert len(shown) >= 4  # 8 keyframes of 7 classes: several expressions, not one
