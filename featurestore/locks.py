"""One lock per step key, so two runs of the same step never interleave.

* Local stores use an OS file lock (``filelock``): the kernel drops it when the holder dies.
* Object stores (``s3://`` …) use a lease: numbered lease objects created with a conditional put
  (``If-None-Match: *``), so exactly one contender wins each generation. The holder renews its
  lease in a background thread; a lease not renewed within ``ttl`` seconds (a killed holder) may be
  superseded by the next generation. A holder that finds a newer generation has lost the lease and
  says so when it releases.

Chunk writes are idempotent (same key, same bytes), so even a lost lease cannot corrupt a group;
the lock exists to avoid doing the same work twice.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import filelock
import fsspec

LOCK_DIR = ".affectflow-locks"


class LockTimeout(TimeoutError):
    pass


class LeaseLost(RuntimeError):
    pass


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLock:
    """Lease on an fsspec filesystem whose ``pipe_file(mode="create")`` is atomic (S3, local)."""

    _NAME = re.compile(r"lease-(\d{10})\.json$")

    def __init__(
        self, fs: fsspec.AbstractFileSystem, directory: str, ttl: float = 60.0, clock: Callable[[], float] = time.time
    ):
        self.fs = fs
        self.directory = directory.rstrip("/")
        self.ttl = ttl
        self.clock = clock  # wall-clock seconds; leases compare expiry times written by other hosts
        self.owner = _owner()
        self.generation: int | None = None
        self.lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _path(self, gen: int) -> str:
        return f"{self.directory}/lease-{gen:010d}.json"

    def _generations(self) -> list[int]:
        self.fs.invalidate_cache(self.directory)
        try:
            names = self.fs.ls(self.directory, detail=False)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := self._NAME.search(n)))

    def _read(self, gen: int) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self._path(gen)))
        except FileNotFoundError:
            return None

    def _body(self, released: bool = False) -> bytes:
        return json.dumps({"owner": self.owner, "expires_at": self.clock() + self.ttl, "released": released}).encode()

    def holder(self) -> dict | None:
        gens = self._generations()
        return self._read(gens[-1]) if gens else None

    def try_acquire(self) -> bool:
        gens = self._generations()
        latest = gens[-1] if gens else 0
        if latest:
            lease = self._read(latest)
            if lease and not lease.get("released") and lease["expires_at"] > self.clock():
                return False
        try:
            self.fs.pipe_file(self._path(latest + 1), self._body(), mode="create")
        except FileExistsError:
            return False
        self.generation = latest + 1
        for old in gens[:-1]:  # keep the directory small; the latest stays as the fence
            self.fs.rm_file(self._path(old))
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, daemon=True)
        self._renewer.start()
        return True

    def renew(self) -> bool:
        """Extend the lease by ``ttl`` from now; False (and ``lost``) if a newer generation exists."""
        if self._generations()[-1:] != [self.generation]:
            self.lost = True
            return False
        self.fs.pipe_file(self._path(self.generation), self._body())
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.renew():
                return

    def acquire(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.1
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise LockTimeout(f"step lock {self.directory} is held by {self.holder()}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def release(self) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join()
        if self.generation is not None and self._generations()[-1:] != [self.generation]:
            self.lost = True
        if self.generation is not None and not self.lost:
            self.fs.pipe_file(self._path(self.generation), self._body(released=True))
        lost, self.generation = self.lost, None
        if lost:
            raise LeaseLost(f"lease {self.directory} was superseded while held (renewal too slow?)")


LEASE_TTL_VARIABLE = "AFFECTFLOW_LEASE_TTL"


def lease_ttl() -> float:
    """Seconds an object store's step lease lives unrenewed: how long a new run waits to take over
    the steps of a killed one. 60 unless ``AFFECTFLOW_LEASE_TTL`` says otherwise; the holder renews
    every third of it, so a short lease costs more renewals and a slow store may lose it."""
    value = os.environ.get(LEASE_TTL_VARIABLE, "60")
    try:
        ttl = float(value)
    except ValueError:
        ttl = 0.0
    if not ttl > 0:
        raise ValueError(f"{LEASE_TTL_VARIABLE}={value!r}: a number of seconds above 0")
    return ttl


@contextmanager
def step_lock(fs: fsspec.AbstractFileSystem, root: str, key: str, timeout: float = 3600, ttl: float | None = None):
    """Hold the lock of step ``key`` in the store rooted at ``root`` on ``fs`` (``ttl``: the lease's on
    an object store, default :func:`lease_ttl`)."""
    directory = f"{root.rstrip('/')}/{LOCK_DIR}/{key}"
    if "file" in fs.protocol or "local" in fs.protocol:
        Path(directory).mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(f"{directory}/lock", timeout=timeout)
        try:
            with lock:
                yield
        except filelock.Timeout as err:
            raise LockTimeout(f"step lock {directory} still held after {timeout}s") from err
        return
    lease = LeaseLock(fs, directory, ttl=lease_ttl() if ttl is None else ttl)
    lease.acquire(timeout)
    try:
        yield
    finally:
        lease.release()
