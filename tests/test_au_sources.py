"""Aff-Wild2, DISFA, BP4D, EmotioNet and HDF5 layouts on fixtures that mimic the official formats."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from featurestore import FeatureStore, GroupReader, SampleStatus
from flows.extract import DatasetConfig, EncoderConfig, extract_features
from stages.extraction.encoders import create_encoder
from stages.extraction.media import probe_video, write_video
from stages.extraction.sources import SourceError, build_manifest
from stages.extraction.sources.base import SourceWarning
from stages.extraction.sources.labels import EXPRESSION_INDEX


def _img(path, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (value, 80, 40)).save(path)


def _cols(m, *names):
    """Columns of ``names`` in a manifest's compact ``au`` (only the AUs its dataset codes)."""
    return [m.au_annotated.index(n) for n in names]


# -- Aff-Wild2 ----------------------------------------------------------------------------------
def _affwild2(root):
    ann = root / "annotations"
    (ann / "VA_Estimation_Challenge/Train_Set").mkdir(parents=True)
    (ann / "EXPR_Recognition_Challenge/Train_Set").mkdir(parents=True)
    (ann / "AU_Detection_Challenge/Validation_Set").mkdir(parents=True)
    (ann / "VA_Estimation_Challenge/Train_Set/vid1.txt").write_text("valence,arousal\n0.5,0.2\n-5,-5\n-0.3,0.9\n")
    (ann / "EXPR_Recognition_Challenge/Train_Set/vid1.txt").write_text(
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n4\n-1\n7\n"
    )
    header = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"
    (ann / "AU_Detection_Challenge/Validation_Set/vid2_left.txt").write_text(
        f"{header}\n1,0,0,0,0,0,1,0,0,0,0,0\n-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1\n"
    )
    (ann / "AU_Detection_Challenge/Validation_Set/vid2_right.txt").write_text(f"{header}\n0,1,0,0,0,0,0,0,0,0,0,1\n")
    for rel in ("vid1/00001.jpg", "vid1/00003.jpg", "vid2/00001.jpg", "vid2/00002.jpg"):  # vid1 frame 2 is missing
        _img(root / "cropped_aligned" / rel)
    return root


def test_affwild2_merges_tasks_maps_labels_and_shares_left_right_frames(tmp_path):
    m = build_manifest("affwild2", _affwild2(tmp_path), fps=30)
    paths = m.paths
    assert paths[:3] == [f"cropped_aligned/vid1/{i:05d}.jpg" for i in (1, 2, 3)]
    assert paths[3:] == [
        "cropped_aligned/vid2/00001.jpg",
        "cropped_aligned/vid2/00002.jpg",
        "cropped_aligned/vid2/00001.jpg",
    ]  # _left and _right read the base video's frames
    va, expr = m.labels["va"], m.labels["expression"]
    np.testing.assert_allclose(va[0], [0.5, 0.2]) and np.testing.assert_allclose(va[2], [-0.3, 0.9])
    assert np.isnan(va[1]).all() and np.isnan(va[3:]).all()  # −5 and unannotated → NaN
    assert list(expr[:3]) == [EXPRESSION_INDEX["happiness"], -1, -1]  # 4 = Happiness; −1 invalid; 7 Other → none
    au = m.labels["au"]
    assert au[3, _cols(m, "AU1", "AU12")].tolist() == [1, 1] and (au[4] == -1).all()
    assert au[5, _cols(m, "AU2", "AU26")].tolist() == [1, 1] and (au[:3] == -1).all()
    assert "AU5" not in m.au_annotated and "AU9" not in m.au_annotated  # not coded by ABAW: not stored
    assert list(m.labels["split"]) == ["train"] * 3 + ["val"] * 3
    assert list(m.labels["split_va"]) == ["train"] * 3 + [""] * 3 and list(m.labels["split_au"])[3:] == ["val"] * 3
    assert list(m.labels["subject"]) == ["vid1"] * 3 + ["vid2_left"] * 2 + ["vid2_right"]
    np.testing.assert_allclose(m.labels["timestamp"][:3], [0, 1 / 30, 2 / 30])
    assert m.status[1] == SampleStatus.MISSING_FILE  # a missing frame is recorded, not dropped
    assert m.counts() == {"split": {"train": 3, "val": 3}, "status": {"ok": 5, "missing_file": 1}}


def test_affwild2_bad_header_and_bad_line_name_file_and_line(tmp_path):
    root = _affwild2(tmp_path)
    va = root / "annotations/VA_Estimation_Challenge/Train_Set/vid1.txt"
    va.write_text("valence,arousal\n0.5,0.2\n0.1,oops\n")
    with pytest.raises(SourceError, match=r"vid1.txt:3"):
        build_manifest("affwild2", root)
    va.write_text("arousal,valence\n0.5,0.2\n")
    with pytest.raises(SourceError, match=r"vid1.txt:1: expected header valence,arousal"):
        build_manifest("affwild2", root)


# -- DISFA ------------------------------------------------------------------------------------------
DISFA_ALL = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)


def _disfa(root, subjects=("SN001", "SN013", "SN003"), frames=4):
    for s in subjects:
        folder = root / "ActionUnit_Labels" / s
        folder.mkdir(parents=True)
        for au in DISFA_ALL:
            levels = [(au + f) % 6 for f in range(frames)]
            (folder / f"{s}_au{au}.txt").write_text("".join(f"{f + 1},{v}\n" for f, v in enumerate(levels)))
    return root


def test_disfa_binarises_at_two_and_assigns_the_standard_folds(tmp_path):
    root = _disfa(tmp_path)
    for s in ("SN001", "SN013", "SN003"):
        for f in range(4):
            _img(root / "Frames" / s / f"{f:05d}.png")
    m = build_manifest("disfa", root, frames="Frames/{subject}/{frame0:05d}.png")
    assert len(m) == 12 and m.paths[:2] == ["Frames/SN001/00000.png", "Frames/SN001/00001.png"]
    intensity = m.labels["au_intensity"]
    assert intensity[1].tolist() == [(au + 1) % 6 for au in DISFA_ALL]
    coded = _cols(m, *[f"AU{a}" for a in DISFA_ALL])
    np.testing.assert_array_equal(m.labels["au"][:, coded], (intensity >= 2).astype(np.int8))
    assert m.au_annotated == [f"AU{a}" for a in DISFA_ALL]
    assert list(m.labels["fold"]) == [1] * 4 + [3] * 4 + [2] * 4  # sorted: SN001 part1, SN003 part3, SN013 part2
    assert m.counts()["fold"] == {"1": 4, "2": 4, "3": 4}
    eight = build_manifest("disfa", root, aus=8, frames="Frames/{subject}/{frame0:05d}.png")
    assert eight.au_annotated == ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26"]


def test_disfa_reads_frames_from_the_videos(tmp_path):
    root = _disfa(tmp_path, subjects=("SN001",), frames=6)
    (root / "Videos_LeftCamera").mkdir()
    write_video(
        root / "Videos_LeftCamera/LeftVideoSN001_comp.avi",
        [np.full((32, 32, 3), 30 * i, np.uint8) for i in range(6)],
        20,
    )
    m = build_manifest("disfa", root)
    assert set(m.paths) == {"Videos_LeftCamera/LeftVideoSN001_comp.avi"}
    assert list(m.labels["frame"]) == list(range(6))
    # the container's own presentation times (AVI may start one frame in), one frame apart
    np.testing.assert_allclose(m.labels["timestamp"], probe_video(root / m.paths[0]).timestamps)
    np.testing.assert_allclose(np.diff(m.labels["timestamp"]), 1 / 20)


def test_disfa_malformed_line_names_file_and_line(tmp_path):
    root = _disfa(tmp_path, subjects=("SN001",))
    (root / "ActionUnit_Labels/SN001/SN001_au4.txt").write_text("1,0\n2,7\n")
    with pytest.raises(SourceError, match=r"SN001_au4.txt:2"):
        build_manifest("disfa", root)


# -- BP4D ---------------------------------------------------------------------------------------------
def test_bp4d_reads_occurrence_with_unknown_nine_and_folds(tmp_path):
    occ = tmp_path / "AUCoding/AU_OCC"
    occ.mkdir(parents=True)
    header = "0,1,2,4,6,7,10,12,14,15,17,23,24,27"
    (occ / "F001_T1.csv").write_text(f"{header}\n1001,1,0,0,0,0,0,1,0,0,0,0,0,0\n1002,9,9,0,0,0,0,1,0,0,0,0,0,1\n")
    (occ / "M011_T2.csv").write_text(f"{header}\n34,0,1,0,0,0,0,0,0,0,0,0,1,0\n")
    for rel in ("F001/T1/1001.jpg", "F001/T1/1002.jpg"):
        _img(tmp_path / rel)
    m = build_manifest("bp4d", tmp_path)
    assert m.paths == ["F001/T1/1001.jpg", "F001/T1/1002.jpg", "M011/T2/0034.jpg"]
    assert m.labels["au"][0, _cols(m, "AU1", "AU12")].tolist() == [1, 1]
    assert m.labels["au"][1, _cols(m, "AU1", "AU2")].tolist() == [-1, -1]  # 9 = unknown
    assert m.labels["au"][2, _cols(m, "AU2", "AU24")].tolist() == [1, 1]
    assert "AU27" not in m.au_annotated and m.labels["au"].shape[1] == 12  # the 12 BP4D AUs only
    assert list(m.labels["fold"]) == [1, 1, 2] and list(m.labels["subject"]) == ["F001", "F001", "M011"]
    assert m.status[2] == SampleStatus.MISSING_FILE
    (occ / "M011_T2.csv").write_text(f"{header}\n34,0,1,0,0,0,0,0,0,0,0,0,5,0\n")
    with pytest.raises(SourceError, match=r"M011_T2.csv:2"):
        build_manifest("bp4d", tmp_path)


# -- EmotioNet ------------------------------------------------------------------------------------------
def test_emotionet_list_with_not_coded_999(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        _img(tmp_path / name)
    (tmp_path / "emotionet.csv").write_text("path,AU1,AU12,AU43\na.jpg,1,0,999\nb.jpg,0,1,1\n")
    m = build_manifest("emotionet", tmp_path)
    assert m.labels["au"][:, _cols(m, "AU1", "AU12", "AU43")].tolist() == [[1, 0, -1], [0, 1, 1]]
    (tmp_path / "emotionet.csv").write_text("path,AU1\na.jpg,2\n")
    with pytest.raises(SourceError, match=r"emotionet.csv:2"):
        build_manifest("emotionet", tmp_path)
    (tmp_path / "emotionet.csv").write_text("path,AU3,AU4\na.jpg,1,0\n")  # FACS has no AU3: kept, warned
    with pytest.warns(SourceWarning, match=r"emotionet.csv: column 'AU3' is not a FACS action unit.* 1 labelled"):
        m = build_manifest("emotionet", tmp_path)
    assert m.au_annotated == ["AU4"] and m.au_other == ["AU3"] and m.labels["au_other"].tolist() == [[1]]


# -- HDF5 --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("prefect_harness")
def test_hdf5_frames_are_read_and_encoded_like_images(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 48, 40, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "frames.h5", "w") as h5:
        h5["images"] = images
        h5["expression"] = np.array([0, 1, 2, -1, 6, 7])
        au = h5.create_dataset("au", data=np.array([[1, 0], [0, 1], [-1, -1], [1, 1], [0, 0], [1, 0]]))
        au.attrs["au_names"] = ["AU6", "AU12"]
        h5["subject"] = np.array([b"s1", b"s1", b"s2", b"s2", b"s3", b"s3"])
    m = build_manifest("hdf5", tmp_path)
    assert m.labels["au"][:, _cols(m, "AU6", "AU12")].tolist()[:2] == [[1, 0], [0, 1]]
    assert list(m.labels["subject"]) == ["s1", "s1", "s2", "s2", "s3", "s3"]
    result = extract_features(
        datasets=[DatasetConfig(layout="hdf5", root=str(tmp_path), name="packed")],
        encoders=[EncoderConfig(name="test-clip-tiny")],
        store=str(tmp_path / "store"),
    )
    reader = GroupReader.open(FeatureStore(tmp_path / "store"), result["steps"][0]["path"])
    enc = create_encoder("test-clip-tiny").load("cpu")
    from stages.extraction.images import preprocess_array

    pixels = np.stack([preprocess_array(im, enc.preprocess).pixels for im in images])
    import torch

    direct = enc.encode(torch.from_numpy(pixels))["global"].numpy()
    np.testing.assert_allclose(reader.numpy("global").astype(np.float32), direct, atol=2e-3, rtol=1e-2)
    with h5py.File(tmp_path / "frames.h5", "a") as h5:
        del h5["au"].attrs["au_names"]
    with pytest.raises(SourceError, match="au_names"):
        build_manifest("hdf5", tmp_path)
