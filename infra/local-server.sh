#!/usr/bin/env bash
# Start a local Prefect server and a process worker for the deployments in prefect.yaml.
# Run from the repository root. Stop both with: kill $(cat .prefect-local/*.pid)
set -euo pipefail
PORT="${PREFECT_PORT:-4200}"
STATE=.prefect-local
mkdir -p "$STATE"
export PREFECT_API_URL="http://127.0.0.1:${PORT}/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
prefect server start --host 127.0.0.1 --port "$PORT" >"$STATE/server.log" 2>&1 &
echo $! >"$STATE/server.pid"
until curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1; do sleep 1; done
prefect work-pool inspect affectflow-process >/dev/null 2>&1 || prefect work-pool create affectflow-process --type process
prefect --no-prompt deploy --all
prefect worker start --pool affectflow-process >"$STATE/worker.log" 2>&1 &
echo $! >"$STATE/worker.pid"
echo "server: http://127.0.0.1:${PORT}  (export PREFECT_API_URL=$PREFECT_API_URL)"
echo "run:    prefect deployment run extract-features/nightly-demo"
