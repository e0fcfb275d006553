#!/usr/bin/env bash
# Scenario: restarting starlight-daemon does not break running containers (issue 9, item 4). On
# loopback: registry + PostgreSQL + starlight-proxy, starlight-daemon + containerd + runc.
#  1. features converted, notified and pulled; a container (`ctr run --snapshotter starlight`)
#     reads /data/big.bin (9 MiB, three chunks, from a Starlight layer through overlayfs and
#     FUSE) in a loop, checking each read's sha256, and a second, slow loop keeps the file
#     open 2 s before reading it (dd into a pipe whose reader sleeps); from the host the
#     file's page cache is dropped every 0.1 s (posix_fadvise DONTNEED through a descriptor
#     opened once on the FUSE file), so the reads reach FUSE; this script also keeps the FUSE
#     file open (fd 9);
#     a SIGUSR2 (the handoff signal) with no successor asking changes nothing;
#  2. three times, while the slow loop holds the file open: a new daemon is started on the
#     same root while the old one runs; it takes the FUSE connection over (handoff socket), the
#     old one exits 0, fd 9 (opened before any restart) still reads the right bytes (the same
#     connection: a new mount would have aborted it), both loops keep going, the new daemon
#     serves FUSE reads itself and reopens handles the old one gave out (the slow loop's);
#  3. the reader stops: zero read errors, every sha256 right, iterations before and after each
#     restart; the store survived (a new pull of features downloads nothing); a plain SIGTERM
#     still unmounts.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

pull_node_prereqs

pull_cloud_start
pull_convert features
pull_edge_start "$U"
D=(--daemon "$PULL_EDGE_CTL")
SN=(--snapshotter starlight)
MNT="$E2E_DIR/root/mnt"
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/pull" 2>"$W/pull.err" ||
    { cat "$W/pull.err" >&2; e2e_fail "pull features"; }
# the layer holding data/big.bin, and the file's sha256 as its TOC says
big=
for d in $(pull_layers "$R" features); do
    [ -f "$MNT/${d#sha256:}/data/big.bin" ] && big="$MNT/${d#sha256:}/data/big.bin"
done
[ -n "$big" ] || e2e_fail "no layer of features holds data/big.bin"
want=$(sha256sum <"$big" | cut -d' ' -f1)
e2e_log "1. $(cat "$W/pull"); big.bin sha256 $want"

# ---------------------------------------------------------------- the reader
name="sl-reader-$$"
# shellcheck disable=SC2016 # expanded in the container
reader='slow() {
  j=0; sbad=0
  while [ ! -e /tmp/stop ]; do
    h=$(dd if=/data/big.bin bs=65536 2>/tmp/dd.log | { echo $j >/tmp/slow.o; mv /tmp/slow.o /tmp/slow.open; sleep 2; sha256sum; })
    [ "${h%% *}" = "$WANT" ] || { sbad=$((sbad+1)); echo "slow: sha256 ${h%% *} at $j" >>/tmp/errors; }
    j=$((j+1)); echo "$j $sbad" >/tmp/slow.new; mv /tmp/slow.new /tmp/slow
  done
  echo "$j $sbad" >/tmp/slow.final
}
slow &
i=0; bad=0
while [ ! -e /tmp/stop ]; do
  h=$(sha256sum /data/big.bin 2>>/tmp/errors) || { bad=$((bad+1)); echo "read error at $i" >>/tmp/errors; }
  [ "${h%% *}" = "$WANT" ] || { bad=$((bad+1)); echo "sha256 ${h%% *} at $i" >>/tmp/errors; }
  i=$((i+1)); echo "$i $bad" >/tmp/count.new; mv /tmp/count.new /tmp/count
done
wait
echo "$i $bad" >/tmp/final'
e2e_ctr_timeout 60 run -d "${SN[@]}" --env "WANT=$want" "$R/features:sl" "$name" sh -c "$reader" \
    >/dev/null || e2e_fail "ctr run the reader"
rootfs="$E2E_CONTAINERD_STATE/io.containerd.runtime.v2.task/default/$name/rootfs"
mountpoint -q "$rootfs" || e2e_fail "no rootfs mount at $rootfs"
# drop the file's pages again and again: every loop of the reader then asks FUSE (through a
# descriptor opened once: the inode the container's overlay uses, whatever gets mounted later)
python3 - "$big" <<'PY' >>"$E2E_DIR/logs/evict.log" 2>&1 &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
while True:
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as e:
        print("evict:", e, flush=True)
    time.sleep(0.1)
PY
e2e_track_pid evict $!
count() { cut -d' ' -f1 "$rootfs/tmp/count" 2>/dev/null || echo 0; }
slow_open() { cat "$rootfs/tmp/slow.open" 2>/dev/null || echo -1; }
slow_done() { cut -d' ' -f1 "$rootfs/tmp/slow" 2>/dev/null || echo 0; }
reopened() { grep -c 'opened before the handoff, reopened' "$E2E_DIR/logs/starlight-daemon.log" || true; }
bad() { cut -d' ' -f2 "$rootfs/tmp/count" 2>/dev/null || echo 0; }
wait_iterations() { # wait_iterations N: until the reader did N more loops
    local until=$(($(count) + $1))
    e2e_wait_for "the reader to loop $1 more times (at $(count))" 60 \
        sh -c "[ \"\$(cut -d' ' -f1 '$rootfs/tmp/count' 2>/dev/null || echo 0)\" -ge $until ]"
}
metric() { # metric NAME: from the running daemon's /metrics
    curl -fsS --unix-socket "$PULL_EDGE_CTL" http://localhost/metrics | awk -v k="$1" '$1 == k { print $2 }'
}
# held_sha: sha256 of big.bin read (pread, page cache dropped first) through fd 9, opened once
exec 9<"$big"
held_sha() {
    python3 -c 'import hashlib, os
os.posix_fadvise(9, 0, 0, os.POSIX_FADV_DONTNEED)
h, off = hashlib.sha256(), 0
while True:
    b = os.pread(9, 1 << 20, off)
    if not b:
        break
    h.update(b)
    off += len(b)
print(h.hexdigest())' 2>&1
}
[ "$(held_sha)" = "$want" ] || e2e_fail "big.bin through fd 9: $(held_sha)"
wait_iterations 3
# the handoff signal without a successor asking changes nothing
kill -USR2 "$PULL_EDGE_DAEMON_PID"
wait_iterations 2
kill -0 "$PULL_EDGE_DAEMON_PID" || e2e_fail "a stray SIGUSR2 stopped the daemon"
[ "$(held_sha)" = "$want" ] || e2e_fail "big.bin through fd 9 after a stray SIGUSR2"
e2e_log "1. the reader loops ($(count) reads of big.bin, $(bad) bad); a stray SIGUSR2 changed nothing"

# ---------------------------------------------------------------- 2: three restarts
for k in 1 2 3; do
    # restart while the slow loop holds big.bin open (its dd then reads through the old handle)
    s0=$(slow_open)
    e2e_wait_for "the slow loop to open big.bin again" 30 sh -c "[ \"\$(cat '$rootfs/tmp/slow.open' 2>/dev/null)\" != '$s0' ]"
    sj=$(slow_open)
    r0=$(reopened)
    old=$PULL_EDGE_DAEMON_PID
    before=$(count)
    t0=$(date +%s%N)
    "$SL_BIN/starlight-daemon" --root "$E2E_DIR/root" --control-socket "$PULL_EDGE_CTL" \
        --snapshotter-socket "$E2E_DIR/snap.sock" --proxy "$U" \
        --containerd-socket "$E2E_CONTAINERD_ADDRESS" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    PULL_EDGE_DAEMON_PID=$!
    e2e_track_pid starlight-daemon "$PULL_EDGE_DAEMON_PID"
    e2e_wait_for "daemon $old to hand over and exit" 60 sh -c "! kill -0 $old 2>/dev/null"
    rc=0
    wait "$old" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "the old daemon $old exited with $rc"
    e2e_wait_for "the new daemon's control socket" 30 \
        curl -fsS --unix-socket "$PULL_EDGE_CTL" http://localhost/v1/version
    ms=$((($(date +%s%N) - t0) / 1000000))
    kill -0 "$PULL_EDGE_DAEMON_PID" || e2e_fail "the new daemon died"
    got=$(held_sha) || true
    [ "$got" = "$want" ] || e2e_fail "restart $k: big.bin through fd 9 (opened before): $got"
    wait_iterations 3
    e2e_wait_for "the slow loop to finish its read $sj" 30 sh -c "[ \"\$(cut -d' ' -f1 '$rootfs/tmp/slow' 2>/dev/null || echo 0)\" -gt $sj ]"
    r1=$(reopened)
    [ "$r1" -gt "$r0" ] || e2e_fail "restart $k: no handle of the old daemon was reopened"
    reads=$(metric 'starlight_fs_operations_total{op="read"}')
    [ "${reads:-0}" -gt 0 ] || e2e_fail "restart $k: the new daemon served no FUSE read"
    [ "$(bad)" = 0 ] || e2e_fail "restart $k: $(bad) bad reads: $(cat "$rootfs/tmp/errors")"
    e2e_log "2. restart $k: daemon $old -> $PULL_EDGE_DAEMON_PID in ${ms} ms; reader at $before" \
        "-> $(count) reads, slow loop $(slow_done), 0 bad; the new daemon served $reads FUSE" \
        "reads and reopened $((r1 - r0)) old handle(s); fd 9 reads right"
done
grep -q 'took the FUSE connection over' "$E2E_DIR/logs/starlight-daemon.log" ||
    e2e_fail "no daemon says it took the FUSE connection over"

# ---------------------------------------------------------------- 3: the result
touch "$rootfs/tmp/stop"
e2e_wait_for "the reader to finish" 60 test -s "$rootfs/tmp/final"
read -r n nbad <"$rootfs/tmp/final"
read -r sn snbad <"$rootfs/tmp/slow.final"
[ "$nbad" = 0 ] && [ "$snbad" = 0 ] && [ ! -s "$rootfs/tmp/errors" ] ||
    e2e_fail "$nbad bad reads of $n, $snbad of $sn slow ones: $(cat "$rootfs/tmp/errors" 2>/dev/null)"
[ "$n" -ge 12 ] && [ "$sn" -ge 3 ] || e2e_fail "only $n reads, $sn slow ones"
e2e_ctr tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
e2e_wait_for "the reader to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep $name | grep -q RUNNING"
e2e_ctr tasks delete "$name" >/dev/null 2>&1 || true
e2e_ctr containers delete "$name" >/dev/null || e2e_fail "delete the reader"
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/pull2" 2>"$W/pull2.err" ||
    { cat "$W/pull2.err" >&2; e2e_fail "pull features after the restarts"; }
case "$(cat "$W/pull2")" in
*"fetched 0.0 of"*) ;;
*) e2e_fail "features after the restarts downloaded again: $(cat "$W/pull2")" ;;
esac
out=$(e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "sl-check-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -1)" = OK ] || { echo "$out" >&2; e2e_fail "features /check.sh after the restarts"; }
exec 9<&-
pull_edge_daemon_stop # a plain SIGTERM unmounts
e2e_log "3. $n + $sn (slow) reads of big.bin across 3 restarts, 0 errors, every sha256 right; $(cat "$W/pull2");" \
    "/check.sh OK; SIGTERM unmounted"
e2e_log "PASS"
