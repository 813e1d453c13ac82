"""Content fingerprints of dataset files, with a stat cache so unchanged files are not re-read.

A manifest key hashes ``(relative path, size, content digest)`` of every file a source reads.
Relative paths keep the key stable when a dataset folder moves; content digests (never mtimes)
make it change exactly when a byte changes. The stat cache maps
``(absolute path, size, mtime_ns, inode)`` to a digest, like git's index: a cache, never a key.

Like git's "racily clean" entries, a file modified less than ``RACY_SECONDS`` before it was hashed
is not cached: file-system timestamps are coarser than a write, so a same-size rewrite within that
tick would keep its old ``(size, mtime_ns)`` and a cached digest would hide the change.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import xxhash

from featurestore.keys import digest_json

_READ_BLOCK = 1 << 20
# Timestamps on common file systems tick every few ms (a jiffy); 2 s covers FAT and NFS as well.
RACY_SECONDS = 2.0


def cache_dir() -> Path:
    return Path(os.environ.get("AFFECTFLOW_CACHE_DIR", Path.home() / ".cache" / "affectflow"))


@dataclass(frozen=True)
class FileEntry:
    """One file a source reads. ``digest`` is None when the file is missing or unreadable."""

    relpath: str
    size: int | None
    digest: str | None

    def to_json(self) -> list:
        return [self.relpath, self.size, self.digest]


def file_digest(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


class StatCache:
    """SQLite table of digests keyed by stat identity. Safe across threads and processes."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "stat-cache.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER,"
                " mtime_ns INTEGER, ino INTEGER, digest TEXT)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            self._local.conn = conn
        return conn

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        row = (
            self._conn()
            .execute(
                "SELECT digest FROM digests WHERE path=? AND size=? AND mtime_ns=? AND ino=?",
                (path, st.st_size, st.st_mtime_ns, st.st_ino),
            )
            .fetchone()
        )
        return row[0] if row else None

    def store_many(self, rows: list[tuple[str, int, int, int, str]]) -> None:
        if rows:
            with self._conn() as conn:
                conn.executemany("INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?)", rows)


def fingerprint_files(
    root: Path, relpaths: Iterable[str], stat_cache: StatCache | None = None, workers: int = 8
) -> list[FileEntry]:
    """Fingerprint ``root/relpath`` for each relpath (which must already be checked to stay in root)."""
    cache = stat_cache or StatCache()
    root = Path(root)
    relpaths = list(relpaths)
    new_rows: list[tuple[str, int, int, int, str]] = []
    lock = threading.Lock()

    # Stat and look up serially (cheap); only cache misses are read, on threads (I/O bound).
    entries: dict[str, FileEntry] = {}
    misses: list[tuple[str, Path, str, os.stat_result]] = []
    for rel in relpaths:
        full = root / rel
        try:
            st = full.stat()
        except OSError:
            entries[rel] = FileEntry(rel, None, None)
            continue
        key = os.path.realpath(full)
        digest = cache.lookup(key, st)
        if digest is None:
            misses.append((rel, full, key, st))
        else:
            entries[rel] = FileEntry(rel, st.st_size, digest)

    def read(miss: tuple[str, Path, str, os.stat_result]) -> FileEntry:
        rel, full, key, st = miss
        try:
            digest = file_digest(full)
        except OSError:
            return FileEntry(rel, st.st_size, None)
        if time.time() - st.st_mtime_ns / 1e9 >= RACY_SECONDS:  # else racily clean: hash it again next time
            with lock:
                new_rows.append((key, st.st_size, st.st_mtime_ns, st.st_ino, digest))
        return FileEntry(rel, st.st_size, digest)

    if misses:
        with ThreadPoolExecutor(workers) as pool:
            for entry in pool.map(read, misses):
                entries[entry.relpath] = entry
    cache.store_many(new_rows)
    return [entries[rel] for rel in relpaths]


def manifest_key(source: str, version: int | str, options: dict, files: list[FileEntry]) -> str:
    """Key of a parsed dataset: parser identity + options + every file's fingerprint."""
    return digest_json(
        {
            "source": source,
            "version": version,
            "options": options,
            "files": sorted(e.to_json() for e in files),
        }
    )
