"""``affectflow`` command line, a module per command family: extract, demo, heads (train, lasca,
predict, evaluate), audits (report, audit), store (results, ls, export/import, listings)."""

from __future__ import annotations

from importlib import import_module

from flows.cli.common import app

# each family registers its commands on the one app where they are defined, in --help's order
for _family in ("extract", "heads", "audits", "store", "demo"):
    import_module(f"flows.cli.{_family}")

__all__ = ["app", "main"]


def main() -> None:
    from stages.extraction.allocator import keep_large_buffers

    # before anything allocates: see stages/extraction/allocator.py (AFFECTFLOW_MALLOC=system: off)
    keep_large_buffers()
    app(prog_name="affectflow")
