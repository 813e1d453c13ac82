"""Decode one image to a fixed-size RGB uint8 array, or say exactly why it could not be.

Every failure is a :class:`SampleStatus` plus a one-line detail; nothing here raises for bad
input. Normalisation by mean/std happens later on whole batches (one vectorised op).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featurestore.status import SampleStatus

# We enforce our own pixel limit (below) so a huge image is a status, not a PIL exception.
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 1 << 28  # 268 Mpx, e.g. 16384 × 16384
RESIZE_MODES = ("shortest", "squash", "fit")
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocess:
    """Everything about preprocessing that changes the pixels an encoder sees (part of the spec)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    # "shortest": shortest side to `size`, then centre crop; "squash": to size × size;
    # "fit": longest side down to `size` at most, aspect kept (for detectors such as MediaPipe).
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation {self.interpolation!r} not in {sorted(_RESAMPLE)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.resize_mode!r} not in {list(RESIZE_MODES)}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@dataclass
class Decoded:
    pixels: np.ndarray | None  # (H, W, 3) uint8 when status is OK; (size, size, 3) unless "fit"
    status: SampleStatus
    detail: str = ""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: keep the top 8 bits of the used range rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255.0).astype(np.uint8), "L")
    return img if img.mode == "RGB" else img.convert("RGB")


def _resize(img: Image.Image, pre: Preprocess) -> Image.Image:
    resample = _RESAMPLE[pre.interpolation]
    if pre.resize_mode == "squash":
        return img.resize((pre.size, pre.size), resample)
    w, h = img.size
    if pre.resize_mode == "fit":
        scale = pre.size / max(w, h)
        return img if scale >= 1 else img.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample)
    scale = pre.size / min(w, h)
    nw, nh = max(pre.size, round(w * scale)), max(pre.size, round(h * scale))
    img = img.resize((nw, nh), resample)
    left, top = (nw - pre.size) // 2, (nh - pre.size) // 2
    return img.crop((left, top, left + pre.size, top + pre.size))


def crop_to_face(img: Image.Image, face_box: tuple[float, float, float, float], scale: float) -> Image.Image | None:
    """A square around a normalised (x, y, w, h) face box, its side ``scale`` × the box's longer
    side, clipped to the image; None when nothing of it is inside."""
    width, height = img.size
    x, y, w, h = face_box
    cx, cy = (x + w / 2) * width, (y + h / 2) * height
    half = max(w * width, h * height) * scale / 2
    box = (
        max(0, round(cx - half)),
        max(0, round(cy - half)),
        min(width, round(cx + half)),
        min(height, round(cy + half)),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return None
    return img.crop(box)


FaceBox = tuple[tuple[float, float, float, float], float]  # (normalised x, y, w, h), scale


def decode_image(
    path: Path,
    pre: Preprocess,
    crop: tuple[float, float, float, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    face: FaceBox | None = None,
) -> Decoded:
    """``crop``: a pixel box from the dataset (e.g. AffectNet's); ``face``: a face box normalised to
    the (cropped) image from the face encoder, expanded by its scale."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Decoded(None, SampleStatus.MISSING_FILE, "file not found")
    except OSError as err:
        return Decoded(None, SampleStatus.MISSING_FILE, f"cannot stat: {err}")
    if size == 0:
        return Decoded(None, SampleStatus.EMPTY_FILE, "zero-byte file")
    try:
        with warnings.catch_warnings(), Image.open(path) as opened:
            warnings.simplefilter("ignore")
            w, h = opened.size
            if w * h > max_pixels:
                return Decoded(None, SampleStatus.TOO_LARGE, f"{w}x{h} exceeds {max_pixels} pixels")
            if crop is None and face is None and opened.format == "JPEG":
                # Decode a huge JPEG at a reduced DCT scale that is still >= the target size.
                opened.draft("RGB", (pre.size, pre.size))
            opened.load()
            img = ImageOps.exif_transpose(opened)
    except UnidentifiedImageError:
        return Decoded(None, SampleStatus.NOT_AN_IMAGE, "not a recognised image format")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return Decoded(None, SampleStatus.DECODE_ERROR, str(err)[:200])
    if crop is not None:
        x, y, cw, ch = crop
        box = (max(0, round(x)), max(0, round(y)), min(w, round(x + cw)), min(h, round(y + ch)))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            return Decoded(None, SampleStatus.BAD_CROP, f"face box {crop} outside the {w}x{h} image")
        img = img.crop(box)
    if face is not None and (img := crop_to_face(img, *face)) is None:
        return Decoded(None, SampleStatus.BAD_CROP, f"face box {face[0]} outside the image")
    try:
        img = _resize(_to_rgb(img), pre)
    except (OSError, ValueError) as err:
        return Decoded(None, SampleStatus.DECODE_ERROR, str(err)[:200])
    return Decoded(np.asarray(img, dtype=np.uint8), SampleStatus.OK)


def preprocess_array(rgb: np.ndarray, pre: Preprocess, face: FaceBox | None = None) -> Decoded:
    """An already-decoded RGB uint8 frame (e.g. from a video) through the same crop and resize as images."""
    img = Image.fromarray(rgb, "RGB")
    if face is not None and (img := crop_to_face(img, *face)) is None:
        return Decoded(None, SampleStatus.BAD_CROP, f"face box {face[0]} outside the frame")
    try:
        return Decoded(np.asarray(_resize(img, pre), dtype=np.uint8), SampleStatus.OK)
    except (OSError, ValueError) as err:
        return Decoded(None, SampleStatus.DECODE_ERROR, str(err)[:200])
