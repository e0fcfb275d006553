#!/usr/bin/env bash
# Scenario: `starlight-proxy` over HTTP with the real core, a real PostgreSQL and a real
# distribution registry, driven by curl and ctr-starlight:
#  1. busybox, features, redis6, redis7 converted with `ctr-starlight convert --notify` and
#     notified again with `ctr-starlight notify`; /health-check 200;
#  2. fresh deltas (GET) hold every content once and every chunk verifies (sl-core-tool
#     check); redis 6.0 → 7.0 holds exactly the contents absent from 6.0 (expected sets from
#     the TOCs, tests/e2e/proxy-core/expect.py); a delta to a held image has an empty payload;
#     the POST JSON form gives the GET's bytes;
#  3. errors: unknown image 404, malformed parameters 400, notify of an unconverted image 422
#     mentioning convert (all JSON);
#  4. Range from the middle → 206 with the tail of the full body; If-Range with the ETag
#     honoured, with another ETag the full body;
#  5. ranks: after a report the traced contents lead in trace order; kept after re-notifying
#     the shared layer;
#  6. a client that leaves mid-stream leaves the proxy healthy, no stream in flight;
#  7. PostgreSQL stopped → 503 JSON, restarted → the same proxy process recovers;
#  8. a second proxy with --auth-file (bcrypt) behind a registry that answers 503 to the first
#     blob reads: 401 without credentials, notify with --proxy-user, retried reads, a verified
#     delta;
#  9. the conversion hook: the registry's notifications (endpoint = the proxy's hook) make the
#     proxy convert a plain push to TAG-starlight and notify it; the delta for it verifies; a
#     Harbor payload likewise; a full queue → 503, a malformed payload → 400, a failed
#     conversion is logged and counted in /metrics.
# SL_E2E_SKIP_REDIS=1 skips the redis images.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../proxy-core/tocs.sh"

e2e_require python3 curl skopeo htpasswd
CS="$SL_BIN/ctr-starlight"
FT="$SL_BIN/sl-format-tool"
CT="$SL_BIN/sl-core-tool"
PX="$SL_BIN/starlight-proxy"
for b in "$CS" "$FT" "$CT" "$PX"; do
    [ -x "$b" ] || e2e_fail "build first: $b missing"
done
ex() { python3 "$here/../proxy-core/expect.py" "$@"; }
jq_() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$2"; }
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

images=(busybox features)
[ "${SL_E2E_SKIP_REDIS:-0}" = 1 ] || images+=(redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"

W="$E2E_DIR/work"
mkdir -p "$W" "$E2E_DIR/hook-tmp"
pport=$(e2e_free_port)
# The registry tells the proxy's hook about every push (section 9).
e2e_start_registry "notifications:
  endpoints:
    - name: starlight-proxy
      url: http://127.0.0.1:$pport/starlight/hook/registry
      timeout: 5s
      threshold: 3
      backoff: 1s"
e2e_start_postgres
R=$E2E_REGISTRY
PGBIN=${SL_PG_BIN:-/usr/lib/postgresql/15/bin}

# start_proxy NAME PORT ARGS...: a starlight-proxy on 127.0.0.1:PORT with its own cache dir;
# its PID in PROXY_PID (not a command substitution: the trap must know the PID).
start_proxy() {
    local name=$1 port=$2 pid
    shift 2
    mkdir -p "$E2E_DIR/$name-cache"
    "$PX" --listen "127.0.0.1:$port" --postgres "$E2E_PG_CONNINFO" \
        --cache-dir "$E2E_DIR/$name-cache" --cache-max-bytes 1GiB --open-metrics "$@" \
        >>"$E2E_DIR/logs/$name.log" 2>&1 &
    pid=$!
    e2e_track_pid "$name" "$pid"
    e2e_wait_for "$name on port $port" 20 curl -sS -o /dev/null "http://127.0.0.1:$port/"
    PROXY_PID=$pid
}

# get URL OUT [CURL ARGS...]: prints the HTTP status; headers in OUT.h
get() {
    local url=$1 out=$2
    shift 2
    curl -sS -o "$out" -D "$out.h" -w '%{http_code}' "$@" "$url"
}
# expect_json_error STATUS FILE: the body is the JSON error envelope with that code
expect_json_error() {
    python3 - "$1" "$2" <<'EOF' || e2e_fail "$2: not a JSON $1 error: $(head -c 300 "$2")"
import json, sys
d = json.load(open(sys.argv[2]))
assert d["code"] == int(sys.argv[1]) and isinstance(d["error"], str) and d["error"], d
EOF
    grep -qi '^content-type: application/json' "$2.h" || e2e_fail "$2: not application/json"
}

# hook: `hookapp` pushed to the registry; `harborapp` only when named through localhost (the
# Harbor payloads below), so the registry's own notifications for it are ignored.
start_proxy proxy "$pport" --registry "$R" --registry-insecure --hook-repos 'hookapp,localhost:*/harborapp' \
    --hook-insecure --hook-queue 4 --hook-tmp-dir "$E2E_DIR/hook-tmp"
PPID_=$PROXY_PID
U="http://127.0.0.1:$pport"
e2e_log "proxy on $U (pid $PPID_)"

# ---------------------------------------------------------------- 1: convert --notify, notify
for img in "${images[@]}"; do
    e2e_push_image "$img" "$img:src"
    start=$(date +%s%N)
    "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >"$W/$img.ref" 2>"$W/$img.convert.log" ||
        { cat "$W/$img.convert.log" >&2; e2e_fail "convert --notify $img"; }
    t1=$(ms "$start")
    start=$(date +%s%N)
    "$CS" notify --insecure --proxy "$U" "$R/$img:sl" 2>"$W/$img.notify.log" ||
        { cat "$W/$img.notify.log" >&2; e2e_fail "ctr-starlight notify $img"; }
    e2e_log "1. $img: convert --notify $t1 ms, notify again $(ms "$start") ms"
    dump_tocs "$img"
done
# the notify answer as JSON (digests for the trace below)
[ "$(get "$U/starlight/notify?ref=$R/busybox:sl&insecure=1" "$W/bb.notify.json" -X POST)" = 200 ] ||
    e2e_fail "notify busybox over curl"
[ "$(jq_ 'd["images"][0]["layers"][0]["ingested"]' "$W/bb.notify.json")" = False ] ||
    e2e_fail "re-notify of busybox ingested its layer again"
[ "$(get "$U/health-check" "$W/health.json")" = 200 ] || e2e_fail "/health-check not 200"
[ "$(jq_ 'd["database"], d["registry"]' "$W/health.json")" = "ok ok" ] ||
    e2e_fail "/health-check: $(cat "$W/health.json")"
e2e_log "   /health-check 200: $(tr -d '\n' <"$W/health.json")"

# ---------------------------------------------------------------- 2: deltas
metric() { curl -fsS "$U/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# a notify plans the fresh pull of each platform in the background (prewarm): once done, the
# first real request reuses that plan instead of planning
prewarmed_at_least() { [ "$(metric starlight_delta_plans_prewarmed_total)" -ge "$1" ]; }
e2e_wait_for "prewarmed plans of ${#images[@]} images" 60 prewarmed_at_least "${#images[@]}"
[ "$(metric starlight_delta_prewarm_errors_total)" = 0 ] || e2e_fail "prewarm errors: see the proxy log"
plans0=$(metric starlight_delta_plans_total)
q_delta() { echo "$U/starlight/delta?to=$R/$1:sl&platform=$P&insecure=1${2:+&from=$R/$2:sl}"; }
fresh() {
    local img=$1 t code
    t=$(curl -sS -o "$W/$img.delta" -D "$W/$img.delta.h" -w '%{http_code} %{time_starttransfer} %{time_total}' "$(q_delta "$img")")
    [ "${t%% *}" = 200 ] || e2e_fail "GET delta $img: HTTP ${t%% *}"
    "$CT" check "$W/$img.delta" >"$W/$img.check.json" || e2e_fail "check delta $img"
    ex delta-digests "$W/$img.check.json" >"$W/$img.got"
    [ "$(sort "$W/$img.got" | uniq -d | wc -l)" = 0 ] || e2e_fail "$img: a content appears twice"
    ex contents "$W/$img".toc*.json >"$W/$img.want"
    diff <(sort "$W/$img.got") "$W/$img.want" >&2 || e2e_fail "$img: fresh delta contents differ from the TOCs'"
    e2e_log "2. fresh $img: $(wc -l <"$W/$img.got") contents, $(stat -c %s "$W/$img.delta") bytes, chunks verified $(jq_ 'd["chunksVerified"]' "$W/$img.check.json"), first byte/total ${t#* } s"
}
for img in "${images[@]}"; do fresh "$img"; done
[ "$(metric starlight_delta_plans_total)" = "$plans0" ] ||
    e2e_fail "fresh deltas planned again ($plans0 -> $(metric starlight_delta_plans_total)) instead of reusing the prewarmed plans"
e2e_log "2. the ${#images[@]} fresh deltas reused the plans prewarmed after notify"
etag=$(grep -i '^etag:' "$W/busybox.delta.h" | cut -d' ' -f2- | tr -d '\r')
[ -n "$etag" ] || e2e_fail "delta without ETag"
grep -qi '^content-type: application/vnd.starlight.delta.v1' "$W/busybox.delta.h" ||
    e2e_fail "delta content type"

# format version 2 (docs/protocol.md §3), asked for with Accept: the same plan, its header gzip'd
# without layers[].files, "version": 2, its own ETag; the payload is byte for byte the v1's
V2=application/vnd.starlight.delta.v2
v2_images=(busybox)
[[ " ${images[*]} " == *" redis7 "* ]] && v2_images+=(redis7)
for img in "${v2_images[@]}"; do
    [ "$(get "$(q_delta "$img")" "$W/$img.v2" -H "Accept: $V2")" = 200 ] || e2e_fail "GET v2 delta $img"
    grep -qi "^content-type: $V2" "$W/$img.v2.h" || e2e_fail "v2 delta $img: content type"
    e1=$(grep -i '^etag:' "$W/$img.delta.h" | cut -d' ' -f2- | tr -d '\r')
    e2=$(grep -i '^etag:' "$W/$img.v2.h" | cut -d' ' -f2- | tr -d '\r')
    [ -n "$e2" ] && [ "$e1" != "$e2" ] || e2e_fail "v2 delta $img: ETag $e2 (v1: $e1)"
    python3 - "$W/$img.delta" "$W/$img.v2" <<'PY' || e2e_fail "v2 delta $img is not the v1 header minus files"
import json, struct, sys, zlib
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
def split(d):
    assert d[:8] == b"SLDELTA\n"
    v, _, h, p = struct.unpack(">IIQQ", d[8:32])
    assert len(d) == 32 + h + p
    return v, d[32:32 + h], d[32 + h:], p
va, ha, pa, pla = split(a)
vb, hb, pb, plb = split(b)
assert (va, vb) == (1, 2) and pla == plb and pa == pb, "versions or payloads differ"
d = zlib.decompressobj(16 + 15)
jb = json.loads(d.decompress(hb, 256 << 20))
assert d.eof and not d.unused_data, "not exactly one gzip member"
ja = json.loads(ha)
for l in ja["layers"]:
    del l["files"]
ja["version"] = 2
assert ja == jb, "headers differ"
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: header {len(ha)} -> {len(hb)} bytes", file=sys.stderr)
PY
    "$CT" check "$W/$img.v2" >"$W/$img.v2.check.json" || e2e_fail "check v2 delta $img"
    cmp -s <(jq_ 'd["contents"]' "$W/$img.v2.check.json") <(jq_ 'd["contents"]' "$W/$img.check.json") ||
        e2e_fail "v2 delta $img: contents differ from v1's"
done
# a Range with the other version's ETag in If-Range gets the whole body of the asked version
code=$(get "$(q_delta busybox)" "$W/bb.mix" -H "Accept: $V2" -H "Range: bytes=40-" -H "If-Range: $etag")
[ "$code" = 200 ] && cmp -s "$W/bb.mix" "$W/busybox.v2" || e2e_fail "v2 Range with the v1 ETag: HTTP $code"
e2=$(grep -i '^etag:' "$W/busybox.v2.h" | cut -d' ' -f2- | tr -d '\r')
code=$(get "$(q_delta busybox)" "$W/bb.mix" -H "Range: bytes=40-" -H "If-Range: $e2")
[ "$code" = 200 ] && cmp -s "$W/bb.mix" "$W/busybox.delta" || e2e_fail "v1 Range with the v2 ETag: HTTP $code"
code=$(get "$(q_delta busybox)" "$W/bb.mix" -H "Accept: $V2" -H "Range: bytes=40-" -H "If-Range: $e2")
[ "$code" = 206 ] && cmp -s "$W/bb.mix" <(tail -c +41 "$W/busybox.v2") || e2e_fail "v2 Range: HTTP $code"
e2e_log "   version 2 (Accept: $V2): ${v2_images[*]}: v1 header minus files, gzip'd; own ETag; Range/If-Range never mixes versions"

if [[ " ${images[*]} " == *" redis7 "* ]]; then
    start=$(date +%s%N)
    [ "$(get "$(q_delta redis7 redis6)" "$W/upd.delta")" = 200 ] || e2e_fail "delta redis6 -> redis7"
    t=$(ms "$start")
    "$CT" check "$W/upd.delta" >"$W/upd.check.json" || e2e_fail "check redis update delta"
    ex delta-digests "$W/upd.check.json" | sort >"$W/upd.got"
    python3 -c 'import json,sys
s=set()
for f in sys.argv[1:]:
    for e in json.load(open(f))["list"]:
        if e["type"]=="reg": s.add(e["digest"])
print("\n".join(sorted(s)))' "$W"/redis6.toc*.json >"$W/r6.all"
    ex minus "$W/redis7.want" "$W/r6.all" >"$W/upd.want"
    diff "$W/upd.got" "$W/upd.want" >&2 || e2e_fail "redis 6 -> 7: delta contents are not exactly those absent from 6.0"
    e2e_log "   redis 6.0 -> 7.0: $(wc -l <"$W/upd.got") of $(wc -l <"$W/redis7.want") contents, $(stat -c %s "$W/upd.delta") bytes (fresh: $(stat -c %s "$W/redis7.delta")), $t ms"
    post_to=redis7 post_from=redis6 post_ref="$W/upd.delta"
else
    post_to=features post_from=busybox
    [ "$(get "$(q_delta features busybox)" "$W/fb.delta")" = 200 ] || e2e_fail "delta busybox -> features"
    post_ref="$W/fb.delta"
fi
[ "$(get "$(q_delta busybox busybox)" "$W/held.delta")" = 200 ] || e2e_fail "delta to a held image"
"$CT" check "$W/held.delta" >"$W/held.check.json" || e2e_fail "check held delta"
[ "$(jq_ 'd["payloadLength"], len(d["contents"])' "$W/held.check.json")" = "0 0" ] ||
    e2e_fail "a delta to a held image has a payload"
printf '{"to":"%s","platform":"%s","from":["%s"],"insecure":true}' "$R/$post_to:sl" "$P" \
    "$R/$post_from:sl" >"$W/post.json"
[ "$(get "$U/starlight/delta" "$W/post.delta" -X POST -H 'Content-Type: application/json' \
    --data-binary @"$W/post.json")" = 200 ] || e2e_fail "POST delta"
cmp -s "$W/post.delta" "$post_ref" || e2e_fail "POST delta differs from the GET's bytes"
e2e_log "   held image: empty payload; POST JSON = GET bytes ($(stat -c %s "$post_ref") bytes)"

# ---------------------------------------------------------------- 3: errors
[ "$(get "$U/starlight/delta?to=$R/nosuch:sl&platform=$P&insecure=1" "$W/e404")" = 404 ] ||
    e2e_fail "unknown image: $(cat "$W/e404")"
expect_json_error 404 "$W/e404"
n400=0
for qs in "to=$R/busybox:sl&platform=linux" "to=$R/busybox:sl" "platform=$P" \
    "to=$R/busybox:sl&platform=$P&bogus=1" "to=$R/busybox:sl&platform=$P&to=x" \
    "to=Not%20A%20Ref&platform=$P" "to=$R/busybox:sl&platform=$P&layer=sha256:zz"; do
    code=$(get "$U/starlight/delta?$qs" "$W/e400")
    [ "$code" = 400 ] || e2e_fail "malformed delta query '$qs': HTTP $code $(cat "$W/e400")"
    expect_json_error 400 "$W/e400"
    n400=$((n400 + 1))
done
for body in '{"to":1}' 'not json' '{"to":"a:b","platform":"linux/amd64","extra":1}'; do
    code=$(get "$U/starlight/delta" "$W/e400" -X POST --data-binary "$body")
    [ "$code" = 400 ] || e2e_fail "malformed delta body '$body': HTTP $code"
    expect_json_error 400 "$W/e400"
    n400=$((n400 + 1))
done
[ "$(get "$U/starlight/report" "$W/e400" -X POST --data-binary '{"version":2}')" = 400 ] ||
    e2e_fail "malformed report accepted"
expect_json_error 400 "$W/e400"
[ "$(get "$U/starlight/notify" "$W/e400" -X POST)" = 400 ] || e2e_fail "notify without ref"
expect_json_error 400 "$W/e400"
[ "$(get "$U/starlight/notify?ref=$R/busybox:src&insecure=1" "$W/e422" -X POST)" = 422 ] ||
    e2e_fail "notify of an unconverted image: $(cat "$W/e422")"
expect_json_error 422 "$W/e422"
grep -q 'convert' "$W/e422" || e2e_fail "422 does not mention convert: $(cat "$W/e422")"
if "$CS" notify --insecure --proxy "$U" "$R/busybox:src" 2>"$W/cs422.err"; then
    e2e_fail "ctr-starlight notify of an unconverted image succeeded"
fi
grep -q 'convert' "$W/cs422.err" || e2e_fail "ctr-starlight notify: $(cat "$W/cs422.err")"
e2e_log "3. unknown image 404, $((n400 + 2)) malformed requests 400, unconverted 422: $(jq_ 'd["error"][:120]' "$W/e422")"

# ---------------------------------------------------------------- 4: Range, If-Range
big="$W/${images[-1]}.delta"
bigq=$(q_delta "${images[-1]}")
total=$(stat -c %s "$big")
bigtag=$(grep -i '^etag:' "$big.h" | cut -d' ' -f2- | tr -d '\r')
mid=$((total / 2 + 12345))
[ "$(get "$bigq" "$W/tail" -H "Range: bytes=$mid-")" = 206 ] || e2e_fail "Range: not 206"
cmp -s "$W/tail" <(tail -c +$((mid + 1)) "$big") || e2e_fail "Range: bytes differ from the tail"
grep -qi "^content-range: bytes $mid-$((total - 1))/$total" "$W/tail.h" || e2e_fail "Content-Range: $(grep -i content-range "$W/tail.h")"
[ "$(get "$bigq" "$W/tail2" -H "Range: bytes=$mid-" -H "If-Range: $bigtag")" = 206 ] ||
    e2e_fail "If-Range with the ETag: not 206"
cmp -s "$W/tail2" "$W/tail" || e2e_fail "If-Range: bytes differ"
[ "$(get "$bigq" "$W/full" -H "Range: bytes=$mid-" -H 'If-Range: "sha256:0000"')" = 200 ] ||
    e2e_fail "If-Range with another ETag: not 200"
cmp -s "$W/full" "$big" || e2e_fail "If-Range with another ETag: not the full body"
[ "$(get "$bigq" "$W/e416" -H "Range: bytes=$((total + 10))-")" = 416 ] || e2e_fail "Range past the end: not 416"
e2e_log "4. Range bytes=$mid- of $total: 206 = tail; If-Range ETag 206, other ETag 200 full; past end 416"

# ---------------------------------------------------------------- 5: ranks
bbd=$(jq_ 'd["images"][0]["digest"]' "$W/bb.notify.json")
ex trace "$W/trace.json" "$bbd" etc/group bin/busybox etc/passwd
prewarmed0=$(metric starlight_delta_plans_prewarmed_total)
[ "$(get "$U/starlight/report" "$W/report.json" -X POST -H 'Content-Type: application/json' \
    --data-binary @"$W/trace.json")" = 200 ] || e2e_fail "report: $(cat "$W/report.json")"
[ "$(jq_ 'd["ranked"]' "$W/report.json")" = 3 ] || e2e_fail "report ranked: $(cat "$W/report.json")"
want=$(python3 -c 'import json,sys
d={e["name"]:e.get("digest") for e in json.load(open(sys.argv[1]))["list"]}
print(" ".join(d[p] for p in ["etc/group","bin/busybox","etc/passwd"]))' "$W/busybox.toc0.json")
ranked() {
    [ "$(get "$(q_delta busybox)" "$W/$1.delta")" = 200 ] || e2e_fail "delta $1"
    "$CT" check "$W/$1.delta" >"$W/$1.check.json" || e2e_fail "check $1"
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["contents"]; print(" ".join(x["digest"] for x in c[:3]), sum(x["traced"] for x in c))' "$W/$1.check.json"
}
# the report moved busybox's ranks: its cached fresh-pull plan is made again in the background
e2e_wait_for "prewarm after the report" 60 prewarmed_at_least "$((prewarmed0 + 1))"
plans1=$(metric starlight_delta_plans_total)
[ "$(ranked ranked1)" = "$want 3" ] || e2e_fail "after a report, traced contents do not lead in trace order"
[ "$(metric starlight_delta_plans_total)" = "$plans1" ] || e2e_fail "the delta after the report was not prewarmed"
[ "$(get "$U/starlight/notify?ref=$R/features:sl&insecure=1" "$W/fe.notify.json" -X POST)" = 200 ] ||
    e2e_fail "re-notify features"
"$CS" notify --insecure --proxy "$U" "$R/busybox:sl" 2>/dev/null || e2e_fail "re-notify busybox"
[ "$(ranked ranked2)" = "$want 3" ] || e2e_fail "re-notifying the shared layer lost its ranks"
cmp -s "$W/ranked1.delta" "$W/ranked2.delta" || e2e_fail "same ranks, different bytes"
e2e_log "5. ranks: traced contents lead in trace order; kept after re-notifying the shared layer"

# ---------------------------------------------------------------- 6: client leaves mid-stream
aborted0=$(metric starlight_proxy_delta_streams_aborted_total)
curl -sS -o /dev/null --limit-rate 200k --max-time 1 "$bigq" 2>/dev/null && e2e_fail "slow client finished in 1 s?"
curl -sS "$bigq" 2>/dev/null | head -c 100000 >/dev/null || true
sleep 1
[ "$(metric starlight_proxy_delta_streams_in_flight)" = 0 ] || e2e_fail "streams still in flight after clients left"
aborted1=$(metric starlight_proxy_delta_streams_aborted_total)
[ "$aborted1" -gt "$aborted0" ] || e2e_fail "no aborted stream counted ($aborted0 -> $aborted1)"
[ "$(get "$bigq" "$W/after")" = 200 ] || e2e_fail "delta after clients left"
"$CT" check "$W/after" >/dev/null || e2e_fail "check the delta after clients left"
e2e_log "6. clients that left mid-stream: aborted $aborted0 -> $aborted1, 0 in flight, next delta verifies"

# ---------------------------------------------------------------- 7: database outage
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$E2E_DIR/pg/data" -m fast -w stop >>"$E2E_DIR/logs/postgres.log" 2>&1 ||
    e2e_fail "pg_ctl stop"
[ "$(get "$(q_delta busybox)" "$W/e503")" = 503 ] || e2e_fail "delta with the database down: $(head -c 300 "$W/e503")"
expect_json_error 503 "$W/e503"
grep -qi '^retry-after:' "$W/e503.h" || e2e_fail "503 without Retry-After"
[ "$(get "$U/health-check" "$W/h503")" = 503 ] || e2e_fail "health with the database down"
[ "$(get "$U/starlight/notify?ref=$R/busybox:sl&insecure=1" "$W/n503" -X POST)" = 503 ] || e2e_fail "notify with the database down"
expect_json_error 503 "$W/n503"
e2e_log "7. database down: delta, notify, health 503 JSON: $(jq_ 'd["error"][:100].replace("\n", " ")' "$W/e503")"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$E2E_DIR/pg/data" -l "$E2E_DIR/pg/server.log" -w -t 30 \
    -o "-c fsync=off -c listen_addresses=127.0.0.1 -p $E2E_PG_PORT -k $E2E_DIR/pg" start \
    >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "pg_ctl start"
e2e_track_pid postgres "$(head -n1 "$E2E_DIR/pg/data/postmaster.pid")"
start=$(date +%s%N)
e2e_wait_for "proxy recovery" 30 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$U/health-check')\" = 200 ]"
[ "$(get "$(q_delta busybox)" "$W/rec.delta")" = 200 ] || e2e_fail "delta after the restart"
cmp -s "$W/rec.delta" "$W/ranked2.delta" || e2e_fail "delta after the restart differs"
_e2e_alive "$PPID_" || e2e_fail "the proxy died"
e2e_log "   restarted: the same proxy (pid $PPID_) answers again after $(ms "$start") ms"

# ---------------------------------------------------------------- 8: auth + flaky registry
fport=$(e2e_free_port)
FAULT_PROXY_STATE="$W/flaky" python3 "$here/../convert/tool.py" flaky-blobs "$fport" "$R" 3 \
    >>"$E2E_DIR/logs/flaky.log" 2>&1 &
e2e_track_pid flaky $!
e2e_wait_for "flaky registry" 10 curl -fsS -o /dev/null "http://127.0.0.1:$fport/v2/"
FR="127.0.0.1:$fport"
htpasswd -B -b -c "$W/htpasswd" alice 's3cret!' 2>/dev/null
aport=$(e2e_free_port)
start_proxy proxy-auth "$aport" --registry "$FR" --registry-insecure --auth-file "$W/htpasswd"
A="http://127.0.0.1:$aport"
[ "$(get "$A/starlight/notify?ref=$FR/busybox:sl&insecure=1" "$W/a401" -X POST)" = 401 ] || e2e_fail "no credentials: not 401"
expect_json_error 401 "$W/a401"
grep -qi '^www-authenticate: Basic' "$W/a401.h" || e2e_fail "401 without WWW-Authenticate"
[ "$(get "$A/starlight/delta?to=$FR/busybox:sl&platform=$P" "$W/a401" -u alice:wrong)" = 401 ] || e2e_fail "wrong password: not 401"
"$CS" notify --insecure --proxy "$A" "$FR/busybox:sl" 2>"$W/a.err" && e2e_fail "notify without credentials succeeded"
start=$(date +%s%N)
"$CS" notify --insecure --proxy "$A" --proxy-user 'alice:s3cret!' "$FR/busybox:sl" 2>"$W/a.err" ||
    { cat "$W/a.err" >&2; e2e_fail "notify with --proxy-user through the flaky registry"; }
[ "$(get "$A/starlight/delta?to=$FR/busybox:sl&platform=$P" "$W/a.delta" -u 'alice:s3cret!')" = 200 ] ||
    e2e_fail "delta with credentials: $(head -c 300 "$W/a.delta")"
"$CT" check "$W/a.delta" >/dev/null || e2e_fail "check delta through the flaky registry"
refused=$(cat "$W/flaky.count" 2>/dev/null || echo 0)
[ "$refused" = 3 ] || e2e_fail "the flaky registry refused $refused blob reads, want 3"
[ "$(get "$A/health-check" "$W/ah")" = 200 ] || e2e_fail "open health with auth"
e2e_log "8. auth: 401 without/wrong credentials, 200 with --proxy-user; 3 blob reads answered 503 were retried, delta verified ($(ms "$start") ms)"

# ---------------------------------------------------------------- 9: conversion hook
MT_ACCEPT=(-H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.docker.distribution.manifest.v2+json')
hook_metric() { curl -fsS "$U/metrics" | awk -v m="starlight_proxy_hook_conversions_total{result=\"$1\"}" '$1 == m { print $2 }'; }
delta_ok() { [ "$(curl -s -o "$2" -w '%{http_code}' "$U/starlight/delta?to=$1&platform=$P&insecure=1")" = 200 ]; }
hook_check() { # REF-STARLIGHT FILE: the delta verifies and holds busybox's contents
    "$CT" check "$2" >"$2.check.json" || e2e_fail "check delta of $1"
    diff <(ex delta-digests "$2.check.json" | sort) "$W/busybox.want" >&2 || e2e_fail "$1: contents differ from busybox's"
}
e2e_push_image busybox hookapp:v1
start=$(date +%s%N)
e2e_wait_for "the hook to push hookapp:v1-starlight" 60 curl -fsS -o /dev/null "${MT_ACCEPT[@]}" "http://$R/v2/hookapp/manifests/v1-starlight"
e2e_wait_for "the hook to notify hookapp:v1-starlight" 30 delta_ok "$R/hookapp:v1-starlight" "$W/hook.delta"
t=$(ms "$start")
hook_check "$R/hookapp:v1-starlight" "$W/hook.delta"
[ "$(hook_metric ok)" = 1 ] || e2e_fail "hook_conversions_total{ok} = $(hook_metric ok), want 1"
e2e_log "9. hook (registry notification): push hookapp:v1 -> hookapp:v1-starlight converted, notified, delta verified in $t ms"

harbor() { # HOST REPO TAG[=DIGEST]... -> a Harbor PUSH_ARTIFACT payload
    python3 -c 'import json,sys
h,repo,tags=sys.argv[1],sys.argv[2],[t.split("=") + [None] for t in sys.argv[3:]]
print(json.dumps({"type":"PUSH_ARTIFACT","occur_at":1,"operator":"admin","event_data":{
  "resources":[dict({"tag":t[0],"resource_url":"%s/%s:%s"%(h,repo,t[0])}, **({"digest":t[1]} if t[1] else {})) for t in tags],
  "repository":{"date_created":1,"name":repo.split("/")[-1],"namespace":"library","repo_full_name":repo,"repo_type":"private"}}}))' "$@"
}
LR="localhost:${R#*:}"
e2e_push_image busybox harborapp:v2
hdig=$(curl -fsS -I "${MT_ACCEPT[@]}" "http://$R/v2/harborapp/manifests/v2" | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }' | tr -d '\r')
harbor "$LR" harborapp "v2=$hdig" >"$W/harbor.json"
[ "$(get "$U/starlight/hook/registry" "$W/hh.json" -X POST -H 'Content-Type: application/json' --data-binary @"$W/harbor.json")" = 200 ] ||
    e2e_fail "Harbor payload: $(cat "$W/hh.json")"
[ "$(jq_ 'd["queued"]' "$W/hh.json")" = "['$LR/harborapp@$hdig']" ] || e2e_fail "Harbor payload queued $(cat "$W/hh.json")"
e2e_wait_for "the hook to convert $LR/harborapp:v2" 60 delta_ok "$LR/harborapp:v2-starlight" "$W/harbor.delta"
hook_check "$LR/harborapp:v2-starlight" "$W/harbor.delta"
harbor "$LR" harborapp t1 t2 t3 t4 t5 t6 >"$W/harbor6.json"
[ "$(get "$U/starlight/hook/registry" "$W/h503" -X POST --data-binary @"$W/harbor6.json")" = 503 ] ||
    e2e_fail "6 pushes for a queue of 4: $(cat "$W/h503")"
expect_json_error 503 "$W/h503"
[ "$(get "$U/starlight/hook/registry" "$W/h400" -X POST --data-binary '{"what":1}')" = 400 ] || e2e_fail "malformed hook payload"
expect_json_error 400 "$W/h400"
harbor "$LR" harborapp nosuchtag >"$W/harbor-bad.json"
[ "$(get "$U/starlight/hook/registry" "$W/hb.json" -X POST --data-binary @"$W/harbor-bad.json")" = 200 ] || e2e_fail "Harbor payload for a missing tag"
e2e_wait_for "a failed conversion in /metrics" 30 bash -c "[ \"\$(curl -fsS '$U/metrics' | awk '\$1 == \"starlight_proxy_hook_conversions_total{result=\\\"convert_failed\\\"}\" { print \$2 }')\" = 1 ]"
grep -q 'hook: convert .*nosuchtag' "$E2E_DIR/logs/proxy.log" || e2e_fail "the failed conversion was not logged"
e2e_log "   Harbor payload converted; 6 pushes for a queue of 4 -> 503; malformed -> 400; missing tag -> convert_failed in /metrics and the log"
curl -fsS "$U/metrics" | grep '^starlight_proxy_hook' >&2

e2e_log "PASS"
