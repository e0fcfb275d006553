#!/usr/bin/env bash
# nginx (Debian's default site on port 80) on Debian SUITE (debian-app.sh).
# Usage: debian-nginx.sh SUITE OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-app.sh" "$1" "$2" nginx \
    '{"Cmd":["nginx","-g","daemon off;"],
      "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "ExposedPorts":{"80/tcp":{}}}'
