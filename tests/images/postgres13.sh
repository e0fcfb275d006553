#!/usr/bin/env bash
# postgres13: PostgreSQL 13 on Debian bullseye (two layers: base system, then postgres; debian-postgres.sh).
# Usage: postgres13.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-postgres.sh" bullseye "$1"
