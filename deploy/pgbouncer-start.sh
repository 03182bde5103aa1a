#!/bin/sh
# Start PgBouncer from deploy/pgbouncer.ini: write the auth file, render the config, exec pgbouncer.
# The same script runs in the compose service `pgbouncer` and under deploy/scale-out.sh.
#
# Environment: PGBOUNCER_CONF_DIR (where the rendered config and the auth file go, created 0700),
# PGBOUNCER_LISTEN_ADDR, PGBOUNCER_LISTEN_PORT, PGBOUNCER_DB_HOST, PGBOUNCER_DB_PORT,
# PGBOUNCER_AUTH_TYPE (trust or scram-sha-256), PGBOUNCER_AUTH_USER, PGBOUNCER_AUTH_PASSWORD
# (empty with trust). PgBouncer refuses to run as root: started as root it drops to
# PGBOUNCER_RUN_AS (default nobody) after reading its files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${PGBOUNCER_CONF_DIR:?set PGBOUNCER_CONF_DIR}
umask 077
mkdir -p "$dir"
export PGBOUNCER_AUTH_FILE="$dir/userlist.txt"
# Auth file lines are "user" "password", a double quote inside doubled.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
printf '%s %s\n' "$(quote "${PGBOUNCER_AUTH_USER:?set PGBOUNCER_AUTH_USER}")" \
  "$(quote "${PGBOUNCER_AUTH_PASSWORD:-}")" > "$PGBOUNCER_AUTH_FILE"
sh "$here/render.sh" "$here/pgbouncer.ini" "$dir/pgbouncer.ini"
if [ "$(id -u)" -eq 0 ]; then
  exec pgbouncer -u "${PGBOUNCER_RUN_AS:-nobody}" "$dir/pgbouncer.ini"
fi
exec pgbouncer "$dir/pgbouncer.ini"
