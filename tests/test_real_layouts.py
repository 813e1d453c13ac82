"""Real datasets as they are released: FER2013's CSV, CK+'s sequence folders, FACS codes outside
the usual AU sets, and subject-exclusive k-fold for datasets without an official split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from featurestore import FeatureStore, GroupReader, SampleStatus
from flows.extract import DatasetConfig, EncoderConfig, extract_features
from stages.extraction.encoders import create_encoder
from stages.extraction.images import preprocess_array
from stages.extraction.sources import build_manifest
from stages.extraction.sources.base import SourceWarning
from stages.extraction.sources.labels import AU_NAMES, EXPRESSION_INDEX, FACS_NAMES
from stages.training.head_data import task_data
from tests.conftest import run_cli

E = EXPRESSION_INDEX


def test_the_canonical_au_space_is_facs_as_published():
    for code in (8, 19, 21, *range(29, 40), *range(51, 59), *range(61, 65)):
        assert f"AU{code}" in AU_NAMES, code
    assert "AU3" not in AU_NAMES and "AU40" not in AU_NAMES  # FACS does not use them
    assert len(AU_NAMES) == 56 and FACS_NAMES[21] == "Neck Tightener" and FACS_NAMES[12] == "Lip Corner Puller"


def test_a_csv_manifest_keeps_a_facs_au_and_warns_once_about_a_code_outside_facs(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "manifest.csv").write_text("path,AU21,AU99,AU12\na.png,1,0,1\nb.png,0,1,\nc.png,1,,0\n")
    with pytest.warns(SourceWarning) as caught:
        m = build_manifest("csv", tmp_path)
    assert len(caught) == 1
    assert "manifest.csv: column 'AU99' is not a FACS action unit" in str(caught[0].message)
    assert "its 2 labelled values" in str(caught[0].message)
    assert m.au_annotated == ["AU12", "AU21"] and m.labels["au"].tolist() == [[1, 1], [-1, 0], [0, 1]]
    assert m.au_other == ["AU99"] and m.labels["au_other"][:, 0].tolist() == [0, 1, -1]
    assert m.counts()["notes"] == {"not a FACS AU: AU99": 2}


# -- FER2013 ----------------------------------------------------------------------------------------
def _fer_row(emotion, pixels, usage) -> str:
    return f'{emotion},"{" ".join(str(int(v)) for v in pixels)}",{usage}'


def _fer2013(root, rng) -> list[np.ndarray]:
    images = [rng.integers(0, 256, (48, 48)) for _ in range(4)]
    lines = [
        "emotion,pixels,Usage",
        _fer_row(3, images[0].ravel(), "Training"),  # line 2: happy, train
        _fer_row(0, images[1].ravel(), "PublicTest"),  # line 3: angry, val
        _fer_row(6, images[2].ravel(), "PrivateTest"),  # line 4: neutral, test
        _fer_row(2, images[3].ravel()[:-1], "Training"),  # line 5: 2,303 values
        '4,"12 ab 7",Training',  # line 6: not numbers
        _fer_row(9, images[0].ravel(), "Training"),  # line 7: no emotion 9
        _fer_row(5, images[0].ravel(), "Holdout"),  # line 8: unknown usage
    ]
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    return images


def test_fer2013_csv_parses_rows_with_statuses_naming_the_line_and_keys_its_content(tmp_path):
    images = _fer2013(tmp_path, np.random.default_rng(0))
    m = build_manifest("fer2013csv", tmp_path)
    assert len(m) == 7 and set(m.paths) == {"fer2013.csv"}
    assert m.labels["expression"][:3].tolist() == [E["happiness"], E["anger"], E["neutral"]]
    assert m.labels["split"][:3].tolist() == ["train", "val", "test"]
    assert [SampleStatus(s) for s in m.status] == [SampleStatus.OK] * 3 + [SampleStatus.DECODE_ERROR] * 2 + [
        SampleStatus.BAD_LABEL
    ] * 2
    assert "fer2013.csv:5: 2303 pixel values" in m.details[3] and "fer2013.csv:6:" in m.details[4]
    assert "fer2013.csv:7: emotion '9'" in m.details[5] and "fer2013.csv:8: Usage 'Holdout'" in m.details[6]
    key = m.key
    text = (tmp_path / "fer2013.csv").read_text()
    first = str(int(images[0][0, 0]))
    other = first[:-1] + str((int(first[-1]) + 1) % 10)  # same length: one pixel changed in place
    changed = text.replace(f'3,"{first} ', f'3,"{other} ', 1)
    assert changed != text
    (tmp_path / "fer2013.csv").write_text(changed)
    assert build_manifest("fer2013csv", tmp_path).key != key
    (tmp_path / "fer2013.csv").write_text(text.replace("\n3,", "\n5,", 1))  # one label
    assert build_manifest("fer2013csv", tmp_path).key != key


@pytest.mark.usefixtures("prefect_harness")
def test_fer2013_rows_are_decoded_from_the_csv_into_the_features(tmp_path):
    images = _fer2013(tmp_path, np.random.default_rng(1))
    result = extract_features(
        datasets=[DatasetConfig(layout="fer2013csv", root=str(tmp_path), name="fer2013")],
        encoders=[EncoderConfig(name="test-clip-tiny")],
        store=str(tmp_path / "store"),
    )
    group = GroupReader.open(FeatureStore(tmp_path / "store"), result["steps"][0]["path"])
    assert group.status().tolist() == [0, 0, 0, 4, 4, 9, 9]
    assert "fer2013.csv:5" in group.numpy("status_detail")[3]
    encoder = create_encoder("test-clip-tiny").load("cpu")
    rgb = [np.repeat(im.astype(np.uint8)[..., None], 3, axis=2) for im in images[:3]]
    pixels = np.stack([preprocess_array(im, encoder.preprocess).pixels for im in rgb])
    expected = encoder.encode(torch.from_numpy(pixels))["global"]
    np.testing.assert_allclose(group.numpy("global")[:3].astype(np.float32), expected, atol=2e-3)


# -- CK+ -------------------------------------------------------------------------------------------
def _ckplus(root) -> None:
    """Two subjects: S005/001 (colour, emotion 3 disgust, AU9 and AU21 in scientific notation),
    S005/002 (grey, FACS only), S010/001 (emotion 5 happy, a malformed FACS line), S010/002 (no
    label files: not read). Folder names as the releases unpack."""
    images = root / "extended-cohn-kanade-images" / "cohn-kanade-images"
    for seq, n, mode in (("S005/001", 5, "RGB"), ("S005/002", 4, "L"), ("S010/001", 6, "RGB"), ("S010/002", 3, "L")):
        folder = images / seq
        folder.mkdir(parents=True)
        subject, number = seq.split("/")
        for f in range(1, n + 1):
            Image.new(mode, (64, 48), 40 * f % 256 if mode == "L" else (40 * f % 256, 90, 30)).save(
                folder / f"{subject}_{number}_{f:08d}.png"
            )

    def label(tree, seq, last, suffix, text):
        folder = root / tree / seq
        folder.mkdir(parents=True, exist_ok=True)
        subject, number = seq.split("/")
        (folder / f"{subject}_{number}_{last:08d}_{suffix}.txt").write_text(text)

    label("Emotion_labels/Emotion", "S005/001", 5, "emotion", "   3.0000000e+00\n")
    peak = "   9.0000000e+00   2.0000000e+00\n   2.1000000e+01   0.0000000e+00\n"  # AU9 at 2, AU21 (no intensity)
    label("FACS_labels/FACS", "S005/001", 5, "facs", peak)
    label("FACS_labels/FACS", "S005/002", 4, "facs", "   1.2000000e+01   3.0000000e+00\n")
    label("Emotion_labels/Emotion", "S010/001", 6, "emotion", "   5.0000000e+00\n")
    label("FACS_labels/FACS", "S010/001", 6, "facs", "   1.2000000e+01   4.0000000e+00\n   oops\n")


def test_ckplus_sequences_give_their_last_frames_the_sequence_labels(tmp_path):
    _ckplus(tmp_path)
    m = build_manifest("ckplus", tmp_path)
    names = [p.rsplit("/", 1)[1] for p in m.paths]
    assert names == [f"S005_001_{f:08d}.png" for f in (3, 4, 5)] + [f"S005_002_{f:08d}.png" for f in (2, 3, 4)] + [
        f"S010_001_{f:08d}.png" for f in (4, 5, 6)
    ]
    assert m.labels["subject"].tolist() == ["S005"] * 6 + ["S010"] * 3
    assert m.labels["expression"].tolist() == [E["disgust"]] * 3 + [-1] * 3 + [E["happiness"]] * 3
    assert m.au_annotated == ["AU9", "AU12", "AU21"]
    assert m.labels["au"].tolist() == [[1, 0, 1]] * 3 + [[0, 1, 0]] * 3 + [[-1, -1, -1]] * 3
    assert [SampleStatus(s) for s in m.status] == [SampleStatus.OK] * 6 + [SampleStatus.BAD_LABEL] * 3
    assert "FACS_labels/FACS/S010/001/S010_001_00000006_facs.txt:2: 'oops'" in m.details[6]
    assert (m.labels["split"] == "").all() and m.labels["sequence"][3] == "S005/002"
    assert m.notes == {"sequences without an emotion file": 1, "sequences without labels (not read)": 1}
    neutral = build_manifest("ckplus", tmp_path, last_frames=2, neutral_first=True)
    assert neutral.paths[0].endswith("S005_001_00000001.png") and neutral.labels["expression"][0] == E["neutral"]
    assert neutral.labels["au"][0].tolist() == [0, 0, 0] and len(neutral) == 9  # 3 sequences × (1 + 2)
    emotion = tmp_path / "Emotion_labels/Emotion/S005/001/S005_001_00000005_emotion.txt"
    emotion.write_text("   6.0000000e+00\n")  # one label changed in place
    assert build_manifest("ckplus", tmp_path).key != m.key


@pytest.mark.usefixtures("prefect_harness")
def test_ckplus_grey_and_colour_frames_are_extracted(tmp_path):
    _ckplus(tmp_path)
    result = extract_features(
        datasets=[DatasetConfig(layout="ckplus", root=str(tmp_path), name="ckplus")],
        encoders=[EncoderConfig(name="test-clip-tiny")],
        store=str(tmp_path / "store"),
    )
    group = GroupReader.open(FeatureStore(tmp_path / "store"), result["steps"][0]["path"])
    assert group.status().tolist() == [0] * 6 + [9] * 3
    assert np.isfinite(group.numpy("global")[:6].astype(np.float32)).all()


# -- subject-exclusive k-fold --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def no_split_features(tmp_path_factory, prefect_harness):
    """20 subjects × 3 photos, expressions by subject and row, no split column: a k-fold dataset."""
    from stages.synthetic.demo_catalogue import write_photo_dataset

    root = write_photo_dataset(tmp_path_factory.mktemp("kfold"), 60, sizes=(64,))
    names = ["neutral", "happiness", "sadness", "surprise"]
    lines = ["path,subject,expression"] + [f"img/{i:05d}.jpg,s{i // 3:02d},{names[i % 4]}" for i in range(60)]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    store = root / "store"
    result = extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(root), name="kfold")],
        encoders=[EncoderConfig(name="test-clip-tiny")],
        store=str(store),
    )
    return store, result["steps"][0]["path"]


def test_k_fold_folds_are_subject_exclusive_and_cover_every_sample_once(no_split_features):
    store, path = no_split_features
    features = GroupReader.open(FeatureStore(store), path)
    source = GroupReader.open(FeatureStore(store), features.meta["source_path"])
    subjects = source.numpy("subject")
    tests = []
    for k in range(1, 11):
        data = task_data(features, source, "fer", folds=10, test_fold=k)
        test_subjects = set(subjects[data.rows["test"]])
        assert not test_subjects & set(subjects[np.concatenate([data.rows["train"], data.rows["val"]])])
        assert "10-fold" in data.protocol
        tests.append(data.rows["test"])
    every = np.concatenate(tests)
    assert sorted(every.tolist()) == list(range(60))  # every sample in exactly one test fold
    fold_of_subject = {}
    for k, rows in enumerate(tests):
        for s in set(subjects[rows]):
            assert fold_of_subject.setdefault(s, k) == k  # no subject in two folds
    again = task_data(features, source, "fer", folds=10, test_fold=3)
    np.testing.assert_array_equal(again.rows["test"], tests[2])  # the same folds every time


def test_train_with_folds_trains_every_fold_reports_mean_and_std_and_a_rerun_skips_them(no_split_features, tmp_path):
    store, path = no_split_features
    args = ["train", "--features", path, "--task", "fer", "--head", "linear"]
    args += ["--folds", "10", "--store", str(store), "--json", str(tmp_path / "run.json"), "--epochs", "5"]
    first = run_cli(*args)
    result = json.loads((tmp_path / "run.json").read_text())
    assert sorted(r["test_fold"] for r in result["runs"]) == list(range(1, 11))
    assert {r["state"] for r in result["runs"]} == {"new"}
    (row,) = result["summary"]
    assert row["folds"] == list(range(1, 11)) and "±" in first and "10 folds" in first
    assert "mean ± std over test folds 1–10" in first and "test fold 1;" not in first, first
    mean, std = row["test"]["macro_f1"]
    scores = [r["metrics"]["test"]["macro_f1"] for r in result["runs"]]
    assert mean == pytest.approx(np.mean(scores)) and std == pytest.approx(np.std(scores))
    run_cli(*args)
    assert {r["state"] for r in json.loads((tmp_path / "run.json").read_text())["runs"]} == {"skipped"}
