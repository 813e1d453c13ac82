"""Prefect flows, deployments and the CLI."""

import os

# Without a server, each command starts a temporary Prefect server. On a loaded 2-core machine it
# can take longer than Prefect's default 20 s to answer (seen beside a starting Dask worker). Set
# here, before Prefect is imported, so every entry point (CLI, make, tests, benches) gets the same
# wait; a user's own setting wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
