#!/usr/bin/env bash
# `make demo`: Starlight against plain containerd over an emulated WAN, on this machine.
#   1. builds redis 6.0 (bullseye) and redis 7.0 (bookworm) without pulling anything (debootstrap,
#      cached after the first run: a few minutes once, then a second);
#   2. two network namespaces joined by an emulated link (tests/e2e/wan.sh): RTT
#      SL_DEMO_RTT_MS (default 100 ms), SL_DEMO_RATE_MBIT (default 100 Mbit/s), measured first;
#   3. cloud: registry + PostgreSQL + starlight-proxy; both images pushed, converted, notified;
#   4. edge: starlight-daemon + containerd, started fresh (empty state) for each of:
#        (1) plain containerd: `ctr images pull` of the unconverted redis 7.0 + `ctr run`;
#        (2) Starlight, no traces yet: `ctr-starlight pull` of redis 7.0 + `ctr run
#            --snapshotter starlight`, started as soon as the pull reports the image ready (the
#            rest streams in behind);
#        then traces recorded once, on a throwaway node: redis 7.0 pulled, `ctr-starlight
#        optimizer on --group demo`, run until PONG, `optimizer off`, `ctr-starlight report`
#        to the proxy (which ranks every later delta by them: hence (2) before);
#        (3) Starlight, traced: the same as (2), the traced files now sent first;
#        (4) Starlight update: redis 6.0 pulled first, then the same as (2) for 7.0;
#      each timed from the start of the (7.0) pull until `redis-cli ping` answers PONG;
#   5. a table of times and bytes. Nothing is asserted about speed (the benchmark and
#      tests/e2e/demo do that); any failing step stops the demo with an error.
# SL_DEMO_SHORT=1 (the test suite's variant) builds only redis 7.0 and leaves out (4).
# SL_DEMO_RESULTS=FILE also writes the numbers to FILE as key=value lines (times in ms, bytes):
# plain_ms, sl_untraced_ms, sl_traced_ms, [sl_update_ms], *_rx, and delta_* (the proxy's plan
# for a fresh node after the report: delta_traced_first=1, delta_traced_contents,
# delta_contents, delta_traced_paths).
# Everything started is stopped by PID on exit; namespaces, the safety route and mounts are
# removed (tests/e2e/lib.sh, wan.sh). Needs root. Usage: scripts/demo.sh [BUILD_DIR]
# (SL_DEMO_IMAGE=busybox, the old fast path, is gone: the comparison needs redis.)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
export SL_BUILD=$build SL_BIN=$build/bin
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/e2e/lib.sh"
. "$src/tests/e2e/wan.sh"
. "$src/tests/e2e/pull/common.sh"
E2E_NAME=demo

CS="$SL_BIN/ctr-starlight"
for b in "$CS" "$SL_BIN/starlight-proxy" "$SL_BIN/starlight-daemon" "$SL_BIN/sl-netdelay"; do
    [ -x "$b" ] || e2e_fail "$b missing: run make build"
done
[ "$(id -u)" = 0 ] || e2e_fail "make demo needs root (namespaces, containerd, FUSE, mounts)"
[ -e /dev/fuse ] || e2e_fail "no /dev/fuse"
[ -z "${SL_DEMO_IMAGE:-}" ] || e2e_log "note: SL_DEMO_IMAGE is ignored (the demo always uses redis)"
e2e_require skopeo curl python3 nsenter containerd ctr runc
rtt=${SL_DEMO_RTT_MS:-100} rate=${SL_DEMO_RATE_MBIT:-100}
short=${SL_DEMO_SHORT:-0}
images=(redis7)
[ "$short" = 1 ] || images=(redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
t_demo=$(date +%s%N)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
secs() { awk -v m="$1" 'BEGIN { printf "%.1f", m / 1000 }'; }
# bytes received by the edge end of the link so far
link_rx() { wan_edge cat /proc/net/dev | awk -v i="we$$" '{ sub(/:/, " ") } $1 == i { print $2 }'; }

say "1. build ${images[*]} (no pulls; cached after the first run)"
t0=$(date +%s)
declare -A layout
for img in "${images[@]}"; do
    layout[$img]=$(e2e_build_images "$img") || e2e_fail "build $img"
done
echo "ready in $(($(date +%s) - t0)) s"

say "2. the WAN: two network namespaces, RTT $rtt ms, $rate Mbit/s"
wan_setup "$rtt" "$rate"
wan_check
echo "cloud $WAN_CLOUD_NS ($WAN_CLOUD_IP) <-> edge $WAN_EDGE_NS ($WAN_EDGE_IP):" \
    "measured RTT $WAN_MEASURED_RTT_MS ms, $WAN_MEASURED_MBIT Mbit/s"

say "3. cloud: registry, PostgreSQL, starlight-proxy; push, convert and notify ${images[*]}"
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_registry
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_postgres
R=$E2E_REGISTRY
pport=$(E2E_NETNS=$WAN_CLOUD_NS e2e_free_port)
mkdir -p "$E2E_DIR/proxy-cache"
"${WAN_CLOUD[@]}" "$SL_BIN/starlight-proxy" --listen "$WAN_CLOUD_IP:$pport" \
    --postgres "$E2E_PG_CONNINFO" --registry "$R" --registry-insecure \
    --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 1GiB >>"$E2E_DIR/logs/proxy.log" 2>&1 &
e2e_track_pid proxy $!
U="http://$WAN_CLOUD_IP:$pport"
e2e_wait_for "the proxy" 20 wan_cloud curl -fsS -o /dev/null "$U/health-check"
for img in "${images[@]}"; do
    wan_cloud skopeo copy --quiet --dest-tls-verify=false "oci:${layout[$img]}:latest" \
        "docker://$R/$img:src" || e2e_fail "push $img"
    t0=$(date +%s%N)
    wan_cloud "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$E2E_DIR/logs/convert-$img.log" ||
        { cat "$E2E_DIR/logs/convert-$img.log" >&2; e2e_fail "convert --notify $img"; }
    echo "$R/$img:src -> $R/$img:sl, converted and notified in $(secs "$(ms_since "$t0")") s"
done
echo "registry $R, proxy $U"

# the unconverted redis 7.0's download: manifest, config and layers (what `ctr images pull` gets)
src_bytes=$(wan_cloud curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/redis7/manifests/src" | python3 -c '
import json, sys
raw = sys.stdin.buffer.read()
m = json.loads(raw)
print(len(raw) + m["config"]["size"] + sum(l["size"] for l in m["layers"]))')

# starlight_pull IMG OUT: `ctr-starlight pull` of R/IMG:sl on the edge, in the background: returns
# once the image is ready (its layers published; the rest streams in behind), as a container
# can start then. starlight_pull_wait waits for the pull to complete; its summary goes to OUT.
BG_PULL=''
e2e_on_exit '[ -z "$BG_PULL" ] || _e2e_stop "$BG_PULL" 5'
starlight_pull() {
    "${WAN_EDGE[@]}" "$CS" pull --daemon "$PULL_EDGE_CTL" --insecure "$R/$1:sl" >"$2" 2>"$2.err" &
    BG_PULL=$! BG_OUT=$2
    e2e_wait_for "$1 to be ready" 120 sh -c "grep -q 'ready after' '$2.err' || ! kill -0 $BG_PULL"
    grep -q 'ready after' "$2.err" || starlight_pull_wait
}
starlight_pull_wait() {
    wait "$BG_PULL" || { BG_PULL=''; cat "$BG_OUT.err" >&2; e2e_fail "ctr-starlight pull failed"; }
    BG_PULL=''
    cat "$BG_OUT"
}
# "complete after X s", from the pull's summary, in ms
complete_ms() { sed -n 's/.*complete after \([0-9.]*\) s.*/\1/p' "$1" | awk '{ printf "%d", $1 * 1000 }'; }
# ready after X s, from the pull's log
ready_ms() { sed -n 's/.*ready after \([0-9.]*\) s.*/\1/p' "$1.err" | awk '{ printf "%d", $1 * 1000 }'; }
# the MB fetched, from a pull summary ("REF: fetched X of Y MB ...")
fetched_mb() { sed -n 's/.*: fetched \([0-9.]*\) of .*/\1/p' "$1"; }
W=$E2E_DIR/demo
mkdir -p "$W"

say "4. (1) plain containerd: ctr images pull + ctr run redis 7.0 (fresh edge node)"
pull_edge_start "$U" "$WAN_EDGE_NS"
rx0=$(link_rx)
t0=$(date +%s%N)
# ctr downloads in its own process: it runs in the edge namespace
wan_edge ctr --address "$E2E_CONTAINERD_ADDRESS" images pull --plain-http "$R/redis7:src" \
    >"$W/plain.pull" 2>&1 || { cat "$W/plain.pull" >&2; e2e_fail "ctr images pull redis7"; }
plain_pull_ms=$(ms_since "$t0")
pull_redis_ping "$R/redis7:src" "plain-$$"
plain_ms=$(ms_since "$t0")
plain_rx=$(($(link_rx) - rx0))
echo "pulled in $(secs "$plain_pull_ms") s; redis-cli ping -> PONG $(secs "$plain_ms") s after the pull started"
pull_edge_stop

# sl_fresh TAG: on a fresh edge node, time `ctr-starlight pull` + `ctr run --snapshotter starlight`
# of redis 7.0 until PONG; sets sl_ms and sl_rx, the pull's summary in $W/TAG.pull.
sl_fresh() {
    pull_edge_start "$U" "$WAN_EDGE_NS"
    wan_edge "$CS" ping --daemon "$PULL_EDGE_CTL" || e2e_fail "the daemon cannot reach the proxy"
    local rx0 t0
    rx0=$(link_rx)
    t0=$(date +%s%N)
    starlight_pull redis7 "$W/$1.pull"
    pull_redis_ping "$R/redis7:sl" "$1-$$" --snapshotter starlight
    sl_ms=$(ms_since "$t0")
    starlight_pull_wait
    sl_rx=$(($(link_rx) - rx0))
    echo "redis-cli ping -> PONG $(secs "$sl_ms") s after the pull started"
    pull_edge_stop
}
# the proxy reads redis 7.0 from the registry once here, so that neither Starlight row pays it
wan_cloud curl -fsS -o /dev/null "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1" ||
    e2e_fail "GET /starlight/delta (warm-up)"

say "4. (2) Starlight, no traces yet: ctr-starlight pull + ctr run --snapshotter starlight redis 7.0 (fresh edge node)"
sl_fresh sl7
sl_plain_ms=$sl_ms sl_plain_rx=$sl_rx

say "4. traces recorded once: optimizer on, redis 7.0 until PONG, optimizer off, report (throwaway edge node)"
pull_edge_start "$U" "$WAN_EDGE_NS"
D=(--daemon "$PULL_EDGE_CTL")
starlight_pull redis7 "$W/trace.pull"
starlight_pull_wait >/dev/null
wan_edge "$CS" optimizer "${D[@]}" on --group demo | grep -q 'optimizer on (group demo)' ||
    e2e_fail "optimizer on"
pull_redis_ping "$R/redis7:sl" "trace-$$" --snapshotter starlight
wan_edge "$CS" optimizer "${D[@]}" off >/dev/null || e2e_fail "optimizer off"
wan_edge "$CS" report "${D[@]}" --proxy "$U" >"$W/report.out" 2>&1 ||
    { cat "$W/report.out" >&2; e2e_fail "ctr-starlight report"; }
grep -q '^reported [1-9]' "$W/report.out" || e2e_fail "nothing reported: $(cat "$W/report.out")"
cat "$W/report.out"
pull_edge_stop
# what a fresh node is sent now: the traced contents first
wan_cloud curl -fsS -o "$W/delta" "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1" ||
    e2e_fail "GET /starlight/delta"
pull_delta_traced "$W/delta" >"$W/delta.check" || e2e_fail "the delta does not send the traced contents first"
echo "the proxy now sends $(sed -n 's/^traced_contents=//p' "$W/delta.check") traced contents" \
    "of $(sed -n 's/^contents=//p' "$W/delta.check") first"

say "4. (3) Starlight, traced: ctr-starlight pull + ctr run --snapshotter starlight redis 7.0 (fresh edge node)"
sl_fresh slt7
sl_traced_ms=$sl_ms sl_traced_rx=$sl_rx

rows=("(1) plain containerd" "$plain_ms" "$plain_pull_ms" "$plain_pull_ms"
    "$(awk -v b="$src_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')" "$plain_rx"
    "(2) Starlight, fresh, no traces" "$sl_plain_ms" "$(ready_ms "$W/sl7.pull")"
    "$(complete_ms "$W/sl7.pull")" "$(fetched_mb "$W/sl7.pull")" "$sl_plain_rx"
    "(3) Starlight, fresh, traced" "$sl_traced_ms" "$(ready_ms "$W/slt7.pull")"
    "$(complete_ms "$W/slt7.pull")" "$(fetched_mb "$W/slt7.pull")" "$sl_traced_rx")
up_ms=''
if [ "$short" != 1 ]; then
    say "4. (4) Starlight update: redis 6.0 first, then 7.0 (fresh edge node, traced)"
    pull_edge_start "$U" "$WAN_EDGE_NS"
    t0=$(date +%s%N)
    starlight_pull redis6 "$W/sl6.pull"
    pull_redis_ping "$R/redis6:sl" "sl6-$$" --snapshotter starlight
    echo "redis 6.0 answers PONG $(secs "$(ms_since "$t0")") s after its pull started (not counted)"
    starlight_pull_wait
    rx0=$(link_rx)
    t0=$(date +%s%N)
    starlight_pull redis7 "$W/up.pull"
    pull_redis_ping "$R/redis7:sl" "up7-$$" --snapshotter starlight
    up_ms=$(ms_since "$t0")
    starlight_pull_wait
    up_rx=$(($(link_rx) - rx0))
    echo "redis 7.0: redis-cli ping -> PONG $(secs "$up_ms") s after the pull started"
    pull_edge_stop
    rows+=("(4) Starlight, update 6.0 -> 7.0" "$up_ms" "$(ready_ms "$W/up.pull")"
        "$(complete_ms "$W/up.pull")" "$(fetched_mb "$W/up.pull")" "$up_rx")
fi

if [ -n "${SL_DEMO_RESULTS:-}" ]; then
    {
        echo "rtt_ms=$rtt"
        echo "rate_mbit=$rate"
        echo "plain_ms=$plain_ms"
        echo "plain_rx=$plain_rx"
        echo "sl_untraced_ms=$sl_plain_ms"
        echo "sl_untraced_rx=$sl_plain_rx"
        echo "sl_traced_ms=$sl_traced_ms"
        echo "sl_traced_rx=$sl_traced_rx"
        [ -z "$up_ms" ] || echo "sl_update_ms=$up_ms"
        sed 's/^/delta_/' "$W/delta.check"
    } >"$SL_DEMO_RESULTS"
fi

say "5. redis 7.0 until PONG over RTT $rtt ms / $rate Mbit/s (measured $WAN_MEASURED_RTT_MS ms, $WAN_MEASURED_MBIT Mbit/s)"
python3 - "${rows[@]}" <<'EOF'
import sys
a = sys.argv[1:]
rows = [a[i:i + 6] for i in range(0, len(a), 6)]
plain = int(rows[0][1])
print("%-33s %9s %9s %9s %11s %11s %8s" % ("", "to PONG", "ready", "complete", "fetched",
                                          "on the link", "speedup"))
for name, ms, ready, done, fetched, rx in rows:
    print("%-33s %7.1f s %7.1f s %7.1f s %8.1f MB %8.1f MB %7.1fx" % (
        name, int(ms) / 1e3, int(ready) / 1e3, int(done) / 1e3, float(fetched),
        int(rx) / 1e6, plain / max(int(ms), 1)))
print("""
to PONG: from the start of the (7.0) pull until `redis-cli ping` answers PONG; ready: the image
can start (plain: pulled and unpacked; Starlight: layers published, `ctr run` starts then and
the rest streams in); complete: every byte on the edge; fetched: (1) the unconverted image's
manifest, config and layers, (2)-(4) the `ctr-starlight pull` summary; on the link: bytes the
edge received; speedup: (1)'s time to PONG over the row's. (2) ran before any trace was
reported; then redis 7.0 was traced once on a throwaway node and reported, and the proxy
sends (3) and (4) the traced files first.""")
EOF
echo
echo "demo ran in $(secs "$(ms_since "$t_demo")") s (teardown follows)"
