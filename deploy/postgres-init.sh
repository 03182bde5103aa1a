#!/bin/sh
# The app's PostgreSQL role and database, created once by the superuser: docker-compose.yml mounts
# this file into the postgres image's /docker-entrypoint-initdb.d/, which runs it (as the
# superuser, over the local socket) only when the data volume is new.
#
# The role logs in with a password (SCRAM), owns the app's database (so migrations can create and
# alter its tables) and nothing else: no superuser, no CREATEDB, no CREATEROLE, no replication.
# Nobody else may connect to that database (CONNECT revoked from PUBLIC).
#
# Environment: FLASHBID_DB_USER, FLASHBID_DB_PASSWORD, FLASHBID_DB_NAME; POSTGRES_USER (the
# superuser, the image's variable; default postgres). Also usable by hand against any PostgreSQL
# (psql's usual PGHOST/PGPORT/PGUSER decide where):
#   FLASHBID_DB_USER=flashbid FLASHBID_DB_PASSWORD=... FLASHBID_DB_NAME=flashbid sh deploy/postgres-init.sh
set -eu
: "${FLASHBID_DB_USER:?set FLASHBID_DB_USER}" "${FLASHBID_DB_PASSWORD:?set FLASHBID_DB_PASSWORD}"
: "${FLASHBID_DB_NAME:?set FLASHBID_DB_NAME}"
if [ "$FLASHBID_DB_USER" = "${POSTGRES_USER:-postgres}" ]; then
  echo "postgres-init.sh: FLASHBID_DB_USER must not be the superuser (${POSTGRES_USER:-postgres})" >&2
  exit 2
fi
# psql's own quoting (:"identifier", :'literal') keeps names and the password out of the SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  --set=app_user="$FLASHBID_DB_USER" --set=app_password="$FLASHBID_DB_PASSWORD" \
  --set=app_db="$FLASHBID_DB_NAME" << 'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
CREATE DATABASE :"app_db" OWNER :"app_user";
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
SQL
echo "postgres-init.sh: role $FLASHBID_DB_USER owns database $FLASHBID_DB_NAME"
