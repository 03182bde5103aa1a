#!/usr/bin/env bash
# Join started, empty Redis nodes (redis-server --cluster-enabled yes) into a Redis Cluster of
# masters without replicas (the slots split evenly), and wait until every node says cluster_state:ok.
# Nothing is done to nodes that already form a cluster (a restart from their nodes.conf).
#
#   deploy/redis-cluster.sh create HOST:PORT HOST:PORT HOST:PORT...
#
# A password, if the nodes require one: REDISCLI_AUTH (redis-cli reads it).
# Used by deploy/scale-out.sh (SCALE_OUT_REDIS_CLUSTER=1), the tests' cluster (conftest.py) and
# bench/chaos.py --cluster. Debian's redis-tools has redis-cli.
set -euo pipefail

fail() { printf 'redis-cluster: %s\n' "$*" >&2; exit 1; }

node_cli() {
  local node=$1
  shift
  redis-cli -h "${node%:*}" -p "${node##*:}" "$@"
}

cluster_state() { node_cli "$1" cluster info 2> /dev/null | tr -d '\r' | sed -n 's/^cluster_state://p'; }

known_nodes() { node_cli "$1" cluster info 2> /dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p'; }

cmd_create() {
  [ $# -ge 3 ] || fail "a cluster needs 3 masters at least: create HOST:PORT HOST:PORT HOST:PORT..."
  local node deadline
  for node in "$@"; do
    deadline=$((SECONDS + 30))
    until [ "$(node_cli "$node" ping 2> /dev/null)" = PONG ]; do
      ((SECONDS < deadline)) || fail "$node does not answer PING"
      sleep 0.1
    done
  done
  if [ "$(cluster_state "$1")" = ok ] && [ "$(known_nodes "$1")" = $# ]; then
    echo "redis-cluster: $* already form a cluster"
    return 0
  fi
  redis-cli --cluster create "$@" --cluster-replicas 0 --cluster-yes > /dev/null \
    || fail "redis-cli --cluster create $* failed (are the nodes empty and cluster-enabled?)"
  for node in "$@"; do
    deadline=$((SECONDS + 30))
    until [ "$(cluster_state "$node")" = ok ]; do
      ((SECONDS < deadline)) || fail "$node: cluster_state is not ok after 30 s"
      sleep 0.1
    done
  done
  echo "redis-cluster: $* form a cluster (16384 slots over $# masters)"
}

case "${1:-}" in
  create) shift; cmd_create "$@" ;;
  *) fail "usage: $0 create HOST:PORT HOST:PORT HOST:PORT..." ;;
esac
