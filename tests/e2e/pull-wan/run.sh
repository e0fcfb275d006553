#!/usr/bin/env bash
# Scenario: Starlight pulls over an emulated WAN link (tests/e2e/wan.sh). Two network namespaces
# joined by veth, RTT SL_WAN_RTT_MS (default 100 ms) and SL_WAN_RATE_MBIT (default 100 Mbit/s):
#   cloud: registry + PostgreSQL + starlight-proxy (converting and notifying happen here);
#   edge:  starlight-daemon + containerd (started with nsenter --net, never `ip netns exec`).
#  0. the link is measured: RTT (curl time_connect) within 20%, rate of 20 MB within 25%;
#  1. busybox, features (+ redis6, redis7) pushed, converted and notified in the cloud;
#  2. `ctr-starlight pull` of features over the link, `ctr run --snapshotter starlight` runs
#     its /check.sh: OK;
#  3. redis 6.0 then 7.0 over the link: the 7.0 payload equals the proxy's plan from 6.0, and
#     redis 7.0 answers PING;
#  4. for reference (not asserted: the benchmark asserts), a plain `ctr images pull`
#     (overlayfs) of the unconverted redis 7.0 over the same link, timed next to the Starlight
#     pulls.
# SL_E2E_SKIP_REDIS=1 skips the redis images (sections 3 and 4).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../wan.sh"
. "$here/../pull/common.sh"

e2e_require python3 curl skopeo tar nsenter
[ "$(id -u)" = 0 ] || e2e_skip "needs root (namespaces, containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
for b in "$CS" "$PX" "$DAEMON" "$SL_BIN/sl-netdelay"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"

images=(busybox features)
[ "${SL_E2E_SKIP_REDIS:-0}" = 1 ] || images+=(redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
W="$E2E_DIR/work"
mkdir -p "$W"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
secs() { awk -v m="$1" 'BEGIN { printf "%.2f", m / 1000 }'; }

# Build (or take from the cache) before the link exists: building may use apt in the root
# namespace; nothing below talks to anything outside the two namespaces.
declare -A layout
for img in "${images[@]}"; do
    layout[$img]=$(e2e_build_images "$img")
done

# ---------------------------------------------------------------- 0: the link
wan_setup "${SL_WAN_RTT_MS:-100}" "${SL_WAN_RATE_MBIT:-100}"
wan_check
e2e_log "0. link: RTT ${WAN_MEASURED_RTT_MS} ms, ${WAN_MEASURED_MBIT} Mbit/s" \
    "(asked ${WAN_RTT_MS} ms, ${WAN_RATE_MBIT} Mbit/s)"

# ---------------------------------------------------------------- 1: the cloud side
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_registry
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_postgres
R=$E2E_REGISTRY
pport=$(E2E_NETNS=$WAN_CLOUD_NS e2e_free_port)
mkdir -p "$E2E_DIR/proxy-cache"
"${WAN_CLOUD[@]}" "$PX" --listen "$WAN_CLOUD_IP:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
    --registry-insecure --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 1GiB \
    >>"$E2E_DIR/logs/proxy.log" 2>&1 &
e2e_track_pid proxy $!
U="http://$WAN_CLOUD_IP:$pport"
e2e_wait_for "proxy" 20 wan_cloud curl -fsS -o /dev/null "$U/health-check"
for img in "${images[@]}"; do
    wan_cloud skopeo copy --quiet --dest-tls-verify=false "oci:${layout[$img]}:latest" \
        "docker://$R/$img:src" || e2e_fail "push $img"
    wan_cloud "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/$img.convert.log" ||
        { cat "$W/$img.convert.log" >&2; e2e_fail "convert --notify $img"; }
done
e2e_log "1. cloud ($WAN_CLOUD_NS): registry $R, proxy $U; converted and notified: ${images[*]}"

# ---------------------------------------------------------------- the edge side
ROOT="$E2E_DIR/root"
CTL="$E2E_DIR/ctl.sock"
SNAP="$E2E_DIR/snap.sock"
CTRD_SOCK="$E2E_DIR/containerd/containerd.sock" # e2e_start_containerd's address
SN=(--snapshotter starlight)
"${WAN_EDGE[@]}" "$DAEMON" --root "$ROOT" --control-socket "$CTL" --snapshotter-socket "$SNAP" \
    --proxy "$U" --containerd-socket "$CTRD_SOCK" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
e2e_track_pid starlight-daemon $!
e2e_wait_for "the control socket" 15 curl -fsS --unix-socket "$CTL" http://localhost/v1/version
E2E_NETNS=$WAN_EDGE_NS e2e_start_containerd "$SNAP"
[ "$E2E_CONTAINERD_ADDRESS" = "$CTRD_SOCK" ] || e2e_fail "containerd at $E2E_CONTAINERD_ADDRESS"
e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots "${SN[@]}" ls
D=(--daemon "$CTL")
[ "$(readlink "/proc/$E2E_CONTAINERD_PID/ns/net")" = "$(readlink "/run/netns/$WAN_EDGE_NS" 2>/dev/null ||
    stat -L -c 'net:[%i]' "/run/netns/$WAN_EDGE_NS")" ] || e2e_fail "containerd is not in $WAN_EDGE_NS"
wan_edge "$CS" ping "${D[@]}" >"$W/ping" || e2e_fail "ping the proxy over the link"
e2e_log "edge ($WAN_EDGE_NS): daemon + containerd; $(cat "$W/ping")"

# ---------------------------------------------------------------- 2: features
t0=$(date +%s%N)
wan_edge "$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/ft.pull" 2>"$W/ft.pull.err" ||
    { cat "$W/ft.pull.err" >&2; e2e_fail "pull features over the link"; }
ft_ms=$(ms_since "$t0")
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-ft-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "ctr run features /check.sh"; }
run_ms=$(ms_since "$t0")
e2e_log "2. features: $(cat "$W/ft.pull") (pull $(secs "$ft_ms") s); ctr run /check.sh OK" \
    "$(secs "$run_ms") s after the pull started"

# ---------------------------------------------------------------- 3: redis 6 -> 7
if [ "${SL_E2E_SKIP_REDIS:-0}" != 1 ]; then
    t0=$(date +%s%N)
    wan_edge "$CS" pull "${D[@]}" --insecure "$R/redis6:sl" >"$W/r6.pull" 2>"$W/r6.pull.err" ||
        { cat "$W/r6.pull.err" >&2; e2e_fail "pull redis6"; }
    r6_ms=$(ms_since "$t0")
    plan=$(SL_NETEXEC="nsenter --net=/run/netns/$WAN_CLOUD_NS --" \
        pull_plan_bytes "$U" "$R" "$P" redis6 redis7)
    t0=$(date +%s%N)
    wan_edge "$CS" pull "${D[@]}" --insecure "$R/redis7:sl" >"$W/r7.pull" 2>"$W/r7.pull.err" ||
        { cat "$W/r7.pull.err" >&2; e2e_fail "pull redis7"; }
    r7_ms=$(ms_since "$t0")
    got=$(pull_fetched_payload redis7 "$E2E_DIR/logs/starlight-daemon.log")
    [ "$got" = "$plan" ] ||
        e2e_fail "redis 6 -> 7 fetched a payload of $got bytes, the proxy's plan from=6.0 is $plan"
    pull_redis_ping "$R/redis7:sl" "sl-r7-$$" "${SN[@]}"
    r7_ready_ms=$(ms_since "$t0")
    e2e_log "3. redis6: $(cat "$W/r6.pull") ($(secs "$r6_ms") s)"
    e2e_log "3. redis6 -> 7: $(cat "$W/r7.pull") ($(secs "$r7_ms") s; payload = plan = $plan" \
        "bytes); PING -> PONG $(secs "$r7_ready_ms") s after the pull started"

    # ------------------------------------------------------------ 4: reference: plain pull
    # ctr downloads in its own process: run it in the edge namespace
    t0=$(date +%s%N)
    wan_edge ctr --address "$E2E_CONTAINERD_ADDRESS" -n plain images pull --plain-http \
        "$R/redis7:src" >/dev/null 2>"$W/plain.err" ||
        { cat "$W/plain.err" >&2; e2e_fail "ctr images pull redis7 (overlayfs)"; }
    plain_ms=$(ms_since "$t0")
    e2e_log "4. reference over the same link: plain ctr images pull redis7 (overlayfs)" \
        "$(secs "$plain_ms") s; Starlight redis6 (fresh) $(secs "$r6_ms") s," \
        "redis6 -> 7 update $(secs "$r7_ms") s"
else
    e2e_log "3-4. redis skipped (SL_E2E_SKIP_REDIS=1)"
fi
e2e_log "PASS"
