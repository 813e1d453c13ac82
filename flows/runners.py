"""Where chunk tasks run: local threads (default), an existing Dask cluster, or a LocalCluster."""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner


def chunk_runner(dask_address: str | None = None, dask_workers: int = 0, threads: int = 1) -> TaskRunner:
    """Threads by default: one chunk at a time uses every core through torch's own threads.

    ``dask_address`` (``tcp://host:8786``) sends chunks to a running cluster; ``dask_workers > 0``
    starts a temporary LocalCluster of that many single-threaded worker processes.
    """
    if dask_address or dask_workers:
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(dask_workers))
    return ThreadPoolTaskRunner(max_workers=threads)


def local_cluster_kwargs(n_workers: int) -> dict:
    """The temporary LocalCluster: single-threaded worker processes that keep large buffers from
    their start (stages/extraction/allocator.py: the nanny starts them with the variables, over its own
    ``MALLOC_TRIM_THRESHOLD_``, and the preload reports it)."""
    from stages.extraction.allocator import environment

    return {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": True,
        "preload": ["stages.extraction.allocator"],
        "env": environment(),
    }
