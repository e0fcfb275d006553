#!/usr/bin/env bash
# features: busybox base + two layers exercising whiteouts, opaque dirs, hardlinks, symlinks,
# xattrs, empty/multi-chunk files, devices, fifos; `sh /check.sh` prints OK.
# Usage: features.sh OUTDIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sl-features.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 "$here/features.py" "$tmp"
python3 "$here/oci.py" layout "$out" \
    --layer "$tmp/base.tar" --layer "$tmp/lower.tar" --layer "$tmp/upper.tar" \
    --created-by "busybox-static: /bin/busybox and applet links" \
    --created-by "features: lower layer" \
    --created-by "features: upper layer (whiteouts, opaque dir, replaced file, check.sh)" \
    --config '{"Cmd": ["sh", "/check.sh"],
               "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}'
