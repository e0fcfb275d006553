#!/usr/bin/env bash
# python39: a Python 3.9 web app on Debian bullseye (two layers: base system, then python; debian-python.sh).
# Usage: python39.sh OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-python.sh" bullseye "$1"
