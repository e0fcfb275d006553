#!/usr/bin/env bash
# Scenario: the remote-snapshot path. containerd's unpacker, driven by `ctr-remote image rpull`
# (which sets the stargz remote-snapshot labels), calls the starlight snapshotter's Prepare with
# containerd.io/snapshot.ref; starlight-daemon pulls the image through a real starlight-proxy
# (+ PostgreSQL + registry, all on loopback) and answers ALREADY_EXISTS:
#  1. busybox converted and notified; rpull of busybox:sl: the daemon pulled it (log, /metrics
#     starlight_remote_prepares_total{result="remote"}), containerd holds none of its layer
#     blobs (`ctr content ls`), and `ctr run --snapshotter starlight` echoes;
#  2. rpull of features:src, which the proxy does not know: a warning in the daemon's log,
#     starlight_fallbacks_total = 1, a normal unpack (its layer blobs are in containerd's
#     content store) and `ctr run` prints OK from /check.sh.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

e2e_require python3 curl skopeo psql ctr-remote
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
for b in "$CS" "$PX" "$SL_BIN/starlight-daemon"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"

W="$E2E_DIR/work"
mkdir -p "$W" "$E2E_DIR/proxy-cache"
e2e_start_registry
e2e_start_postgres
R=$E2E_REGISTRY
pport=$(e2e_free_port)
"$PX" --listen "127.0.0.1:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
    --registry-insecure --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 1GiB \
    >>"$E2E_DIR/logs/proxy.log" 2>&1 &
e2e_track_pid proxy $!
U="http://127.0.0.1:$pport"
e2e_wait_for "proxy" 20 curl -fsS -o /dev/null "$U/health-check"

e2e_push_image busybox busybox:src
e2e_push_image features features:src
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/busybox:src" "$R/busybox:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify busybox"; }

pull_edge_start "$U"
DLOG="$E2E_DIR/logs/starlight-daemon.log"
metric() { # metric NAME_AND_LABELS: its value on the daemon's /metrics (0 when absent)
    curl -fsS --unix-socket "$PULL_EDGE_CTL" http://localhost/metrics |
        awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? 0 : v) + 0 }'
}
rpull() {
    timeout 120 ctr-remote --address "$E2E_CONTAINERD_ADDRESS" image rpull --plain-http \
        --snapshotter starlight "$1" >"$W/rpull.log" 2>&1 ||
        { cat "$W/rpull.log" >&2; e2e_fail "ctr-remote image rpull $1"; }
}
# content_has IMG DIGEST: whether containerd's content store holds DIGEST
content_has() { e2e_ctr content ls -q | grep -qx "$1"; }

# ---------------------------------------------------------------- 1: a Starlight image
rpull "$R/busybox:sl"
grep -q "remote snapshot: .*busybox:sl layer .* served by Starlight" "$DLOG" ||
    e2e_fail "the daemon did not serve busybox:sl as a remote snapshot"
# the payload may still be streaming when rpull returns (the image is ready before that)
e2e_wait_for "the daemon's pull of busybox:sl to complete" 30 \
    grep -q "pull .*busybox:sl: [0-9]* bytes .*(remote snapshot)" "$DLOG"
[ "$(metric 'starlight_remote_prepares_total{result="remote"}')" -ge 1 ] ||
    e2e_fail "starlight_remote_prepares_total{result=remote} is 0"
[ "$(metric 'starlight_pulls_total{result="ok"}')" -ge 1 ] || e2e_fail "no ok pull in /metrics"
for d in $(pull_layers "$R" busybox); do
    ! content_has "$d" || e2e_fail "containerd fetched the layer blob $d of busybox:sl"
done
out=$(e2e_ctr_timeout 60 run --rm --snapshotter starlight "$R/busybox:sl" rm1 echo hello-remote) ||
    e2e_fail "ctr run busybox:sl: $out"
[ "$out" = hello-remote ] || e2e_fail "ctr run busybox:sl printed: $out"
[ "$(metric starlight_fallbacks_total)" = 0 ] || e2e_fail "a fallback for busybox:sl"
e2e_log "1. rpull busybox:sl: pulled by the daemon, no layer blob in containerd, ctr run OK"

# ---------------------------------------------------------------- 2: an image the proxy lacks
rpull "$R/features:src"
grep -q "remote snapshot: falling back to a normal unpack of .*features:src" "$DLOG" ||
    e2e_fail "no fallback warning for features:src"
[ "$(metric starlight_fallbacks_total)" = 1 ] ||
    e2e_fail "starlight_fallbacks_total = $(metric starlight_fallbacks_total), want 1"
fdig=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/features/manifests/src" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])')
content_has "$fdig" || e2e_fail "features:src was not unpacked normally (no layer blob $fdig)"
out=$(e2e_ctr_timeout 60 run --rm --snapshotter starlight "$R/features:src" rm2 /check.sh 2>&1) ||
    e2e_fail "ctr run features:src: $out"
echo "$out" | grep -qx OK || e2e_fail "features:src /check.sh printed: $out"
e2e_log "2. rpull features:src (unknown to the proxy): fallback = 1, normal unpack, ctr run OK"

pull_edge_stop
e2e_log "remote: all checks passed"
