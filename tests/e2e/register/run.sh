#!/usr/bin/env bash
# Image registration in containerd (daemonset/containerd) with FUSE-served Starlight layers:
#   - busybox and features converted layer by layer (sl-format-tool), served by
#     sl-register-tool serve (store + FUSE + snapshotter with the fs lowerdir hook + the
#     snapshots gRPC service: starlight-daemon's wiring) as containerd's proxy snapshotter;
#   - sl-register-tool register in namespaces default and k8s.io: content (manifest, config,
#     index), committed chain snapshots labelled with their layer, the image record;
#   - `ctr -n NS run --snapshotter starlight` with no pull: features' /check.sh prints OK, the
#     rootfs overlay's lowerdirs are the FUSE layer directories, busybox echoes;
#   - `ctr images ls` shows the images; registering twice is idempotent; a non-Starlight layer
#     is refused (exit 3, EOPNOTSUPP); the lease is gone afterwards;
#   - `ctr images rm` + GC removes the snapshots and the snapshotter keeps serving.
# Needs root, containerd, runc, FUSE, overlayfs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

e2e_require python3 timeout findmnt
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
[ -c /dev/fuse ] || e2e_skip "no /dev/fuse"
FT=$SL_BIN/sl-format-tool
RT=$SL_BIN/sl-register-tool
if [ ! -x "$FT" ] || [ ! -x "$RT" ]; then e2e_skip "build first: $FT or $RT missing"; fi

e2e_tmpdir >/dev/null
W=$E2E_DIR/work
SOCK=$E2E_DIR/sl-snap.sock
mkdir -p "$W"
SN=(--snapshotter starlight)

e2e_log "building and converting busybox, features"
blobs=()
for img in busybox features; do
    layout=$(e2e_build_images "$img") || e2e_fail "build $img"
    python3 "$here/convert.py" "$layout" "$W/$img" "$FT" || e2e_fail "convert $img"
    while read -r b; do blobs+=("$b"); done <"$W/$img/blobs.txt"
done

"$RT" serve --root "$W/srv" --socket "$SOCK" "${blobs[@]}" >"$W/serve.out" \
    2>>"$E2E_DIR/logs/serve.log" &
SRV_PID=$!
e2e_track_pid sl-register-tool "$SRV_PID"
e2e_wait_for "the Starlight side (FUSE + snapshotter)" 60 grep -qx ready "$W/serve.out"
e2e_start_containerd "$SOCK"
e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots "${SN[@]}" ls

register() { # register NS IMG [ARGS...]
    local ns=$1 img=$2
    shift 2
    timeout 120 "$RT" register --containerd "$E2E_CONTAINERD_ADDRESS" --namespace "$ns" \
        --name "starlight.test/sl/$img:latest" --manifest "$W/$img/manifest.json" \
        --config "$W/$img/config.json" "$@"
}
ref() { echo "starlight.test/sl/$1:latest"; }

# --- refusal first: a layer not served by FUSE -----------------------------------------------
rc=0
register default busybox --plain-layer 0 2>"$W/plain.err" || rc=$?
[ "$rc" = 3 ] || e2e_fail "plain layer: exit $rc, want 3: $(cat "$W/plain.err")"
e2e_log "non-Starlight layer refused: $(cat "$W/plain.err")"

for ns in default k8s.io; do
    t0=$(date +%s%3N)
    register "$ns" busybox >/dev/null || e2e_fail "register busybox in $ns"
    register "$ns" features --index "$W/features/index.json" >/dev/null ||
        e2e_fail "register features in $ns"
    e2e_log "$ns: registered busybox + features in $(($(date +%s%3N) - t0)) ms"

    e2e_ctr -n "$ns" images ls >"$W/ls-$ns.txt"
    for img in busybox features; do
        grep -q "$(ref "$img")" "$W/ls-$ns.txt" || e2e_fail "$ns: images ls: $(cat "$W/ls-$ns.txt")"
    done
    n=$(e2e_ctr -n "$ns" snapshots "${SN[@]}" ls | grep -c Committed || true)
    [ "$n" = 3 ] || e2e_fail "$ns: $n committed snapshots, want 3 (busybox's layer shared)"
    e2e_ctr -n "$ns" snapshots "${SN[@]}" ls | awk '$3 == "Committed" { print $1 }' |
        while read -r s; do
            e2e_ctr -n "$ns" snapshots "${SN[@]}" info "$s" |
                grep -q '"containerd.io/snapshot/starlight.layer": "sha256:' ||
                e2e_fail "$ns: snapshot $s lacks the starlight.layer label"
        done
    leases=$(e2e_ctr -n "$ns" leases ls -q) || e2e_fail "$ns: leases ls"
    [ -z "$leases" ] || e2e_fail "$ns: lease left: $(e2e_ctr -n "$ns" leases ls)"

    out=$(e2e_ctr_timeout 60 -n "$ns" run --rm "${SN[@]}" "$(ref busybox)" "sl-echo-$$" \
        echo hello-from-starlight 2>&1) || e2e_fail "$ns: run busybox: $out"
    [ "$out" = hello-from-starlight ] || e2e_fail "$ns: busybox said: $out"
    out=$(e2e_ctr_timeout 60 -n "$ns" run --rm "${SN[@]}" "$(ref features)" "sl-feat-$$" \
        sh /check.sh 2>&1) || true
    [ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "$ns: features /check.sh: $out"
    e2e_log "$ns: busybox echoes, features /check.sh OK (no pull, no layer blob in containerd)"
done

# the running container's rootfs really is an overlay over the FUSE layer directories
e2e_ctr_timeout 60 run -d "${SN[@]}" "$(ref features)" "sl-sleep-$$" sleep 60 >/dev/null ||
    e2e_fail "run -d"
mnt=$(awk -v id="sl-sleep-$$" '$1 == "overlay" && index($2, id) { print $4 }' /proc/mounts)
fusedir=$(awk '$1 == "layer" { print $3; exit }' "$W/serve.out")
case "$mnt" in *"$(dirname "$fusedir")"*) ;; *) e2e_fail "rootfs lowerdirs not on FUSE: $mnt" ;; esac
e2e_ctr tasks kill -s SIGKILL "sl-sleep-$$" >/dev/null 2>&1 || true
e2e_wait_for "the sleep task to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep sl-sleep-$$ | grep -q RUNNING"
e2e_ctr tasks delete "sl-sleep-$$" >/dev/null 2>&1 || true
e2e_ctr containers delete "sl-sleep-$$" || e2e_fail "container delete"
e2e_log "rootfs lowerdirs are FUSE layer directories"

# --- idempotent: again, same result --------------------------------------------------------
before=$(e2e_ctr snapshots "${SN[@]}" ls | sort; e2e_ctr images ls -q | sort)
register default busybox >/dev/null || e2e_fail "second registration of busybox"
register default features --index "$W/features/index.json" >/dev/null ||
    e2e_fail "second registration of features"
after=$(e2e_ctr snapshots "${SN[@]}" ls | sort; e2e_ctr images ls -q | sort)
[ "$before" = "$after" ] || e2e_fail "second registration changed state: $before // $after"
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$(ref features)" "sl-feat2-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "features after re-registration: $out"
e2e_log "registering twice is idempotent"

# --- images rm + GC -------------------------------------------------------------------------
for ns in default k8s.io; do
    e2e_ctr -n "$ns" images rm --sync "$(ref busybox)" "$(ref features)" >/dev/null ||
        e2e_fail "$ns: images rm"
done
gc_done() {
    [ -z "$(e2e_ctr snapshots "${SN[@]}" ls | tail -n +2)" ] &&
        [ -z "$(e2e_ctr -n k8s.io snapshots "${SN[@]}" ls | tail -n +2)" ]
}
for ((i = 0; i < 200; i++)); do gc_done && break; sleep 0.1; done
if ! gc_done; then
    for ns in default k8s.io; do
        echo "== $ns" >&2
        e2e_ctr -n "$ns" snapshots "${SN[@]}" ls >&2
        e2e_ctr -n "$ns" content ls >&2
        e2e_ctr -n "$ns" leases ls >&2
        e2e_ctr -n "$ns" images ls >&2
        e2e_ctr -n "$ns" containers ls >&2
    done
    e2e_fail "GC left starlight snapshots"
fi
for ns in default k8s.io; do
    [ -z "$(e2e_ctr -n "$ns" content ls -q)" ] || e2e_fail "$ns: content left after GC: $(e2e_ctr -n "$ns" content ls)"
done
left=$(find "$W/srv/snap/snapshots" -mindepth 1 -maxdepth 1 | wc -l)
[ "$left" = 0 ] || e2e_fail "$left snapshot directories left after GC"
_e2e_alive "$SRV_PID" || e2e_fail "the snapshotter died"
register default busybox >/dev/null || e2e_fail "register after GC"
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$(ref busybox)" "sl-echo2-$$" echo again 2>&1) ||
    e2e_fail "run after GC: $out"
[ "$out" = again ] || e2e_fail "busybox after GC said: $out"
e2e_log "images rm + GC: snapshots and content collected; snapshotter still serving"
e2e_log "PASS"
