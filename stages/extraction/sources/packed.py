"""Frames packed inside one file, read by row: HDF5 ``images`` rows and FER2013's CSV rows.

A source whose samples live inside one file gives every row that file as its path (so the manifest
key covers the file's bytes) and a *locator* column saying where the row's frame is: ``h5_index``
(its row in the HDF5 ``images`` dataset) or ``csv_offset`` (the byte offset of its line in a CSV
whose ``pixels`` column holds the grey values). Extraction and report thumbnails read frames here.
"""

from __future__ import annotations

import csv
import math
import threading
from pathlib import Path
from typing import IO

import h5py
import numpy as np

LOCATORS = ("h5_index", "csv_offset")
PIXELS_COLUMN = "pixels"  # FER2013's: space-separated grey values of a square image, row by row


def frame_locations(source, rows: slice | None = None) -> np.ndarray | None:
    """The source's locator column (over ``rows``), or None when its samples are files of their own."""
    names = set(source.names())
    for column in LOCATORS:
        if column in names:
            return source.numpy(column, rows)
    return None


def grey_pixels(text: str) -> np.ndarray:
    """Space-separated grey values → a square uint8 image; ValueError saying what is wrong."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise ValueError("pixels are not all integers") from None
    side = math.isqrt(values.size)
    if values.size == 0 or side * side != values.size:
        raise ValueError(f"{values.size} pixel values do not make a square image")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0–255")
    return values.astype(np.uint8).reshape(side, side)


class FrameFiles:
    """Packed files kept open for the length of one chunk (never longer: a rewritten file must be reread)."""

    def __init__(self) -> None:
        self._h5: dict[str, h5py.File] = {}
        self._csv: dict[str, tuple[IO[bytes], int]] = {}  # open file, index of its pixels column
        self._lock = threading.Lock()

    def read(self, path: Path, location: int) -> np.ndarray:
        """The frame at ``location`` in ``path`` as RGB uint8 (greyscale repeated to three channels)."""
        with self._lock:
            image = self._csv_frame(path, location) if path.suffix.lower() == ".csv" else self._h5_frame(path, location)
        return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image

    def _h5_frame(self, path: Path, index: int) -> np.ndarray:
        if str(path) not in self._h5:
            self._h5[str(path)] = h5py.File(path, "r")
        return self._h5[str(path)]["images"][index]

    def _csv_frame(self, path: Path, offset: int) -> np.ndarray:
        if str(path) not in self._csv:
            f = open(path, "rb")  # noqa: SIM115 - closed in __exit__, with the chunk
            header = next(csv.reader([f.readline().decode("utf-8-sig")]))
            self._csv[str(path)] = (f, header.index(PIXELS_COLUMN))
        f, column = self._csv[str(path)]
        f.seek(offset)
        return grey_pixels(next(csv.reader([f.readline().decode()]))[column])

    def __enter__(self) -> FrameFiles:
        return self

    def __exit__(self, *exc) -> None:
        for h5 in self._h5.values():
            h5.close()
        for f, _ in self._csv.values():
            f.close()
