#!/usr/bin/env bash
# Scenario: the proxy core (proxy/core/core.h) against a real PostgreSQL and a real
# distribution registry, driven by tests/tools/sl-core-tool (no HTTP server):
#  0. two cores starting at once on a fresh database apply the schema once;
#  1. two notifies of one image at once both succeed with one ingest per layer;
#     a non-Starlight image is refused with a message saying to convert it;
#  2. notify busybox, features (shares busybox's layer), redis6, redis7;
#  3. a fresh-pull delta holds every content once (the set computed from the TOCs);
#     identical requests give identical bytes and ETags; every chunk inflates to its
#     chunkDigest and every TOC tail verifies against tocDigest (sl-core-tool check);
#  4. redis 6.0 → 7.0 (from = 6.0) holds exactly the contents absent from 6.0's layers;
#     a delta to an image already held has an empty payload; unknown image → ENOENT,
#     malformed platform → EINVAL;
#  5. after a report, traced contents lead the payload in trace order; re-notifying a shared
#     layer (busybox again, features) keeps the ranks;
#  6. PostgreSQL stopped and restarted: plans fail with EAGAIN meanwhile and recover with the
#     same core.
# SL_E2E_SKIP_REDIS=1 skips the redis images. SL_E2E_EXPLAIN=1 prints EXPLAIN ANALYZE of the
# planner's queries on the ingested data.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/tocs.sh"

e2e_require python3 curl skopeo psql
CS="$SL_BIN/ctr-starlight"
FT="$SL_BIN/sl-format-tool"
CT="$SL_BIN/sl-core-tool"
for b in "$CS" "$FT" "$CT"; do
    [ -x "$b" ] || e2e_fail "build first: $b missing"
done
ex() { python3 "$here/expect.py" "$@"; }

images=(busybox features)
[ "${SL_E2E_SKIP_REDIS:-0}" = 1 ] || images+=(redis6 redis7)
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"

W="$E2E_DIR/work"
mkdir -p "$W"
e2e_start_registry
e2e_start_postgres
R=$E2E_REGISTRY
PG=$E2E_PG_CONNINFO
export SL_CORE_CACHE_DIR="$E2E_DIR/cache" # payload reads go through proxy/cache
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

for img in "${images[@]}"; do
    e2e_push_image "$img" "$img:src"
    "$CS" convert --insecure-source --insecure-destination "$R/$img:src" "$R/$img:sl" \
        >/dev/null 2>"$W/$img.convert.log" || { cat "$W/$img.convert.log" >&2; e2e_fail "convert $img"; }
    # TOCs of the converted layers, read independently of the proxy
    dump_tocs "$img"
done

# ---------------------------------------------------------------- 0: two cores migrate one database
runuser -u postgres -- "${SL_PG_BIN:-/usr/lib/postgresql/15/bin}/createdb" -h "$E2E_PG_SOCKDIR" \
    -p "$E2E_PG_PORT" migrate >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "createdb migrate"
MPG="host=127.0.0.1 port=$E2E_PG_PORT user=postgres dbname=migrate"
env -u SL_CORE_CACHE_DIR "$CT" health "$MPG" >"$W/m1.json" 2>/dev/null & m1=$!
env -u SL_CORE_CACHE_DIR "$CT" health "$MPG" >"$W/m2.json" 2>/dev/null & m2=$!
wait "$m1" || e2e_fail "first core on a fresh database"
wait "$m2" || e2e_fail "second core on a fresh database"
# one row per version (1, 2), each applied once
[ "$(psql "$MPG" -XAtc "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_version")" = 1,2 ] ||
    e2e_fail "two cores starting at once applied the migrations twice"
e2e_log "0. two cores started at once on a fresh database: schema applied once"

# ---------------------------------------------------------------- 1: concurrency, refusal
start=$(date +%s%N)
"$CT" notify-many "$PG" "$R/busybox:sl" 2 >"$W/many.json" || { cat "$W/many.json" >&2; e2e_fail "concurrent notify"; }
n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["succeeded"], d["layersIngested"])' "$W/many.json")
[ "$n" = "2 1" ] || e2e_fail "concurrent notify of busybox: succeeded/ingested = $n, want 2 1"
e2e_log "1. two concurrent notifies of busybox: both succeeded, one ingest ($(ms "$start") ms)"
if "$CT" notify "$PG" "$R/busybox:src" >"$W/src.json" 2>"$W/src.err"; then
    e2e_fail "notify of a non-Starlight image succeeded"
fi
grep -q 'ctr-starlight convert' "$W/src.err" && grep -q 'Wrong medium type' "$W/src.err" ||
    { cat "$W/src.err" >&2; e2e_fail "non-Starlight image: expected EMEDIUMTYPE with a hint"; }
e2e_log "   non-Starlight image refused: $(head -c 160 "$W/src.err")"

# ---------------------------------------------------------------- 2: notify the rest
for img in "${images[@]}"; do
    start=$(date +%s%N)
    "$CT" notify "$PG" "$R/$img:sl" >"$W/$img.notify.json" || e2e_fail "notify $img"
    e2e_log "2. notify $img: $(ms "$start") ms, ingested: $(python3 -c 'import json,sys; print([l["ingested"] for l in json.load(open(sys.argv[1]))["images"][0]["layers"]])' "$W/$img.notify.json")"
done
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["images"][0]["layers"]; sys.exit(0 if l[0]["ingested"] is False else 1)' \
    "$W/features.notify.json" || e2e_fail "features: its busybox layer was ingested again"

# ---------------------------------------------------------------- 3: fresh pulls
fresh() { # IMG -> checks a fresh-pull delta
    local img=$1 start
    start=$(date +%s%N)
    "$CT" delta "$PG" "$W/$img.delta" "$R/$img:sl" "$P" >"$W/$img.delta.json" || e2e_fail "delta $img"
    local t=$(ms "$start")
    "$CT" check "$W/$img.delta" >"$W/$img.check.json" || e2e_fail "check delta $img"
    ex delta-digests "$W/$img.check.json" >"$W/$img.got"
    [ "$(sort "$W/$img.got" | uniq -d | wc -l)" = 0 ] || e2e_fail "$img: a content appears twice"
    ex contents "$W/$img".toc*.json >"$W/$img.want"
    diff <(sort "$W/$img.got") "$W/$img.want" >&2 || e2e_fail "$img: fresh delta contents differ from the TOCs'"
    e2e_log "3. fresh $img: $(wc -l <"$W/$img.got") contents, $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["totalLen"], "bytes, head", d["headLen"], "plan", round(d["planMs"],1), "ms,", d["segments"], "segments")' "$W/$img.delta.json"), total $t ms, chunks verified: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chunksVerified"])' "$W/$img.check.json")"
}
for img in "${images[@]}"; do fresh "$img"; done
"$CT" delta "$PG" "$W/busybox.again" "$R/busybox:sl" "$P" >"$W/again.json" || e2e_fail "delta again"
cmp -s "$W/busybox.delta" "$W/busybox.again" || e2e_fail "identical requests gave different bytes"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["etag"])' "$W/again.json")" = \
  "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["etag"])' "$W/busybox.delta.json")" ] ||
    e2e_fail "identical requests gave different ETags"
e2e_log "   identical requests: identical bytes and ETag"

# ---------------------------------------------------------------- 4: updates, held, errors
if [[ " ${images[*]} " == *" redis7 "* ]]; then
    start=$(date +%s%N)
    "$CT" delta "$PG" "$W/upd.delta" "$R/redis7:sl" "$P" --from "$R/redis6:sl" >"$W/upd.json" ||
        e2e_fail "delta redis6 -> redis7"
    t=$(ms "$start")
    "$CT" check "$W/upd.delta" >"$W/upd.check.json" || e2e_fail "check redis update delta"
    ex delta-digests "$W/upd.check.json" | sort >"$W/upd.got"
    ex contents "$W"/redis6.toc*.json >"$W/r6.all"
    # every digest of redis6's regular files, empty ones included
    python3 -c 'import json,sys
s=set()
for f in sys.argv[1:]:
    for e in json.load(open(f))["list"]:
        if e["type"]=="reg": s.add(e["digest"])
print("\n".join(sorted(s)))' "$W"/redis6.toc*.json >"$W/r6.all"
    ex minus "$W/redis7.want" "$W/r6.all" >"$W/upd.want"
    diff "$W/upd.got" "$W/upd.want" >&2 || e2e_fail "redis 6 -> 7: delta contents are not exactly those absent from 6.0"
    e2e_log "4. redis 6.0 -> 7.0: $(wc -l <"$W/upd.got") of $(wc -l <"$W/redis7.want") contents sent, $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["payloadBytes"], "payload bytes,", d["savedBytes"], "saved")' "$W/upd.json"), $t ms"
fi
"$CT" delta "$PG" "$W/held.delta" "$R/busybox:sl" "$P" --from "$R/busybox:sl" >"$W/held.json" || e2e_fail "delta busybox from busybox"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["payloadBytes"])' "$W/held.json")" = 0 ] ||
    e2e_fail "a delta to a held image has a payload"
"$CT" check "$W/held.delta" >/dev/null || e2e_fail "check held delta"
bbl=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][0]["layers"][0]["digest"])' "$W/busybox.notify.json")
"$CT" delta "$PG" "$W/fl.delta" "$R/features:sl" "$P" --layer "$bbl" >/dev/null || e2e_fail "delta features with held layer"
"$CT" check "$W/fl.delta" >"$W/fl.check.json" || e2e_fail "check features delta"
python3 -c 'import json,sys; sys.exit(0 if all(c["layer"] > 0 for c in json.load(open(sys.argv[1]))["contents"]) else 1)' "$W/fl.check.json" ||
    e2e_fail "features with busybox's layer held still reads from it"
e2e_log "   held image: empty payload; held layer: nothing read from it"
"$CT" delta "$PG" "$W/x" "$R/nosuch:sl" "$P" >/dev/null 2>"$W/err" && e2e_fail "unknown image planned"
grep -q 'No such file' "$W/err" || { cat "$W/err" >&2; e2e_fail "unknown image: expected ENOENT"; }
"$CT" delta "$PG" "$W/x" "$R/busybox:sl" "linux" >/dev/null 2>"$W/err" && e2e_fail "bad platform planned"
grep -q 'Invalid argument' "$W/err" || { cat "$W/err" >&2; e2e_fail "bad platform: expected EINVAL"; }
e2e_log "   unknown image -> ENOENT, malformed platform -> EINVAL"

# ---------------------------------------------------------------- 5: ranks
bbd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][0]["digest"])' "$W/busybox.notify.json")
ex trace "$W/trace.json" "$bbd" etc/group bin/busybox etc/passwd
"$CT" report "$PG" "$W/trace.json" >"$W/report.json" || e2e_fail "report"
python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["ranked"] == 3 else 1)' "$W/report.json" ||
    { cat "$W/report.json" >&2; e2e_fail "report ranked != 3"; }
want=$(python3 -c 'import json,sys
d={e["name"]:e.get("digest") for e in json.load(open(sys.argv[1]))["list"]}
print(" ".join(d[p] for p in ["etc/group","bin/busybox","etc/passwd"]))' "$W/busybox.toc0.json")
ranked() { # DELTA-NAME -> first three digests, and how many are traced
    "$CT" delta "$PG" "$W/$1.delta" "$R/busybox:sl" "$P" >/dev/null || e2e_fail "delta $1"
    "$CT" check "$W/$1.delta" >"$W/$1.check.json" || e2e_fail "check $1"
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["contents"]; print(" ".join(x["digest"] for x in c[:3]), sum(x["traced"] for x in c))' "$W/$1.check.json"
}
[ "$(ranked ranked1)" = "$want 3" ] || e2e_fail "after a report, traced contents do not lead in trace order"
"$CT" notify "$PG" "$R/busybox:sl" >/dev/null || e2e_fail "re-notify busybox"
"$CT" notify "$PG" "$R/features:sl" >/dev/null || e2e_fail "re-notify features"
[ "$(ranked ranked2)" = "$want 3" ] || e2e_fail "re-notifying the shared layer lost its ranks"
e2e_log "5. ranks: traced contents lead in trace order, kept after re-notifying the shared layer"

# ---------------------------------------------------------------- EXPLAIN (docs/architecture.md)
if [ "${SL_E2E_EXPLAIN:-0}" = 1 ]; then
    explain() {
        psql "$PG" -X -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT count(*) AS files, (SELECT count(*) FROM layers) AS layers FROM files;
SELECT relname, n_live_tup, last_analyze, last_autoanalyze FROM pg_stat_user_tables WHERE relname = 'files';
-- the planner's file query for redis7 (2 of the layers)
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT f.layer_id, f.idx, f.path, f.size, f.digest, f.chunks, r.rank_sum / r.n
  FROM files f LEFT JOIN ranks r ON r.layer_id = f.layer_id AND r.path = f.path
  WHERE f.layer_id = ANY(ARRAY(SELECT il.layer_id FROM image_layers il JOIN images i ON i.id = il.image_id WHERE i.repository LIKE '%/redis7'))
  AND f.type = 'reg' ORDER BY f.layer_id, f.idx;
-- held contents of redis6
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT DISTINCT digest COLLATE "C" FROM files
  WHERE layer_id = ANY(ARRAY(SELECT il.layer_id FROM image_layers il JOIN images i ON i.id = il.image_id WHERE i.repository LIKE '%/redis6'))
  AND digest IS NOT NULL ORDER BY 1;
EXPLAIN (ANALYZE, COSTS OFF) SELECT image_id FROM tags WHERE repository = 'x' AND tag = 'y' AND platform = 'z';
SQL
    }
    explain >"$W/explain.txt" 2>&1 || true
    # the same plans with 100 more redis-sized layers (copies of redis 6/7's file rows)
    psql "$PG" -X -q -v ON_ERROR_STOP=1 >>"$W/explain.txt" 2>&1 <<'SQL' || true
INSERT INTO layers (digest, size, toc_digest, toc_offset, toc_tail, n_entries)
  SELECT 'sha256:' || lpad(to_hex(g), 64, '0'), 1000, 'synthetic', 0, '\x00', 0 FROM generate_series(1, 100) g;
WITH src AS (SELECT il.layer_id, row_number() OVER (ORDER BY il.layer_id) - 1 AS k
             FROM image_layers il JOIN images i ON i.id = il.image_id WHERE i.repository ~ '/redis[67]$'),
     syn AS (SELECT id, row_number() OVER (ORDER BY id) AS g FROM layers WHERE toc_digest = 'synthetic')
INSERT INTO files SELECT syn.id, f.idx, f.path, f.type, f.mode, f.uid, f.gid, f.size, f.link, f.xattrs, f.digest, f.chunks
  FROM syn JOIN src ON src.k = syn.g % (SELECT count(*) FROM src) JOIN files f ON f.layer_id = src.layer_id;
ANALYZE files;
SQL
    explain >>"$W/explain.txt" 2>&1 || true
    cat "$W/explain.txt" >&2
fi

# ---------------------------------------------------------------- 6: database restart
"$CT" watch "$PG" "$R/busybox:sl" "$P" 60 >"$W/watch.out" 2>"$W/watch.err" &
watch_pid=$!
e2e_track_pid watch "$watch_pid"
e2e_wait_for "first plan" 20 grep -q '^ok' "$W/watch.out"
pgbin=${SL_PG_BIN:-/usr/lib/postgresql/15/bin}
runuser -u postgres -- "$pgbin/pg_ctl" -D "$E2E_DIR/pg/data" -m fast -w stop >>"$E2E_DIR/logs/postgres.log" 2>&1 ||
    e2e_fail "pg_ctl stop"
e2e_wait_for "EAGAIN while the database is down" 20 grep -q '^EAGAIN' "$W/watch.out"
runuser -u postgres -- "$pgbin/pg_ctl" -D "$E2E_DIR/pg/data" -l "$E2E_DIR/pg/server.log" -w -t 30 \
    -o "-c fsync=off -c listen_addresses=127.0.0.1 -p $E2E_PG_PORT -k $E2E_DIR/pg" start \
    >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "pg_ctl start"
new_pid=$(head -n1 "$E2E_DIR/pg/data/postmaster.pid")
e2e_track_pid postgres "$new_pid"
wait "$watch_pid" || { cat "$W/watch.out" "$W/watch.err" >&2; e2e_fail "the core did not recover after the restart"; }
e2e_log "6. database restart: $(grep '^EAGAIN' "$W/watch.out" | head -c 150)... then recovered"
e2e_log "PASS"
