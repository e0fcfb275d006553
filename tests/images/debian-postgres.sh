#!/usr/bin/env bash
# PostgreSQL (Debian SUITE's version) with a database cluster initialised at build time in
# /var/lib/postgresql/data (trust authentication), run as user postgres on 127.0.0.1:5432
# (debian-app.sh). Usage: debian-postgres.sh SUITE OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-app.sh" "$1" "$2" postgresql \
    '{"Cmd":["pg-run"],"User":"postgres",
      "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "ExposedPorts":{"5432/tcp":{}},"WorkingDir":"/var/lib/postgresql"}' '
bin=$(ls -d /usr/lib/postgresql/*/bin)
runuser -u postgres -- "$bin/initdb" -D /var/lib/postgresql/data -U postgres -A trust -E UTF8
cat >/usr/local/bin/pg-run <<SH
#!/bin/sh
exec $bin/postgres -D /var/lib/postgresql/data -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=/tmp -c fsync=off
SH
chmod 755 /usr/local/bin/pg-run
'
