#!/usr/bin/env bash
# FlashBid's multi-process system on this machine, wired as deploy/docker-compose.yml is: nginx in front of
# two daphne web processes; PgBouncer (transaction pooling) in front of PostgreSQL; a Redis of its
# own from deploy/redis.conf (AOF); one Celery worker, exactly one beat, Flower. Debian's nginx and
# pgbouncer run as the current user (PgBouncer refuses root and drops to nobody) with their configs
# rendered from deploy/nginx.conf and deploy/pgbouncer.ini into the runtime dir; the ports are not
# `make up`'s, so both can run side by side.
#
#   deploy/scale-out.sh [up]   bootstrap, migrate, collectstatic, start everything, print the URLs,
#                              stay in the foreground; Ctrl-C stops everything (in order)
#   deploy/scale-out.sh stop   stop a running scale-out from anywhere (pid files in the runtime dir)
#   deploy/scale-out.sh status what runs
#   deploy/scale-out.sh render render nginx.conf and pgbouncer.ini into the runtime dir, start nothing
#
# Environment (default):
#   SCALE_OUT_DIR (var/scale-out)      runtime dir: configs, pids/, logs/, Redis data, metrics
#   SCALE_OUT_BIND (127.0.0.1)         address every listener binds to
#   SCALE_OUT_HTTP_PORT (8080)         nginx
#   SCALE_OUT_WEB_PORTS ("8101 8102")  one daphne per port
#   SCALE_OUT_PGBOUNCER_PORT (6432)    SCALE_OUT_REDIS_PORT (6390)    SCALE_OUT_FLOWER_PORT (5556)
#   SCALE_OUT_WORKER_CONCURRENCY (2)   SCALE_OUT_BOOTSTRAP (1; 0 skips deploy/bootstrap.sh)
#   DATABASE_URL (postgres://postgres@127.0.0.1:5432/flashbid): PostgreSQL itself. Migrations use
#     it directly; every process reaches it through PgBouncer (DATABASE_POOL=false).
#   REDIS_URL / CELERY_BROKER_URL: always this scale-out's own Redis (whatever is set).
#   DEBUG (false), SECRET_KEY and FLOWER_BASIC_AUTH (generated once into the runtime dir when not
#   set), ALLOWED_HOSTS (localhost,127.0.0.1,[::1]), STATIC_ROOT (staticfiles/); every other
#   FlashBid variable (PERSIST_INTERVAL_SECONDS, ...) passes through to the processes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/sbin:/sbin"  # Debian's nginx and pgbouncer

PY=${SCALE_OUT_PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
RUN_DIR=$(realpath -m "${SCALE_OUT_DIR:-$ROOT/var/scale-out}")
BIND=${SCALE_OUT_BIND:-127.0.0.1}
HTTP_PORT=${SCALE_OUT_HTTP_PORT:-8080}
read -r -a WEB_PORTS <<< "${SCALE_OUT_WEB_PORTS:-8101 8102}"
PGBOUNCER_PORT=${SCALE_OUT_PGBOUNCER_PORT:-6432}
REDIS_PORT=${SCALE_OUT_REDIS_PORT:-6390}
FLOWER_PORT=${SCALE_OUT_FLOWER_PORT:-5556}
PID_DIR=$RUN_DIR/pids
LOG_DIR=$RUN_DIR/logs
MAIN_PID_FILE=$RUN_DIR/scale-out.pid

WEB_NAMES=()
for i in "${!WEB_PORTS[@]}"; do WEB_NAMES+=("web$((i + 1))"); done
# Start order; stopping goes in reverse (nginx first, Redis last).
ORDER=(redis pgbouncer "${WEB_NAMES[@]}" worker beat flower nginx)

say() { printf '==> %s\n' "$*"; }
fail() { printf 'scale-out: %s\n' "$*" >&2; exit 1; }

# A process is alive unless it is gone or a zombie (exited, not yet reaped by its parent).
pid_alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# Every service runs in a session of its own (setsid), led by the pid in its pid file: alive while
# any process of that session is.
session_alive() {
  local stats
  stats=$(ps -o stat= --sid "$1" 2>/dev/null) || return 1
  grep -qv '^Z' <<< "$stats"
}

pid_of() { cat "$PID_DIR/$1.pid" 2>/dev/null; }

running() {
  local pid
  pid=$(pid_of "$1") && [ -n "$pid" ] && session_alive "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

redis_ping() { [ "$(redis-cli -h "$BIND" -p "$REDIS_PORT" ping 2> /dev/null)" = PONG ]; }

# start NAME COMMAND...: in its own session (so a Ctrl-C reaches only this script, which stops
# everything in order), stdout and stderr to logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" > "$LOG_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$PID_DIR/$name.pid"
}

# wait_ready SECONDS NAME CHECK...: until CHECK succeeds; fails (showing the log) if NAME exits or
# the time runs out.
wait_ready() {
  local deadline=$((SECONDS + $1)) name=$2
  shift 2
  until "$@" > /dev/null 2>&1; do
    if ! running "$name"; then
      tail -n 40 "$LOG_DIR/$name.log" >&2 || true
      fail "$name exited while starting (log: $LOG_DIR/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 40 "$LOG_DIR/$name.log" >&2 || true
      fail "$name not ready within $1 s (log: $LOG_DIR/$name.log)"
    fi
    sleep 0.2
  done
}

# SIGTERM to the service's leader (nginx, daphne, celery, redis, pgbouncer each stop their own
# children), SIGKILL to its whole session if it has not ended within the grace period.
stop_one() {
  local name=$1 pid grace=10 deadline
  pid=$(pid_of "$name") || return 0
  if [ -n "$pid" ] && session_alive "$pid"; then
    [ "$name" = worker ] && grace=30  # a task in flight finishes (warm shutdown)
    kill -TERM "$pid" 2> /dev/null || true
    deadline=$((SECONDS + grace))
    while session_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if session_alive "$pid"; then
      printf 'scale-out: %s did not stop within %s s; killing it\n' "$name" "$grace" >&2
      kill -KILL -- "-$pid" 2> /dev/null || true
    fi
  fi
  rm -f "$PID_DIR/$name.pid"
}

stop_all() {
  local i
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do stop_one "${ORDER[i]}"; done
}

database_settings() {
  # PostgreSQL as given (migrations) and the same database through PgBouncer (everything else).
  eval "$("$PY" - "$BIND" "$PGBOUNCER_PORT" << 'EOF'
import os, shlex, sys
from urllib.parse import quote

import dj_database_url

bind, port = sys.argv[1:]
direct = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/flashbid"
db = dj_database_url.parse(direct)
user, password = db["USER"] or "postgres", db["PASSWORD"] or ""
auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
values = {
    "DIRECT_DATABASE_URL": direct,
    "POOLED_DATABASE_URL": f"postgres://{auth}@{bind}:{port}/{db['NAME']}",
    "SHOWN_DATABASE_URL": f"postgres://{quote(user, safe='')}@{bind}:{port}/{db['NAME']}",
    "DB_HOST": db["HOST"] or "127.0.0.1",
    "DB_PORT": str(db["PORT"] or 5432),
    "DB_USER": user,
    "DB_PASSWORD": password,
}
for name, value in values.items():
    print(f"{name}={shlex.quote(value)}")
EOF
)"
}

nginx_environment() {
  local servers="" port
  for port in "${WEB_PORTS[@]}"; do servers+="server $BIND:$port max_fails=1 fail_timeout=5s; "; done
  export NGINX_LISTEN="$BIND:$HTTP_PORT" NGINX_UPSTREAM_SERVERS="$servers" NGINX_RESOLVER=127.0.0.1
  NGINX_USER="$(id -un) $(id -gn)"
  export NGINX_STATIC_ROOT="${STATIC_ROOT:-$ROOT/staticfiles}" NGINX_USER
  export NGINX_RUNTIME_DIR="$RUN_DIR/nginx" NGINX_LOG_DIR="$LOG_DIR/nginx"
}

pgbouncer_environment() {
  export PGBOUNCER_CONF_DIR="$RUN_DIR/pgbouncer" PGBOUNCER_LISTEN_ADDR="$BIND"
  export PGBOUNCER_LISTEN_PORT="$PGBOUNCER_PORT" PGBOUNCER_DB_HOST="$DB_HOST" PGBOUNCER_DB_PORT="$DB_PORT"
  export PGBOUNCER_AUTH_USER="$DB_USER" PGBOUNCER_AUTH_PASSWORD="$DB_PASSWORD"
  # A PostgreSQL that trusts local users (no password in DATABASE_URL): PgBouncer trusts them too.
  if [ -n "$DB_PASSWORD" ]; then
    export PGBOUNCER_AUTH_TYPE=scram-sha-256
  else
    export PGBOUNCER_AUTH_TYPE=trust
  fi
}

# A value kept in the runtime dir (0600) across runs: made once by the given Python expression.
generated() {
  local file=$RUN_DIR/$1
  if [ ! -s "$file" ]; then
    (umask 077 && "$PY" -c "import secrets; print($2)" > "$file")
  fi
  cat "$file"
}

cmd_render() {
  mkdir -p "$RUN_DIR/nginx" "$RUN_DIR/pgbouncer" "$LOG_DIR/nginx"
  database_settings
  nginx_environment
  pgbouncer_environment
  export PGBOUNCER_AUTH_FILE="$PGBOUNCER_CONF_DIR/userlist.txt"
  sh deploy/render.sh deploy/nginx.conf "$RUN_DIR/nginx/nginx.conf"
  sh deploy/render.sh deploy/pgbouncer.ini "$RUN_DIR/pgbouncer/pgbouncer.ini"
  echo "$RUN_DIR/nginx/nginx.conf"
  echo "$RUN_DIR/pgbouncer/pgbouncer.ini"
}

cmd_status() {
  local name pid any=1
  for name in "${ORDER[@]}"; do
    pid=$(pid_of "$name") || continue
    any=0
    if session_alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
  done
  [ $any -eq 0 ] || echo "not running (no pid files in $PID_DIR)"
}

cmd_stop() {
  local main deadline
  main=$(cat "$MAIN_PID_FILE" 2> /dev/null || true)
  if [ -n "$main" ] && pid_alive "$main"; then
    # The foreground script stops everything in order and exits.
    kill -TERM "$main" 2> /dev/null || true
    deadline=$((SECONDS + 90))
    while pid_alive "$main" && ((SECONDS < deadline)); do sleep 0.2; done
  fi
  stop_all  # whatever is left (the foreground script was killed, or is stuck)
  rm -f "$MAIN_PID_FILE"
  echo "scale-out stopped"
}

cmd_up() {
  local name port
  for name in "${ORDER[@]}"; do
    if running "$name"; then fail "already running ($name); stop it first: deploy/scale-out.sh stop"; fi
  done
  for port in "$HTTP_PORT" "${WEB_PORTS[@]}" "$PGBOUNCER_PORT" "$REDIS_PORT" "$FLOWER_PORT"; do
    if port_open "$BIND" "$port"; then fail "port $BIND:$port is in use (ports: SCALE_OUT_*_PORT)"; fi
  done
  if [ "${SCALE_OUT_BOOTSTRAP:-1}" != 0 ]; then
    deploy/bootstrap.sh requirements.txt
    command -v nginx > /dev/null || deploy/debian-packages.sh nginx-light
    command -v pgbouncer > /dev/null || deploy/debian-packages.sh pgbouncer
  fi

  mkdir -p "$PID_DIR" "$LOG_DIR/nginx" "$RUN_DIR/redis" "$RUN_DIR/nginx"
  echo $$ > "$MAIN_PID_FILE"
  trap 'trap - EXIT; stop_all; rm -f "$MAIN_PID_FILE"' EXIT
  trap 'echo; say "stopping"; exit 0' INT TERM

  database_settings
  nginx_environment
  pgbouncer_environment
  export DJANGO_SETTINGS_MODULE=flashbid.settings PYTHONUNBUFFERED=1
  export DEBUG=${DEBUG:-false}
  export ALLOWED_HOSTS=${ALLOWED_HOSTS:-localhost,127.0.0.1,[::1]}
  export STATIC_ROOT=$NGINX_STATIC_ROOT
  export REDIS_URL="redis://$BIND:$REDIS_PORT/0"
  export CELERY_BROKER_URL=$REDIS_URL
  export DATABASE_URL=$POOLED_DATABASE_URL DATABASE_POOL=false
  if [ -z "${SECRET_KEY:-}" ]; then SECRET_KEY=$(generated secret_key 'secrets.token_urlsafe(50)'); fi
  export SECRET_KEY
  local flower_auth_note="FLOWER_BASIC_AUTH from the environment"
  if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
    FLOWER_BASIC_AUTH=$(generated flower_basic_auth '"admin:" + secrets.token_urlsafe(18)')
    flower_auth_note="user:password in $RUN_DIR/flower_basic_auth"
  fi
  export FLOWER_BASIC_AUTH

  say "Redis :$REDIS_PORT (deploy/redis.conf, AOF; data in $RUN_DIR/redis)"
  start redis redis-server "$ROOT/deploy/redis.conf" --port "$REDIS_PORT" --bind "$BIND" \
    --dir "$RUN_DIR/redis" --daemonize no --logfile ""
  wait_ready 30 redis redis_ping

  say "PgBouncer :$PGBOUNCER_PORT (transaction pooling) -> PostgreSQL $DB_HOST:$DB_PORT"
  start pgbouncer sh deploy/pgbouncer-start.sh
  wait_ready 20 pgbouncer port_open "$BIND" "$PGBOUNCER_PORT"

  say "migrate (straight to PostgreSQL) and collectstatic"
  DATABASE_URL=$DIRECT_DATABASE_URL "$PY" manage.py migrate --noinput -v0 > "$LOG_DIR/migrate.log" 2>&1 \
    || { tail -n 40 "$LOG_DIR/migrate.log" >&2; fail "migrate failed (log: $LOG_DIR/migrate.log)"; }
  "$PY" manage.py collectstatic --noinput -v0 > "$LOG_DIR/collectstatic.log" 2>&1 \
    || { tail -n 40 "$LOG_DIR/collectstatic.log" >&2; fail "collectstatic failed"; }

  # One metrics directory for the long-running processes (core/metrics.py), empty at each start.
  export PROMETHEUS_MULTIPROC_DIR=$RUN_DIR/prometheus
  rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

  say "web: daphne on ${WEB_PORTS[*]}; Celery worker, beat, Flower"
  for i in "${!WEB_PORTS[@]}"; do
    # --proxy-headers: the client address is nginx's X-Real-IP (login rate limits are per client).
    start "${WEB_NAMES[i]}" "$BIN/daphne" -b "$BIND" -p "${WEB_PORTS[i]}" --proxy-headers \
      --proxy-headers-host X-Real-IP flashbid.asgi:application
  done
  start worker "$BIN/celery" -A flashbid worker --loglevel=INFO -E \
    --concurrency="${SCALE_OUT_WORKER_CONCURRENCY:-2}" -n "worker@%h"
  start beat "$BIN/celery" -A flashbid beat --loglevel=INFO -s "$RUN_DIR/celerybeat-schedule"
  start flower "$BIN/celery" -A flashbid flower --conf=deploy/flowerconfig.py --address="$BIND" \
    --port="$FLOWER_PORT"
  for i in "${!WEB_PORTS[@]}"; do wait_ready 60 "${WEB_NAMES[i]}" port_open "$BIND" "${WEB_PORTS[i]}"; done
  wait_ready 60 worker grep -q " ready" "$LOG_DIR/worker.log"
  wait_ready 60 beat grep -q "beat: Starting" "$LOG_DIR/beat.log"
  wait_ready 60 flower port_open "$BIND" "$FLOWER_PORT"

  say "nginx :$HTTP_PORT"
  sh deploy/render.sh deploy/nginx.conf "$RUN_DIR/nginx/nginx.conf"
  nginx -q -t -c "$RUN_DIR/nginx/nginx.conf" -e "$LOG_DIR/nginx/error.log" > "$LOG_DIR/nginx.log" 2>&1 \
    || { cat "$LOG_DIR/nginx.log" >&2; fail "nginx config test failed"; }
  start nginx nginx -c "$RUN_DIR/nginx/nginx.conf" -e "$LOG_DIR/nginx/error.log" -g "daemon off;"
  wait_ready 20 nginx port_open "$BIND" "$HTTP_PORT"

  local web="http://$BIND:$HTTP_PORT" upstreams=""
  for port in "${WEB_PORTS[@]}"; do upstreams+=" $BIND:$port"; done
  cat << URLS

FlashBid scale-out is up (runtime dir $RUN_DIR):
  Site and API     $web/                (nginx -> daphne$upstreams)
  API docs         $web/api/docs
  Django admin     $web/admin/
  Health / ready   $web/healthz  $web/readyz
  Metrics          $web/metrics
  WebSocket        ws://$BIND:$HTTP_PORT/ws/sessions/<session id>/
  Flower           http://$BIND:$FLOWER_PORT/   ($flower_auth_note)
  PgBouncer        $SHOWN_DATABASE_URL   (console: psql -h $BIND -p $PGBOUNCER_PORT -U $DB_USER pgbouncer)
  Redis            redis://$BIND:$REDIS_PORT/0   (AOF; data in $RUN_DIR/redis)
  Logs             $LOG_DIR/
Ctrl-C here, or deploy/scale-out.sh stop, stops everything.
FlashBid scale-out ready.
URLS

  # Stay until told to stop, or until a process ends (then stop the others and fail).
  while true; do
    wait -n 2> /dev/null || sleep 1
    for name in "${ORDER[@]}"; do
      if ! running "$name"; then
        tail -n 20 "$LOG_DIR/$name.log" >&2 || true
        fail "$name exited (log: $LOG_DIR/$name.log); stopping everything"
      fi
    done
  done
}

case "${1:-up}" in
  up) cmd_up ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  render) cmd_render ;;
  *) fail "usage: $0 [up|stop|status|render]" ;;
esac
