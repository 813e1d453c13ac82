"""Which face is which across a video's frames: ``affectflow predict`` numbers a video's faces by
track, so a face keeps its index while others come, go or change places.

Each frame's face boxes are matched to the tracks seen so far by their overlap (intersection over
union) with each track's last box, one to one and best overall (SciPy's ``linear_sum_assignment``);
a box overlapping no track by ``MIN_IOU`` starts a new track, the next unused index. A track unseen
for longer than ``MAX_GAP_SECONDS`` is ended, so a face that returns to its place after a longer
absence is a new track. Stills need none of this: their faces are numbered left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_IOU = 0.3  # a face moves less than this between sampled frames (at 2 fps, a head turn)
MAX_GAP_SECONDS = 2.0  # an occluded face, a look away: the same person when it returns within this

Box = tuple[float, float, float, float]  # x, y, w, h (normalised)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class FaceTracks:
    """The tracks of one video: feed each sampled frame's boxes, in time order, to :meth:`assign`."""

    min_iou: float = MIN_IOU
    max_gap: float = MAX_GAP_SECONDS
    last: dict[int, tuple[Box, float]] = field(default_factory=dict)  # track → (last box, last time)
    next_id: int = 0

    def assign(self, boxes: list[Box], time: float) -> list[int]:
        """The track index of each of ``boxes`` (a frame at ``time`` s)."""
        from scipy.optimize import linear_sum_assignment  # here: scipy.optimize is ~0.5 s of every command's start

        self.last = {t: seen for t, seen in self.last.items() if time - seen[1] <= self.max_gap}
        tracks = list(self.last)
        ids = [-1] * len(boxes)
        if tracks and boxes:
            overlap = np.array([[iou(box, self.last[t][0]) for t in tracks] for box in boxes])
            for row, col in zip(*linear_sum_assignment(-overlap), strict=True):
                if overlap[row, col] >= self.min_iou:
                    ids[row] = tracks[col]
        for j, box in enumerate(boxes):
            if ids[j] < 0:
                ids[j], self.next_id = self.next_id, self.next_id + 1
            self.last[ids[j]] = (box, time)
        return ids
