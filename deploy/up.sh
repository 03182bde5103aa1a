#!/usr/bin/env bash
# Bring the whole system up on this machine: bootstrap, migrate, seed, then the web processes (uvicorn) + Celery worker
# + beat + Flower under honcho (deploy/Procfile). Ctrl-C stops all of them (exit status 0).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh requirements.txt
mkdir -p var
# Development: DEBUG is off unless set. SECRET_KEY, when not set, is generated once into
# var/secret_key (flashbid/runtime.py) and shared by every process started below.
export DEBUG=${DEBUG:-true}
# One metrics directory for every process of this host (core/metrics.py); stale files from an
# earlier run would add dead processes' counters, so it starts empty.
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/prometheus"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
.venv/bin/python manage.py seed_demo
WEB="http://${FLASHBID_BIND:-127.0.0.1}:${FLASHBID_WEB_PORT:-8000}"
cat <<URLS

FlashBid is starting:
  Bidder pages    $WEB/            (log in as bidder001 … bidder050, password flashbid-demo)
  API docs        $WEB/api/docs
  Django admin    $WEB/admin/
  Health / ready  $WEB/healthz  $WEB/readyz
  Metrics         $WEB/metrics
  WebSocket       ${WEB/http/ws}/ws/sessions/<session id>/
  Flower          http://${FLASHBID_BIND:-127.0.0.1}:${FLASHBID_FLOWER_PORT:-5555}/
  Result mail     printed in the worker.1 lines below unless EMAIL_URL says otherwise
Watch a board move: open the live session's page, then in another shell
  .venv/bin/python manage.py simulate_bidders --url $WEB --duration 60 --rate 20
Ctrl-C stops everything.

URLS

# Ctrl-C reaches honcho and its processes from the terminal; a SIGTERM sent to this script is passed
# on to honcho. Either way honcho stops every process (SIGTERM, SIGKILL after 5 s) and exits
# 130/143: a stop that was asked for, which ends this script with 0 (make would otherwise say
# "Error 130"). Any other exit of honcho (a process died by itself) is passed on as it is.
.venv/bin/honcho -f deploy/Procfile -d . start &
honcho=$!
trap 'kill -TERM "$honcho" 2>/dev/null || true' TERM
trap ':' INT
status=0
while true; do
  status=0
  wait "$honcho" || status=$?
  kill -0 "$honcho" 2>/dev/null || break  # reaped: $status is honcho's own; else a trap cut the wait short
done
case "$status" in
  130|143) echo "FlashBid stopped."; exit 0 ;;
  *) exit "$status" ;;
esac
