#!/usr/bin/env bash
# redis7: redis 7.0 on Debian bookworm (two layers: base system, then redis).
# Usage: redis7.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-redis.sh" bookworm "$1"
