#!/usr/bin/env bash
# Scenario: `ctr-starlight pull` through starlight-daemon (control socket, delta receiver, store,
# FUSE) against a real starlight-proxy + PostgreSQL + registry, all on loopback:
#  1. busybox, features (+ redis6, redis7) converted and notified; the daemon's control API
#     answers version/status/ping/add-proxy/list-proxy (curl --unix-socket and the CLI);
#  2. busybox pulled through a slow relay: the image is ready before the payload is in, a read
#     of a file whose chunks have not arrived blocks and then returns the right bytes;
#  3. features pulled (busybox's layer is held, so it is not sent again): every layer's FUSE
#     tree has the same full tree hash as the layer blob extracted with tar, and features'
#     /check.sh prints OK in a chroot on the overlay of the layer dirs (top-most first);
#  4. redis 6.0 then 7.0: the bytes 7.0 fetches equal the proxy's plan for from=6.0, and
#     redis-server from the 7.0 overlay answers PING;
#  5. daemon restarted: the layers are published again and complete, a new pull of features
#     downloads no payload, /check.sh still OK;
#  6. a relay flipping one payload byte: the pull fails loudly (chunk digest), the store
#     rejected the chunk and the corrupted file is never readable;
#  7. hostile headers from a fake proxy (traversal and absolute names, lying sizes, a chunk
#     outside the payload, a TOC tail that does not match its digest): clear errors, nothing
#     created outside the daemon's root.
# With a real containerd + runc (the daemon is its `starlight` proxy snapshotter and registers
# each pulled image in it), sections 3-5 also run the pulled images with
# `ctr run --snapshotter starlight` (no unpack, no layer blob in containerd):
#  3. features' /check.sh prints OK; the full tree hash of the container's rootfs (tree.sh)
#     equals the same image's through overlayfs (`ctr images pull` in namespace `plain`);
#     a pull with --namespace k8s.io registers there too;
#  4. redis 7.0 (updated from 6.0) answers `redis-cli ping` inside the container, and its full
#     rootfs tree hash equals the unconverted image's through overlayfs;
#  5. after the daemon restarts, `ctr run` works again without any pull;
#  8. unconverted images (plain busybox; a pause-like detached sleep) unpack through the
#     starlight snapshotter with `ctr images pull --snapshotter starlight`.
# SL_E2E_SKIP_REDIS=1 skips the redis images.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

e2e_require python3 curl skopeo psql tar
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
for b in "$CS" "$PX" "$DAEMON"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
T() { python3 "$here/tools.py" "$@"; }

images=(busybox features)
[ "${SL_E2E_SKIP_REDIS:-0}" = 1 ] || images+=(redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
W="$E2E_DIR/work"
mkdir -p "$W"
pull_cloud_start

for img in "${images[@]}"; do
    e2e_push_image "$img" "$img:src"
    "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/$img.convert.log" ||
        { cat "$W/$img.convert.log" >&2; e2e_fail "convert --notify $img"; }
done
e2e_log "1. converted and notified: ${images[*]}"

# layers IMG: the converted image's layer digests, bottom first
layers() { pull_layers "$R" "$1"; }

# ---------------------------------------------------------------- the daemon
ROOT="$E2E_DIR/root"
CTL="$E2E_DIR/ctl.sock"
SNAP="$E2E_DIR/snap.sock"
MNT="$ROOT/mnt"
DPID=
start_daemon() { # start_daemon ROOT CTL SNAP [ARGS...]
    local root=$1 ctl=$2 snap=$3
    shift 3
    "$DAEMON" --root "$root" --control-socket "$ctl" --snapshotter-socket "$snap" "$@" \
        >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    DPID=$!
    e2e_track_pid starlight-daemon "$DPID"
    e2e_wait_for "the control socket $ctl" 15 curl -fsS --unix-socket "$ctl" http://localhost/v1/version
}
stop_daemon() { # stop_daemon PID: SIGTERM, must exit 0 and leave no mount behind
    local pid=$1 rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "starlight-daemon exited with $rc"
}
CTRD_SOCK="$E2E_DIR/containerd/containerd.sock" # e2e_start_containerd's address
SN=(--snapshotter starlight)
start_daemon "$ROOT" "$CTL" "$SNAP" --proxy "$U" --containerd-socket "$CTRD_SOCK"
D=(--daemon "$CTL")
e2e_start_containerd "$SNAP"
[ "$E2E_CONTAINERD_ADDRESS" = "$CTRD_SOCK" ] || e2e_fail "containerd at $E2E_CONTAINERD_ADDRESS"
e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots "${SN[@]}" ls
. "$here/../tree.sh"

curl -fsS --unix-socket "$CTL" http://localhost/v1/status | grep -q '"layers":\[\]' ||
    e2e_fail "status of a fresh daemon"
"$CS" version "${D[@]}" | grep -q 'starlight-daemon [0-9]' || e2e_fail "version verb"
"$CS" ping "${D[@]}" | grep -q 'HTTP 200, RTT' || e2e_fail "ping the default proxy"
rport=$(e2e_free_port)
T relay "$rport" "$pport" 300000 >>"$E2E_DIR/logs/relay.log" 2>&1 &
e2e_track_pid relay $!
"$CS" add-proxy "${D[@]}" slow "http://127.0.0.1:$rport" >/dev/null || e2e_fail "add-proxy"
"$CS" list-proxy "${D[@]}" | grep -q "^slow .*127.0.0.1:$rport" || e2e_fail "list-proxy"
[ "$(stat -c %a "$ROOT/proxies.json")" = 600 ] || e2e_fail "proxies.json is not 0600"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$CTL" -X POST -d '{"bogus":1}' \
    http://localhost/v1/pull)
[ "$code" = 400 ] || e2e_fail "a pull without ref answered $code"
e2e_log "1. control API: version, status, ping, add-proxy, list-proxy, 400 on a bad request"

# ---------------------------------------------------------------- 2: slow stream, parked read
mkdir -p "$W/src"
extract() { # extract IMG: every layer blob of IMG:sl extracted with tar under $W/src/<hex>
    local d hex
    for d in $(layers "$1"); do
        hex=${d#sha256:}
        [ -d "$W/src/$hex" ] && continue
        mkdir -p "$W/src/$hex"
        curl -fsS -o "$W/blob" "http://$R/v2/$1/blobs/$d"
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
e2e_log "2. $(cat "$W/bb.pull"); a read blocked ${waited} ms ($parked parked) and got the right bytes"

# ---------------------------------------------------------------- 3: features, tree hashes
overlay() { # overlay IMG DIR [UPPER]: mount the FUSE layer dirs of IMG, top-most first
    local img=$1 dir=$2 lower="" d
    for d in $(layers "$img"); do
        lower="$MNT/${d#sha256:}${lower:+:$lower}"
    done
    mkdir -p "$dir"
    if [ -n "${3:-}" ]; then
        mkdir -p "$3/up" "$3/work"
        mount -t overlay overlay -o "lowerdir=$lower,upperdir=$3/up,workdir=$3/work" "$dir"
    else
        mount -t overlay overlay -o "ro,lowerdir=$lower" "$dir"
    fi
}
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/ft.pull" 2>"$W/ft.pull.err" ||
    { cat "$W/ft.pull.err" >&2; e2e_fail "pull features"; }
extract features
for d in $(layers features); do
    a=$(T tree "$MNT/${d#sha256:}")
    b=$(T tree "$W/src/${d#sha256:}" --src)
    [ "$a" = "$b" ] || e2e_fail "layer $d: FUSE tree $a, tar tree $b"
done
overlay features "$W/ft"
out=$(chroot "$W/ft" /bin/sh /check.sh 2>&1) || true
umount "$W/ft"
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "features /check.sh"; }
e2e_log "3. $(cat "$W/ft.pull"); tree hashes equal tar's for $(layers features | wc -l) layers, /check.sh OK"
# Metrics moved: two pulls ok, bytes fetched, FUSE reads counted, a ready time observed.
curl -fsS --unix-socket "$CTL" http://localhost/metrics >"$W/metrics.txt" || e2e_fail "GET /metrics"
metric() { awk -v k="$1" '$1 == k { print $2 }' "$W/metrics.txt"; }
[ "$(metric 'starlight_pulls_total{result="ok"}')" -ge 2 ] &&
    [ "$(metric starlight_pull_bytes_fetched_total)" -gt 0 ] &&
    [ "$(metric 'starlight_fs_operations_total{op="read"}')" -gt 0 ] &&
    [ "$(metric starlight_pull_ready_seconds_count)" -ge 2 ] &&
    [ "$(metric 'starlight_store_layers{state="complete"}')" -ge 2 ] &&
    awk -v v="$(metric starlight_fs_parked_wait_seconds_total)" 'BEGIN { exit !(v >= 1) }' ||
    e2e_fail "metrics did not move: $(grep -v '^#' "$W/metrics.txt")"
e2e_log "3. /metrics: $(metric 'starlight_pulls_total{result="ok"}') pulls ok, $(metric starlight_pull_bytes_fetched_total) bytes fetched, $(metric 'starlight_fs_operations_total{op="read"}') FUSE reads, parked reads waited $(metric starlight_fs_parked_wait_seconds_total) s"

t0=$(date +%s%N)
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-ft-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "ctr run features /check.sh"; }
ms=$((($(date +%s%N) - t0) / 1000000))
sl=$(ctr_tree_hash default "$R/features:sl" "${SN[@]}") || e2e_fail "tree hash (starlight): $sl"
# the unconverted image: a plain unpack of the converted one would add its TOC entry
# (stargz.index.json), which the FUSE trees do not show
e2e_ctr -n plain images pull --plain-http "$R/features:src" >/dev/null 2>"$W/plain.err" ||
    { cat "$W/plain.err" >&2; e2e_fail "ctr images pull features (overlayfs)"; }
ov=$(ctr_tree_hash plain "$R/features:src") || e2e_fail "tree hash (overlayfs): $ov"
[ "$sl" = "$ov" ] || e2e_fail "features rootfs differs from the unconverted image's: starlight '$sl' vs overlayfs '$ov'"
"$CS" pull "${D[@]}" --namespace k8s.io --insecure "$R/features:sl" >/dev/null 2>"$W/k8s.err" ||
    { cat "$W/k8s.err" >&2; e2e_fail "pull features --namespace k8s.io"; }
e2e_ctr -n k8s.io images ls -q | grep -qx "$R/features:sl" || e2e_fail "not registered in k8s.io"
e2e_log "3. ctr run --snapshotter starlight: /check.sh OK (${ms} ms); rootfs tree = overlayfs's ($(echo "$sl" | tr '\n' ' ')); k8s.io registered"

# ---------------------------------------------------------------- 4: redis 6 -> 7
if [ "${SL_E2E_SKIP_REDIS:-0}" != 1 ]; then
    "$CS" pull "${D[@]}" --insecure "$R/redis6:sl" >"$W/r6.pull" 2>"$W/r6.pull.err" ||
        { cat "$W/r6.pull.err" >&2; e2e_fail "pull redis6"; }
    # the proxy's plan for 7.0 given 6.0: the payload length in the prelude (bytes 24..31)
    plan=$(pull_plan_bytes "$U" "$R" "$P" redis6 redis7)
    "$CS" pull "${D[@]}" --insecure "$R/redis7:sl" >"$W/r7.pull" 2>"$W/r7.pull.err" ||
        { cat "$W/r7.pull.err" >&2; e2e_fail "pull redis7"; }
    got=$(pull_fetched_payload redis7 "$E2E_DIR/logs/starlight-daemon.log")
    [ "$got" = "$plan" ] || e2e_fail "redis 6 -> 7 fetched a payload of $got bytes, the proxy's plan from=6.0 is $plan"
    # the container has its own network namespace (loopback only): no port to pick
    pull_redis_ping "$R/redis7:sl" "sl-r7-$$" "${SN[@]}"
    # the whole redis 7.0 rootfs through starlight equals the unconverted image through overlayfs
    sl7=$(ctr_tree_hash default "$R/redis7:sl" "${SN[@]}") || e2e_fail "redis7 tree hash (starlight): $sl7"
    e2e_ctr_timeout 300 -n plain images pull --plain-http "$R/redis7:src" >/dev/null 2>"$W/plain7.err" ||
        { cat "$W/plain7.err" >&2; e2e_fail "ctr images pull redis7 (overlayfs)"; }
    ov7=$(ctr_tree_hash plain "$R/redis7:src") || e2e_fail "redis7 tree hash (overlayfs): $ov7"
    [ "$sl7" = "$ov7" ] || e2e_fail "redis7 rootfs differs: starlight '$sl7' vs overlayfs '$ov7'"
    e2e_log "4. $(cat "$W/r6.pull"); $(cat "$W/r7.pull") ; payload = the plan from 6.0 ($plan bytes); PING → PONG; rootfs tree = overlayfs's ($(echo "$sl7" | tr '\n' ' '))"
else
    e2e_log "4. redis skipped (SL_E2E_SKIP_REDIS=1)"
fi

# ---------------------------------------------------------------- 5: restart
stop_daemon "$DPID"
grep -q " $MNT " /proc/mounts && e2e_fail "the fs is still mounted after the daemon stopped"
npulls=$(grep -c 'pull .*: [0-9]* bytes' "$E2E_DIR/logs/starlight-daemon.log" || true)
start_daemon "$ROOT" "$CTL" "$SNAP" --proxy "$U" --containerd-socket "$CTRD_SOCK"
e2e_wait_for "containerd to reach the restarted snapshotter" 30 e2e_ctr snapshots "${SN[@]}" ls
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-ft2-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "ctr run features after restart"; }
[ "$(grep -c 'pull .*: [0-9]* bytes' "$E2E_DIR/logs/starlight-daemon.log" || true)" = "$npulls" ] ||
    e2e_fail "ctr run after the restart pulled"
e2e_log "5. restart: ctr run --snapshotter starlight features: /check.sh OK without a pull"
curl -fsS --unix-socket "$CTL" http://localhost/v1/status >"$W/status.json"
python3 - "$W/status.json" <<'PY' || e2e_fail "layers after restart are not all complete and local"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["layers"], s
for l in s["layers"]:
    assert l["complete"] and l["bytesLocal"] == l["bytesTotal"], l
PY
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/ft2.pull" 2>"$W/ft2.pull.err" || e2e_fail "pull features after restart"
grep -q 'pull .*features:sl: [0-9]* bytes' "$E2E_DIR/logs/starlight-daemon.log"
pb=$(grep -o '"payloadTotal":[0-9]*' "$W/ft2.pull" || true)
overlay features "$W/ft"
out=$(chroot "$W/ft" /bin/sh /check.sh 2>&1) || true
umount "$W/ft"
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "features /check.sh after restart"; }
case "$(cat "$W/ft2.pull")" in
*"fetched 0.0 of"*) ;;
*) e2e_fail "features after restart downloaded again: $(cat "$W/ft2.pull")" ;;
esac
e2e_log "5. restart: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["layers"]))' "$W/status.json") layers complete; $(cat "$W/ft2.pull"); /check.sh OK"

# ---------------------------------------------------------------- 6: tampered payload
ROOT2="$E2E_DIR/root2"
CTL2="$E2E_DIR/ctl2.sock"
fport=$(e2e_free_port)
T relay "$fport" "$pport" 0 1 >>"$E2E_DIR/logs/flip.log" 2>&1 &
e2e_track_pid flip $!
start_daemon "$ROOT2" "$CTL2" "$E2E_DIR/snap2.sock" --proxy "http://127.0.0.1:$fport" \
    --containerd-socket ""
D2PID=$DPID
if "$CS" pull --daemon "$CTL2" --insecure "$R/busybox:sl" >"$W/flip.pull" 2>&1; then
    e2e_fail "a pull with a flipped payload byte succeeded"
fi
grep -qi 'chunk\|digest\|mismatch' "$W/flip.pull" || { cat "$W/flip.pull" >&2; e2e_fail "the flip error does not say why"; }
rej=$(curl -fsS --unix-socket "$CTL2" http://localhost/v1/status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["chunksRejected"])')
[ "$rej" -ge 1 ] || e2e_fail "no chunk rejected"
if timeout 3 cat "$ROOT2/mnt/${bbl#sha256:}/bin/busybox" >"$W/flip.read" 2>/dev/null; then
    e2e_fail "the corrupted file was readable"
fi
cmp -s "$W/flip.read" "$W/src/${bbl#sha256:}/bin/busybox" && e2e_fail "?"
e2e_log "6. flipped payload byte: $(tail -1 "$W/flip.pull" | cut -c1-160)…; the file is not readable"
stop_daemon "$D2PID"

# ---------------------------------------------------------------- 7: hostile headers
curl -fsS -o "$W/bb.delta" "$U/starlight/delta?to=$R/busybox:sl&platform=$P&insecure=1"
ROOT3="$E2E_DIR/root3"
CTL3="$E2E_DIR/ctl3.sock"
start_daemon "$ROOT3" "$CTL3" "$E2E_DIR/snap3.sock" --containerd-socket ""
for mode in traversal absolute size chunk tail; do
    for try in 1 2 3; do # another process may take the port first: pick again
        hport=$(e2e_free_port)
        python3 "$here/tools.py" fake "$hport" "$W/bb.delta" "$mode" >>"$E2E_DIR/logs/fake.log" 2>&1 &
        fpid=$! # python itself (not a subshell): its health-check names this pid
        e2e_track_pid fake-$mode $fpid
        for i in $(seq 50); do
            # the answer must be this fake's: another server may hold the port
            [ "$(curl -fsS "http://127.0.0.1:$hport/health-check" 2>/dev/null)" = \
                "{\"status\":\"OK\",\"fake\":$fpid}" ] && break 2
            _e2e_alive "$fpid" || break
            sleep 0.1
        done
        kill "$fpid" 2>/dev/null || true
        [ "$try" = 3 ] && e2e_fail "the fake proxy did not start"
    done
    if "$CS" pull --daemon "$CTL3" --proxy "http://127.0.0.1:$hport" "$R/busybox:sl" >"$W/h.$mode" 2>&1; then
        e2e_fail "hostile header ($mode) accepted"
    fi
    e2e_log "7. $mode: $(tail -1 "$W/h.$mode" | sed 's/.*pull busybox[^:]*: //' | cut -c1-200)"
    kill "$fpid"
done
[ ! -e "$E2E_DIR/evil-traversal" ] && [ ! -e /tmp/evil-absolute ] && [ ! -e "$ROOT3/../evil-traversal" ] ||
    e2e_fail "a hostile name created a file"
n=$(curl -fsS --unix-socket "$CTL3" http://localhost/v1/status | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))')
[ "$n" = 0 ] || e2e_fail "hostile headers left $n layer records"
e2e_log "7. hostile headers refused; nothing created outside $ROOT3, no layer recorded"

# ---------------------------------------------------------------- 8: unconverted images
e2e_ctr images pull --plain-http "${SN[@]}" "$R/busybox:src" >/dev/null 2>"$W/plainbb.err" ||
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
