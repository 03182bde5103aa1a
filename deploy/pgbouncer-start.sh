#!/bin/sh
# Start PgBouncer from deploy/pgbouncer.ini: write the auth file, render the config, exec pgbouncer.
# The same script runs in the compose service `pgbouncer` and under deploy/scale-out.sh.
#
# Environment: PGBOUNCER_CONF_DIR (where the rendered config and the auth file go, created 0700),
# PGBOUNCER_LISTEN_ADDR, PGBOUNCER_LISTEN_PORT, PGBOUNCER_DB_HOST, PGBOUNCER_DB_PORT,
# PGBOUNCER_DB_NAME (the app's database: the only one served), PGBOUNCER_APP_USER and
# PGBOUNCER_APP_PASSWORD (the app's PostgreSQL role: clients log in with it, and PgBouncer logs in
# to PostgreSQL with it), PGBOUNCER_ADMIN_USER and PGBOUNCER_ADMIN_PASSWORD (the console's user,
# another name than the app's). Every password is required: clients authenticate with SCRAM.
# PgBouncer refuses to run as root: started as root it drops to PGBOUNCER_RUN_AS (default nobody)
# after reading its files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${PGBOUNCER_CONF_DIR:?set PGBOUNCER_CONF_DIR}
app_user=${PGBOUNCER_APP_USER:?set PGBOUNCER_APP_USER}
app_password=${PGBOUNCER_APP_PASSWORD:?set PGBOUNCER_APP_PASSWORD}
admin_user=${PGBOUNCER_ADMIN_USER:?set PGBOUNCER_ADMIN_USER}
admin_password=${PGBOUNCER_ADMIN_PASSWORD:?set PGBOUNCER_ADMIN_PASSWORD}
if [ "$app_user" = "$admin_user" ]; then
  echo "pgbouncer-start.sh: PGBOUNCER_ADMIN_USER must not be the app's user ($app_user)" >&2
  exit 2
fi
umask 077
mkdir -p "$dir"
export PGBOUNCER_AUTH_FILE="$dir/userlist.txt"
# Auth file lines are "user" "password", a double quote inside doubled.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
{
  printf '%s %s\n' "$(quote "$app_user")" "$(quote "$app_password")"
  printf '%s %s\n' "$(quote "$admin_user")" "$(quote "$admin_password")"
} > "$PGBOUNCER_AUTH_FILE"
sh "$here/render.sh" "$here/pgbouncer.ini" "$dir/pgbouncer.ini"
if [ "$(id -u)" -eq 0 ]; then
  exec pgbouncer -u "${PGBOUNCER_RUN_AS:-nobody}" "$dir/pgbouncer.ini"
fi
exec pgbouncer "$dir/pgbouncer.ini"
