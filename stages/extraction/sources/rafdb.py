"""RAF-DB basic expression set."""

from __future__ import annotations

from pathlib import Path

from stages.extraction.sources.base import Parsed, SourceError, register_source
from stages.extraction.sources.labels import RAFDB_TO_CANONICAL

LABEL_FILE = "EmoLabel/list_patition_label.txt"  # sic: the dataset's own spelling


@register_source("rafdb", version=1)
def parse_rafdb(root: Path) -> Parsed:
    """RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned/<stem>_aligned.jpg."""
    label_path = root / LABEL_FILE
    if not label_path.is_file():
        raise SourceError(f"RAF-DB layout: {label_path} not found (expected {LABEL_FILE} under the root)")
    paths, expression, split, subject = [], [], [], []
    for lineno, line in enumerate(label_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            name, code = parts[0], int(parts[1])
            if len(parts) != 2 or code not in RAFDB_TO_CANONICAL:
                raise ValueError
        except (ValueError, IndexError):
            raise SourceError(f"{label_path}:{lineno}: expected '<name>.jpg <1..7>', got {line!r}") from None
        stem = name.rsplit(".", 1)[0]
        prefix = stem.split("_", 1)[0]
        if prefix not in ("train", "test"):
            raise SourceError(f"{label_path}:{lineno}: name {name!r} must start with train_ or test_")
        paths.append(f"Image/aligned/{stem}_aligned.jpg")
        expression.append(RAFDB_TO_CANONICAL[code])
        split.append(prefix)
        subject.append(stem)  # RAF-DB has no subject ids; each image is its own unit
    return Parsed(paths=paths, label_files=[LABEL_FILE], expression=expression, split=split, subject=subject)
