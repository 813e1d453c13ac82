"""Faces numbered by track across a video's frames (stages/extraction/face_tracks.py): by hand on
boxes, and through `predict`'s encoding on a video of two real faces, one of them hidden a while."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stages.extraction.face_tracks import FaceTracks, iou


def test_iou_by_hand():
    assert iou((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(1 / 7)  # overlap 1, union 4 + 4 − 1
    assert iou((0, 0, 1, 1), (2, 2, 1, 1)) == 0.0
    assert iou((0.1, 0.2, 0.3, 0.4), (0.1, 0.2, 0.3, 0.4)) == pytest.approx(1.0)


def test_faces_keep_their_index_when_they_change_places_leave_and_return():
    """Two faces crossing each other's column (one high, one low: they never overlap) keep their
    indices though left-to-right order swaps; one hidden for 1 s comes back as itself, one hidden
    longer than the gap is a new face; a newcomer takes the next index."""
    tracks = FaceTracks(max_gap=2.0)
    in_order = []  # each frame's indices, left to right
    for step in range(9):  # at 2 frames a second: A moves right across B's column, B moves left
        a = (0.1 + 0.08 * step, 0.1, 0.2, 0.25)
        b = (0.74 - 0.08 * step, 0.6, 0.2, 0.25)
        boxes = sorted([a, b])  # as the face finder gives them: left to right
        ids = tracks.assign(boxes, step * 0.5)
        assert ids[boxes.index(a)] == 0 and ids[boxes.index(b)] == 1, step
        in_order.append(ids)
    assert in_order[0] == [0, 1] and in_order[-1] == [1, 0]  # numbered left to right, they would have swapped

    still = FaceTracks(max_gap=2.0)
    left, right = (0.1, 0.3, 0.2, 0.3), (0.6, 0.3, 0.2, 0.3)
    assert still.assign([left, right], 0.0) == [0, 1]
    assert still.assign([right], 0.5) == [1]  # left hidden: right keeps 1 (left to right would say 0)
    assert still.assign([right], 1.0) == [1]
    assert still.assign([left, right], 1.5) == [0, 1]  # back within 2 s: itself
    for time in (2.0, 2.5, 3.0, 3.5):
        assert still.assign([right], time) == [1]
    assert still.assign([left, right], 4.0) == [2, 1]  # hidden 2.5 s, longer than the gap: a new face
    assert still.assign([(0.35, 0.3, 0.2, 0.3)], 4.5) == [3]  # one overlapping neither: a newcomer


def test_a_videos_faces_keep_their_index_through_predicts_encoding(tmp_path):
    """A video of two real faces side by side, the left one hidden for two of its frames: encoded
    as `predict` encodes it (face crops), the right face is face 1 in every frame, also while it is
    the only face, and the left face is face 0 before and after."""
    from stages.extraction.encoders import create_encoder
    from stages.extraction.extract import encode_files
    from stages.extraction.media import write_video
    from stages.synthetic.demo_catalogue import packaged_face_photos

    astronaut, hopper = packaged_face_photos(0)
    a = np.asarray(Image.fromarray(astronaut[0:260, 100:360]).resize((240, 240)))
    b = np.asarray(Image.fromarray(hopper[0:360, 80:440]).resize((240, 240)))
    both = np.full((320, 640, 3), 120, np.uint8)
    both[40:280, 40:280], both[40:280, 360:600] = a, b
    right_only = both.copy()
    right_only[:, :320] = 120
    frames = [both, both, right_only, right_only, both, both]
    write_video(tmp_path / "two.mp4", iter(frames), 2, None)
    encoded = encode_files(create_encoder("test-clip-tiny").load(), [tmp_path / "two.mp4"], 1.3, None, fps=None)
    by_time: dict[float, list[int]] = {}
    for face, time in zip(encoded.face.tolist(), encoded.time.tolist(), strict=True):
        by_time.setdefault(round(time, 2), []).append(face)
    assert list(by_time.values()) == [[0, 1], [0, 1], [1], [1], [0, 1], [0, 1]], by_time
