"""Every class code of every real layout, read through its parser, checked one by one against the
meaning the dataset documents (written out here, not taken from the code under test): a swapped
pair in a label map, or a folder synonym sent to the wrong class, fails the test naming the code.

The documented orders: FER2013 (Kaggle's "emotion" column, Goodfellow et al. 2013): 0 Angry,
1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral. CK+ (Lucey et al. 2010, Emotion_labels):
0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise. RAF-DB basic
(list_patition_label.txt): 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger,
7 Neutral. AffectNet (Mollahosseini et al. 2017): 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear,
5 Disgust, 6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face. Aff-Wild2 / ABAW EXPR (the file's
header): 0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness, 5 Sadness, 6 Surprise, 7 Other.
"""

from __future__ import annotations

import pytest
from PIL import Image

from stages.extraction.sources import build_manifest
from stages.extraction.sources.labels import EXPRESSIONS

FER2013 = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
CKPLUS = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise"}
RAFDB = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
AFFECTNET = {
    **{0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger"},
    **{7: "contempt", 8: None, 9: None, 10: None},  # None, Uncertain, No-Face: no expression
}
AFFWILD2 = {0: "neutral", 1: "anger", 2: "disgust", 3: "fear", 4: "happiness", 5: "sadness", 6: "surprise", 7: None}
# folder names people use (FER2013's and others' folder exports), with the class each one means
FOLDER_NAMES = {
    **{"angry": "anger", "anger": "anger", "disgust": "disgust", "disgusted": "disgust", "fear": "fear"},
    **{"fearful": "fear", "afraid": "fear", "happy": "happiness", "happiness": "happiness", "joy": "happiness"},
    **{"sad": "sadness", "sadness": "sadness", "surprise": "surprise", "surprised": "surprise"},
    **{"neutral": "neutral", "contempt": "contempt", "pain": "pain"},
}


def _image(path, mode="RGB", size=(48, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 90 if mode == "L" else (90, 60, 30)).save(path)


def _names(codes) -> list[str | None]:
    return [None if c < 0 else EXPRESSIONS[c] for c in codes]


def _check(read: list[str | None], documented: list[str | None], codes) -> None:
    wrong = [(c, got, want) for c, got, want in zip(codes, read, documented, strict=True) if got != want]
    assert not wrong, "code → read as, documented as: " + "; ".join(f"{c} → {g}, {w}" for c, g, w in wrong)


def test_fer2013_csv_every_emotion_code(tmp_path):
    pixels = " ".join(["128"] * 48 * 48)
    rows = [f'{code},"{pixels}",Training' for code in FER2013]
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    m = build_manifest("fer2013csv", tmp_path)
    _check(_names(m.labels["expression"]), list(FER2013.values()), list(FER2013))


def test_ckplus_every_emotion_code(tmp_path):
    images = tmp_path / "extended-cohn-kanade-images" / "cohn-kanade-images"
    for code in CKPLUS:
        seq = f"S{100 + code:03d}/001"
        subject, number = seq.split("/")
        for frame in (1, 2):
            _image(images / seq / f"{subject}_{number}_{frame:08d}.png", "L", (64, 48))
        folder = tmp_path / "Emotion_labels" / "Emotion" / seq
        folder.mkdir(parents=True)
        (folder / f"{subject}_{number}_00000002_emotion.txt").write_text(f"   {code:.7e}\n")
    m = build_manifest("ckplus", tmp_path)
    by_subject = {}
    for subject, expression in zip(m.labels["subject"], m.labels["expression"], strict=True):
        if expression >= 0:
            by_subject.setdefault(str(subject), set()).add(int(expression))
    codes = list(CKPLUS)
    read = []
    for code in codes:
        (label,) = by_subject[f"S{100 + code:03d}"]  # one labelled class per sequence
        read.append(EXPRESSIONS[label])
    _check(read, list(CKPLUS.values()), codes)


def test_rafdb_every_basic_expression_code(tmp_path):
    lines = [f"train_{code:05d}.jpg {code}" for code in RAFDB]
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel/list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for code in RAFDB:
        _image(tmp_path / f"Image/aligned/train_{code:05d}_aligned.jpg")
    m = build_manifest("rafdb", tmp_path)
    _check(_names(m.labels["expression"]), list(RAFDB.values()), list(RAFDB))


def test_affectnet_every_expression_code(tmp_path):
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    rows = [f"1/{code}.jpg,0,0,20,20,,{code},0.1,0.1" for code in AFFECTNET]
    (tmp_path / "training.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    (tmp_path / "validation.csv").write_text(header + "\n")
    for code in AFFECTNET:
        _image(tmp_path / "Manually_Annotated_Images" / "1" / f"{code}.jpg")
    m = build_manifest("affectnet", tmp_path)
    _check(_names(m.labels["expression"]), list(AFFECTNET.values()), list(AFFECTNET))


def test_affwild2_every_expression_code(tmp_path):
    folder = tmp_path / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set"
    folder.mkdir(parents=True)
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    (folder / "vid1.txt").write_text(header + "\n" + "\n".join(str(c) for c in AFFWILD2) + "\n")
    for frame in range(1, len(AFFWILD2) + 1):
        _image(tmp_path / "cropped_aligned" / "vid1" / f"{frame:05d}.jpg")
    m = build_manifest("affwild2", tmp_path, fps=30)
    _check(_names(m.labels["expression"]), list(AFFWILD2.values()), list(AFFWILD2))


@pytest.mark.parametrize("split_level", [False, True])
def test_every_folder_name_means_its_class(tmp_path, split_level):
    """Each synonym folder holds one image named after the folder: each row's class is checked
    against the folder its path names, so two synonyms sent to each other's class fail."""
    root = tmp_path / "faces"
    for name in FOLDER_NAMES:
        _image(root / ("train" if split_level else "") / name / f"{name}.png")
    m = build_manifest("imagefolder", root)
    folders = [path.split("/")[-2] for path in m.paths]
    assert sorted(folders) == sorted(FOLDER_NAMES)
    _check(_names(m.labels["expression"]), [FOLDER_NAMES[f] for f in folders], folders)
    if split_level:
        assert set(m.labels["split"]) == {"train"}
