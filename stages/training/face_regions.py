"""Face regions as MediaPipe face-mesh landmark indices, and the region each AU acts in.

Used to measure whether an AU's attention map looks where the AU acts (heads/attention_report.py).
The indices are the mesh's canonical topology (the same 478 points for every face); the regions
are coarse on purpose: a 7 × 7 token grid cannot tell an inner from an outer brow.
"""

from __future__ import annotations

import numpy as np

REGIONS: dict[str, tuple[int, ...]] = {
    # both eyebrows, inner to outer, upper and lower edges
    "brows": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    # both eyes' lid contours
    "eyes": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
    + (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
    # the lips' outer contour, corners included
    "mouth": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146),
}
AU_REGIONS: dict[str, str] = {
    **{f"AU{n}": "brows" for n in (1, 2, 4)},
    **{f"AU{n}": "eyes" for n in (5, 6, 7, 41, 42, 43, 44, 45, 46)},
    **{f"AU{n}": "mouth" for n in (10, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 27, 28)},
}


def region_points(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Region → its landmarks' (x, y) (S, K, 2) from face-mesh landmarks (S, 478, ≥ 2)."""
    return {name: landmarks[:, list(index), :2] for name, index in REGIONS.items()}


def into_centre_crop(points: np.ndarray, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """(x, y) in [0, 1] of a width × height picture → in [0, 1] of its centred square crop (what an
    encoder that resizes the shortest side and crops the centre sees)."""
    side = np.minimum(width, height)
    x = (points[..., 0] * width - (width - side) / 2) / side
    y = (points[..., 1] * height - (height - side) / 2) / side
    return np.stack([x, y], -1)
