#!/usr/bin/env bash
# FlashBid's multi-process system on this machine, wired as deploy/docker-compose.yml is: nginx in front of
# the web processes (HTTPS, a plain-HTTP redirect, an internal server for /readyz and /metrics):
# HTTP to two uvicorns, /ws/ to a uvicorn of its own (docs/PERFORMANCE.md, "The shapes users run"); PgBouncer (transaction pooling, SCRAM, its own admin user) in front of PostgreSQL; a
# Redis of its own from deploy/redis.conf (AOF, a password); one Celery worker, exactly one beat,
# Flower. With SCALE_OUT_REDIS_CLUSTER=1 the engine's state lives on a Redis Cluster of 3 masters
# of its own (the same config, cluster-enabled), and that Redis keeps the broker, the channel layer
# and the cache (docker-compose.cluster.yml's shape). Debian's nginx and pgbouncer run as the current user (PgBouncer refuses root and drops to
# nobody) with their configs rendered from deploy/nginx.conf and deploy/pgbouncer.ini into the
# runtime dir; the ports are not `make up`'s, so both can run side by side.
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
#   SCALE_OUT_HTTPS_PORT (8443)        nginx: the site over HTTPS
#   SCALE_OUT_HTTP_PORT (8080)         nginx: plain HTTP, a redirect to HTTPS only
#   SCALE_OUT_INTERNAL_PORT (8081)     nginx: /readyz, /metrics, /healthz, /nginx-health
#   SCALE_OUT_WEB_PORTS ("8101 8102")  one uvicorn per port: HTTP (pages, API, admin)
#   SCALE_OUT_WS_PORTS ("8111")        one uvicorn per port: the WebSockets (/ws/)
#   SCALE_OUT_PGBOUNCER_PORT (6432)    SCALE_OUT_REDIS_PORT (6390)    SCALE_OUT_FLOWER_PORT (5556)
#   SCALE_OUT_WORKER_CONCURRENCY (2)   SCALE_OUT_BOOTSTRAP (1; 0 skips deploy/bootstrap.sh)
#   SCALE_OUT_REDIS_CLUSTER (0)        1: the engine on a Redis Cluster (REDIS_CLUSTER=true)
#   SCALE_OUT_REDIS_CLUSTER_PORTS ("6391 6392 6393")  its masters (each with its bus port, +10000)
#   SCALE_OUT_TLS_CERT, SCALE_OUT_TLS_KEY  nginx's certificate and key (PEM); unset: a self-signed
#                                      pair made once by deploy/self-signed-cert.sh in <dir>/tls/
#   SCALE_OUT_HSTS_SECONDS (300)       HSTS max-age: short, as HSTS for localhost would also reach
#                                      every other local site once the certificate is trusted
#                                      (SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD apply)
#   SCALE_OUT_LIMIT_EXEMPT ("")        addresses nginx's per-address limits do not count, e.g.
#                                      "127.0.0.1" for a load generator on this machine
#   SCALE_OUT_PLAIN_HTTP_PORT ("")     also serve the site over plain HTTP on 127.0.0.1:PORT (the
#                                      benchmark measures the app, not TLS handshakes); off unless set
#   SCALE_OUT_PGBOUNCER_ADMIN_USER (pgbouncer_admin)  PgBouncer's console user; its password is
#                                      generated into <dir>/pgbouncer_admin_password
#   DATABASE_URL (postgres://postgres@127.0.0.1:5432/flashbid): PostgreSQL itself. Migrations use
#     it directly; every process reaches it through PgBouncer (DATABASE_POOL=false) as the same
#     user, with its password (or, without one, a generated one PgBouncer asks for, for a
#     PostgreSQL that trusts local users). Point it at a role that is no superuser beyond a dev box.
#   REDIS_PASSWORD: this scale-out's Redis password (URL-safe characters; generated once into
#     <dir>/redis_password when not set; the cluster's nodes share it). REDIS_URL,
#     CELERY_BROKER_URL, CHANNEL_LAYER_URL and CACHE_URL: always this scale-out's own Redis (REDIS_URL:
#     its cluster's first node with SCALE_OUT_REDIS_CLUSTER=1), with that password (whatever is set).
#   DEBUG (false), SECRET_KEY and FLOWER_BASIC_AUTH (generated once into the runtime dir when not
#   set), ALLOWED_HOSTS (localhost,127.0.0.1,[::1]; 127.0.0.1 is always added), STATIC_ROOT
#   (staticfiles/); every other FlashBid variable (PERSIST_INTERVAL_SECONDS, ...) passes through
#   to the processes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/sbin:/sbin"  # Debian's nginx and pgbouncer

PY=${SCALE_OUT_PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
RUN_DIR=$(realpath -m "${SCALE_OUT_DIR:-$ROOT/var/scale-out}")
BIND=${SCALE_OUT_BIND:-127.0.0.1}
HTTP_PORT=${SCALE_OUT_HTTP_PORT:-8080}
HTTPS_PORT=${SCALE_OUT_HTTPS_PORT:-8443}
INTERNAL_PORT=${SCALE_OUT_INTERNAL_PORT:-8081}
read -r -a WEB_PORTS <<< "${SCALE_OUT_WEB_PORTS:-8101 8102}"
read -r -a WS_PORTS <<< "${SCALE_OUT_WS_PORTS:-8111}"
PGBOUNCER_PORT=${SCALE_OUT_PGBOUNCER_PORT:-6432}
REDIS_PORT=${SCALE_OUT_REDIS_PORT:-6390}
REDIS_CLUSTER_PORTS=()
if [ "${SCALE_OUT_REDIS_CLUSTER:-0}" = 1 ]; then
  read -r -a REDIS_CLUSTER_PORTS <<< "${SCALE_OUT_REDIS_CLUSTER_PORTS:-6391 6392 6393}"
  [ ${#REDIS_CLUSTER_PORTS[@]} -ge 3 ] || { echo "scale-out: a Redis Cluster needs 3 ports at least" >&2; exit 1; }
fi
FLOWER_PORT=${SCALE_OUT_FLOWER_PORT:-5556}
PID_DIR=$RUN_DIR/pids
LOG_DIR=$RUN_DIR/logs
MAIN_PID_FILE=$RUN_DIR/scale-out.pid

WEB_NAMES=()
for i in "${!WEB_PORTS[@]}"; do WEB_NAMES+=("web$((i + 1))"); done
NODE_NAMES=()
for i in "${!REDIS_CLUSTER_PORTS[@]}"; do NODE_NAMES+=("redis-node$((i + 1))"); done
WS_NAMES=()
for i in "${!WS_PORTS[@]}"; do WS_NAMES+=("ws$((i + 1))"); done
# Start order; stopping goes in reverse (nginx first, Redis last).
ORDER=(redis "${NODE_NAMES[@]}" pgbouncer "${WEB_NAMES[@]}" "${WS_NAMES[@]}" worker beat flower nginx)

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

redis_ping() { [ "$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h "$BIND" -p "${1:-$REDIS_PORT}" ping 2> /dev/null)" = PONG ]; }

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

# SIGTERM to the service's leader (nginx, uvicorn, celery, redis, pgbouncer each stop their own
# children), SIGKILL to its whole session if it has not ended within the grace period.
term_one() {
  local pid
  pid=$(pid_of "$1") || return 0
  if [ -n "$pid" ] && session_alive "$pid"; then kill -TERM "$pid" 2> /dev/null || true; fi
}

wait_one() {
  local name=$1 pid grace=10 deadline
  pid=$(pid_of "$name") || return 0
  if [ -n "$pid" ] && session_alive "$pid"; then
    [ "$name" = worker ] && grace=30  # a task in flight finishes (warm shutdown)
    deadline=$((SECONDS + grace))
    while session_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if session_alive "$pid"; then
      printf 'scale-out: %s did not stop within %s s; killing it\n' "$name" "$grace" >&2
      kill -KILL -- "-$pid" 2> /dev/null || true
    fi
  fi
  rm -f "$PID_DIR/$name.pid"
}

stop_one() { term_one "$1"; wait_one "$1"; }

# nginx first (no new requests), then the app's processes together (their graceful shutdowns
# overlap: one after the other they took seconds), then what they use, last started first.
stop_all() {
  local i name app=(flower beat worker "${WS_NAMES[@]}" "${WEB_NAMES[@]}")
  stop_one nginx
  for name in "${app[@]}"; do term_one "$name"; done
  for name in "${app[@]}"; do wait_one "$name"; done
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do stop_one "${ORDER[i]}"; done
}

# A value kept in the runtime dir (0600) across runs: made once by the given Python expression.
generated() {
  local file=$RUN_DIR/$1
  if [ ! -s "$file" ]; then
    (umask 077 && "$PY" -c "import secrets; print($2)" > "$file")
  fi
  cat "$file"
}

database_settings() {
  # PostgreSQL as given (migrations) and the same database through PgBouncer (everything else).
  # PgBouncer always asks for a password (SCRAM): DATABASE_URL's, or one generated for a
  # PostgreSQL that trusts local users (PgBouncer then logs in with it, and PostgreSQL ignores it).
  local pool_password
  pool_password=$(generated pgbouncer_app_password 'secrets.token_urlsafe(24)')
  eval "$("$PY" - "$BIND" "$PGBOUNCER_PORT" "$pool_password" << 'EOF'
import os, shlex, sys
from urllib.parse import quote

import dj_database_url

bind, port, generated = sys.argv[1:]
direct = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/flashbid"
db = dj_database_url.parse(direct)
user, password = db["USER"] or "postgres", db["PASSWORD"] or generated
values = {
    "DIRECT_DATABASE_URL": direct,
    "POOLED_DATABASE_URL": f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{bind}:{port}/{db['NAME']}",
    "SHOWN_DATABASE_URL": f"postgres://{quote(user, safe='')}@{bind}:{port}/{db['NAME']}",
    "DB_HOST": db["HOST"] or "127.0.0.1",
    "DB_PORT": str(db["PORT"] or 5432),
    "DB_NAME": db["NAME"],
    "DB_USER": user,
    "DB_PASSWORD": password,
}
for name, value in values.items():
    print(f"{name}={shlex.quote(value)}")
EOF
)"
}

# nginx's certificate: the given pair, or a self-signed one made once into the runtime dir.
tls_files() {
  if [ -n "${SCALE_OUT_TLS_CERT:-}" ] || [ -n "${SCALE_OUT_TLS_KEY:-}" ]; then
    TLS_CERT=$(realpath "${SCALE_OUT_TLS_CERT:?set SCALE_OUT_TLS_CERT too}")
    TLS_KEY=$(realpath "${SCALE_OUT_TLS_KEY:?set SCALE_OUT_TLS_KEY too}")
  else
    local names=(localhost 127.0.0.1 ::1)
    case " ${names[*]} " in *" $BIND "*) ;; *) names+=("$BIND") ;; esac
    sh deploy/self-signed-cert.sh "$RUN_DIR/tls" "${names[@]}" > /dev/null
    TLS_CERT=$RUN_DIR/tls/cert.pem TLS_KEY=$RUN_DIR/tls/key.pem
  fi
}

nginx_environment() {
  local servers="" ws_servers="" port address exempt=""
  for port in "${WEB_PORTS[@]}"; do servers+="server $BIND:$port max_fails=1 fail_timeout=5s; "; done
  for port in "${WS_PORTS[@]}"; do ws_servers+="server $BIND:$port max_fails=1 fail_timeout=5s; "; done
  for address in ${SCALE_OUT_LIMIT_EXEMPT:-}; do exempt+="$address 1; "; done
  tls_files
  export NGINX_LISTEN="$BIND:$HTTP_PORT" NGINX_TLS_LISTEN="$BIND:$HTTPS_PORT" NGINX_HTTPS_PUBLIC_PORT="$HTTPS_PORT"
  export NGINX_INTERNAL_LISTEN="$BIND:$INTERNAL_PORT" NGINX_TLS_CERT="$TLS_CERT" NGINX_TLS_KEY="$TLS_KEY"
  export NGINX_HSTS_MAX_AGE="${SCALE_OUT_HSTS_SECONDS:-300}" NGINX_LIMIT_EXEMPT="$exempt" NGINX_PLAIN_HTTP_LISTEN=""
  export NGINX_HSTS_INCLUDE_SUBDOMAINS="${SECURE_HSTS_INCLUDE_SUBDOMAINS:-true}"
  export NGINX_HSTS_PRELOAD="${SECURE_HSTS_PRELOAD:-false}"
  if [ -n "${SCALE_OUT_PLAIN_HTTP_PORT:-}" ]; then
    NGINX_PLAIN_HTTP_LISTEN="listen 127.0.0.1:$SCALE_OUT_PLAIN_HTTP_PORT;"
  fi
  export NGINX_UPSTREAM_SERVERS="$servers" NGINX_WS_UPSTREAM_SERVERS="$ws_servers" NGINX_RESOLVER=127.0.0.1
  NGINX_USER="$(id -un) $(id -gn)"
  export NGINX_STATIC_ROOT="${STATIC_ROOT:-$ROOT/staticfiles}" NGINX_USER
  export NGINX_RUNTIME_DIR="$RUN_DIR/nginx" NGINX_LOG_DIR="$LOG_DIR/nginx"
}

pgbouncer_environment() {
  export PGBOUNCER_CONF_DIR="$RUN_DIR/pgbouncer" PGBOUNCER_LISTEN_ADDR="$BIND"
  export PGBOUNCER_LISTEN_PORT="$PGBOUNCER_PORT" PGBOUNCER_DB_HOST="$DB_HOST" PGBOUNCER_DB_PORT="$DB_PORT"
  export PGBOUNCER_DB_NAME="$DB_NAME" PGBOUNCER_APP_USER="$DB_USER" PGBOUNCER_APP_PASSWORD="$DB_PASSWORD"
  PGBOUNCER_ADMIN_USER=${SCALE_OUT_PGBOUNCER_ADMIN_USER:-pgbouncer_admin}
  PGBOUNCER_ADMIN_PASSWORD=$(generated pgbouncer_admin_password 'secrets.token_urlsafe(24)')
  export PGBOUNCER_ADMIN_USER PGBOUNCER_ADMIN_PASSWORD
  if [ "$PGBOUNCER_ADMIN_USER" = "$DB_USER" ]; then
    fail "PgBouncer's admin user must not be the app's ($DB_USER): set SCALE_OUT_PGBOUNCER_ADMIN_USER"
  fi
}

# This Redis's password (URL-safe: it goes into URLs), and a config holding it (0600) that
# includes deploy/redis.conf.
redis_settings() {
  REDIS_PASSWORD_NOTE="REDIS_PASSWORD from the environment"
  if [ -z "${REDIS_PASSWORD:-}" ]; then
    REDIS_PASSWORD=$(generated redis_password 'secrets.token_urlsafe(24)')
    REDIS_PASSWORD_NOTE="password in $RUN_DIR/redis_password"
  fi
  [[ $REDIS_PASSWORD =~ ^[A-Za-z0-9._~-]+$ ]] || fail "REDIS_PASSWORD: URL-safe characters only (A-Z a-z 0-9 . _ ~ -)"
  (umask 077 && printf 'include "%s"\nrequirepass "%s"\n' "$ROOT/deploy/redis.conf" "$REDIS_PASSWORD" \
    > "$RUN_DIR/redis/redis.conf")
  # The cluster's nodes: the same, cluster-enabled (masterauth: for replicas one may add).
  (umask 077 && printf 'include "%s"\nmasterauth "%s"\ncluster-enabled yes\ncluster-config-file nodes.conf\n' \
    "$RUN_DIR/redis/redis.conf" "$REDIS_PASSWORD" > "$RUN_DIR/redis/cluster-node.conf")
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
  local cluster_bus_ports=()
  for port in "${REDIS_CLUSTER_PORTS[@]}"; do cluster_bus_ports+=("$port" "$((port + 10000))"); done
  for port in "$HTTP_PORT" "$HTTPS_PORT" "$INTERNAL_PORT" "${WEB_PORTS[@]}" "${WS_PORTS[@]}" "$PGBOUNCER_PORT" \
    "$REDIS_PORT" "${cluster_bus_ports[@]}" "$FLOWER_PORT" ${SCALE_OUT_PLAIN_HTTP_PORT:+"$SCALE_OUT_PLAIN_HTTP_PORT"}; do
    if port_open "$BIND" "$port"; then fail "port $BIND:$port is in use (ports: SCALE_OUT_*_PORT)"; fi
  done
  if [ "${SCALE_OUT_BOOTSTRAP:-1}" != 0 ]; then
    deploy/bootstrap.sh requirements.txt
    command -v nginx > /dev/null || deploy/debian-packages.sh nginx-light
    command -v pgbouncer > /dev/null || deploy/debian-packages.sh pgbouncer
  fi

  mkdir -p "$PID_DIR" "$LOG_DIR/nginx" "$RUN_DIR/redis" "$RUN_DIR/nginx"
  for name in "${NODE_NAMES[@]}"; do mkdir -p "$RUN_DIR/$name"; done
  echo $$ > "$MAIN_PID_FILE"
  trap 'trap - EXIT; stop_all; rm -f "$MAIN_PID_FILE"' EXIT
  trap 'echo; say "stopping"; exit 0' INT TERM

  database_settings
  nginx_environment
  pgbouncer_environment
  redis_settings
  export DJANGO_SETTINGS_MODULE=flashbid.settings PYTHONUNBUFFERED=1
  export DEBUG=${DEBUG:-false}
  # 127.0.0.1: nginx's internal server asks the app for /readyz and /metrics under that name.
  export ALLOWED_HOSTS=${ALLOWED_HOSTS:-localhost,[::1]},127.0.0.1
  export STATIC_ROOT=$NGINX_STATIC_ROOT
  # nginx terminates TLS and says so in X-Forwarded-Proto (secure cookies, no redirect loop).
  export BEHIND_HTTPS_PROXY=true
  # The broker, the channel layer and the cache: this Redis, also when the engine is on the cluster
  # (kombu, channels-redis and django-redis do not speak Redis Cluster).
  local plain_redis="redis://:$REDIS_PASSWORD@$BIND:$REDIS_PORT/0"
  export CELERY_BROKER_URL=$plain_redis CHANNEL_LAYER_URL=$plain_redis CACHE_URL=$plain_redis
  if [ ${#NODE_NAMES[@]} -gt 0 ]; then
    export REDIS_CLUSTER=true REDIS_URL="redis://:$REDIS_PASSWORD@$BIND:${REDIS_CLUSTER_PORTS[0]}/0"
  else
    export REDIS_CLUSTER=false REDIS_URL=$plain_redis
  fi
  export DATABASE_URL=$POOLED_DATABASE_URL DATABASE_POOL=false
  if [ -z "${SECRET_KEY:-}" ]; then SECRET_KEY=$(generated secret_key 'secrets.token_urlsafe(50)'); fi
  export SECRET_KEY
  local flower_auth_note="FLOWER_BASIC_AUTH from the environment"
  if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then
    FLOWER_BASIC_AUTH=$(generated flower_basic_auth '"admin:" + secrets.token_urlsafe(18)')
    flower_auth_note="user:password in $RUN_DIR/flower_basic_auth"
  fi
  export FLOWER_BASIC_AUTH

  say "Redis :$REDIS_PORT (deploy/redis.conf, AOF, a password; data in $RUN_DIR/redis)"
  start redis redis-server "$RUN_DIR/redis/redis.conf" --port "$REDIS_PORT" --bind "$BIND" \
    --dir "$RUN_DIR/redis" --daemonize no --logfile ""
  wait_ready 30 redis redis_ping

  if [ ${#NODE_NAMES[@]} -gt 0 ]; then
    local i nodes=()
    say "Redis Cluster: ${#NODE_NAMES[@]} masters on ${REDIS_CLUSTER_PORTS[*]} (the same config, cluster-enabled)"
    for i in "${!NODE_NAMES[@]}"; do
      start "${NODE_NAMES[i]}" redis-server "$RUN_DIR/redis/cluster-node.conf" --port "${REDIS_CLUSTER_PORTS[i]}" \
        --bind "$BIND" --dir "$RUN_DIR/${NODE_NAMES[i]}" --daemonize no --logfile ""
      nodes+=("$BIND:${REDIS_CLUSTER_PORTS[i]}")
    done
    for i in "${!NODE_NAMES[@]}"; do wait_ready 30 "${NODE_NAMES[i]}" redis_ping "${REDIS_CLUSTER_PORTS[i]}"; done
    REDISCLI_AUTH=$REDIS_PASSWORD sh deploy/redis-cluster.sh create "${nodes[@]}" > "$LOG_DIR/redis-cluster.log" 2>&1 \
      || { cat "$LOG_DIR/redis-cluster.log" >&2; fail "the Redis Cluster did not form"; }
  fi

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

  say "web: uvicorn on ${WEB_PORTS[*]} (HTTP) and on ${WS_PORTS[*]} (WebSockets); Celery worker, beat, Flower"
  for i in "${!WEB_PORTS[@]}"; do
    # No access log (nginx keeps one); no WebSockets (nginx sends /ws/ to the ones below); the client
    # address from X-Forwarded-For, which nginx sets to the client's (login limits are per client);
    # idle connections kept longer than nginx keeps them.
    start "${WEB_NAMES[i]}" "$BIN/uvicorn" --host "$BIND" --port "${WEB_PORTS[i]}" --no-access-log \
      --loop uvloop --http flashbid.server:HttpProtocol --ws none --lifespan off --proxy-headers --forwarded-allow-ips '*' \
      --timeout-keep-alive 75 flashbid.asgi:application
  done
  for i in "${!WS_PORTS[@]}"; do
    # The sockets: no access log (nginx's), no per-message deflate, the client address from
    # X-Forwarded-For (nginx's); as deploy/docker-compose.yml's `ws`.
    start "${WS_NAMES[i]}" "$BIN/uvicorn" --host "$BIND" --port "${WS_PORTS[i]}" --no-access-log \
      --loop uvloop --http flashbid.server:HttpProtocol --ws websockets-sansio --ws-max-size 65536 --ws-per-message-deflate false \
      --lifespan off --proxy-headers --forwarded-allow-ips '*' flashbid.asgi:application
  done
  # The worker, beat and Flower at a lower CPU priority: persist batches wait while requests run.
  start worker nice -n 10 "$BIN/celery" -A flashbid worker --loglevel=INFO -E \
    --concurrency="${SCALE_OUT_WORKER_CONCURRENCY:-2}" -n "worker@%h"
  start beat nice -n 10 "$BIN/celery" -A flashbid beat --loglevel=INFO -s "$RUN_DIR/celerybeat-schedule"
  start flower nice -n 10 "$BIN/celery" -A flashbid flower --conf=deploy/flowerconfig.py --address="$BIND" \
    --port="$FLOWER_PORT"
  for i in "${!WEB_PORTS[@]}"; do wait_ready 60 "${WEB_NAMES[i]}" port_open "$BIND" "${WEB_PORTS[i]}"; done
  for i in "${!WS_PORTS[@]}"; do wait_ready 60 "${WS_NAMES[i]}" port_open "$BIND" "${WS_PORTS[i]}"; done
  wait_ready 60 worker grep -q " ready" "$LOG_DIR/worker.log"
  wait_ready 60 beat grep -q "beat: Starting" "$LOG_DIR/beat.log"
  wait_ready 60 flower port_open "$BIND" "$FLOWER_PORT"

  say "nginx :$HTTPS_PORT (HTTPS), :$HTTP_PORT (redirect), :$INTERNAL_PORT (internal)"
  sh deploy/render.sh deploy/nginx.conf "$RUN_DIR/nginx/nginx.conf"
  nginx -q -t -c "$RUN_DIR/nginx/nginx.conf" -e "$LOG_DIR/nginx/error.log" > "$LOG_DIR/nginx.log" 2>&1 \
    || { cat "$LOG_DIR/nginx.log" >&2; fail "nginx config test failed"; }
  start nginx nginx -c "$RUN_DIR/nginx/nginx.conf" -e "$LOG_DIR/nginx/error.log" -g "daemon off;"
  wait_ready 20 nginx port_open "$BIND" "$HTTPS_PORT"
  wait_ready 20 nginx port_open "$BIND" "$INTERNAL_PORT"

  local web="https://$BIND:$HTTPS_PORT" internal="http://$BIND:$INTERNAL_PORT" upstreams="" ws_upstreams=""
  local cluster_note=""
  if [ ${#NODE_NAMES[@]} -gt 0 ]; then
    cluster_note="
  Redis Cluster    redis://$BIND:${REDIS_CLUSTER_PORTS[0]}/0 (masters on ${REDIS_CLUSTER_PORTS[*]}): the engine (REDIS_CLUSTER=true);
                   the Redis above keeps the broker, the channel layer and the cache"
  fi
  for port in "${WEB_PORTS[@]}"; do upstreams+=" $BIND:$port"; done
  for port in "${WS_PORTS[@]}"; do ws_upstreams+=" $BIND:$port"; done
  cat << URLS

FlashBid scale-out is up (runtime dir $RUN_DIR):
  Site and API     $web/                (nginx -> uvicorn$upstreams)
                   certificate: $TLS_CERT
                   http://$BIND:$HTTP_PORT/ redirects there${SCALE_OUT_PLAIN_HTTP_PORT:+; plain HTTP for load generators: http://127.0.0.1:$SCALE_OUT_PLAIN_HTTP_PORT/}
  API docs         $web/api/docs
  Django admin     $web/admin/
  Health           $web/healthz
  Ready / metrics  $internal/readyz  $internal/metrics   (nginx's internal server)
  WebSocket        wss://$BIND:$HTTPS_PORT/ws/sessions/<session id>/   (nginx -> uvicorn$ws_upstreams)
  Flower           http://$BIND:$FLOWER_PORT/   ($flower_auth_note)
  PgBouncer        $SHOWN_DATABASE_URL   (console: psql -h $BIND -p $PGBOUNCER_PORT -U $PGBOUNCER_ADMIN_USER pgbouncer,
                   password in $RUN_DIR/pgbouncer_admin_password)
  Redis            redis://$BIND:$REDIS_PORT/0   (AOF; data in $RUN_DIR/redis; $REDIS_PASSWORD_NOTE)$cluster_note
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
