"""Small square pictures of source rows, for reports: image files, video frames and HDF5 rows.

They are read the way extraction reads them (the dataset's crop box, the row's own video frame),
so a thumbnail shows what the encoder saw, before resizing. A row that cannot be read gives None
and the caller draws it as missing; a report never fails because one picture is gone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from featurestore import GroupReader, SampleStatus
from stages.extraction.images import Preprocess, decode_image, preprocess_array
from stages.extraction.media import MediaError, is_video, read_frames
from stages.extraction.sources.packed import FrameFiles, frame_locations


def _square(size: int) -> Preprocess:
    return Preprocess(size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize_mode="shortest")


def dataset_root(source: GroupReader, root: str | Path | None = None) -> Path:
    """Where the source's relative paths resolve: ``root`` if given, else where it was parsed."""
    return Path(root if root is not None else source.meta["root_at_creation"])


def thumbnails(
    source: GroupReader, rows: list[int], size: int = 64, root: str | Path | None = None
) -> dict[int, np.ndarray | None]:
    """RGB uint8 (size, size, 3) per row, or None where the row cannot be read."""
    from stages.extraction.sources.videos import probe_cached

    base = dataset_root(source, root)
    pre = _square(size)
    names = set(source.names())
    wanted = sorted(set(int(r) for r in rows))
    paths = source.numpy("path")
    crops = source.numpy("crop") if "crop" in names else None
    frames = source.numpy("frame") if "frame" in names else None
    packed = frame_locations(source)
    out: dict[int, np.ndarray | None] = {}
    by_video: dict[str, list[int]] = {}
    with FrameFiles() as packed_files:
        for row in wanted:
            rel = str(paths[row])
            if frames is not None and is_video(rel):
                by_video.setdefault(rel, []).append(row)
                continue
            if packed is not None:
                try:
                    decoded = preprocess_array(packed_files.read(base / rel, int(packed[row])), pre)
                except (OSError, KeyError, IndexError, ValueError):
                    out[row] = None
                    continue
            else:
                crop = None if crops is None or np.isnan(crops[row]).any() else tuple(float(v) for v in crops[row])
                decoded = decode_image(base / rel, pre, crop)
            out[row] = decoded.pixels if decoded.status == SampleStatus.OK else None
    for rel, video_rows in by_video.items():
        row_of = {int(frames[r]): r for r in video_rows}
        for r in video_rows:
            out[r] = None
        try:
            for index, image in read_frames(base / rel, probe_cached(base, rel).timestamps, sorted(row_of)):
                decoded = preprocess_array(image, pre)
                out[row_of[index]] = decoded.pixels if decoded.status == SampleStatus.OK else None
        except (MediaError, OSError):
            pass  # the rows already read keep their pictures; the rest stay None (drawn as missing)
    return out


def placeholder(size: int) -> np.ndarray:
    """A grey square with a cross: a row whose picture could not be read."""
    image = np.full((size, size, 3), 200, np.uint8)
    idx = np.arange(size)
    image[idx, idx] = image[idx, size - 1 - idx] = 120
    return image


def to_image(pixels: np.ndarray | None, size: int) -> Image.Image:
    return Image.fromarray(placeholder(size) if pixels is None else pixels)
