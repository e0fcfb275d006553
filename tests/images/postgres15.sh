#!/usr/bin/env bash
# postgres15: PostgreSQL 15 on Debian bookworm (two layers: base system, then postgres; debian-postgres.sh).
# Usage: postgres15.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-postgres.sh" bookworm "$1"
