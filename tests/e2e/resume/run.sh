#!/usr/bin/env bash
# Scenario: pulls that break and resume, and a tampering proxy (issue 9 items 1 and 5), with a
# real starlight-proxy + PostgreSQL + registry and starlight-daemon (store, FUSE), all on
# loopback, the daemon reaching the proxy through a rate-limited TCP relay (tool.py relay):
#  1. redis 7.0 is pulled while the proxy is killed (SIGKILL) 10 times and restarted each time
#     on the same port: the pull completes, every file of every layer verifies (full tree hash
#     of the FUSE layer dir = the layer blob extracted with tar), at most 5% of the payload
#     bytes arrive twice (the daemon's own count, and bytes received − head − payload), and
#     the progress lines show the resumes;
#  2. the daemon restarted (SIGTERM) in the middle of a pull: the next `/v1/pull` of the same
#     image continues from the resume point kept in store.db (head fetched again with
#     If-Range, payload from the saved offset) instead of starting over;
#  3. the proxy's plan changes while the daemon is down (a trace report reorders the image):
#     If-Range gets a full answer, the daemon asks for a new delta naming the contents it
#     verified, and those are not sent again;
#  4. a relay flipping one payload byte of every answer (full and Range): the chunk is
#     rejected, fetched again a bounded number of times, then the pull fails loudly; the file
#     is never readable with wrong bytes.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

e2e_require python3 curl skopeo psql tar
[ "$(id -u)" = 0 ] || e2e_skip "needs root (FUSE)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
for b in "$CS" "$PX" "$DAEMON"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
T() { python3 "$here/tool.py" "$@"; }
# Relays run in the background as the interpreter itself (not a function's subshell, nor a
# pyenv shim running python as its child), so the tracked PID is the one that must stop.
PY=$(python3 -c 'import sys; print(sys.executable)') || e2e_fail "python3 does not run"
relay() { exec "$PY" "$here/tool.py" relay "$@"; }
TREE() { python3 "$here/../pull/tools.py" tree "$@"; }

arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
W="$E2E_DIR/work"
mkdir -p "$W"
e2e_start_registry
e2e_start_postgres
R=$E2E_REGISTRY
pport=$(e2e_free_port)
U="http://127.0.0.1:$pport"
mkdir -p "$E2E_DIR/proxy-cache"
PXPID=
start_proxy() { # the same command and port each time (a restarted proxy)
    "$PX" --listen "127.0.0.1:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
        --registry-insecure --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 1GiB \
        >>"$E2E_DIR/logs/proxy.log" 2>&1 &
    PXPID=$!
    e2e_track_pid proxy $PXPID
    e2e_wait_for "proxy" 20 curl -fsS -o /dev/null "$U/health-check"
}
start_proxy

e2e_push_image redis7 redis7:src
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/redis7:src" "$R/redis7:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify redis7"; }
total=$(curl -fsS -r 0-31 "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1" |
    python3 -c 'import struct,sys; print(struct.unpack(">Q", sys.stdin.buffer.read()[24:32])[0])')
[ "$total" -gt 1000000 ] || e2e_fail "redis7 payload of $total bytes"

# The relays pace answers: a pull lasts ~20 s through the first (room for 10 kills), ~8 s
# through the second (sections 2 and 3).
rate=$((total / 20))
rport=$(e2e_free_port)
relay "$rport" "$pport" "$rate" >>"$E2E_DIR/logs/relay.log" 2>&1 &
e2e_track_pid relay $!
RU="http://127.0.0.1:$rport"
rate2=$((total / 8))
rport2=$(e2e_free_port)
relay "$rport2" "$pport" "$rate2" >>"$E2E_DIR/logs/relay2.log" 2>&1 &
e2e_track_pid relay2 $!
RU2="http://127.0.0.1:$rport2"
wait_port() { e2e_wait_for "a relay on port $1" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"; }
wait_port "$rport"
wait_port "$rport2"
e2e_log "redis7 converted and notified: payload $total bytes, relays at $rate and $rate2 B/s"

DPID=
start_daemon() { # start_daemon ROOT CTL
    mkdir -p "$1"
    "$DAEMON" --root "$1" --control-socket "$2" --snapshotter-socket "$1.snap.sock" \
        --containerd-socket "" --proxy "$RU" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    DPID=$!
    e2e_track_pid starlight-daemon "$DPID"
    e2e_wait_for "the control socket $2" 15 curl -fsS --unix-socket "$2" http://localhost/v1/version
}
stop_daemon() {
    local rc=0
    kill -TERM "$DPID"
    wait "$DPID" || rc=$?
    [ "$rc" = 0 ] || e2e_fail "starlight-daemon exited with $rc"
}
pull_json() { # pull_json CTL OUT: POST /v1/pull of redis7, the NDJSON answer in OUT
    curl -sS -N --unix-socket "$1" -X POST \
        -d "{\"ref\":\"$R/redis7:sl\",\"insecure\":true}" http://localhost/v1/pull >"$2"
}
progress() { # progress NDJSON: payload bytes of the last line (0 when none yet)
    tail -1 "$1" 2>/dev/null | grep -o '"payloadBytes":[0-9]*' | cut -d: -f2 || true
}
verify_tree() { # verify_tree ROOT: every layer's FUSE tree equals the extracted blob's
    local d hex a b
    for d in $(pull_layers "$R" redis7); do
        hex=${d#sha256:}
        if [ ! -d "$W/src/$hex" ]; then
            mkdir -p "$W/src/$hex"
            curl -fsS -o "$W/blob" "http://$R/v2/redis7/blobs/$d"
            tar --xattrs --xattrs-include='*' --same-owner -xzf "$W/blob" -C "$W/src/$hex" ||
                e2e_fail "extract $d"
        fi
        a=$(timeout 60 python3 "$here/../pull/tools.py" tree "$1/mnt/$hex") || e2e_fail "tree of $hex"
        [ -s "$W/src/$hex.tree" ] || TREE "$W/src/$hex" --src >"$W/src/$hex.tree"
        b=$(cat "$W/src/$hex.tree")
        [ "$a" = "$b" ] || e2e_fail "layer $hex: FUSE tree $a, blob $b"
    done
}

# ---------------------------------------------------------------- 1: proxy killed 10 times
ROOT="$E2E_DIR/root"
CTL="$E2E_DIR/ctl.sock"
start_daemon "$ROOT" "$CTL"
pull_json "$CTL" "$W/p1.json" &
ppid=$!
kills=0
t0=$(date +%s)
resumed() { # resumed NDJSON N: the pull resumed N times and received payload since
    python3 - "$@" <<'PY'
import json, sys
ls = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
n = int(sys.argv[2])
at = next((i for i, l in enumerate(ls) if l.get("resumes", 0) >= n), None)
sys.exit(0 if at is not None and ls[-1]["payloadBytes"] > ls[at]["payloadBytes"] else 1)
PY
}
while [ "$kills" -lt 10 ]; do
    sleep 0.2
    [ $(($(date +%s) - t0)) -lt 120 ] || e2e_fail "only $kills kills in 120 s"
    _e2e_alive "$ppid" || e2e_fail "the pull ended after $kills kills: $(tail -1 "$W/p1.json")"
    # kill only once the last kill broke the stream and a resumed one is flowing again
    [ "$(progress "$W/p1.json")" -gt 0 ] 2>/dev/null || continue
    [ "$kills" = 0 ] || resumed "$W/p1.json" "$kills" || continue
    kill -KILL "$PXPID"
    wait "$PXPID" 2>/dev/null || true
    kills=$((kills + 1))
    start_proxy
done
wait "$ppid" || e2e_fail "pull request"
T summary "$W/p1.json" >"$W/p1.sum" || e2e_fail "pull with 10 proxy kills: $(tail -1 "$W/p1.json")"
. "$W/p1.sum"
[ "$resumes" -ge 10 ] || e2e_fail "$resumes resumes for 10 kills"
dup=$((bytes - headBytes - payloadTotal))
[ "$dup" -ge 0 ] || dup=0
[ $((bytesResent * 100)) -le $((payloadTotal * 5)) ] ||
    e2e_fail "$bytesResent of $payloadTotal payload bytes sent twice (> 5%)"
[ $((dup * 100)) -le $((payloadTotal * 5)) ] ||
    e2e_fail "$bytes bytes received for a $headBytes + $payloadTotal byte delta (> 5% twice)"
python3 -c 'import json,sys; sys.exit(not any(l.get("phase") == "progress" and l.get("resumes", 0) > 0 for l in map(json.loads, open(sys.argv[1]))))' "$W/p1.json" ||
    e2e_fail "no progress line shows a resume"
verify_tree "$ROOT"
e2e_log "1. 10 proxy kills in $(($(date +%s) - t0)) s: complete, $resumes resumes, resent $bytesResent of $payloadTotal bytes (received − delta = $dup), every layer's tree verifies"
stop_daemon

# ---------------------------------------------------------------- 2: daemon restarted mid-pull
ROOT2="$E2E_DIR/root2"
CTL2="$E2E_DIR/ctl2.sock"
RU=$RU2
start_daemon "$ROOT2" "$CTL2"
pull_json "$CTL2" "$W/p2a.json" &
ppid=$!
e2e_wait_for "a third of the payload" 30 sh -c "[ \"\$(tail -1 '$W/p2a.json' | grep -o '\"payloadBytes\":[0-9]*' | cut -d: -f2)\" -gt $((total / 3)) ] 2>/dev/null"
stop_daemon
wait "$ppid" || true
had=$(progress "$W/p2a.json")
start_daemon "$ROOT2" "$CTL2"
pull_json "$CTL2" "$W/p2b.json"
T summary "$W/p2b.json" >"$W/p2b.sum" || e2e_fail "pull after the daemon restart: $(tail -1 "$W/p2b.json")"
. "$W/p2b.sum"
grep -q "an earlier run stopped at payload byte" "$E2E_DIR/logs/starlight-daemon.log" ||
    e2e_fail "the restarted daemon did not resume from its saved point"
# what arrived after the restart: the head again, and the payload from the saved point on
# (saved at most a second before the stop: the relay sends total/12 bytes a second)
[ $((bytes - headBytes)) -le $((total - had + rate2 + total / 20)) ] ||
    e2e_fail "after the restart $bytes bytes arrived, the first run had $had of $total"
verify_tree "$ROOT2"
e2e_log "2. daemon restarted at $had of $total payload bytes: the next pull fetched $bytes bytes (head $headBytes) and completed; trees verify"
stop_daemon

# ---------------------------------------------------------------- 3: plan changed meanwhile
ROOT3="$E2E_DIR/root3"
CTL3="$E2E_DIR/ctl3.sock"
start_daemon "$ROOT3" "$CTL3"
pull_json "$CTL3" "$W/p3a.json" &
ppid=$!
e2e_wait_for "a third of the payload" 30 sh -c "[ \"\$(tail -1 '$W/p3a.json' | grep -o '\"payloadBytes\":[0-9]*' | cut -d: -f2)\" -gt $((total / 3)) ] 2>/dev/null"
stop_daemon
wait "$ppid" || true
had=$(progress "$W/p3a.json")
curl -fsS -r 0-8388607 -o "$W/head.delta" "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1"
etag0=$(curl -fsS -o /dev/null -D - -r 0-31 "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1" | grep -i '^etag' | tr -d '\r')
T report "$W/head.delta" "$W/report.json"
curl -fsS -X POST --data-binary @"$W/report.json" "$U/starlight/report" >/dev/null || e2e_fail "report"
etag1=$(curl -fsS -o /dev/null -D - -r 0-31 "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1" | grep -i '^etag' | tr -d '\r')
[ "$etag0" != "$etag1" ] || e2e_fail "the report did not change the plan ($etag0)"
start_daemon "$ROOT3" "$CTL3"
pull_json "$CTL3" "$W/p3b.json"
T summary "$W/p3b.json" >"$W/p3b.sum" || e2e_fail "pull after the plan changed: $(tail -1 "$W/p3b.json")"
. "$W/p3b.sum"
[ "$replans" -ge 1 ] || e2e_fail "no new delta after the plan changed"
grep -q "verified contents of incomplete layers as held" "$E2E_DIR/logs/starlight-daemon.log" ||
    e2e_fail "the new delta did not name the verified contents"
[ $((payloadTotal)) -le $((total - had + rate2 + total / 20)) ] ||
    e2e_fail "the new plan sends $payloadTotal bytes though $had of $total were verified"
verify_tree "$ROOT3"
e2e_log "3. plan changed while the daemon was down ($had of $total verified): new delta of $payloadTotal payload bytes, $replans replan(s); trees verify"
stop_daemon

# ---------------------------------------------------------------- 4: tampering proxy
fport=$(e2e_free_port)
relay "$fport" "$pport" 0 always >>"$E2E_DIR/logs/flip.log" 2>&1 &
e2e_track_pid flip $!
wait_port "$fport"
ROOT4="$E2E_DIR/root4"
CTL4="$E2E_DIR/ctl4.sock"
RU="http://127.0.0.1:$fport" start_daemon "$ROOT4" "$CTL4"
pull_json "$CTL4" "$W/p4.json" || true
last=$(tail -1 "$W/p4.json")
case "$last" in
*'"phase":"error"'*chunk*) ;;
*) e2e_fail "a tampering proxy did not fail the pull loudly: $last" ;;
esac
echo "$last" | grep -q 'failed verification' || e2e_fail "the error does not say why: $last"
n=$(grep -c 'fetching the chunk again' "$E2E_DIR/logs/starlight-daemon.log" || true)
[ "$n" -ge 1 ] || e2e_fail "the bad chunk was not fetched again"
rej=$(curl -fsS --unix-socket "$CTL4" http://localhost/v1/status |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["chunksRejected"])')
[ "$rej" -ge 2 ] || e2e_fail "$rej chunks rejected"
# the file holding the flipped byte: the first payload content; it must never read wrong
curl -fsS -r 0-8388607 -o "$W/head4.delta" "$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1"
fpath=$(python3 - "$W/head4.delta" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
h = json.loads(b[32:32 + struct.unpack(">Q", b[16:24])[0]])
for l in h["layers"]:
    for f in l["files"]:
        if f["source"] == "payload" and f["content"] == 0:
            print(l["digest"][7:] + "/" + f["path"]); sys.exit(0)
PY
)
[ -n "$fpath" ] || e2e_fail "no payload file with content 0 in the delta (nothing to read back)"
[ -f "$W/src/$fpath" ] || e2e_fail "$fpath is not in the source tree"
want=$(sha256sum <"$W/src/$fpath")
# the read returns the right bytes, fails with an I/O error, or waits for a verified chunk
# (reads park until their chunk lands; the pull gave up): never wrong bytes
rrc=0
out=$(timeout 3 sha256sum <"$ROOT4/mnt/$fpath" 2>"$W/tamper-read.err") || rrc=$?
case $rrc in
0)
    [ "$out" = "$want" ] || e2e_fail "wrong bytes of $fpath served"
    read4="the right bytes of $fpath" ;;
124)
    [ -z "$out" ] || e2e_fail "reading $fpath waited but printed '$out'"
    read4="a parked read of $fpath (no bytes within 3 s)" ;;
*)
    grep -qi 'error' "$W/tamper-read.err" ||
        e2e_fail "reading $fpath failed ($rrc) without an I/O error: $(cat "$W/tamper-read.err")"
    read4="an error reading $fpath: $(head -c 120 "$W/tamper-read.err")" ;;
esac
e2e_log "4. tampering proxy: $rej chunks rejected, fetched again $n time(s), a read gave $read4, then: $(echo "$last" | grep -o '"error":"[^"]*' | cut -c1-200)"
stop_daemon
