#!/usr/bin/env bash
# A local Prefect server and a process worker for the deployments in prefect.yaml.
#   bash infra/local-server.sh start    server on 127.0.0.1:${PREFECT_PORT:-4200}, work pool, deploy --all, worker
#   bash infra/local-server.sh stop     stop the worker, then the server (SIGTERM, then SIGKILL after 20 s)
#   bash infra/local-server.sh status
# Run from the repository root; PIDs and logs live in ${AFFECTFLOW_PREFECT_STATE:-.prefect-local}.
# It uses the `prefect` on PATH, or the repository's .venv (what `make install` makes) when that has one.
set -euo pipefail
if [[ -x .venv/bin/prefect ]] && ! command -v prefect >/dev/null; then export PATH="$PWD/.venv/bin:$PATH"; fi
PORT="${PREFECT_PORT:-4200}"
STATE="${AFFECTFLOW_PREFECT_STATE:-.prefect-local}"
export PREFECT_API_URL="http://127.0.0.1:${PORT}/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false

alive() { [[ -f "$STATE/$1.pid" ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

stop_one() {
  local name=$1 pid
  alive "$name" || { rm -f "$STATE/$name.pid"; return 0; }
  pid=$(cat "$STATE/$name.pid")
  kill -TERM "$pid"
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name ($pid) did not stop on SIGTERM within 20 s: SIGKILL" >&2
    kill -KILL "$pid"
  fi
  rm -f "$STATE/$name.pid"
  echo "stopped $name ($pid)"
}

case "${1:-start}" in
  start)
    mkdir -p "$STATE"
    if alive server || alive worker; then echo "already running (bash $0 stop first)" >&2; exit 1; fi
    # setsid: each runs in its own session, so a signal to its PID reaches it (a background job of a
    # non-interactive shell would ignore SIGINT) and nothing of this shell's terminal reaches them
    setsid prefect server start --host 127.0.0.1 --port "$PORT" >"$STATE/server.log" 2>&1 &
    echo $! >"$STATE/server.pid"
    for _ in $(seq 120); do curl -fsS "$PREFECT_API_URL/health" >/dev/null 2>&1 && break; sleep 1; done
    curl -fsS "$PREFECT_API_URL/health" >/dev/null || { echo "server did not start: $STATE/server.log" >&2; exit 1; }
    # the pool read through the REST API (one Prefect start fewer than `prefect work-pool inspect`)
    curl -fsS "$PREFECT_API_URL/work_pools/affectflow-process" >/dev/null 2>&1 ||
      prefect work-pool create affectflow-process --type process
    prefect --no-prompt deploy --all
    setsid prefect worker start --pool affectflow-process >"$STATE/worker.log" 2>&1 &
    echo $! >"$STATE/worker.pid"
    echo "server: http://127.0.0.1:${PORT}  (export PREFECT_API_URL=$PREFECT_API_URL)"
    echo "run:    prefect deployment run extract-features/nightly-demo --watch"
    echo "stop:   bash $0 stop"
    ;;
  stop)
    stop_one worker
    stop_one server
    ;;
  status)
    for name in server worker; do
      if alive "$name"; then echo "$name: running ($(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
    done
    ;;
  *)
    echo "usage: bash $0 start|stop|status" >&2
    exit 2
    ;;
esac
