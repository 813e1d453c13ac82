"""MediaPipe face encoder (the official model file) and the labelled face generator."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from featurestore import FeatureStore, GroupReader, SampleStatus
from flows.extract import DatasetConfig, EncoderConfig, extract_features
from stages.extraction.encoders import create_encoder
from stages.extraction.encoders.face_landmarker import BLENDSHAPE_NAMES
from stages.extraction.encoders.model_files import FACE_LANDMARKER, fetch, verify
from stages.synthetic.face_generator import (
    AU_RULES,
    AUS,
    CONTROLS,
    PROTOTYPES,
    build_subjects,
    labels_from_intensities,
    sample_intensities,
    write_generated_dataset,
)


@pytest.fixture(scope="module")
def face():
    verify(FACE_LANDMARKER, fetch(FACE_LANDMARKER))  # sha256 and size of the official file
    return create_encoder("mediapipe-face").load()


def _photos(tmp_path) -> list[DatasetConfig]:
    """A csv dataset of the astronaut (one face) and scikit-image's coffee cup (none)."""
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    (root / "manifest.csv").write_text("path\nastronaut.png\ncoffee.png\n")
    return [DatasetConfig(layout="csv", root=str(root), name="photos")]


@pytest.mark.usefixtures("prefect_harness")
def test_astronaut_smiles_and_a_face_free_image_is_no_face(tmp_path, face):
    result = extract_features(
        datasets=_photos(tmp_path), encoders=[EncoderConfig(name="mediapipe-face")], store=str(tmp_path / "store")
    )
    (step,) = result["steps"]
    assert step["status_counts"] == {"ok": 1, "no_face": 1}
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), step["path"])
    assert reader.meta["blendshape_names"] == BLENDSHAPE_NAMES
    scores = dict(zip(BLENDSHAPE_NAMES, reader.numpy("blendshapes")[0].astype(float)))
    assert scores["mouthSmileLeft"] > 0.7 and scores["mouthSmileRight"] > 0.7
    assert max(scores["browDownLeft"], scores["jawOpen"]) < 0.3
    landmarks, box = reader.numpy("landmarks"), reader.numpy("box")
    assert landmarks.shape == (2, 478, 3) and landmarks.dtype == np.float32
    assert ((landmarks[0, :, :2] > 0) & (landmarks[0, :, :2] < 1)).all()
    x, y, w, h = box[0]
    assert 0.3 < x < 0.5 and 0.1 < y < 0.3 and 0.15 < w < 0.35  # Eileen Collins' face, upper middle
    # no face: a status and no values, never zeros
    assert reader.status()[1] == SampleStatus.NO_FACE
    assert np.isnan(reader.numpy("blendshapes")[1]).all() and np.isnan(reader.numpy("transform")[1]).all()


def test_labels_follow_from_intensities():
    zero = dict.fromkeys(AUS, 0.0)
    assert labels_from_intensities(zero).expression == "neutral"
    happy = labels_from_intensities(zero | {12: 0.8})
    assert happy.expression == "happiness" and happy.aus[12] == 1 and happy.valence > 0.6 and happy.arousal > 0
    fear = labels_from_intensities(zero | {1: 0.6, 2: 0.6, 4: 0.6, 5: 0.6, 26: 0.6})
    assert fear.expression == "fear"  # the most specific prototype: surprise's AUs plus AU4
    assert labels_from_intensities(zero | {1: 0.6, 2: 0.6, 5: 0.6, 26: 0.6}).expression == "surprise"
    sad = labels_from_intensities(zero | {1: 0.5, 4: 0.5, 15: 0.5})
    assert sad.expression == "sadness" and sad.valence < 0 and sad.arousal < 0
    assert labels_from_intensities(zero | {12: 0.2}).aus[12] == 0  # below the threshold


# What the face model reports for each control on near-neutral subjects, measured and stated here:
# (blendshapes averaged, minimum rise from intensity 0 to 1). Every step of 0.25 may dip by at
# most STEP_TOLERANCE (the model's own jitter) and the whole sweep must rise by the minimum.
RESPONSES = {
    "brow_inner_raise": (["browInnerUp"], 0.3),
    "brow_outer_raise": (["browOuterUpLeft", "browOuterUpRight"], 0.15),
    "brow_lower": (["browDownLeft", "browDownRight"], 0.1),
    "upper_lid_raise": (["eyeLookUpLeft", "eyeLookUpRight"], 0.25),  # MediaPipe reads AU5 as gaze up
    # eyeSquintLeft starts near 0.6 behind Hopper's glasses and wanders; only the right one tracks AU7
    "lid_tighten": (["eyeSquintRight"], 0.1),
    "upper_lip_raise": (["mouthShrugLower"], 0.25),
    "lip_corner_pull": (["mouthSmileLeft", "mouthSmileRight"], 0.6),
    "lip_corner_depress": (["mouthPucker", "mouthRollLower"], 0.4),
    "jaw_drop": (["jawOpen"], 0.25),
}
STEP_TOLERANCE = 0.06


@pytest.fixture(scope="module")
def hopper_subjects(face):
    subjects, report = build_subjects(face.find_face, n_morphs=1, n_lfw=0)
    assert [s.name for s in subjects] == ["hopper", "hopper-m0"], report
    return subjects


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_blendshapes_follow_each_control(control, face, hopper_subjects):
    names, min_rise = RESPONSES[control]
    columns = [BLENDSHAPE_NAMES.index(n) for n in names]
    for subject in hopper_subjects:
        sweep = []
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            batch = face.encode_batch([subject.render({CONTROLS[control].au: value})])
            assert batch.status[0] == SampleStatus.OK, (control, subject.name, value)
            sweep.append(float(batch.outputs["blendshapes"][0, columns].mean()))
        steps = np.diff(sweep)
        assert steps.min() >= -STEP_TOLERANCE and sweep[-1] - sweep[0] >= min_rise, (control, subject.name, sweep)


def test_painted_eye_closure_covers_the_eyes_and_the_face_model_sees_it(face, hopper_subjects):
    """AU43 (the pain catalogue): the lids are painted down over the eye opening; MediaPipe reads it
    as eyeBlink (measured on Hopper: 0.05 open, 0.14 half, 0.16 closed — weak, as on real faces behind
    glasses) and the covered eye holds none of its dark iris."""
    from stages.synthetic.face_generator import EYE_CLOSURE, EYE_CONTOURS

    columns = [BLENDSHAPE_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    for subject in hopper_subjects:
        sweep, dark = [], []
        for value in (0.0, 0.5, 1.0):
            image = subject.render({EYE_CLOSURE: value})
            batch = face.encode_batch([image])
            assert batch.status[0] == SampleStatus.OK, (subject.name, value)
            sweep.append(float(batch.outputs["blendshapes"][0, columns].mean()))
            (upper, lower), _ = EYE_CONTOURS
            centre = ((subject.landmarks[list(upper)] + subject.landmarks[list(lower)]) / 2).mean(0).round().astype(int)
            dark.append(float(image[centre[1] - 1 : centre[1] + 2, centre[0] - 1 : centre[0] + 2].mean()))
        assert sweep[-1] - sweep[0] >= 0.05 and min(np.diff(sweep)) >= -STEP_TOLERANCE, (subject.name, sweep)
        assert dark[-1] > dark[0] + 30, (subject.name, dark)  # the pupil is covered by skin


def test_the_rules_catalogue_draws_aus_first_with_the_planted_dependencies_and_no_others(tmp_path):
    """AUs first (issue 36): each rule's target is on at its rate with and without its source, the
    AUs no rule targets are on at ROOT_RATE independently, so the only label dependencies are the
    rules (every other pair's correlation near 0); the expression is the prototype rule read from the
    AUs, every class occurs; the rules file says what was planted."""
    import csv

    from stages.synthetic.face_generator import ROOT_RATE, sample_ruled_intensities, write_au_rules

    rng = np.random.default_rng(0)
    faces = [sample_ruled_intensities(rng) for _ in range(6000)]
    on = np.array([[f[au] >= 0.25 for au in AUS] for f in faces])
    planted = {(AUS.index(r.source), AUS.index(r.target)) for r in AU_RULES}
    for r in AU_RULES:
        s, t = AUS.index(r.source), AUS.index(r.target)
        assert abs(on[on[:, s], t].mean() - r.with_source) < 0.03, r
        assert abs(on[~on[:, s], t].mean() - r.without_source) < 0.03, r
    roots = [i for i, au in enumerate(AUS) if au not in {r.target for r in AU_RULES}]
    assert np.allclose(on[:, roots].mean(0), ROOT_RATE, atol=0.03)
    correlation = np.corrcoef(on.T)
    for i in range(len(AUS)):
        for j in range(i + 1, len(AUS)):
            planted_pair = (i, j) in planted or (j, i) in planted
            assert (abs(correlation[i, j]) > 0.3) == planted_pair, (AUS[i], AUS[j], correlation[i, j])
    expressions = [labels_from_intensities(f).expression for f in faces]
    assert set(expressions) == {"neutral", *PROTOTYPES}
    # without rules, the draws are the prototypes' alone: no AU off a prototype reaches threshold
    plain = np.random.default_rng(0)
    for c in ["neutral", *PROTOTYPES]:
        drawn = [sample_intensities(c, plain) for _ in range(100)]
        assert {labels_from_intensities(f).expression for f in drawn} == {c}
        assert {au for f in drawn for au in AUS if f[au] >= 0.25} == set(PROTOTYPES.get(c, ()))
    rows = list(csv.DictReader(open(write_au_rules(tmp_path))))
    assert [(r["source"], r["target"], int(r["sign"])) for r in rows] == [
        ("AU1", "AU2", 1), ("AU4", "AU7", 1), ("AU5", "AU26", 1), ("AU12", "AU15", -1)
    ]  # fmt: skip
    assert [float(r["with_source"]) for r in rows] == [r.with_source for r in AU_RULES]


def test_the_demo_catalogue_is_the_same_bytes_on_any_machine_and_its_labels_are_consistent(tmp_path):
    """The demo's generated catalogue, built as `affectflow demo` builds it, without asking the face
    model anything (seed 0 reads the recorded answers, face_generator.BASE_FACES: live answers differ
    between CPUs), is byte for byte the one bench/results/demo.json's figures were trained on."""
    import csv
    import json

    from flows.demo import DEMO_PER_SUBJECT
    from tests.conftest import REPO

    def no_model(image):
        raise AssertionError("the generator asked the face model for seed 0")

    root, report = write_generated_dataset(tmp_path / "generated", no_model, per_subject=DEMO_PER_SUBJECT)
    sys.path.append(str(REPO / "bench"))
    from common import catalogue_digest

    demo = json.loads((REPO / "bench" / "results" / "demo.json").read_text())
    assert catalogue_digest(root) == demo["catalogue_digest"], (
        "the generator's output changed: rerun `python bench/demo.py` to refresh the demo's figures"
    )
    assert report["subjects"] >= 12
    rows = list(csv.DictReader(open(root / "manifest.csv")))
    subjects = {r["subject"] for r in rows}
    assert len(subjects) == report["subjects"] and len(rows) == DEMO_PER_SUBJECT * len(subjects)
    by_split = {split: {r["subject"] for r in rows if r["split"] == split} for split in ("train", "val", "test")}
    assert (
        all(by_split.values())
        and not (by_split["train"] & by_split["test"])
        and not (by_split["val"] & by_split["test"])
    )
    assert {r["expression"] for r in rows} == {"neutral", *PROTOTYPES}
    for r in rows:  # the labels are the rule applied to the stored intensities
        labels = labels_from_intensities({au: float(r[f"intensity_AU{au}"]) for au in AUS})
        assert labels.expression == r["expression"] and [labels.aus[au] for au in AUS] == [
            int(r[f"AU{au}"]) for au in AUS
        ]
        assert abs(labels.valence - float(r["valence"])) < 1e-3
    assert not (root / "au_rules.csv").exists()  # the prototypes' faces: no rules planted


def test_recorded_base_faces_are_the_models_answers(face, tmp_path):
    """The shipped record equals what the pinned model answers on this machine up to float noise
    (same candidates found, landmarks within a pixel, scores within 0.05), so it is the model's
    output, not an edited one; other seeds still ask the model."""
    from stages.synthetic.face_generator import record_base_faces, recorded_faces

    live = recorded_faces(record_base_faces(face.find_face, tmp_path / "live.npz"))
    shipped = recorded_faces()
    assert list(live) == list(shipped)
    for name, answer in shipped.items():
        assert (answer is None) == (live[name] is None), name
        if answer is not None:
            assert np.abs(answer[0] - live[name][0]).max() < 1.0, name
            assert max(abs(answer[1][k] - live[name][1][k]) for k in answer[1]) < 0.05, name
    asked = []
    build_subjects(lambda image: asked.append(image.shape) or face.find_face(image), n_morphs=1, n_lfw=1, seed=3)
    assert asked


@pytest.mark.usefixtures("prefect_harness")
def test_face_crops_feed_an_image_encoder_with_their_own_key(tmp_path, face):
    import torch

    from stages.extraction.images import crop_to_face

    dataset = _photos(tmp_path)
    store = str(tmp_path / "store")
    plain = extract_features(datasets=dataset, encoders=[EncoderConfig(name="test-clip-tiny")], store=store)
    cropped = extract_features(
        datasets=dataset, encoders=[EncoderConfig(name="test-clip-tiny", face_crop=1.2)], store=store
    )
    faces_row, crop_row = cropped["steps"]  # the face step runs first: its boxes are the crop's input
    assert faces_row["encoder"] == "mediapipe-face" and crop_row["encoder"] == "test-clip-tiny (face crop ×1.2)"
    assert crop_row["key"] != plain["steps"][0]["key"]
    assert crop_row["status_counts"] == {"ok": 1, "no_face": 1}  # coffee: no box, no crop, no features
    fstore = FeatureStore(tmp_path / "store")
    reader = GroupReader.open(fstore, crop_row["path"])
    assert reader.meta["spec"]["params"]["face_crop"] == {"detector": "mediapipe-face", "scale": 1.2}
    box = GroupReader.open(fstore, faces_row["path"]).numpy("box")[0]
    enc = create_encoder("test-clip-tiny").load("cpu")
    from stages.extraction.images import preprocess_array

    face_img = np.asarray(crop_to_face(Image.fromarray(data.astronaut()), tuple(map(float, box)), 1.2))
    pixels = preprocess_array(face_img, enc.preprocess).pixels
    direct = enc.encode(torch.from_numpy(pixels[None]))["global"].numpy()[0]
    np.testing.assert_allclose(reader.numpy("global")[0].astype(np.float32), direct, atol=2e-3, rtol=1e-2)
    plain_row = GroupReader.open(fstore, plain["steps"][0]["path"]).numpy("global")[0].astype(np.float32)
    assert np.abs(plain_row - direct).max() > 0.05  # the crop changed what the encoder saw
    from flows.extract import extract

    again = extract(dataset, [EncoderConfig(name="test-clip-tiny", face_crop=1.2)], store=store)
    assert again["flow_run"] is False and [s["key"] for s in again["steps"]] == [faces_row["key"], crop_row["key"]]


def test_the_generator_allots_in_the_wild_class_shares_in_every_split():
    """With FER2013's shares every split holds each class in proportion (largest remainder), the
    1.5 % class included, and the subject-exclusive splits are unchanged."""
    from stages.synthetic.face_generator import IN_THE_WILD_SHARES, _expressions, _split_of

    n_subjects, per_subject = 40, 50
    rows = _expressions(n_subjects, per_subject, IN_THE_WILD_SHARES, np.random.default_rng(1))
    total = sum(IN_THE_WILD_SHARES.values())
    for split in ("train", "val", "test"):
        mine = [
            rows[s * per_subject + k] for s in range(n_subjects) if _split_of(s) == split for k in range(per_subject)
        ]
        for expression, count in IN_THE_WILD_SHARES.items():
            assert abs(mine.count(expression) - count / total * len(mine)) < 1, (split, expression)
    assert rows.count("disgust") >= 3 and rows.count("happiness") / len(rows) == pytest.approx(0.251, abs=0.01)
    cycling = _expressions(2, 7, None, np.random.default_rng(1))  # no shares: the classes in turn
    assert cycling[:7] == ["neutral", *PROTOTYPES] == cycling[7:]
    with pytest.raises(ValueError, match="unknown expressions"):
        _expressions(2, 7, {"contempt": 1.0}, np.random.default_rng(1))
