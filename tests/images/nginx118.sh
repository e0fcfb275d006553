#!/usr/bin/env bash
# nginx118: nginx 1.18 on Debian bullseye (two layers: base system, then nginx; debian-nginx.sh).
# Usage: nginx118.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-nginx.sh" bullseye "$1"
