"""Keep large buffers in the process: glibc's allocator, set once per process that runs models.

By default glibc serves every allocation above a dynamic threshold (128 KiB, rising to at most
32 MiB) with its own ``mmap`` and gives it back to the kernel on ``free``, and trims the heap top
above 128 KiB. An encoder's forward pass allocates activation buffers of several MiB each and
frees them at the end, so every batch maps, faults in and unmaps them again: on 2 CPUs,
EfficientNet-Lite0 spent 26 s of system CPU time for 42 s of user time, at half the speed it
runs with those buffers kept (``bench/extract.py`` measures both in one run). Raising both
thresholds to 1 GiB keeps freed buffers in the heap for the next batch; the cost is that up to
that much freed memory stays with the process instead of going back to the system.

The thresholds alone do not reach a model run on a worker thread (the flow's chunk tasks): each
thread gets its own arena of 64 MiB heaps, and a buffer larger than that (EfficientNet-Lite0's
first expanded block at batch 32 is 147 MiB) is always mapped on its own, and emptied heaps are
unmapped. So the allocator is also held to one arena (``M_ARENA_MAX`` = 1): on a worker thread
that took the encoder from 35 to 58 img/s and its system time from 7.3 to 0.05 s per 320 images.
Threads then share the arena's lock; the decode threads' allocations are few and small.
An arena is chosen when a thread first allocates, so this has to happen at the process's start.

``keep_large_buffers()`` applies it with ``mallopt`` in this process and exports glibc's own
variables (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_ARENA_MAX``) so that
processes started from it (Dask workers, subprocesses) start with it too. ``AFFECTFLOW_MALLOC=system``
turns it off; ``MALLOC_*`` variables already set are left as they are (the deployments in
prefect.yaml set them for their flow-run processes). Dask workers started elsewhere get it with
``dask worker --preload stages.extraction.allocator``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

OFF_SWITCH = "AFFECTFLOW_MALLOC"  # "system": glibc's defaults
THRESHOLD = 1 << 30
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # malloc.h
# glibc's own variables for the same settings, read when a process starts
SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, THRESHOLD),
    "MALLOC_ARENA_MAX": (M_ARENA_MAX, 1),
}


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``mallinfo2``), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "mallinfo2")):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    return libc


_in_force: str | None = None  # what keep_large_buffers decided in this process


def keep_large_buffers(dask_worker: bool = False) -> str:
    """Apply the setting once per process; returns what is in force: ``tuned``, ``system`` (the
    off-switch), ``environment`` (other ``MALLOC_*`` values the process started with, a user's) or
    ``unsupported`` (not glibc). In a Dask worker the nanny's own default (``MALLOC_TRIM_THRESHOLD_``
    65536, to hand memory back) is not a user's choice, so it is overridden."""
    global _in_force
    if _in_force is None:
        _in_force = _apply(dask_worker)
    return _in_force


def environment() -> dict[str, str]:
    """The variables that give a new process the setting from its start ({} when switched off)."""
    return {} if switched_off() else {variable: str(value) for variable, (_, value) in SETTINGS.items()}


def switched_off() -> bool:
    return os.environ.get(OFF_SWITCH, "").lower() == "system"


def _apply(dask_worker: bool) -> str:
    if switched_off():
        return "system"
    ours = environment()
    preset = {v: os.environ[v] for v in SETTINGS if v in os.environ}
    if preset and preset != ours and not dask_worker:
        return "environment"
    libc = _glibc()
    if libc is None:
        return "unsupported"
    if not all([libc.mallopt(option, value) for option, value in SETTINGS.values()]):
        return "unsupported"
    os.environ.update(ours)  # children start with it (glibc reads these at its start)
    return "tuned"


def large_buffers_are_mapped(size: int = 16 << 20) -> bool | None:
    """Probe: does a ``size``-byte allocation get its own mapping (glibc's default) rather than come
    from the heap? None where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    before = libc.mallinfo2().hblkhd
    pointer = libc.malloc(size)
    try:
        return libc.mallinfo2().hblkhd >= before + size
    finally:
        libc.free(pointer)


def status() -> dict[str, object]:
    """What ``affectflow info`` and the tests read back in a process."""
    return {
        "setting": _in_force or "not applied",
        "large_buffers_mapped": large_buffers_are_mapped(),
        "off_switch": f"{OFF_SWITCH}=system",
    }


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload hook
    """``dask worker --preload stages.extraction.allocator``: set it in the worker process at its start."""
    keep_large_buffers(dask_worker=True)
