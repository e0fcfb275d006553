#!/usr/bin/env bash
# Runs test-proxy-store ($1) against a real PostgreSQL on 127.0.0.1 (initdb + pg_ctl as user
# postgres in a scratch directory, port chosen at run time, stopped by its PID):
#   SL_TEST_PG   libpq conninfo of an empty database
# Exit 77 (skip) when PostgreSQL or runuser is missing, unless CI=true.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
pg=${SL_PG_BIN:-/usr/lib/postgresql/15/bin}

. "$here/../../live.sh"
live_init sl-store-test python3 runuser "$pg/initdb" "$pg/pg_ctl" "$pg/createdb"
if ! id postgres >/dev/null 2>&1; then
  echo "run-live: no postgres user" >&2
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi
chmod 755 "$tmp"
mkdir -p "$tmp/pg"
chown postgres: "$tmp/pg"
runuser -u postgres -- "$pg/initdb" -D "$tmp/pg/data" -U postgres -A trust -E UTF8 --no-sync \
  >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; exit 1; }
port=$(free_port)
runuser -u postgres -- "$pg/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/server.log" -w -t 30 \
  -o "-c fsync=off -c listen_addresses=127.0.0.1 -p $port -k $tmp/pg" start >/dev/null ||
  { cat "$tmp/pg/server.log" >&2; exit 1; }
pids+=("$(head -n1 "$tmp/pg/data/postmaster.pid")")
runuser -u postgres -- "$pg/createdb" -h "$tmp/pg" -p "$port" sltest || exit 1

export SL_TEST_PG="host=127.0.0.1 port=$port user=postgres dbname=sltest"
"$bin"
rc=$?
[ $rc -ne 0 ] && tail -n 20 "$tmp/pg/server.log"
exit $rc
