#!/bin/sh
# The entrypoint of the postgres stand-in image (.ci/postgres-image.sh): what the upstream image's
# docker-entrypoint.sh does for this stack, and nothing more. At the first start (no PG_VERSION in
# PGDATA) it initialises the cluster with POSTGRES_USER as superuser and POSTGRES_PASSWORD (or the
# file POSTGRES_PASSWORD_FILE names) as its password, admits password logins from anywhere
# (scram-sha-256), and creates POSTGRES_DB with a temporary server that listens on the socket
# only; then it runs the command, `postgres` by default. Run as root, it gives PGDATA to the
# postgres user (999) and runs as that user, like the upstream image's gosu step.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
mkdir -p "$PGDATA"
chmod 700 "$PGDATA" 2>/dev/null || :  # PostgreSQL refuses a data directory others can read
mkdir -p /var/run/postgresql 2>/dev/null || :
chmod 3775 /var/run/postgresql 2>/dev/null || :

if [ "$(id -u)" = 0 ]; then
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chown postgres:postgres /var/run/postgresql 2>/dev/null || :
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
      echo "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set" >&2
      exit 1
    fi
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  password_file=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
  initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256
  rm -f "$password_file"
  printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  pg_ctl --wait --silent --options="-c listen_addresses='' -p 5432" start
  if [ "$database" != postgres ]; then
    psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres \
      --set=name="$database" <<'SQL'
CREATE DATABASE :"name";
SQL
  fi
  pg_ctl --wait --silent --mode=fast stop
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
