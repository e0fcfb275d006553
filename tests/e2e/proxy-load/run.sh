#!/usr/bin/env bash
# Scenario: load on one starlight-proxy (issue 9 item 8), all on 127.0.0.1 with a real
# PostgreSQL and a real distribution registry. SL_E2E_LOAD_WORKERS (default 50) workers
# (tests/e2e/proxy-load/load.py, one keep-alive connection each) pull the fresh redis 7.0
# delta (56 MB, 5,189 contents) again and again, every body hashed against a reference that
# sl-core-tool verified chunk by chunk. The blob cache is smaller than the delta (24 MiB), so
# the proxy keeps reading the registry while it streams.
#  1. steady: every worker completes a delta, 0 errors;
#  2. PostgreSQL stopped under load: new requests get 503 JSON with Retry-After (streams in
#     flight finish), restarted: every worker succeeds again, same proxy process;
#  3. the registry killed mid-stream and restarted on its port: streams either complete with
#     the reference bytes or end short (never a full-length body with other bytes); requests
#     that start once it is back succeed;
#  4. the proxy's peak RSS (VmHWM) stays under SL_E2E_LOAD_RSS_MB (default 100 MB, the
#     issue-3 goal), one plan made for all requests, no stream in flight at the end, the proxy
#     never restarted.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

e2e_require python3 curl skopeo
CS="$SL_BIN/ctr-starlight"
CT="$SL_BIN/sl-core-tool"
PX="$SL_BIN/starlight-proxy"
for b in "$CS" "$CT" "$PX"; do
    [ -x "$b" ] || e2e_fail "build first: $b missing"
done
N=${SL_E2E_LOAD_WORKERS:-50}
RSS_MAX_MB=${SL_E2E_LOAD_RSS_MB:-100}
PGBIN=${SL_PG_BIN:-/usr/lib/postgresql/15/bin}
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
W="$E2E_DIR/work"
C="$W/ctl"
mkdir -p "$W" "$C" "$E2E_DIR/cache"

e2e_start_registry
e2e_start_postgres
R=$E2E_REGISTRY
e2e_push_image redis7 redis7:src
"$CS" convert --insecure-source --insecure-destination "$R/redis7:src" "$R/redis7:sl" \
    >/dev/null 2>"$W/convert.log" || { cat "$W/convert.log" >&2; e2e_fail "convert redis7"; }

pport=$(e2e_free_port)
U="http://127.0.0.1:$pport"
"$PX" --listen "127.0.0.1:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
    --registry-insecure --cache-dir "$E2E_DIR/cache" --cache-max-bytes 24MiB --open-metrics \
    --log-level warn >>"$E2E_DIR/logs/proxy.log" 2>&1 &
PROXY_PID=$!
e2e_track_pid proxy "$PROXY_PID"
e2e_wait_for "proxy" 20 curl -fsS -o /dev/null "$U/health-check"
curl -fsS -X POST -o /dev/null "$U/starlight/notify?ref=$R/redis7:sl&insecure=1" || e2e_fail "notify"
DELTA="$U/starlight/delta?to=$R/redis7:sl&platform=linux/$arch&insecure=1"

metric() { curl -fsS "$U/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
status() { python3 -c "import json,sys; s=json.load(open('$C/status.json')); print($1)"; }
# every worker's last request: of kind $1, started in phase $2
all_last() { [ -f "$C/status.json" ] && [ "$(status "all(l and l['kind'] == '$1' and l['phase'] == '$2' for l in s['last'])")" = True ]; }
count() { status "s['counts'].get('$1', {}).get('$2', 0)"; } # PHASE KIND
phase() { # atomically: workers read the file before every request
    echo "$1" >"$C/phase.new"
    mv "$C/phase.new" "$C/phase"
    e2e_log "phase $1"
}

# ---------------------------------------------------------------- reference
curl -fsS -D "$W/ref.h" -o "$W/ref.delta" "$DELTA" || e2e_fail "reference delta"
"$CT" check "$W/ref.delta" >"$W/ref.check" || e2e_fail "reference delta does not verify"
python3 - "$W/ref.delta" "$W/ref.h" "$DELTA" >"$C/targets.json" <<'EOF'
import hashlib, json, sys
body = open(sys.argv[1], "rb").read()
etag = [l.split(":", 1)[1].strip() for l in open(sys.argv[2]) if l.lower().startswith("etag:")][0]
print(json.dumps({"redis7": {"url": sys.argv[3], "sha256": hashlib.sha256(body).hexdigest(),
                             "length": len(body), "etag": etag}}))
EOF
echo redis7 >"$C/target"
echo setup >"$C/phase"
e2e_log "reference: $(stat -c %s "$W/ref.delta") bytes, every chunk verified"

# proxy RSS by phase, every 0.2 s, for the verdict's log
(while [ -r "/proc/$PROXY_PID/status" ] && [ ! -e "$C/stop" ]; do
    echo "$(cat "$C/phase") $(awk '/^VmRSS/ { print $2 }' "/proc/$PROXY_PID/status")"
    sleep 0.2
done) >"$W/rss.log" 2>/dev/null &
e2e_track_pid rss-sampler $!
rss_by_phase() { awk '$2 > m[$1] { m[$1] = $2 } END { for (p in m) printf "%s %d MB, ", p, m[p] / 1024 }' "$W/rss.log"; }

# ---------------------------------------------------------------- 1: steady load
phase steady
t0=$(date +%s)
python3 "$here/load.py" "$C" "$N" >"$W/load.json" 2>"$W/load.err" &
LOAD_PID=$!
e2e_track_pid load "$LOAD_PID"
e2e_wait_for "every worker completes a delta" 90 all_last ok steady
e2e_log "1. $N workers: $(count steady ok) deltas verified in $(($(date +%s) - t0)) s; VmHWM $(awk '/^VmHWM/ { print $2 / 1024 }' "/proc/$PROXY_PID/status") MB"

# ---------------------------------------------------------------- 2: database restart
phase db-down
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$E2E_DIR/pg/data" -m fast -w stop \
    >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "pg_ctl stop"
e2e_wait_for "503 answers while the database is down" 30 \
    bash -c "[ \"\$(python3 -c \"import json; print(json.load(open('$C/status.json'))['counts'].get('db-down', {}).get('busy', 0))\")\" -ge $N ]"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$E2E_DIR/pg/data" -l "$E2E_DIR/pg/server.log" -w -t 30 \
    -o "-c fsync=off -c listen_addresses=127.0.0.1 -p $E2E_PG_PORT -k $E2E_DIR/pg" start \
    >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "pg_ctl start"
e2e_track_pid postgres "$(head -n1 "$E2E_DIR/pg/data/postmaster.pid")"
e2e_wait_for "proxy health after the database restart" 30 curl -fsS -o /dev/null "$U/health-check"
phase db-up
e2e_wait_for "every worker succeeds after the database restart" 90 all_last ok db-up
e2e_log "2. database down: $(count db-down busy) x 503 JSON, $(count db-down ok) streams finished; back: $(count db-up ok) verified, $(count db-up busy) x 503 while reconnecting"

# ---------------------------------------------------------------- 3: registry restart
errs0=$(metric starlight_registry_fetch_errors_total)
phase registry-down
kill -KILL "$E2E_REGISTRY_PID"
wait "$E2E_REGISTRY_PID" 2>/dev/null || true
sleep 3
docker-registry serve "$E2E_DIR/registry/config.yml" >>"$E2E_DIR/logs/registry.log" 2>&1 &
E2E_REGISTRY_PID=$!
e2e_track_pid registry "$E2E_REGISTRY_PID"
e2e_wait_for "registry back on $R" 20 curl -fsS -o /dev/null "http://$R/v2/"
phase registry-back # reads that began during the outage may still fail now
sleep 2
phase registry-up
e2e_wait_for "every worker succeeds after the registry restart" 90 all_last ok registry-up
touch "$C/stop"
wait "$LOAD_PID" || e2e_fail "load client: $(tail -n 5 "$W/load.err")"
errs1=$(metric starlight_registry_fetch_errors_total)
cuts=$(($(count registry-down cut) + $(count registry-back cut)))
e2e_log "3. registry restart: $cuts streams cut, $(($(count registry-down ok) + $(count registry-back ok))) completed meanwhile, registry fetch errors $errs0 -> $errs1; back: $(count registry-up ok) verified"
[ "$cuts" -gt 0 ] || [ "$errs1" -gt "$errs0" ] || e2e_fail "the registry restart hit no stream"

# ---------------------------------------------------------------- verdict
python3 - "$W/load.json" <<'EOF' || e2e_fail "load results: $(head -c 2000 "$W/load.json")"
import json, sys
s = json.load(open(sys.argv[1]))
allowed = {"steady": {"ok"}, "db-down": {"ok", "busy"}, "db-up": {"ok", "busy"},
           "registry-down": {"ok", "cut"}, "registry-back": {"ok", "cut"}, "registry-up": {"ok"}}
assert not s["bad"], s["bad"]
for phase, kinds in s["counts"].items():
    extra = set(kinds) - allowed[phase]
    assert not extra, "phase %s: %s" % (phase, {k: kinds[k] for k in extra})
assert s["counts"]["db-down"].get("busy", 0) > 0, "no 503 while the database was down"
EOF
hwm=$(awk '/^VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$PROXY_PID/status")
_e2e_alive "$PROXY_PID" || e2e_fail "the proxy died"
[ "$(metric starlight_proxy_delta_streams_in_flight)" = 0 ] || e2e_fail "streams still in flight"
[ "$hwm" -lt "$RSS_MAX_MB" ] || e2e_fail "proxy peak RSS $hwm MB, bound $RSS_MAX_MB MB (RSS by phase: $(rss_by_phase))"
plans=$(($(metric starlight_delta_plans_total) - $(metric starlight_delta_plan_errors_total)))
shared=$(metric starlight_delta_plans_shared_total)
# every request of one delta shares one plan while the database is unchanged (a restart does
# not change it): one plan for the reference, a few at most if a fingerprint raced a restart
[ "$plans" -le 3 ] || e2e_fail "$plans plans made for one delta ($shared shared)"
e2e_log "   $plans plan(s) made, $shared requests shared one"
e2e_log "4. totals: $(python3 -c "import json; s=json.load(open('$W/load.json')); print({p: k for p, k in s['counts'].items()})")"
e2e_log "   proxy VmHWM $hwm MB (bound $RSS_MAX_MB MB; RSS by phase: $(rss_by_phase)), 0 streams in flight, same process (pid $PROXY_PID)"
e2e_log PASS
