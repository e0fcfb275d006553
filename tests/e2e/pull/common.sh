# shellcheck shell=bash
# Helpers shared by the pull scenarios (tests/e2e/pull over an emulated WAN link, tests/e2e/trace
# and `make demo`). Source after lib.sh. The network commands run through SL_NETEXEC, a
# command prefix (word-split; empty: here), e.g. `nsenter --net=/run/netns/NS --` to reach a
# registry or proxy that lives in a network namespace.

# pull_cloud_start [NETNS IP]: the cloud side — a registry, PostgreSQL and starlight-proxy ($PX)
# with its blob cache in E2E_DIR, on loopback, or in network namespace NETNS listening on IP
# (nsenter --net, as lib.sh's E2E_NETNS). Sets R (registry host:port), pport (the proxy's port)
# and U (proxy URL).
pull_cloud_start() {
    local ns=${1:-} ip=${2:-127.0.0.1} nsx=()
    [ -z "$ns" ] || nsx=(nsenter "--net=/run/netns/$ns" --)
    E2E_NETNS=$ns E2E_BIND_IP=$ip e2e_start_registry
    E2E_NETNS=$ns E2E_BIND_IP=$ip e2e_start_postgres
    R=$E2E_REGISTRY
    pport=$(E2E_NETNS=$ns e2e_free_port)
    mkdir -p "$E2E_DIR/proxy-cache"
    "${nsx[@]}" "$PX" --listen "$ip:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
        --registry-insecure --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 1GiB \
        >>"$E2E_DIR/logs/proxy.log" 2>&1 &
    e2e_track_pid proxy $!
    U="http://$ip:$pport"
    e2e_wait_for "proxy" 20 "${nsx[@]}" curl -fsS -o /dev/null "$U/health-check"
}

# pull_node_prereqs: checks what a scenario with the cloud side and a node (containerd, FUSE,
# overlay mounts) needs (python3, curl, skopeo, psql, root, /dev/fuse, the built ctr-starlight,
# starlight-proxy and starlight-daemon; skips the scenario otherwise), sets CS and PX, and
# makes W ($E2E_DIR/work).
pull_node_prereqs() {
    e2e_require python3 curl skopeo psql
    [ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
    CS="$SL_BIN/ctr-starlight"
    PX="$SL_BIN/starlight-proxy"
    local b
    for b in "$CS" "$PX" "$SL_BIN/starlight-daemon"; do
        [ -x "$b" ] || e2e_skip "build first: $b missing"
    done
    [ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
    W="$E2E_DIR/work"
    mkdir -p "$W"
}

# pull_convert IMG...: pushes each test image IMG as IMG:src to the registry ($R) and converts
# it to IMG:sl, notifying the proxy ($U); the converter's log is W/IMG.convert.log.
pull_convert() {
    local img
    for img in "$@"; do
        e2e_push_image "$img" "$img:src"
        "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
            "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/$img.convert.log" ||
            { cat "$W/$img.convert.log" >&2; e2e_fail "convert --notify $img"; }
    done
}

# pull_layers REGISTRY IMG: the layer digests of REGISTRY/IMG:sl, bottom first.
pull_layers() {
    # shellcheck disable=SC2086
    ${SL_NETEXEC:-} curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$1/v2/$2/manifests/sl" |
        python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}

# pull_plan_bytes PROXY_URL REGISTRY PLATFORM FROM TO: the payload length the proxy plans for
# REGISTRY/TO:sl given REGISTRY/FROM:sl (the prelude's bytes 24..31).
pull_plan_bytes() {
    # shellcheck disable=SC2086
    ${SL_NETEXEC:-} curl -fsS -r 0-31 \
        "$1/starlight/delta?to=$2/$5:sl&platform=$3&from=$2/$4:sl&insecure=1" |
        python3 -c 'import struct,sys; print(struct.unpack(">Q", sys.stdin.buffer.read()[24:32])[0])'
}

# pull_fetched_payload IMG DAEMON_LOG: the payload bytes of the last pull of IMG:sl the daemon
# logged.
pull_fetched_payload() {
    grep -o "pull .*$1:sl: [0-9]* bytes (payload [0-9]*)" "$2" |
        tail -1 | sed 's/.*payload \([0-9]*\))/\1/'
}

# pull_redis_ping REF NAME [SNAPSHOTTER_ARGS...]: run REF detached as container NAME
# (redis-server on the container's own loopback), wait for `redis-cli ping` to answer PONG,
# then kill and delete it. Fails the scenario otherwise.
pull_redis_ping() {
    local ref=$1 name=$2 pong= i
    shift 2
    e2e_ctr_timeout 60 run -d "$@" "$ref" "$name" \
        redis-server --bind 127.0.0.1 --save '' >/dev/null || e2e_fail "ctr run $ref"
    e2e_on_exit "ctr --address '$E2E_CONTAINERD_ADDRESS' tasks kill -s SIGKILL $name >/dev/null 2>&1"
    for i in $(seq 50); do
        pong=$(e2e_ctr_timeout 10 tasks exec --exec-id "p$i" "$name" redis-cli ping 2>&1) || true
        [ "$pong" = PONG ] && break
        sleep 0.2
    done
    e2e_ctr tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
    e2e_wait_for "redis to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep $name | grep -q RUNNING"
    e2e_ctr tasks delete "$name" >/dev/null 2>&1 || true
    e2e_ctr containers delete "$name" >/dev/null 2>&1 || true
    [ "$pong" = PONG ] || e2e_fail "redis in ctr run $ref: $pong"
}

# pull_edge_daemon_start PROXY_URL [NETNS]: the edge node's starlight-daemon (state in
# E2E_DIR/root, control socket PULL_EDGE_CTL, snapshotter socket E2E_DIR/snap.sock, default
# proxy PROXY_URL, registering in the containerd of e2e_start_containerd) in network namespace
# NETNS (empty: here). Exports PULL_EDGE_CTL and PULL_EDGE_DAEMON_PID.
# PULL_EDGE_DAEMON_ARGS: more daemon flags (word-split), e.g. "--materialize copy".
pull_edge_daemon_start() {
    local url=$1 ns=${2:-} nsx=()
    [ -z "$ns" ] || nsx=(nsenter "--net=/run/netns/$ns" --)
    PULL_EDGE_CTL=$E2E_DIR/ctl.sock
    mkdir -p "$E2E_DIR/root"
    # shellcheck disable=SC2086 # PULL_EDGE_DAEMON_ARGS is word-split on purpose
    "${nsx[@]}" "$SL_BIN/starlight-daemon" --root "$E2E_DIR/root" --control-socket "$PULL_EDGE_CTL" \
        --snapshotter-socket "$E2E_DIR/snap.sock" --proxy "$url" \
        --containerd-socket "$E2E_DIR/containerd/containerd.sock" \
        ${PULL_EDGE_DAEMON_ARGS:-} \
        >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    PULL_EDGE_DAEMON_PID=$!
    e2e_track_pid starlight-daemon "$PULL_EDGE_DAEMON_PID"
    export PULL_EDGE_CTL PULL_EDGE_DAEMON_PID
    e2e_wait_for "the daemon's control socket" 15 \
        curl -fsS --unix-socket "$PULL_EDGE_CTL" http://localhost/v1/version
}

# pull_edge_daemon_stop: SIGTERM to the edge daemon; it must exit 0 within 15 s, with its FUSE
# mount gone. Forgets its PID (containerd and the state stay).
pull_edge_daemon_stop() {
    local pid=$PULL_EDGE_DAEMON_PID rc=0 i keep=() e
    kill -TERM "$pid" || e2e_fail "starlight-daemon $pid is gone"
    for ((i = 0; i < 150; i++)); do
        _e2e_alive "$pid" || break
        sleep 0.1
    done
    _e2e_alive "$pid" && e2e_fail "starlight-daemon $pid did not exit 15 s after SIGTERM"
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "starlight-daemon exited with $rc"
    for e in "${E2E_PIDS[@]}"; do
        [ "$e" = "starlight-daemon:$pid" ] || keep+=("$e")
    done
    E2E_PIDS=("${keep[@]}")
    PULL_EDGE_DAEMON_PID=''
    ! grep -q " $E2E_DIR/root/mnt " /proc/mounts || e2e_fail "the fs is still mounted after the daemon stopped"
}

# pull_edge_start PROXY_URL [NETNS]: an edge node: pull_edge_daemon_start, then containerd with
# the starlight snapshotter, both in network namespace NETNS (empty: here; containerd through
# E2E_NETNS, so nsenter --net, never `ip netns exec`). Exports PULL_EDGE_CTL,
# PULL_EDGE_DAEMON_PID and containerd's E2E_* variables (e2e_start_containerd).
pull_edge_start() {
    local url=$1 ns=${2:-}
    pull_edge_daemon_start "$url" "$ns"
    E2E_NETNS=$ns e2e_start_containerd "$E2E_DIR/snap.sock"
    e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots --snapshotter starlight ls
}

# pull_edge_stop: stop what pull_edge_start started (tasks, containerd, its shims, the daemon),
# forget their PIDs, unmount and delete their state: the next pull_edge_start is a fresh node.
pull_edge_stop() {
    local pid keep=() e
    _e2e_kill_tasks
    _e2e_stop "$E2E_CONTAINERD_PID" 15
    for pid in $(_e2e_stray_shims); do
        _e2e_stop "$pid" 5
    done
    _e2e_stop "$PULL_EDGE_DAEMON_PID" 10
    for e in "${E2E_PIDS[@]}"; do
        case "$e" in
        "containerd:$E2E_CONTAINERD_PID" | "starlight-daemon:$PULL_EDGE_DAEMON_PID") ;;
        *) keep+=("$e") ;;
        esac
    done
    E2E_PIDS=("${keep[@]}")
    E2E_CONTAINERD_PID='' PULL_EDGE_DAEMON_PID=''
    _e2e_unmount_under "$E2E_DIR/root"
    _e2e_unmount_under "$E2E_DIR/containerd"
    rm -rf --one-file-system "$E2E_DIR/root" "$E2E_DIR/containerd" "$E2E_DIR/ctl.sock" \
        "$E2E_DIR/snap.sock"
}

# pull_delta_traced DELTA [PATH...]: check a delta (the body of GET /starlight/delta, or at
# least its prelude and header) sends its traced contents first and, given PATHs, that each
# PATH's content (from the top-most layer holding it) is traced, in the order given. Prints
# key=value lines: traced_first=1, traced_contents, contents, positions (of the PATHs) and
# traced_paths (the files whose content is traced, in stream order, comma-separated). Fails
# (returns 1) otherwise.
pull_delta_traced() {
    python3 - "$@" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack(">Q", b[16:24])[0]
h = json.loads(b[32:32 + hl])
want = sys.argv[2:]
idx, paths = {}, {}
for layer in h["layers"]:
    for f in layer["files"]:
        if f["source"] == "payload":
            idx[f["path"]] = f["content"]
            paths.setdefault(f["content"], f["path"])
traced = [c["index"] for c in h["contents"] if c["traced"]]
assert traced, "no traced contents"
assert traced == list(range(len(traced))), "traced contents are not first"
pos = [idx[p] for p in want]
assert all(p < len(traced) for p in pos), ("not traced", list(zip(want, pos)), len(traced))
assert pos == sorted(pos), ("not in the recorded order", list(zip(want, pos)))
print("traced_first=1")
print("traced_contents=%d" % len(traced))
print("contents=%d" % len(h["contents"]))
print("positions=%s" % ",".join(map(str, pos)))
print("traced_paths=%s" % ",".join(paths[i] for i in traced if i in paths))
PY
}
