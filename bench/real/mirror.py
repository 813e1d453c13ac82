"""Read a public dataset's files from a mirror: a bare git repository (a snapshot with no work tree)
or an ordinary folder (a checkout, an unpacked download). The builders beside this file use it to
lay the data out as the project's layouts; nothing here is committed data."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable
from pathlib import Path


def _git_dir(mirror: Path) -> Path | None:
    for candidate in (mirror, mirror / ".git"):
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def list_files(mirror: Path) -> list[str]:
    """Every file's path relative to the mirror's root (its HEAD commit for a git mirror)."""
    git = _git_dir(mirror)
    if git is not None:
        out = subprocess.run(
            ["git", "--git-dir", str(git), "ls-tree", "-r", "--name-only", "-z", "HEAD"],
            check=True,
            capture_output=True,
        ).stdout
        return [p.decode() for p in out.split(b"\0") if p]
    return sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file())


def extract(mirror: Path, paths: list[str], out: Path) -> None:
    """Copy ``paths`` (relative) from the mirror to ``out``, keeping their relative paths."""
    git = _git_dir(mirror)
    out.mkdir(parents=True, exist_ok=True)
    if git is not None:
        for start in range(0, len(paths), 500):  # git archive | tar, a command line at a time
            archive = subprocess.Popen(
                ["git", "--git-dir", str(git), "archive", "HEAD", "--", *paths[start : start + 500]],
                stdout=subprocess.PIPE,
            )
            subprocess.run(["tar", "-x", "-C", str(out)], stdin=archive.stdout, check=True)
            if archive.wait() != 0:
                raise RuntimeError(f"git archive failed in {git}")
        return
    for rel in paths:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((mirror / rel).read_bytes())


def read_text(mirror: Path, path: str) -> str:
    git = _git_dir(mirror)
    if git is not None:
        return subprocess.run(
            ["git", "--git-dir", str(git), "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
        ).stdout
    return (mirror / path).read_text()


def main(build: Callable[[Path, Path], dict], description: str) -> None:
    """A builder's command line: ``--mirror`` (a git dir or folder) and ``--out``; the summary the
    builder returns is written to ``<out>/build.json`` (what bench/real.py reads) and printed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    summary = build(args.mirror, args.out)
    (args.out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
