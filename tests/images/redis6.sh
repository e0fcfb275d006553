#!/usr/bin/env bash
# redis6: redis 6.0 on Debian bullseye (two layers: base system, then redis).
# Usage: redis6.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-redis.sh" bullseye "$1"
