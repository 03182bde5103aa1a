#!/usr/bin/env bash
# Prepare this machine for FlashBid: a Python >= 3.12 virtualenv with the pinned dependencies,
# PostgreSQL and Redis running (started if installed but stopped), the database created.
# Usage: deploy/bootstrap.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS="${1:-requirements.txt}"

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 \
                   /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
  done
  # pyenv installs that are not the global version
  if command -v pyenv >/dev/null 2>&1; then
    local version
    version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9]' | sort -V | tail -n1 || true)
    if [ -n "$version" ]; then echo "$(pyenv root)/versions/$version/bin/python"; return 0; fi
  fi
  return 1
}

if [ ! -x .venv/bin/python ]; then
  PY=$(find_python) || { echo "FlashBid needs Python >= 3.12 (Django 6); none found. Set PYTHON=/path/to/python3.12." >&2; exit 1; }
  echo "==> creating .venv with $PY"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi

stamp=".venv/.installed-$(cat requirements.txt "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing $REQUIREMENTS"
  .venv/bin/pip install -q --disable-pip-version-check -r "$REQUIREMENTS" 2> >(grep -v "^WARNING: Location" >&2)
  touch "$stamp"
fi

PGHOST=127.0.0.1; PGPORT=5432
if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
  echo "==> starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
  pg_isready -q -h "$PGHOST" -p "$PGPORT" || { echo "PostgreSQL is not reachable on $PGHOST:$PGPORT" >&2; exit 1; }
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "==> starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  # deploy/redis.conf: AOF with appendfsync everysec, so an accepted bid survives a Redis restart.
  redis-server deploy/redis.conf --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
    --dir /var/lib/redis --logfile /var/log/redis/flashbid.log
  for _ in $(seq 1 30); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli ping >/dev/null || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
fi

DB_NAME=$(.venv/bin/python -c 'import os,dj_database_url; print(dj_database_url.parse(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/flashbid")["NAME"])')
if ! psql -h "$PGHOST" -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'" | grep -q 1; then
  echo "==> creating database $DB_NAME"
  createdb -h "$PGHOST" -p "$PGPORT" -U postgres "$DB_NAME"
fi
