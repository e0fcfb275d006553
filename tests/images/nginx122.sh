#!/usr/bin/env bash
# nginx122: nginx 1.22 on Debian bookworm (two layers: base system, then nginx; debian-nginx.sh).
# Usage: nginx122.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-nginx.sh" bookworm "$1"
