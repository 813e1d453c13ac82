"""A speech corpus without a face: plain .wav files, audio-only videos and videos whose frames
show no face extract voice windows, and LaScA runs its audio rows on them; face rows are refused
with the reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from featurestore import FeatureStore, GroupReader, SampleStatus
from flows.extract import DatasetConfig, EncoderConfig, WindowConfig, extract
from stages.extraction.media import probe_video, write_audio, write_video
from stages.synthetic.face_videos import speech

pytestmark = pytest.mark.usefixtures("prefect_harness")
RATE, SEGMENT, SEGMENTS = 16000, 2.0, 12


def _arousal(rng: np.random.Generator) -> np.ndarray:
    """Segment arousal that moves by at least 0.3 each time (the pairs need changes above τ)."""
    steps = rng.choice([-1.0, 1.0], SEGMENTS - 1) * rng.uniform(0.3, 0.7, SEGMENTS - 1)
    return np.clip(np.concatenate([[rng.uniform(-0.8, 0.8)], steps]).cumsum(), -0.9, 0.9)


def _va_csv(arousal: np.ndarray) -> str:
    """Piecewise-constant arousal per segment (valence flat), as a continuous ``.va.csv``."""
    lines = ["time,valence,arousal"]
    for k, a in enumerate(arousal):
        lines += [f"{k * SEGMENT:.3f},0.0,{a:.4f}", f"{(k + 1) * SEGMENT - 0.01:.3f},0.0,{a:.4f}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    """Eight speakers: two .wav files, four audio-only .mp4 files, two .mp4 videos of a blank wall."""
    root = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(3)
    for k in range(8):
        arousal = _arousal(rng)
        samples, _ = speech(arousal, SEGMENT, RATE, k)
        folder = root / f"speaker{k}"
        folder.mkdir()
        path = folder / (f"s{k}.wav" if k < 2 else f"s{k}.mp4")
        if k < 6:
            write_audio(path, samples, RATE)
        else:  # a picture without a face: MediaPipe finds none in any frame
            frames = [np.full((64, 64, 3), 120, np.uint8)] * int(SEGMENT * SEGMENTS * 10)
            write_video(path, frames, 10, audio=(samples, RATE))
        path.with_suffix(".va.csv").write_text(_va_csv(arousal))
    return root


@pytest.fixture(scope="module")
def extracted(speech_folder, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    result = extract(
        [DatasetConfig(layout="videofolder", root=str(speech_folder), name="speech")],
        [EncoderConfig(name="mediapipe-face"), EncoderConfig(name="mfcc")],
        store=str(store),
        windows=[WindowConfig(length=2)],
        chunk_size=256,
        batch_size=16,
    )
    return FeatureStore(store), result


def test_a_recording_without_a_picture_has_analysis_instants_and_no_video_rows_for_face_encoders(
    speech_folder, extracted
):
    info = probe_video(speech_folder / "speaker0" / "s0.wav")
    assert not info.has_video and info.has_audio and info.nominal_fps == 25.0
    np.testing.assert_allclose(info.timestamps[:3], [0.0, 0.04, 0.08])
    assert abs(info.timestamps[-1] - SEGMENT * SEGMENTS) < 0.05  # the whole recording, every 40 ms
    store, result = extracted
    by_encoder = {s["encoder"]: s for s in result["steps"] if s.get("encoder")}
    face = GroupReader.open(store, by_encoder["mediapipe-face"]["path"])
    voice = GroupReader.open(store, by_encoder["mfcc"]["path"])
    source = GroupReader.open(store, face.meta["source_path"])
    picture = np.char.endswith(source.numpy("path").astype(str), ".mp4")
    audio_only = ~picture | np.isin(source.numpy("subject").astype(str), [f"speaker{k}" for k in range(2, 6)])
    face_status = face.numpy("status")
    # per-sample status, never a silent skip: no picture → no_video, a blank wall → no_face
    assert (face_status[audio_only] == SampleStatus.NO_VIDEO).all()
    assert (face_status[~audio_only] == SampleStatus.NO_FACE).all()
    assert voice.ok_mask().mean() > 0.99  # the voice is read from every kind of recording
    arousal = source.numpy("va")[:, 1]
    assert np.isfinite(arousal).mean() > 0.99  # labels from the .va.csv beside every recording


def test_lasca_runs_the_audio_rows_of_a_speech_only_set_and_refuses_its_face_rows(extracted, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    store = extracted[0].url
    grid = ["lasca", "--dataset", "speech", "--window", "2s", "--tau", "0.1", "--variant", "features"]
    grid += ["--affect", "arousal", "--folds", "3", "--workers", "1", "--store", str(store)]
    ran = CliRunner().invoke(app, [*grid, "--modality", "audio", "--out", str(tmp_path / "grid.md")])
    assert ran.exit_code == 0, ran.output
    table = (tmp_path / "grid.md").read_text()
    assert "3 learners (3 trained now" in table and "| audio | features |" in table
    learners = [g for g in extracted[0].list_steps("heads/speech/lasca-rank") if g.is_complete]
    assert len(learners) == 3
    # the pairs come from the voice windows and the labels over them: where arousal rises, the
    # espeak-ng voice gets louder (a face track is not needed for either)
    meta = GroupReader(learners[0]).meta
    pairs = GroupReader.open(extracted[0], meta["pairs_path"])
    windows = GroupReader.open(extracted[0], meta["source_path"])
    assert windows.meta["encoder"] == "mfcc" and pairs.shape("label")[0] > 100
    if shutil.which("espeak-ng"):
        rms = windows.numpy("rms")[:, 0]
        louder = rms[pairs.numpy("second")] > rms[pairs.numpy("first")]
        assert (louder == (pairs.numpy("label") == 1)).mean() > 0.9
    for refused in ("face", "both"):
        out = CliRunner().invoke(app, [*grid, "--modality", refused])
        assert out.exit_code != 0
        assert "has a face" in out.output and "--modality audio" in out.output, out.output
