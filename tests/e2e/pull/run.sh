#!/usr/bin/env bash
# Scenario: issue 4's acceptance over an emulated WAN link (tests/e2e/wan.sh): two network
# namespaces joined by veth, RTT SL_WAN_RTT_MS (default 40 ms) and SL_WAN_RATE_MBIT (default
# 100 Mbit/s):
#   cloud: registry + PostgreSQL + starlight-proxy (+ the test's relays and fake proxies);
#   edge:  starlight-daemon + containerd + runc (nsenter --net, never `ip netns exec`).
# Everything the edge fetches crosses the link: `ctr-starlight pull`, the daemon's registration
# in containerd, the `ctr images pull` of the unconverted images.
#  0. the link: the TCP handshake edge -> proxy (best of 3) takes the link's RTT (-20%, +20% + 5 ms)
#     (wan.sh's wan_check, rates included, is for the benchmarks: it moves 40 MB);
#  1. busybox, features, redis6, redis7 pushed, converted and notified in the cloud; the
#     daemon's control API answers version/status/ping/add-proxy/list-proxy, 400 on a bad pull;
#  2. busybox pulled through a slow relay (cloud side): the image is ready before the payload
#     is in, a read of a file whose chunks have not arrived is parked, then returns the right
#     bytes;
#  3. features (busybox's layer is held, so not sent again): every layer's FUSE tree has the
#     same full tree hash as the layer blob extracted with tar; /check.sh prints OK in a chroot
#     on the overlay of the layer dirs and in `ctr run --snapshotter starlight`; the full tree
#     hash (paths, modes, owners, sizes, link counts, link targets, devices, xattrs, content
#     sha256) of the running container's rootfs equals the unconverted image's through the
#     overlayfs snapshotter; /metrics moved; a pull with --namespace k8s.io registers there;
#  4. redis 6.0 then 7.0: the payload 7.0 fetches equals the proxy's plan for from=6.0; redis
#     7.0 answers PING in `ctr run`, and its rootfs tree hash equals overlayfs's;
#  5. daemon restarted: `ctr run` works again without a pull, every layer complete and local,
#     a new pull of features downloads no payload;
#  6. a relay flipping one payload byte of the first answer: the store rejects the chunk, the
#     daemon fetches it again (Range/If-Range) and the file reads the right bytes;
#  7. hostile headers from a fake proxy (traversal and absolute names, lying sizes, a chunk
#     outside the payload, a TOC tail that does not match its digest): clear errors, nothing
#     created outside the daemon's root, no layer recorded; the daemon then still pulls;
#  8. unconverted images (plain busybox; a pause-like detached sleep) unpack and run through
#     the starlight snapshotter (`ctr images pull --snapshotter starlight`).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../wan.sh"
. "$here/common.sh"

e2e_require python3 curl skopeo psql tar nsenter
[ "$(id -u)" = 0 ] || e2e_skip "needs root (namespaces, containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
for b in "$CS" "$PX" "$DAEMON" "$SL_BIN/sl-netdelay"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
T() { python3 "$here/tools.py" "$@"; }

images=(busybox features redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
W="$E2E_DIR/work"
mkdir -p "$W"

# Build (or take from the cache) before the link exists: building may use apt in the root
# namespace; nothing below talks to anything outside the two namespaces.
declare -A layout
for img in "${images[@]}"; do
    layout[$img]=$(e2e_build_images "$img")
done

# ---------------------------------------------------------------- 0: the link
wan_setup "${SL_WAN_RTT_MS:-40}" "${SL_WAN_RATE_MBIT:-100}"
pull_cloud_start "$WAN_CLOUD_NS" "$WAN_CLOUD_IP"
rtt=$(for i in 1 2 3; do wan_edge curl -fsS -o /dev/null -w '%{time_connect}\n' "$U/health-check"; done |
    sort -n | head -1 | awk '{ printf "%.1f", $1 * 1000 }')
awk -v m="$rtt" -v w="$WAN_RTT_MS" 'BEGIN { exit !(m >= 0.8 * w && m <= 1.2 * w + 5) }' ||
    e2e_fail "a TCP handshake over the ${WAN_RTT_MS} ms link took $rtt ms"
e2e_log "0. link $WAN_EDGE_NS -> $WAN_CLOUD_NS: TCP handshake $rtt ms (RTT ${WAN_RTT_MS} ms," \
    "${WAN_RATE_MBIT} Mbit/s)"

# ---------------------------------------------------------------- 1: cloud, edge, control API
CIP=$WAN_CLOUD_IP
for img in "${images[@]}"; do
    wan_cloud skopeo copy --quiet --dest-tls-verify=false "oci:${layout[$img]}:latest" \
        "docker://$R/$img:src" || e2e_fail "push $img"
    wan_cloud "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/$img.convert.log" ||
        { cat "$W/$img.convert.log" >&2; e2e_fail "convert --notify $img"; }
done
e2e_log "1. cloud ($WAN_CLOUD_NS): registry $R, proxy $U; converted and notified: ${images[*]}"

# layers IMG: the converted image's layer digests, bottom first
layers() { SL_NETEXEC="nsenter --net=/run/netns/$WAN_CLOUD_NS --" pull_layers "$R" "$1"; }
# cport: a free port in the cloud namespace
cport() { E2E_NETNS=$WAN_CLOUD_NS e2e_free_port; }

ROOT="$E2E_DIR/root"
MNT="$ROOT/mnt"
SN=(--snapshotter starlight)
# copy: complete layers are materialised as exact copies (docs/operations.md), so the rootfs
# tree hashes, link counts included, hold whether a container mounts FUSE or the trees
PULL_EDGE_DAEMON_ARGS="--materialize copy"
pull_edge_start "$U" "$WAN_EDGE_NS"
CTL=$PULL_EDGE_CTL
D=(--daemon "$CTL")
[ "$(readlink "/proc/$E2E_CONTAINERD_PID/ns/net")" = "$(readlink "/proc/$PULL_EDGE_DAEMON_PID/ns/net")" ] &&
    [ "$(stat -L -c %i "/proc/$PULL_EDGE_DAEMON_PID/ns/net")" = "$(stat -L -c %i "/run/netns/$WAN_EDGE_NS")" ] ||
    e2e_fail "containerd and the daemon are not both in $WAN_EDGE_NS"
# an edge-side ctr (it downloads in its own process)
ectr() { wan_edge timeout 300 ctr --address "$E2E_CONTAINERD_ADDRESS" "$@"; }

curl -fsS --unix-socket "$CTL" http://localhost/v1/status | grep -q '"layers":\[\]' ||
    e2e_fail "status of a fresh daemon"
"$CS" version "${D[@]}" | grep -q 'starlight-daemon [0-9]' || e2e_fail "version verb"
"$CS" ping "${D[@]}" >"$W/ping" || e2e_fail "ping the proxy over the link"
# the ping crosses the link: its round trip cannot be shorter than the link's
prtt=$(sed -n 's/.*HTTP 200, RTT \([0-9.]*\) ms.*/\1/p' "$W/ping")
awk -v r="$prtt" -v w="$WAN_RTT_MS" 'BEGIN { exit !(r != "" && r >= 0.8 * w) }' ||
    e2e_fail "ping over a ${WAN_RTT_MS} ms link: $(cat "$W/ping")"
rport=$(cport)
"${WAN_CLOUD[@]}" python3 "$here/tools.py" relay "$CIP:$rport" "$CIP:$pport" 300000 \
    >>"$E2E_DIR/logs/relay.log" 2>&1 &
e2e_track_pid relay $!
"$CS" add-proxy "${D[@]}" slow "http://$CIP:$rport" >/dev/null || e2e_fail "add-proxy"
"$CS" list-proxy "${D[@]}" | grep -q "^slow .*$CIP:$rport" || e2e_fail "list-proxy"
[ "$(stat -c %a "$ROOT/proxies.json")" = 600 ] || e2e_fail "proxies.json is not 0600"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$CTL" -X POST -d '{"bogus":1}' \
    http://localhost/v1/pull)
[ "$code" = 400 ] || e2e_fail "a pull without ref answered $code"
e2e_log "1. edge ($WAN_EDGE_NS): daemon + containerd; control API: version, status," \
    "$(cat "$W/ping"), add-proxy, list-proxy, 400 on a bad request"

# ---------------------------------------------------------------- 2: slow stream, parked read
mkdir -p "$W/src"
extract() { # extract IMG: every layer blob of IMG:sl extracted with tar under $W/src/<hex>
    local d hex
    for d in $(layers "$1"); do
        hex=${d#sha256:}
        [ -d "$W/src/$hex" ] && continue
        mkdir -p "$W/src/$hex"
        wan_cloud curl -fsS -o "$W/blob" "http://$R/v2/$1/blobs/$d"
        tar --xattrs --xattrs-include='*' --same-owner -xzf "$W/blob" -C "$W/src/$hex" ||
            e2e_fail "extract $d"
    done
    rm -f "$W/blob"
}
extract busybox
bbl=$(layers busybox | tail -1)
"$CS" pull "${D[@]}" --proxy slow --insecure "$R/busybox:sl" >"$W/bb.pull" 2>"$W/bb.pull.err" &
pullpid=$!
e2e_wait_for "busybox layer on the fs" 20 test -d "$MNT/${bbl#sha256:}/bin"
t0=$(date +%s%N)
want=$(sha256sum <"$W/src/${bbl#sha256:}/bin/busybox" | cut -d' ' -f1)
got=$(timeout 60 sha256sum <"$MNT/${bbl#sha256:}/bin/busybox" | cut -d' ' -f1)
waited=$((($(date +%s%N) - t0) / 1000000))
[ "$got" = "$want" ] || e2e_fail "read during the pull returned wrong bytes"
wait "$pullpid" || { cat "$W/bb.pull.err" >&2; e2e_fail "pull busybox through the slow relay"; }
parked=$(curl -fsS --unix-socket "$CTL" http://localhost/v1/status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["readsParked"])')
[ "$parked" -gt 0 ] || e2e_fail "no read was parked during the slow pull"
[ "$waited" -ge 500 ] || e2e_fail "the read took ${waited} ms: it did not wait for the stream"
e2e_log "2. $(cat "$W/bb.pull"); a read blocked ${waited} ms ($parked parked) and got the right bytes"

# ---------------------------------------------------------------- 3: features, tree hashes
overlay() { # overlay IMG DIR: mount the FUSE layer dirs of IMG read-only, top-most first
    local img=$1 dir=$2 lower="" d
    for d in $(layers "$img"); do
        lower="$MNT/${d#sha256:}${lower:+:$lower}"
    done
    mkdir -p "$dir"
    mount -t overlay overlay -o "ro,lowerdir=$lower" "$dir"
}
# rootfs_tree NS IMAGE [SNAPSHOTTER_ARGS...]: the full tree hash (tools.py tree --nlink) of the
# rootfs of a running container of IMAGE in containerd namespace NS, as the shim mounted it
# (seen from here: no /proc, /dev... of the container inside). Prints "HASH COUNT"; the hashed
# lines go to $W/tree.NS.<image name:tag>.
rootfs_tree() {
    local ns=$1 img=$2 name="sl-tree-$RANDOM" rootfs out rc=0
    shift 2
    e2e_ctr_timeout 60 -n "$ns" run -d "$@" "$img" "$name" sleep 600 >/dev/null ||
        e2e_fail "ctr run -d $img ($ns)"
    rootfs="$E2E_CONTAINERD_STATE/io.containerd.runtime.v2.task/$ns/$name/rootfs"
    mountpoint -q "$rootfs" || e2e_fail "no rootfs mount at $rootfs"
    out=$(TREE_VERBOSE=1 T tree "$rootfs" --nlink 2>"$W/tree.$ns.${img##*/}") || rc=$?
    e2e_ctr -n "$ns" tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
    e2e_wait_for "$name to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS -n $ns tasks ls | grep $name | grep -q RUNNING"
    e2e_ctr -n "$ns" tasks delete "$name" >/dev/null 2>&1 || true
    e2e_ctr -n "$ns" containers delete "$name" >/dev/null || e2e_fail "delete $name"
    [ "$rc" = 0 ] || e2e_fail "tree of $rootfs"
    echo "$out"
}
t0=$(date +%s%N)
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/ft.pull" 2>"$W/ft.pull.err" ||
    { cat "$W/ft.pull.err" >&2; e2e_fail "pull features"; }
ft_ms=$((($(date +%s%N) - t0) / 1000000))
extract features
nl=0
for d in $(layers features); do
    a=$(T tree "$MNT/${d#sha256:}")
    b=$(T tree "$W/src/${d#sha256:}" --src)
    [ "$a" = "$b" ] || e2e_fail "layer $d: FUSE tree $a, tar tree $b"
    nl=$((nl + 1))
done
[ "$nl" = 3 ] || e2e_fail "features has $nl layers, expected 3"
overlay features "$W/ft"
out=$(chroot "$W/ft" /bin/sh /check.sh 2>&1) || true
umount "$W/ft"
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "features /check.sh"; }
e2e_log "3. $(cat "$W/ft.pull") ($ft_ms ms); tree hashes equal tar's for $nl layers, /check.sh OK in a chroot"
nbf=$({ layers busybox; layers features; } | sort -u | wc -l) # busybox's layer is features' base
# Metrics moved: two pulls ok, bytes fetched, FUSE reads counted, a ready time observed.
curl -fsS --unix-socket "$CTL" http://localhost/metrics >"$W/metrics.txt" || e2e_fail "GET /metrics"
metric() { awk -v k="$1" '$1 == k { print $2 }' "$W/metrics.txt"; }
[ "$(metric 'starlight_pulls_total{result="ok"}')" = 2 ] &&
    [ "$(metric starlight_pull_bytes_fetched_total)" -gt 10000000 ] &&
    [ "$(metric 'starlight_fs_operations_total{op="read"}')" -gt 0 ] &&
    [ "$(metric starlight_pull_ready_seconds_count)" = 2 ] &&
    [ "$(metric 'starlight_store_layers{state="complete"}')" = "$nbf" ] &&
    awk -v v="$(metric starlight_fs_parked_wait_seconds_total)" 'BEGIN { exit !(v >= 0.5) }' ||
    e2e_fail "metrics did not move as expected: $(grep -v '^#' "$W/metrics.txt")"
e2e_log "3. /metrics: $(metric 'starlight_pulls_total{result="ok"}') pulls ok, $(metric starlight_pull_bytes_fetched_total) bytes fetched, $(metric 'starlight_fs_operations_total{op="read"}') FUSE reads, parked reads waited $(metric starlight_fs_parked_wait_seconds_total) s"

t0=$(date +%s%N)
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-ft-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "ctr run features /check.sh"; }
ms=$((($(date +%s%N) - t0) / 1000000))
sl=$(rootfs_tree default "$R/features:sl" "${SN[@]}")
# the unconverted image: a plain unpack of the converted one would add its TOC entry
# (stargz.index.json), which the FUSE trees do not show
ectr -n plain images pull --plain-http "$R/features:src" >/dev/null 2>"$W/plain.err" ||
    { cat "$W/plain.err" >&2; e2e_fail "ctr images pull features (overlayfs)"; }
ov=$(rootfs_tree plain "$R/features:src")
[ "$sl" = "$ov" ] || e2e_fail "features rootfs differs from the unconverted image's: starlight '$sl' vs overlayfs '$ov'"
# what the hash covers: xattrs, link counts, devices, symlink targets, owners of the features
for l in 'data/xattr.txt 100[0-7]* 0:0 20 [0-9a-f]* n1 user.second=32,user.starlight=746573742d76616c7565' \
    'data/hardlink-a 100640 0:0 20 [0-9a-f]* n2' 'data/chardev 20[0-7]* 0:0 dev 1:3' \
    'data/link-abs 120777 0:0 -> /data/big.bin' 'data/upper/one 100[0-7]* 0:0 [0-9]* [0-9a-f]* n2'; do
    grep -qx "$l" "$W/tree.default.features:sl" ||
        e2e_fail "features rootfs: no line '$l' in $(grep "^${l%% *} " "$W/tree.default.features:sl")"
done
"$CS" pull "${D[@]}" --namespace k8s.io --insecure "$R/features:sl" >/dev/null 2>"$W/k8s.err" ||
    { cat "$W/k8s.err" >&2; e2e_fail "pull features --namespace k8s.io"; }
e2e_ctr -n k8s.io images ls -q | grep -qx "$R/features:sl" || e2e_fail "not registered in k8s.io"
e2e_log "3. ctr run --snapshotter starlight: /check.sh OK (${ms} ms); rootfs tree = overlayfs's ($sl); k8s.io registered"

# ---------------------------------------------------------------- 4: redis 6 -> 7
"$CS" pull "${D[@]}" --insecure "$R/redis6:sl" >"$W/r6.pull" 2>"$W/r6.pull.err" ||
    { cat "$W/r6.pull.err" >&2; e2e_fail "pull redis6"; }
# the proxy's plan for 7.0 given 6.0: the payload length in the prelude (bytes 24..31)
plan=$(SL_NETEXEC="nsenter --net=/run/netns/$WAN_CLOUD_NS --" pull_plan_bytes "$U" "$R" "$P" redis6 redis7)
full=$(SL_NETEXEC="nsenter --net=/run/netns/$WAN_CLOUD_NS --" pull_plan_bytes "$U" "$R" "$P" busybox redis7)
[ "$plan" -gt 0 ] && [ "$plan" -lt "$full" ] ||
    e2e_fail "the plan from 6.0 ($plan bytes) is not smaller than from an unrelated image ($full)"
t0=$(date +%s%N)
"$CS" pull "${D[@]}" --insecure "$R/redis7:sl" >"$W/r7.pull" 2>"$W/r7.pull.err" ||
    { cat "$W/r7.pull.err" >&2; e2e_fail "pull redis7"; }
got=$(pull_fetched_payload redis7 "$E2E_DIR/logs/starlight-daemon.log")
[ "$got" = "$plan" ] || e2e_fail "redis 6 -> 7 fetched a payload of $got bytes, the proxy's plan from=6.0 is $plan"
# the container has its own network namespace (loopback only): no port to pick
pull_redis_ping "$R/redis7:sl" "sl-r7-$$" "${SN[@]}"
r7_ms=$((($(date +%s%N) - t0) / 1000000))
# the whole redis 7.0 rootfs through starlight equals the unconverted image through overlayfs
sl7=$(rootfs_tree default "$R/redis7:sl" "${SN[@]}")
ectr -n plain images pull --plain-http "$R/redis7:src" >/dev/null 2>"$W/plain7.err" ||
    { cat "$W/plain7.err" >&2; e2e_fail "ctr images pull redis7 (overlayfs)"; }
ov7=$(rootfs_tree plain "$R/redis7:src")
[ "$sl7" = "$ov7" ] || e2e_fail "redis7 rootfs differs: starlight '$sl7' vs overlayfs '$ov7'"
e2e_log "4. $(cat "$W/r6.pull"); $(cat "$W/r7.pull"); payload = the plan from 6.0 ($plan bytes," \
    "from busybox $full); PING → PONG $r7_ms ms after the 7.0 pull started; rootfs tree = overlayfs's ($sl7)"

# ---------------------------------------------------------------- 5: restart
pull_edge_daemon_stop
npulls=$(grep -c 'pull .*: [0-9]* bytes' "$E2E_DIR/logs/starlight-daemon.log" || true)
pull_edge_daemon_start "$U" "$WAN_EDGE_NS"
e2e_wait_for "containerd to reach the restarted snapshotter" 30 e2e_ctr snapshots "${SN[@]}" ls
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-ft2-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "ctr run features after restart"; }
[ "$(grep -c 'pull .*: [0-9]* bytes' "$E2E_DIR/logs/starlight-daemon.log" || true)" = "$npulls" ] ||
    e2e_fail "ctr run after the restart pulled"
curl -fsS --unix-socket "$CTL" http://localhost/v1/status >"$W/status.json"
python3 - "$W/status.json" >"$W/nlayers" <<'PY' || e2e_fail "layers after restart are not all complete and local: $(cat "$W/status.json")"
import json, sys
s = json.load(open(sys.argv[1]))
for l in s["layers"]:
    assert l["complete"] and l["bytesLocal"] == l["bytesTotal"], l
print(len(s["layers"]))
PY
nlayers=$(cat "$W/nlayers")
# busybox's layer (shared by features), features' two, redis 6.0's and 7.0's
want_layers=$(for i in busybox features redis6 redis7; do layers "$i"; done | sort -u | wc -l)
[ "$nlayers" = "$want_layers" ] || e2e_fail "after the restart $nlayers layers, expected $want_layers"
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/ft2.pull" 2>"$W/ft2.pull.err" || e2e_fail "pull features after restart"
case "$(cat "$W/ft2.pull")" in
*"fetched 0.0 of"*) ;;
*) e2e_fail "features after restart downloaded again: $(cat "$W/ft2.pull")" ;;
esac
[ "$(pull_fetched_payload features "$E2E_DIR/logs/starlight-daemon.log")" = 0 ] ||
    e2e_fail "features after restart fetched a payload"
e2e_log "5. restart: ctr run features /check.sh OK without a pull; $nlayers layers complete;" \
    "$(cat "$W/ft2.pull")"

# daemons without containerd, in the edge namespace, for sections 6 and 7
DPID=
start_daemon() { # start_daemon ROOT CTL SNAP [ARGS...]
    local root=$1 ctl=$2 snap=$3
    shift 3
    "${WAN_EDGE[@]}" "$DAEMON" --root "$root" --control-socket "$ctl" --snapshotter-socket "$snap" \
        --containerd-socket "" "$@" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    DPID=$!
    e2e_track_pid starlight-daemon "$DPID"
    e2e_wait_for "the control socket $ctl" 15 curl -fsS --unix-socket "$ctl" http://localhost/v1/version
}
stop_daemon() { # stop_daemon PID: SIGTERM, must exit 0
    local pid=$1 rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "starlight-daemon exited with $rc"
}

# ---------------------------------------------------------------- 6: tampered payload
ROOT2="$E2E_DIR/root2"
CTL2="$E2E_DIR/ctl2.sock"
fport=$(cport)
"${WAN_CLOUD[@]}" python3 "$here/tools.py" relay "$CIP:$fport" "$CIP:$pport" 0 1 \
    >>"$E2E_DIR/logs/flip.log" 2>&1 &
e2e_track_pid flip $!
# the relay must listen before the pull (a loaded machine starts python slowly)
e2e_wait_for "the flipping relay" 20 "${WAN_CLOUD[@]}" bash -c "exec 3<>/dev/tcp/$CIP/$fport"
start_daemon "$ROOT2" "$CTL2" "$E2E_DIR/snap2.sock" --proxy "http://$CIP:$fport"
D2PID=$DPID
# The relay flips a byte of the first answer only (a Range answer does not start with a
# prelude): the chunk fails verification, is fetched again with Range/If-Range and the pull
# completes with the right bytes (tests/e2e/resume: a relay flipping every answer fails loudly).
"$CS" pull --daemon "$CTL2" --insecure "$R/busybox:sl" >"$W/flip.pull" 2>&1 ||
    { cat "$W/flip.pull" >&2; e2e_fail "a pull with one flipped payload byte did not recover"; }
grep -q 'chunk .*fetching the chunk again' "$E2E_DIR/logs/starlight-daemon.log" ||
    e2e_fail "the daemon did not say it fetched the bad chunk again"
rej=$(curl -fsS --unix-socket "$CTL2" http://localhost/v1/status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["chunksRejected"])')
[ "$rej" -ge 1 ] || e2e_fail "no chunk rejected"
timeout 10 cat "$ROOT2/mnt/${bbl#sha256:}/bin/busybox" >"$W/flip.read" || e2e_fail "read after the refetch"
cmp -s "$W/flip.read" "$W/src/${bbl#sha256:}/bin/busybox" || e2e_fail "wrong bytes after the refetch"
e2e_log "6. flipped payload byte: chunk rejected ($rej), fetched again; $(tail -1 "$W/flip.pull" | cut -c1-120)"
stop_daemon "$D2PID"

# ---------------------------------------------------------------- 7: hostile headers
wan_cloud curl -fsS -o "$W/bb.delta" "$U/starlight/delta?to=$R/busybox:sl&platform=$P&insecure=1" ||
    e2e_fail "GET the busybox delta"
ROOT3="$E2E_DIR/root3"
CTL3="$E2E_DIR/ctl3.sock"
start_daemon "$ROOT3" "$CTL3" "$E2E_DIR/snap3.sock"
D3PID=$DPID
for mode in traversal absolute size chunk tail; do
    for try in 1 2 3; do # another process may take the port first: pick again
        hport=$(cport)
        "${WAN_CLOUD[@]}" python3 "$here/tools.py" fake "$CIP:$hport" "$W/bb.delta" "$mode" \
            >>"$E2E_DIR/logs/fake.log" 2>&1 &
        fpid=$! # python itself (nsenter execs it): its health-check names this pid
        e2e_track_pid fake-$mode $fpid
        for i in $(seq 50); do
            # the answer must be this fake's: another server may hold the port
            [ "$(wan_cloud curl -fsS "http://$CIP:$hport/health-check" 2>/dev/null)" = \
                "{\"status\":\"OK\",\"fake\":$fpid}" ] && break 2
            _e2e_alive "$fpid" || break
            sleep 0.1
        done
        kill "$fpid" 2>/dev/null || true
        [ "$try" = 3 ] && e2e_fail "the fake proxy did not start"
    done
    if "$CS" pull --daemon "$CTL3" --proxy "http://$CIP:$hport" "$R/busybox:sl" >"$W/h.$mode" 2>&1; then
        e2e_fail "hostile header ($mode) accepted"
    fi
    case "$mode" in # the error names what is wrong
    traversal | absolute) pat='is not a normalised relative path' ;;
    size) pat='TOC says' ;;
    chunk) pat='payloadOffset' ;;
    tail) pat='TOC' ;;
    esac
    grep -q "$pat" "$W/h.$mode" || e2e_fail "hostile header ($mode): the error does not say '$pat': $(cat "$W/h.$mode")"
    e2e_log "7. $mode: $(tail -1 "$W/h.$mode" | sed 's/.*pull [^ ]*busybox[^:]*: //' | cut -c1-200)"
    kill "$fpid"
done
[ ! -e "$E2E_DIR/evil-traversal" ] && [ ! -e /tmp/evil-absolute ] && [ ! -e "$ROOT3/../evil-traversal" ] &&
    [ ! -e /evil-traversal ] || e2e_fail "a hostile name created a file"
n=$(curl -fsS --unix-socket "$CTL3" http://localhost/v1/status | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))')
[ "$n" = 0 ] || e2e_fail "hostile headers left $n layer records"
# the daemon keeps serving: the real proxy's busybox pulls and reads right
"$CS" pull --daemon "$CTL3" --proxy "$U" --insecure "$R/busybox:sl" >"$W/h.after" 2>"$W/h.after.err" ||
    { cat "$W/h.after.err" >&2; e2e_fail "the daemon does not pull after the hostile headers"; }
[ "$(sha256sum <"$ROOT3/mnt/${bbl#sha256:}/bin/busybox" | cut -d' ' -f1)" = "$want" ] ||
    e2e_fail "busybox read after the hostile headers"
e2e_log "7. hostile headers refused; nothing created outside $ROOT3, no layer recorded; then $(cat "$W/h.after")"
stop_daemon "$D3PID"

# ---------------------------------------------------------------- 8: unconverted images
ectr images pull --plain-http "${SN[@]}" "$R/busybox:src" >/dev/null 2>"$W/plainbb.err" ||
    { cat "$W/plainbb.err" >&2; e2e_fail "ctr images pull --snapshotter starlight busybox:src"; }
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/busybox:src" "sl-bb-$$" echo plain-ok 2>&1) || true
[ "$out" = plain-ok ] || e2e_fail "unconverted busybox through starlight: $out"
e2e_ctr_timeout 60 run -d "${SN[@]}" "$R/busybox:src" "sl-pause-$$" sleep 300 >/dev/null ||
    e2e_fail "pause-like run -d"
e2e_ctr tasks ls | grep "sl-pause-$$" | grep -q RUNNING || e2e_fail "pause-like task not running"
e2e_ctr tasks kill -s SIGKILL "sl-pause-$$" >/dev/null 2>&1 || true
e2e_wait_for "the pause-like task to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep sl-pause-$$ | grep -q RUNNING"
e2e_ctr tasks delete "sl-pause-$$" >/dev/null 2>&1 || true
e2e_ctr containers delete "sl-pause-$$" || e2e_fail "pause-like container delete"
e2e_log "8. unconverted busybox (echo) and a pause-like detached sleep through the starlight snapshotter"
e2e_log "PASS"
