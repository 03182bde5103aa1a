#!/bin/sh
# Fill a config template (deploy/nginx.conf, deploy/pgbouncer.ini): each dollar-brace placeholder
# whose name is upper case (NGINX_LISTEN, PGBOUNCER_DB_HOST, ...) becomes the value of that
# environment variable; nginx's own variables ($host, lower case, no braces) are left alone. A
# placeholder whose variable is not set is an error that names it: no config goes out half-filled.
# POSIX sh + awk, so the same renderer runs here and inside the alpine images of deploy/docker-compose.yml.
# Usage: deploy/render.sh TEMPLATE OUTPUT
set -eu
[ $# -eq 2 ] || { echo "usage: $0 TEMPLATE OUTPUT" >&2; exit 2; }
tmp="$2.tmp.$$"
if ! awk '
{
  line = $0; out = ""
  while (match(line, /\$\{[A-Z][A-Z0-9_]*\}/)) {
    name = substr(line, RSTART + 2, RLENGTH - 3)
    if (!(name in ENVIRON)) {
      printf "%s:%d: %s is not set\n", FILENAME, FNR, name > "/dev/stderr"
      exit 1
    }
    out = out substr(line, 1, RSTART - 1) ENVIRON[name]
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}' "$1" > "$tmp"; then
  rm -f "$tmp"
  exit 1
fi
mv "$tmp" "$2"
