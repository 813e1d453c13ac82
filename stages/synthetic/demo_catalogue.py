"""A small real-photo catalogue written from images that ship inside installed packages.

It is laid out as a plain ``csv`` dataset (manifest.csv + image files), so the demo exercises the
same code path as a user's own data. Contents: scikit-image's ``astronaut`` (Eileen Collins),
matplotlib's ``grace_hopper.jpg``, and scikit-image's ``lfw_subset`` (100 LFW faces and 100
non-face patches, 25 × 25 greyscale). It has no expression labels: it exists to show extraction,
caching and per-sample status on real photographs, not to train heads.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image
from skimage import data

SPLITS = ("train", "val", "test")


def write_demo_catalogue(directory: str | Path) -> Path:
    """Write the catalogue under ``directory`` (idempotent: identical bytes on every call)."""
    root = Path(directory)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    astronaut = root / "images" / "astronaut.png"
    if not astronaut.exists():
        Image.fromarray(data.astronaut()).save(astronaut)
    rows.append(("images/astronaut.png", "astronaut", "test"))
    hopper = root / "images" / "grace_hopper.jpg"
    if not hopper.exists():
        shutil.copyfile(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), hopper)
    rows.append(("images/grace_hopper.jpg", "grace_hopper", "test"))
    lfw = data.lfw_subset()  # (200, 25, 25) float in [0, 1]: 100 faces then 100 non-faces
    for i, patch in enumerate(lfw):
        kind = "face" if i < 100 else "nonface"
        rel = f"images/lfw_{kind}_{i:03d}.png"
        target = root / rel
        if not target.exists():
            Image.fromarray(np.round(patch * 255).astype(np.uint8), "L").save(target)
        rows.append((rel, f"lfw_{i:03d}", SPLITS[i % 5 // 2] if i % 5 < 4 else "test"))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "subject", "split"])
        writer.writerows(rows)
    return root


def packaged_face_photos(n_lfw: int = 40) -> list[np.ndarray]:
    """Real face photographs shipped in installed packages, as RGB uint8 arrays."""
    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    faces = [data.astronaut(), hopper]
    for patch in data.lfw_subset()[:n_lfw]:
        faces.append(np.repeat(np.round(patch * 255).astype(np.uint8)[..., None], 3, axis=2))
    return faces


def write_photo_dataset(
    root: str | Path, n: int, extra_rows: list[str] | None = None, sizes: tuple[int, ...] = ()
) -> Path:
    """A csv-layout dataset of ``n`` JPEGs cycling through the packaged photos (tests, benchmarks).

    Each image is a distinct deterministic crop and brightness of its photo, so no two samples
    are byte- or feature-identical (which would flatter compression figures). ``sizes``: square
    sides the images are resized to in turn (FER2013's 48, an aligned 224 …); empty keeps the crop.
    """
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    photos = packaged_face_photos()
    lines = ["path,subject,split"]
    for i in range(n):
        rel = f"img/{i:05d}.jpg"
        if not (root / rel).exists():
            photo = photos[i % len(photos)]
            h, w = photo.shape[:2]
            dy, dx = (i * 7) % max(1, h // 10), (i * 13) % max(1, w // 10)
            crop = photo[dy : h - (h // 10 - dy), dx : w - (w // 10 - dx)].astype(np.float32)
            gain = 0.8 + 0.4 * ((i * 37) % 101) / 100.0
            image = Image.fromarray(np.clip(crop * gain, 0, 255).astype(np.uint8))
            if sizes:
                side = sizes[i % len(sizes)]
                image = image.resize((side, side), Image.Resampling.BILINEAR)
            image.save(root / rel, quality=90)
        lines.append(f"{rel},s{i % 7},{SPLITS[i % 3]}")
    lines += extra_rows or []
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root
