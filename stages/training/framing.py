"""How a head's training frames framed the face, so ``affectflow predict`` frames a user's photo
the same way.

A head learns from the frames its encoder saw. A feature group extracted with ``face_crop`` saw
each face's box × that scale; a dataset of face crops (FER-style 48 × 48 faces, AffectNet's boxes)
saw faces filling the frame; a set of scene photos saw small faces. A whole photo of a person given
to a head trained on tight crops is another input distribution, and its answer means little. The
framing is the face-box scale that reproduces the training frames: the group's own ``face_crop``
when it has one; otherwise measured, once per source and kept as a keyed step
(``framing/<dataset>/<key>``): over up to ``SAMPLE`` training frames, read as the encoder saw them
(the dataset's crop, the centre square; stages/training/thumbnails.py), MediaPipe's face box and
the frame's side ÷ the box's longer side; the median is the scale. When MediaPipe finds a face in
fewer than half of them the frames are not face pictures: whole images, as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore import FeatureStore, GroupReader, Step, StepOutput, StepSpec
from stages.training.thumbnails import thumbnails

FRAMING_STEP = "framing"
FRAMING_VERSION = 1
SAMPLE = 64  # training frames measured
SIDE = 256  # the side they are measured at (the centre square, as the encoders' "shortest" resize)
MIN_FOUND = 0.5  # below this share of frames with a face: whole images
SEEN_MARGIN = 1.05  # the measured range widened by this factor (the frames not measured spread a little wider)


@dataclass(frozen=True)
class Framing:
    """``scale``: the training frame is the face box × scale (None: whole images); ``seen``: the
    range of frame ÷ face-box sides the training frames spanned (an image of one face inside it is
    framed as they were and is taken whole); ``how``: where that came from, in words."""

    scale: float | None
    how: str
    seen: tuple[float, float] | None = None


def framing_of(store: FeatureStore, features: GroupReader, given: str = "auto") -> Framing:
    """The framing of a feature group's frames (see the module's docstring); ``given``: ``auto``
    (that), ``whole`` (whole images) or a number (face box × it), the user's override."""
    if given != "auto":
        if given == "whole":
            return Framing(None, "whole images, as asked (--framing whole)")
        try:
            scale = float(given)
        except ValueError:
            raise ValueError(f"framing {given!r}: auto, whole or a face-box scale such as 1.5") from None
        if scale <= 0:
            raise ValueError(f"framing {given!r}: a face-box scale is > 0")
        return Framing(scale, f"face box × {scale:g}, as asked (--framing)")
    if crop := features.meta.get("face_crop"):
        scale = float(crop["scale"])
        return Framing(scale, f"the features' own face crop: face box × {scale:g}")
    measured = measure_framing(store, GroupReader.open(store, features.meta["source_path"]))
    found, tried, read = measured.meta["found"], measured.meta["tried"], measured.meta["read"]
    if tried and not read:
        raise ValueError(
            f"none of {tried} training frames of {features.meta['dataset']} could be read to measure how they "
            "framed faces (has the dataset moved?): give --framing whole or a face-box scale"
        )
    if tried == 0 or found < MIN_FOUND * tried:
        return Framing(None, f"whole images: MediaPipe found a face in {found} of {tried} training frames")
    scale = float(measured.meta["scale"])
    lo, hi = (float(v) for v in measured.meta["seen"])
    return Framing(
        scale,
        f"face box × {scale:.2f}, the training frames' median (measured on {found} of {tried}; a photo of one "
        f"face framed within their {lo:.2f}–{hi:.2f} is taken whole)",
        (lo / SEEN_MARGIN, hi * SEEN_MARGIN),
    )


def measure_framing(store: FeatureStore, source: GroupReader):
    """The keyed measurement over a source's training frames (the group; see the module)."""
    from stages.extraction.encoders import create_encoder

    finder = create_encoder("mediapipe-face")
    spec = StepSpec(FRAMING_STEP, FRAMING_VERSION, {"sample": SAMPLE, "side": SIDE, "finder": finder.spec_params()})
    step = Step("framing", spec, (source.step.key,), "framing", (source.meta["dataset"],))

    def compute() -> StepOutput:
        rows = training_rows(source)
        frames = thumbnails(source, rows.tolist(), SIDE)
        finder.load()
        scale = np.full(len(rows), np.nan, np.float32)
        for i, row in enumerate(rows):
            if (frame := frames[int(row)]) is not None and (found := finder.find_face(frame)) is not None:
                extent = found[0].max(0) - found[0].min(0)  # the landmarks' box, in pixels of the frame
                scale[i] = SIDE / float(extent.max())
        ok = np.isfinite(scale)
        meta = {
            "dataset": source.meta["dataset"],
            "tried": int(len(rows)),
            "read": int(sum(frames[int(r)] is not None for r in rows)),
            "found": int(ok.sum()),
            "scale": float(np.median(scale[ok])) if ok.any() else None,
            "seen": [float(scale[ok].min()), float(scale[ok].max())] if ok.any() else None,
        }
        return StepOutput({"row": rows.astype(np.int64), "scale": scale}, meta)

    group, _ = store.run_step(step, compute)
    return group


def training_rows(source: GroupReader) -> np.ndarray:
    """Up to SAMPLE rows of the training split (every row without a split column), drawn with a
    fixed seed."""
    n = source.shape("path")[0]
    rows = np.arange(n)
    if "split" in source.names():
        train = rows[source.numpy("split") == "train"]
        rows = train if len(train) else rows
    return np.sort(np.random.default_rng(0).permutation(rows)[:SAMPLE])
