"""Source layouts parse fixtures that mimic the official formats into the canonical label space."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from featurestore import SampleStatus
from stages.extraction.sources import SourceError, build_manifest
from stages.extraction.sources.labels import EXPRESSION_INDEX, expression_view


def _jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path)


def test_rafdb_maps_codes_to_canonical_and_splits_by_prefix(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text(
        "train_00001.jpg 5\ntrain_00002.jpg 4\ntest_0001.jpg 7\n"
    )
    for stem in ("train_00001", "train_00002", "test_0001"):
        _jpg(tmp_path / f"Image/aligned/{stem}_aligned.jpg")
    m = build_manifest("rafdb", tmp_path)
    assert m.paths[0] == "Image/aligned/train_00001_aligned.jpg"
    # 5 = Sadness, 4 = Happiness, 7 = Neutral in RAF-DB's own order
    assert list(m.labels["expression"]) == [EXPRESSION_INDEX[n] for n in ("sadness", "happiness", "neutral")]
    assert list(m.labels["split"]) == ["train", "train", "test"]
    assert (m.status == SampleStatus.OK).all()


def test_rafdb_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("train_00001.jpg 5\ntrain_00002.jpg 9\n")
    with pytest.raises(SourceError, match=r"list_patition_label.txt:2"):
        build_manifest("rafdb", tmp_path)


AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)


def test_affectnet_crops_views_and_missing_va(tmp_path):
    lm = ";".join(["1.5"] * 136)
    (tmp_path / "training.csv").write_text(
        f"{AFFECTNET_HEADER}\n1/a.jpg,2,3,20,20,{lm},7,0.5,-0.25\n1/b.jpg,0,0,30,25,{lm},8,-2,-2\n"
    )
    (tmp_path / "validation.csv").write_text(f"{AFFECTNET_HEADER}\n2/c.jpg,1,1,10,10,,1,0.1,0.2\n")
    for rel in ("1/a.jpg", "1/b.jpg", "2/c.jpg"):
        _jpg(tmp_path / "Manually_Annotated_Images" / rel)
    m = build_manifest("affectnet", tmp_path)
    assert list(m.labels["expression"]) == [EXPRESSION_INDEX["contempt"], -1, EXPRESSION_INDEX["happiness"]]
    assert list(m.labels["expression_raw"]) == [7, 8, 1]
    np.testing.assert_allclose(m.labels["va"][0], [0.5, -0.25])
    assert np.isnan(m.labels["va"][1]).all()
    np.testing.assert_allclose(m.labels["crop"][0], [2, 3, 20, 20])
    assert m.labels["landmarks"].shape == (3, 68, 2) and np.isnan(m.labels["landmarks"][2]).all()
    assert list(m.labels["split"]) == ["train", "train", "val"]
    # 7-class view drops contempt; 8-class keeps it
    assert EXPRESSION_INDEX["contempt"] not in expression_view("basic7") and len(expression_view("basic7")) == 7
    assert expression_view("affectnet8") == list(range(8))
    assert expression_view("happy, 6") == [EXPRESSION_INDEX["happiness"], 6]


def test_affectnet_bad_header_and_bad_value(tmp_path):
    (tmp_path / "training.csv").write_text("path,expression\nx.jpg,1\n")
    with pytest.raises(SourceError, match="training.csv:1: header"):
        build_manifest("affectnet", tmp_path)
    (tmp_path / "training.csv").write_text(f"{AFFECTNET_HEADER}\n1/a.jpg,2,3,20,20,,1,0.5,3.0\n")
    with pytest.raises(SourceError, match=r"training.csv:2: .*outside"):
        build_manifest("affectnet", tmp_path)


def test_imagefolder_with_split_level(tmp_path):
    for split, cls in [("train", "happy"), ("train", "angry"), ("test", "neutral")]:
        _jpg(tmp_path / split / cls / "x.jpg")
    m = build_manifest("imagefolder", tmp_path)
    assert sorted(zip(m.labels["split"], m.labels["expression"])) == sorted(
        [("train", EXPRESSION_INDEX["happiness"]), ("train", EXPRESSION_INDEX["anger"]), ("test", 0)]
    )


def test_imagefolder_unknown_class_says_what_is_accepted(tmp_path):
    _jpg(tmp_path / "bored" / "x.jpg")
    with pytest.raises(
        SourceError, match=r"neither a split folder \(train/training, val/valid.*unknown expression 'bored'"
    ):
        build_manifest("imagefolder", tmp_path)
    _jpg(tmp_path / "test" / "happy" / "x.jpg")  # a split beside a class folder
    with pytest.raises(SourceError, match=r"mixes split folders with \['bored'\]"):
        build_manifest("imagefolder", tmp_path)


FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_a_fer2013_folder_export_parses_with_its_three_official_splits(tmp_path):
    """FER2013's folder export: train/ validation/ test/ × 7 class folders of 48 × 48 greyscale."""
    for split in ("train", "Validation", "TEST"):
        for i, cls in enumerate(FER2013_CLASSES):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(np.full((48, 48), 30 * i, np.uint8), "L").save(folder / f"{split}-{cls}.png")
    m = build_manifest("imagefolder", tmp_path)
    assert len(m) == 21 and set(m.labels["split"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        rows = m.labels["split"] == split
        assert sorted(m.labels["expression"][rows]) == sorted(
            EXPRESSION_INDEX[c] for c in ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
        )


def test_csv_paths_escaping_the_root_are_refused_and_never_read(tmp_path):
    root = tmp_path / "data"
    _jpg(root / "ok.jpg")
    secret = tmp_path / "secret.jpg"
    _jpg(secret)
    os.symlink(secret, root / "link.jpg")
    (root / "manifest.csv").write_text(
        "path,expression,valence,arousal,AU12,subject\n"
        "ok.jpg,happy,0.5,0.1,1,s1\n"
        "../secret.jpg,sad,,,0,s1\n"
        f"{secret},sad,,,,s2\n"
        "link.jpg,,,,,s2\n"
        "missing.jpg,,,,,s3\n"
    )
    m = build_manifest("csv", root)
    assert [SampleStatus(s) for s in m.status] == [
        SampleStatus.OK,
        SampleStatus.PATH_ESCAPE,
        SampleStatus.PATH_ESCAPE,
        SampleStatus.PATH_ESCAPE,
        SampleStatus.MISSING_FILE,
    ]
    assert m.au_annotated == ["AU12"] and m.labels["au"][:, 0].tolist() == [1, 0, -1, -1, -1]
    assert m.labels["au"].shape == (5, 1)  # only the AUs the dataset codes are stored
    # the escaped file's content does not enter the key: changing it leaves the key alone
    key = m.key
    secret.write_bytes(secret.read_bytes() + b"changed")
    assert build_manifest("csv", root).key == key


def test_unknown_layout_and_missing_root_fail_fast(tmp_path):
    with pytest.raises(SourceError, match="unknown dataset layout 'raf'.*rafdb"):
        build_manifest("raf", tmp_path)
    with pytest.raises(SourceError, match="not a directory"):
        build_manifest("rafdb", tmp_path / "nope")
