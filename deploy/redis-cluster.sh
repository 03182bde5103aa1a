#!/bin/sh
# Join started, empty Redis nodes (redis-server --cluster-enabled yes) into a Redis Cluster of
# masters without replicas (the slots split evenly), and wait until every node says cluster_state:ok.
# Nothing is done to nodes that already form a cluster (a restart from their nodes.conf).
#
#   deploy/redis-cluster.sh create HOST:PORT HOST:PORT HOST:PORT...
#
# HOST may be a name: it is resolved here (CLUSTER MEET takes addresses only). A password, if the
# nodes require one: REDISCLI_AUTH (redis-cli reads it). POSIX sh and redis-cli only, so that it
# runs in the redis image too (deploy/docker-compose.cluster.yml); also used by
# deploy/scale-out.sh (SCALE_OUT_REDIS_CLUSTER=1), the tests' cluster (tests/redis_cluster.py) and
# bench/chaos.py --cluster.
set -eu

fail() {
  printf 'redis-cluster: %s\n' "$*" >&2
  exit 1
}

node_cli() {
  node=$1
  shift
  redis-cli -h "${node%:*}" -p "${node##*:}" "$@"
}

info_field() { node_cli "$1" cluster info 2> /dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

# HOST:PORT with HOST as an address.
resolved() {
  host=${1%:*}
  case $host in
    *[!0-9.]*)
      address=$(getent hosts "$host" 2> /dev/null | awk '{ print $1; exit }')
      [ -n "$address" ] || fail "cannot resolve $host"
      echo "$address:${1##*:}"
      ;;
    *) echo "$1" ;;
  esac
}

# wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds.
wait_for() {
  deadline=$(($(date +%s) + $1))
  description=$2
  shift 2
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$description"
    sleep 0.1
  done
}

answers() { [ "$(node_cli "$1" ping 2> /dev/null)" = PONG ]; }

state_ok() { [ "$(info_field "$1" cluster_state)" = ok ]; }

cmd_create() {
  [ $# -ge 3 ] || fail "a cluster needs 3 masters at least: create HOST:PORT HOST:PORT HOST:PORT..."
  for node in "$@"; do
    wait_for 30 "$node does not answer PING" answers "$node"
  done
  if state_ok "$1" && [ "$(info_field "$1" cluster_known_nodes)" = $# ]; then
    echo "redis-cluster: $* already form a cluster"
    return 0
  fi
  addresses=""
  for node in "$@"; do addresses="$addresses $(resolved "$node")"; done
  # shellcheck disable=SC2086 # one word per node
  redis-cli --cluster create $addresses --cluster-replicas 0 --cluster-yes > /dev/null \
    || fail "redis-cli --cluster create$addresses failed (are the nodes empty and cluster-enabled?)"
  for node in "$@"; do
    wait_for 30 "$node: cluster_state is not ok after 30 s" state_ok "$node"
  done
  echo "redis-cluster: $* form a cluster (16384 slots over $# masters)"
}

case "${1:-}" in
  create)
    shift
    cmd_create "$@"
    ;;
  *) fail "usage: $0 create HOST:PORT HOST:PORT HOST:PORT..." ;;
esac
