#!/usr/bin/env bash
# python311: a Python 3.11 web app on Debian bookworm (two layers: base system, then python; debian-python.sh).
# Usage: python311.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-python.sh" bookworm "$1"
