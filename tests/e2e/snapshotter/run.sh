#!/usr/bin/env bash
# starlight-daemon as containerd's proxy snapshotter, with ordinary (unconverted) images:
#   - pull busybox and features with --snapshotter starlight, two pulls at once;
#   - features' /check.sh prints OK through overlayfs over our snapshots (whiteouts, opaque
#     dirs, hardlinks, devices...), and a full tree hash of the container's root (paths, modes,
#     owners, sizes, link counts, device numbers, link targets, content sha256) equals the
#     same image's through containerd's own overlayfs snapshotter;
#   - ctr snapshots ls/info/usage/rm/prepare/commit/mounts, a parent with children refuses rm,
#     many concurrent calls;
#   - a pause-like one-layer image runs detached (sleep);
#   - the daemon restarted keeps its snapshots and the image runs again.
# Timings are logged. Needs root, containerd, runc, docker-registry, skopeo.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"

e2e_require skopeo python3 curl timeout findmnt
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, overlay mounts)"
DAEMON=$SL_BIN/starlight-daemon
[ -x "$DAEMON" ] || e2e_skip "no $DAEMON (build first)"

now_ms() { date +%s%3N; }
timed() { # timed LABEL CMD...: run CMD, log its duration
    local label=$1 t0 rc=0
    shift
    t0=$(now_ms)
    "$@" || rc=$?
    e2e_log "$label: $(($(now_ms) - t0)) ms (rc $rc)" 2>&3
    return "$rc"
}

exec 3>&2 # timed's log line, out of the way of captured output
e2e_tmpdir >/dev/null
ROOT=$E2E_DIR/sl-root
SOCK=$E2E_DIR/sl-snap.sock
DAEMON_PID=

start_daemon() {
    "$DAEMON" --root "$ROOT" --snapshotter-socket "$SOCK" --log-level debug \
        >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    DAEMON_PID=$!
    e2e_track_pid starlight-daemon "$DAEMON_PID"
    e2e_wait_for "the snapshotter socket" 10 test -S "$SOCK"
    e2e_log "starlight-daemon on $SOCK (pid $DAEMON_PID)"
}

stop_daemon() { # SIGTERM and wait: must exit 0 by itself
    local i rc=0
    kill -TERM "$DAEMON_PID"
    for ((i = 0; i < 150; i++)); do
        _e2e_alive "$DAEMON_PID" || break
        sleep 0.1
    done
    _e2e_alive "$DAEMON_PID" && e2e_fail "daemon did not stop within 15 s of SIGTERM"
    wait "$DAEMON_PID" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "daemon exited with $rc after SIGTERM"
}

e2e_log "building busybox, features"
e2e_build_images busybox features >/dev/null
e2e_start_registry
start_daemon
e2e_start_containerd "$SOCK"
for n in busybox features; do
    e2e_push_image "$n" "sl-test/$n:latest"
done
ref() { echo "$E2E_REGISTRY/sl-test/$1:latest"; }
SN=(--snapshotter starlight)

# containerd dials the proxy lazily; wait until the plugin answers.
e2e_wait_for "containerd to reach the snapshotter" 20 \
    e2e_ctr snapshots "${SN[@]}" ls

# --- two pulls at once (they share busybox's layer: one Commit wins, one gets EEXIST) -----
pull() {
    e2e_ctr_timeout 120 images pull --plain-http "${SN[@]}" "$(ref "$1")" \
        >"$E2E_DIR/logs/pull-$1.log" 2>&1
}
t0=$(now_ms)
pull busybox &
p1=$!
pull features &
p2=$!
wait "$p1" || { cat "$E2E_DIR/logs/pull-busybox.log" >&2; e2e_fail "pull busybox"; }
wait "$p2" || { cat "$E2E_DIR/logs/pull-features.log" >&2; e2e_fail "pull features"; }
e2e_log "parallel pull busybox+features (starlight): $(($(now_ms) - t0)) ms"

e2e_ctr snapshots "${SN[@]}" ls >"$E2E_DIR/snap-ls.txt"
ncommitted=$(grep -c Committed "$E2E_DIR/snap-ls.txt" || true)
[ "$ncommitted" -ge 3 ] || { cat "$E2E_DIR/snap-ls.txt" >&2; e2e_fail "expected >= 3 committed snapshots, got $ncommitted"; }
e2e_log "snapshots ls: $ncommitted committed"

# --- run: check.sh and the tree hash --------------------------------------------------------
out=$(timed "run features check.sh (starlight)" \
    e2e_ctr_timeout 60 run --rm "${SN[@]}" "$(ref features)" "sl-feat-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "features /check.sh through starlight: $out"
e2e_log "features check.sh: OK"

. "$(dirname "$0")/../tree.sh"
tree_hash() { # tree_hash IMAGE SNAPSHOTTER-ARGS...
    local img=$1
    shift
    ctr_tree_hash default "$(ref "$img")" "$@"
}
for img in features busybox; do
    sl=$(timed "tree hash $img (starlight)" tree_hash "$img" "${SN[@]}") ||
        e2e_fail "tree hash through starlight: $sl"
    timed "pull $img (overlayfs)" e2e_ctr_timeout 120 images pull --plain-http "$(ref "$img")" \
        >>"$E2E_DIR/logs/pull-overlayfs.log" 2>&1 || e2e_fail "pull $img for overlayfs"
    ov=$(timed "tree hash $img (overlayfs)" tree_hash "$img") ||
        e2e_fail "tree hash through overlayfs: $ov"
    [ "$sl" = "$ov" ] || e2e_fail "$img tree differs: starlight '$sl' vs overlayfs '$ov'"
    e2e_log "$img tree identical: $(echo "$sl" | tr '\n' ' ')"
done

# --- ctr snapshots verbs ----------------------------------------------------------------------
top=$(e2e_ctr snapshots "${SN[@]}" ls | awk '$3 == "Committed" { print $1 }' | tail -n1)
[ -n "$top" ] || e2e_fail "no committed snapshot listed"
e2e_ctr snapshots "${SN[@]}" info "$top" | grep -q '"Kind": "Committed"' ||
    e2e_fail "snapshots info $top"
e2e_ctr snapshots "${SN[@]}" usage "$top" >"$E2E_DIR/usage.txt" || e2e_fail "snapshots usage"
e2e_log "usage: $(tail -n1 "$E2E_DIR/usage.txt")"
e2e_ctr snapshots "${SN[@]}" prepare sl-active "$top" >/dev/null || e2e_fail "snapshots prepare"
m=$(e2e_ctr snapshots "${SN[@]}" mounts /tmp/x sl-active)
echo "$m" | grep -q 'lowerdir=' || e2e_fail "mounts of sl-active: $m"
e2e_log "mounts: $m"
# mount what we handed out: the active snapshot shows the image's files, writes go to upper
mkdir -p "$E2E_DIR/mnt"
opts=$(echo "$m" | sed -n 's/.* -o \([^ ]*\).*/\1/p')
mount -t overlay overlay -o "$opts" "$E2E_DIR/mnt" || e2e_fail "mount -o $opts"
[ -x "$E2E_DIR/mnt/bin/busybox" ] || e2e_fail "busybox missing in the mounted snapshot"
echo hi >"$E2E_DIR/mnt/new-file"
umount "$E2E_DIR/mnt"
e2e_ctr snapshots "${SN[@]}" usage sl-active | grep -q sl-active || e2e_fail "usage sl-active"
e2e_ctr snapshots "${SN[@]}" commit sl-committed sl-active || e2e_fail "snapshots commit"
e2e_ctr snapshots "${SN[@]}" view sl-view sl-committed >/dev/null || e2e_fail "snapshots view"
if e2e_ctr snapshots "${SN[@]}" rm sl-committed 2>"$E2E_DIR/rm.err"; then
    e2e_fail "rm of a snapshot with a child succeeded"
fi
grep -qi "precondition\|child" "$E2E_DIR/rm.err" || e2e_fail "rm error: $(cat "$E2E_DIR/rm.err")"
e2e_ctr snapshots "${SN[@]}" label sl-committed test.label=yes >/dev/null || e2e_fail "label"
e2e_ctr snapshots "${SN[@]}" info sl-committed | grep -q '"test.label": "yes"' || e2e_fail "label lost"
e2e_ctr snapshots "${SN[@]}" rm sl-view sl-committed || e2e_fail "snapshots rm"
e2e_log "snapshots ls/info/usage/prepare/mounts/commit/view/label/rm: OK"

# --- many concurrent calls: 32 prepare+rm pairs at once ------------------------------------
t0=$(now_ms)
pids=()
for i in $(seq 1 32); do
    (e2e_ctr snapshots "${SN[@]}" prepare "conc-$i" "$top" >/dev/null &&
        e2e_ctr snapshots "${SN[@]}" usage "conc-$i" >/dev/null &&
        e2e_ctr snapshots "${SN[@]}" rm "conc-$i") &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || e2e_fail "concurrent prepare/usage/rm failed"; done
e2e_log "32 concurrent prepare+usage+rm: $(($(now_ms) - t0)) ms"
left=$(e2e_ctr snapshots "${SN[@]}" ls | grep -c conc- || true)
[ "$left" = 0 ] || e2e_fail "$left concurrent snapshots left"

# --- pause-like image: one layer, detached sleep -------------------------------------------
timed "start detached sleep (busybox, one layer)" \
    e2e_ctr_timeout 60 run -d "${SN[@]}" "$(ref busybox)" "sl-pause-$$" sleep 300 >/dev/null ||
    e2e_fail "run -d sleep"
e2e_ctr tasks ls | grep "sl-pause-$$" | grep -q RUNNING || e2e_fail "sleep task not running"
e2e_ctr tasks kill -s SIGKILL "sl-pause-$$" >/dev/null 2>&1 || true
e2e_wait_for "the sleep task to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep sl-pause-$$ | grep -q RUNNING"
e2e_ctr tasks delete "sl-pause-$$" >/dev/null 2>&1 || true
e2e_ctr containers delete "sl-pause-$$" || e2e_fail "container delete (snapshot remove)"
e2e_log "pause-like image: ran and cleaned up"

# --- restart ---------------------------------------------------------------------------------
before=$(e2e_ctr snapshots "${SN[@]}" ls | sort)
t0=$(now_ms)
stop_daemon
start_daemon
e2e_log "daemon restart: $(($(now_ms) - t0)) ms"
e2e_wait_for "containerd to reach the restarted snapshotter" 30 \
    e2e_ctr snapshots "${SN[@]}" ls
after=$(e2e_ctr snapshots "${SN[@]}" ls | sort)
[ "$before" = "$after" ] || e2e_fail "snapshots changed across restart: $before // $after"
out=$(timed "run features check.sh after restart" \
    e2e_ctr_timeout 60 run --rm "${SN[@]}" "$(ref features)" "sl-feat2-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "features after restart: $out"

# --- image removal: containerd's GC removes our snapshots ----------------------------------
e2e_ctr images rm --sync "$(ref features)" "$(ref busybox)" >/dev/null || e2e_fail "images rm"
e2e_wait_for "GC to remove every starlight snapshot" 20 \
    sh -c "[ -z \"\$(ctr --address $E2E_CONTAINERD_ADDRESS snapshots --snapshotter starlight ls -q 2>/dev/null)\" ] || [ \"\$(ctr --address $E2E_CONTAINERD_ADDRESS snapshots --snapshotter starlight ls | wc -l)\" -le 1 ]"
left=$(find "$ROOT/snapshots" -mindepth 1 -maxdepth 1 | wc -l)
[ "$left" = 0 ] || e2e_fail "$left snapshot directories left after GC"
e2e_log "GC removed all snapshots and directories"

grep -q 'level=error\|"level":"error"\|ERROR' "$E2E_DIR/logs/starlight-daemon.log" &&
    e2e_log "note: daemon logged errors (see log)"
e2e_log "PASS"
