"""Build the `csv` layout of the "facial_expressions" set from its public repository.

Source: github.com/muxspace/facial_expressions (13,690 labelled face photos collected by a graduate
class: LFW photos, Indian movie faces and web images; labels in data/legend.csv: anger, contempt,
disgust, fear, happiness, neutral, sadness, surprise). Licence: the repository is Apache-2.0; the
photos come from the sets it collected them from (LFW: for research). Not committed: this script
lays the mirror's files out as ``<out>/images/…`` and ``<out>/manifest.csv`` (path, expression,
subject) for ``affectflow extract --layout csv``.

Subject: the person's name in the file name (``Aaron_Eckhart_0001.jpg`` → Aaron_Eckhart,
``HrithikRoshan_119.jpg`` → HrithikRoshan), so folds are person-exclusive. The set has no official
split: the benchmark uses subject-exclusive folds. Labels are lower-cased; an image listed twice
keeps its first label when both agree and is dropped (counted) when they disagree.

    python bench/real/facial_expressions.py --mirror <the repository's git dir or checkout> --out DIR
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

from mirror import extract, list_files, main, read_text

NAME = "facial_expressions"
SOURCE = "https://github.com/muxspace/facial_expressions"
LICENCE = "repository Apache-2.0; photos from LFW (research use) and web/movie faces"
CLASSES = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


def subject_of(file_name: str) -> str:
    return re.sub(r"_\d+$", "", Path(file_name).stem)


def build(mirror: Path, out: Path) -> dict:
    files = set(list_files(mirror))
    labels: dict[str, str] = {}
    conflicting, missing = set(), 0
    for row in csv.DictReader(read_text(mirror, "data/legend.csv").splitlines()):
        image, label = row["image"].strip(), row["emotion"].strip().lower()
        if label not in CLASSES:
            raise ValueError(f"data/legend.csv: unknown emotion {row['emotion']!r} for {image}")
        if f"images/{image}" not in files:
            missing += 1
            continue
        if image in labels and labels[image] != label:
            conflicting.add(image)
        labels.setdefault(image, label)
    for image in conflicting:
        del labels[image]
    images = sorted(labels)
    extract(mirror, [f"images/{i}" for i in images], out)
    with open(out / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "expression", "subject"])
        for image in images:
            writer.writerow([f"images/{image}", labels[image], subject_of(image)])
    summary = {
        "dataset": NAME,
        "source": SOURCE,
        "licence": LICENCE,
        "images": len(images),
        "subjects": len({subject_of(i) for i in images}),
        "classes": dict(sorted(Counter(labels.values()).items())),
        "dropped_conflicting_labels": len(conflicting),
        "listed_without_image": missing,
    }
    return summary


if __name__ == "__main__":
    main(build, __doc__.splitlines()[0])
