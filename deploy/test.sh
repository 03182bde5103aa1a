#!/usr/bin/env bash
# Run the whole test suite on real PostgreSQL and Redis (started if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh requirements-dev.txt
# System tests drive a real browser (Debian's chromium) and the scale-out wiring (nginx, PgBouncer);
# the deploy checks lint the shell scripts and make throwaway TLS certificates (openssl); tests
# marked `cluster` run a second time on a Redis Cluster of 3 masters the suite starts (redis-server).
deploy/debian-packages.sh chromium nginx-light pgbouncer shellcheck openssl redis-server
# Two test processes (pytest-xdist; tests/xdist_env.py keeps their Redis databases apart): most
# tests wait on real processes, sockets and timers, so two of them share the two cores well.
exec .venv/bin/pytest -n "${TEST_PROCESSES:-2}" --dist worksteal "$@"
