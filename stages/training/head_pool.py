"""Heads trained side by side in processes: the pool a sweep of many small heads (LaScA's grid) uses.

A small head (LaScA's learner is at most 1,280 → 250 → 125 → 1 on batches of 200) keeps two CPU
cores about half busy, and the per-operation overhead dominates the smallest. The heads of a sweep
are independent keyed steps, so separate single-threaded processes train them side by side: on 2
cores the paper's LaScA grid trains 1.74× faster than in one two-threaded process (bench/lasca.py),
and a machine with more cores gains more. A pool costs a few seconds to start (each process imports
torch), so it is used when every process gets at least ``HEADS_PER_WORKER`` heads.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from featurestore import FeatureStore

HEADS_PER_WORKER = 16


def pool_workers(pending: int, workers: int | None = None) -> int:
    """The processes to train ``pending`` heads in: ``workers`` when given (≥ 1), else one per CPU
    core this process may use, but only as many as get ``HEADS_PER_WORKER`` heads each (one in a
    daemonic process, e.g. a Dask worker's task, which may not start processes)."""
    if workers is not None:
        if workers < 1:
            raise ValueError(f"workers {workers}: at least 1")
        return workers
    if multiprocessing.current_process().daemon:
        return 1
    # the cores this process may run on (Linux); every core where that is not known (macOS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, pending // HEADS_PER_WORKER))


def map_in_processes(store: FeatureStore, fn: Callable[[FeatureStore, Any], Any], items: list[Any], n: int) -> list:
    """``[fn(store, item) for item in items]`` in ``n`` spawned processes, in order; ``fn`` is a
    module-level function (or a partial of one) so the processes can import it. A failing item stops
    the pool and raises: the keyed steps already done are stored, and a rerun trains only the rest."""
    pool = process_pool(store, n)
    try:
        futures = [pool.submit(_call_in_worker, fn, item) for item in items]
        return [future.result() for future in futures]
    except BrokenProcessPool as err:
        raise RuntimeError(
            f"the training processes stopped abruptly ({err}). They are spawned: a script that starts "
            "them must do so under `if __name__ == '__main__':`; or pass workers=1 (--workers 1)"
        ) from err
    finally:
        pool.shutdown(cancel_futures=True)


def process_pool(store: FeatureStore, n: int) -> ProcessPoolExecutor:
    """``n`` spawned processes training into ``store``, this process's torch threads shared among
    them; each leaves when this process dies (killed too), so a killed sweep leaves none behind."""
    threads = max(1, torch.get_num_threads() // n)
    context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools mid-use
    return ProcessPoolExecutor(n, context, _start_worker, (store.url, store.storage_options, threads, os.getpid()))


_WORKER_STORE: list[FeatureStore] = []  # the store a pool process trains into, opened once


def _start_worker(url: str, storage_options: dict[str, Any], threads: int, parent: int | None = None) -> None:
    torch.set_num_threads(threads)
    _WORKER_STORE.append(FeatureStore(url, storage_options))
    parent = os.getppid() if parent is None else parent
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="exit-with-parent").start()


def _exit_with_parent(parent: int) -> None:
    """A pool process whose parent is gone would wait for work forever (it holds its work queue's
    write end itself, so it never reads an end of file): it leaves, mid-head too — that step's
    group stays incomplete and the next run trains it again."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _call_in_worker(fn: Callable[[FeatureStore, Any], Any], item: Any) -> Any:
    return fn(_WORKER_STORE[0], item)
