"""Frames packed in one HDF5 file (h5py), with their labels beside them.

Layout read (one file, ``file=`` option, default ``frames.h5``)::

    images      (N, H, W, 3) or (N, H, W) uint8     the frames
    expression  (N,) int, canonical index (−1 missing)              optional
    va          (N, 2) float (NaN missing)                          optional
    au          (N, M) int 1/0/−1, attribute ``au_names``           optional
    subject, split, video  (N,) strings                             optional
    frame (N,) int, timestamp (N,) float seconds                    optional

Each row's path is the file itself and ``h5_index`` its row in ``images`` (read by
stages/extraction/sources/packed.py); the manifest key covers the file's bytes, so any change to a frame or a
label gives a new key.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.labels import EXPRESSIONS

H5_SUFFIXES = (".h5", ".hdf5")


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


@register_source("hdf5", version=1)
def parse_hdf5(root: Path, file: str = "frames.h5") -> Parsed:
    """HDF5 file of packed frames (`images`) with optional expression, va, au (+au_names), subject, split, video, frame, timestamp."""  # noqa: E501 (one line: a table row or the layout's one-line summary)
    path = root / file
    if not path.is_file():
        raise SourceError(f"hdf5: {path} not found")
    try:
        with h5py.File(path, "r") as h5:
            if "images" not in h5:
                raise SourceError(f"{path}: no 'images' dataset (has {sorted(h5)})")
            images = h5["images"]
            if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
                raise SourceError(f"{path}: 'images' must be uint8 (N, H, W[, 3]), is {images.dtype} {images.shape}")
            n = images.shape[0]

            def column(name: str):
                if name not in h5:
                    return None
                if h5[name].shape[0] != n:
                    raise SourceError(f"{path}: '{name}' has {h5[name].shape[0]} rows, 'images' has {n}")
                return h5[name][()]

            out = Parsed(paths=[file] * n, label_files=[])
            expression = column("expression")
            if expression is not None:
                bad = np.flatnonzero((expression < -1) | (expression >= len(EXPRESSIONS)))
                if bad.size:
                    raise SourceError(
                        f"{path}: expression[{bad[0]}] = {expression[bad[0]]} outside -1..{len(EXPRESSIONS) - 1}"
                    )
                out.expression = expression.astype(int).tolist()
            va = column("va")
            if va is not None:
                out.va = [tuple(map(float, row)) for row in va]
            au = column("au")
            if au is not None:
                if "au_names" not in h5["au"].attrs:
                    raise SourceError(f"{path}: 'au' needs an 'au_names' attribute naming its columns")
                out.au_names = _strings(h5["au"].attrs["au_names"])
                out.au_source = f"{path} (au)"
                out.au = au.astype(int).tolist()
            for name in ("subject", "split"):
                values = column(name)
                if values is not None:
                    setattr(out, name, _strings(values))
            out.extra = {"h5_index": np.arange(n, dtype=np.int64)}
            video = column("video")
            if video is not None:
                out.extra["video"] = np.array(_strings(video), dtype=str)
            for name, dtype in (("frame", np.int32), ("timestamp", np.float64)):
                values = column(name)
                if values is not None:
                    out.extra[name] = values.astype(dtype)
    except OSError as err:
        raise SourceError(f"{path}: not a readable HDF5 file ({err})") from None
    return out
