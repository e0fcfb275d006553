#!/usr/bin/env bash
# busybox: one layer made from Debian's busybox-static, Cmd ["sh"]. Usage: busybox.sh OUTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sl-busybox.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 "$here/oci.py" busybox-layer "$tmp/busybox.tar"
python3 "$here/oci.py" layout "$out" --layer "$tmp/busybox.tar" \
    --created-by "busybox-static: /bin/busybox and applet links" \
    --config '{"Cmd": ["sh"],
               "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}'
