#!/usr/bin/env bash
# Scenario: garbage collection and materialisation on the node (issue 9 items 2 and 3), with a
# real starlight-proxy + PostgreSQL + registry, starlight-daemon and containerd + runc, all on
# loopback. redis 6.0 and 7.0 share contents (and layers), so:
#  1. both pulled; once their layers are complete the daemon materialises them: a new redis 7.0
#     container's rootfs overlay has no FUSE lowerdir (only store/materialized trees), answers
#     PING, and its rootfs tree hash (without link counts: see docs/operations.md) equals the
#     unconverted image's through overlayfs; the read rate of a file through FUSE and through
#     the materialised tree is logged;
#  2. a redis 6.0 container runs; its image is removed from containerd (images rm --sync):
#     `ctr-starlight gc` removes nothing the container uses (its layers stay under ROOT/mnt)
#     and the container keeps answering;
#  3. the container is deleted and containerd collects its snapshots: `ctr-starlight gc` removes
#     exactly redis 6.0's own layers, frees exactly the bytes of the contents (and tree copies)
#     only they used — the store's disk use drops by at least that much — keeps the contents
#     shared with 7.0, and redis 7.0 still runs with the same rootfs tree hash; redis 6.0's own
#     layers are gone from the FUSE tree (ROOT/mnt) while a redis 7.0 container runs across
#     the collection and redis 7.0's layers stay there, readable (same bytes as the trees);
#  4. a second gc frees nothing; the daemon restarts with the store consistent;
#  5. the proxy: redis 7.0 also notified as redis7b (same manifest and layers), ranks on a
#     layer of each image; redis6:sl and redis7b:sl deleted from the registry; POST
#     /starlight/prune removes exactly those two image rows and redis 6.0's layers (files and
#     ranks), keeps redis 7.0's rows, layers and ranks (shared with the pruned redis7b), and
#     the delta for redis 7.0 is still planned. (The blob cache's bound is unit-tested:
#     test-proxy-cache test_eviction.)
#  6. the periodic prune: redis7c (redis 7.0 under another name) notified, then deleted from
#     the registry; a second proxy started with --prune-interval 1s removes its row by itself,
#     keeps redis 7.0's row, shared layers and rank, and counts it in /metrics.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

pull_node_prereqs
T() { python3 "$here/tools.py" "$@"; }

pull_cloud_start
pull_convert redis6 redis7
pull_edge_start "$U"
ROOT="$E2E_DIR/root"
STORE="$ROOT/store"
D=(--daemon "$PULL_EDGE_CTL")
SN=(--snapshotter starlight)
for img in redis6 redis7; do
    "$CS" pull "${D[@]}" --insecure "$R/$img:sl" >"$W/$img.pull" 2>&1 ||
        { cat "$W/$img.pull" >&2; e2e_fail "pull $img"; }
done
mapfile -t L6 < <(pull_layers "$R" redis6)
mapfile -t L7 < <(pull_layers "$R" redis7)
e2e_log "0. pulled redis6 (${#L6[@]} layers) and redis7 (${#L7[@]} layers)"

redis_ping() { # redis_ping ID TRIES: PING → PONG in running container ID (sets pong)
    local i
    pong=
    for i in $(seq "$2"); do
        pong=$(e2e_ctr_timeout 10 tasks exec --exec-id "p$i-$RANDOM" "$1" redis-cli ping 2>&1) || true
        [ "$pong" = PONG ] && return 0
        sleep 0.3
    done
    return 1
}
stop_container() { # stop_container ID: kill its task, wait, delete task (and container unless --keep)
    e2e_ctr tasks kill -s SIGKILL "$1" >/dev/null 2>&1 || true
    e2e_wait_for "$1 to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep $1 | grep -q RUNNING"
    e2e_ctr tasks delete "$1" >/dev/null 2>&1 || true
    [ "${2:-}" = --keep ] || e2e_ctr containers delete "$1" >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- 1: materialised mounts
materialized() { # materialized DIGEST...: every layer has its tree
    local d
    for d in "$@"; do [ -d "$STORE/materialized/${d#sha256:}" ] || return 1; done
}
e2e_wait_for "redis layers materialised" 60 materialized "${L6[@]}" "${L7[@]}"
grep -o 'materialized layer .*' "$E2E_DIR/logs/starlight-daemon.log" | while read -r l; do e2e_log "1. $l"; done
e2e_ctr_timeout 60 run -d "${SN[@]}" "$R/redis7:sl" "gc-r7-$$" \
    redis-server --bind 127.0.0.1 --save '' >/dev/null || e2e_fail "ctr run redis7"
e2e_on_exit "ctr --address '$E2E_CONTAINERD_ADDRESS' tasks kill -s SIGKILL gc-r7-$$ >/dev/null 2>&1"
mline=$(grep " [^ ]*gc-r7-$$/rootfs overlay " /proc/mounts) || e2e_fail "no overlay mount for the redis7 container"
lower=$(echo "$mline" | grep -o 'lowerdir=[^,]*' | cut -d= -f2)
n_lower=$(echo "$lower" | tr ':' '\n' | grep -c .)
n_mat=$(echo "$lower" | tr ':' '\n' | grep -c "^$STORE/materialized/") || true
case "$lower" in *"$ROOT/mnt"*) e2e_fail "a FUSE lowerdir in a new container's mounts: $lower" ;; esac
[ "$n_mat" = "${#L7[@]}" ] && [ "$n_lower" = "${#L7[@]}" ] ||
    e2e_fail "expected ${#L7[@]} materialised lowerdirs, got $n_mat of $n_lower: $lower"
redis_ping "gc-r7-$$" 35 || e2e_fail "redis7 on materialised layers: $pong"
stop_container "gc-r7-$$"
e2e_log "1. new redis7 container: ${n_mat} lowerdirs, all materialised, none on FUSE; PING → PONG"
# read rate of the largest file of redis 7.0's top layer: FUSE subtree vs materialised tree
top7=${L7[-1]#sha256:}
big=$(cd "$STORE/materialized/$top7" && find . -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
rf=$(T readrate "$ROOT/mnt/$top7/$big" 20)
rm_=$(T readrate "$STORE/materialized/$top7/$big" 20)
e2e_log "1. read rate of $big ($(stat -c %s "$ROOT/mnt/$top7/$big") bytes, warm, 20 reads): FUSE $rf MB/s, materialised $rm_ MB/s"
# rootfs tree hash of a running container (host side, tools.py tree) vs overlayfs's; without
# link counts: link mode shares inodes with the store (docs/operations.md)
rootfs_tree() { # rootfs_tree NS IMAGE [--links] [SNAPSHOTTER-ARGS...]: tree of a new container
    local ns=$1 img=$2 id="gc-tree-$RANDOM" mnt links='' out
    shift 2
    [ "${1:-}" = --links ] && { links=--links; shift; }
    e2e_ctr_timeout 60 -n "$ns" run -d "$@" "$img" "$id" sleep 300 >/dev/null || return 1
    mnt=$(awk -v id="/$id/rootfs" 'index($2, id) && $3 == "overlay" { print $2 }' /proc/mounts | head -1)
    out=$(T tree "$mnt" $links) || out="tree failed"
    e2e_ctr -n "$ns" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        e2e_ctr -n "$ns" tasks delete "$id" >/dev/null 2>&1 && break
        sleep 0.1
    done
    e2e_ctr -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
    echo "$out"
}
sl7=$(SL_TREE_DUMP=$W/tree.sl rootfs_tree default "$R/redis7:sl" "${SN[@]}") || e2e_fail "tree (starlight): $sl7"
e2e_ctr_timeout 300 -n plain images pull --plain-http "$R/redis7:src" >/dev/null 2>"$W/plain7.err" ||
    { cat "$W/plain7.err" >&2; e2e_fail "ctr images pull redis7 (overlayfs)"; }
ov7=$(SL_TREE_DUMP=$W/tree.ov rootfs_tree plain "$R/redis7:src") || e2e_fail "tree (overlayfs): $ov7"
if [ "$sl7" != "$ov7" ]; then
    diff "$W/tree.sl" "$W/tree.ov" | head -20 >&2 || true
    e2e_fail "redis7 rootfs on materialised layers differs: '$sl7' vs overlayfs '$ov7'"
fi
e2e_log "1. redis7 rootfs tree (materialised) = overlayfs's ($(echo "$sl7" | tr '\n' ' '))"

# ---------------------------------------------------------------- 2: running container kept
e2e_ctr_timeout 60 run -d "${SN[@]}" "$R/redis6:sl" "gc-r6-$$" \
    redis-server --bind 127.0.0.1 --save '' >/dev/null || e2e_fail "ctr run redis6"
e2e_on_exit "ctr --address '$E2E_CONTAINERD_ADDRESS' tasks kill -s SIGKILL gc-r6-$$ >/dev/null 2>&1"
e2e_ctr images rm --sync "$R/redis6:sl" >/dev/null || e2e_fail "ctr images rm redis6"
"$CS" gc "${D[@]}" --grace 0 --json >"$W/gc1.json" || e2e_fail "gc while redis6 runs"
python3 - "$W/gc1.json" <<'PY' || e2e_fail "gc removed something a running container uses: $(cat "$W/gc1.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["layersRemoved"] == [] and r["contentsRemoved"] == 0, r
PY
redis_ping "gc-r6-$$" 3 || e2e_fail "redis6 after gc: $pong"
sum6=$(e2e_ctr_timeout 30 tasks exec --exec-id s1 "gc-r6-$$" sh -c 'cat /usr/local/bin/redis-server | sha256sum' 2>&1) ||
    e2e_fail "read redis6's binary after gc: $sum6"
for d in "${L6[@]}"; do
    [ -d "$ROOT/mnt/${d#sha256:}" ] || e2e_fail "layer $d of the running redis6 left the FUSE tree"
done
e2e_log "2. image record of a running redis6 removed: gc removed nothing ($(cat "$W/gc1.json")); PING → PONG, binary readable"

# ---------------------------------------------------------------- 3: collect redis 6.0
stop_container "gc-r6-$$" --keep
e2e_ctr containers delete "gc-r6-$$" || e2e_fail "delete the redis6 container"
# a synchronous containerd collection (what images rm --sync does), via a throwaway tag
e2e_ctr images tag "$R/redis7:sl" "gc-trigger:$$" >/dev/null
e2e_ctr images rm --sync "gc-trigger:$$" >/dev/null
victims=()
for d in "${L6[@]}"; do
    printf '%s\n' "${L7[@]}" | grep -qx "$d" || victims+=("$d")
done
[ "${#victims[@]}" -gt 0 ] || e2e_fail "redis6 and redis7 share every layer?"
read -r want n_unshared n_shared < <(T freeable "$STORE" "${victims[@]}")
[ "$n_shared" -gt 0 ] || e2e_fail "no content shared between redis6's own layers and redis7's"
e2e_ctr_timeout 60 run -d "${SN[@]}" "$R/redis7:sl" "gc-r7d-$$" \
    redis-server --bind 127.0.0.1 --save '' >/dev/null || e2e_fail "ctr run redis7 (across gc)"
e2e_on_exit "ctr --address '$E2E_CONTAINERD_ADDRESS' tasks kill -s SIGKILL gc-r7d-$$ >/dev/null 2>&1"
for d in "${victims[@]}"; do
    [ -d "$ROOT/mnt/${d#sha256:}" ] || e2e_fail "layer $d not in the FUSE tree before gc"
done
before=$(T usage "$STORE")
"$CS" gc "${D[@]}" --grace 0 --json >"$W/gc2.json" || e2e_fail "gc"
after=$(T usage "$STORE")
# the FUSE tree: redis6's own layers gone at once, redis7's there and readable
for d in "${victims[@]}"; do
    [ ! -e "$ROOT/mnt/${d#sha256:}" ] || e2e_fail "collected layer $d still under ROOT/mnt"
    ! ls "$ROOT/mnt" | grep -qx "${d#sha256:}" || e2e_fail "collected layer $d still listed in ROOT/mnt"
done
for d in "${L7[@]}"; do
    [ -d "$ROOT/mnt/${d#sha256:}" ] || e2e_fail "redis7's layer $d left the FUSE tree"
done
f_fuse=$(sha256sum <"$ROOT/mnt/$top7/$big") || e2e_fail "read $big through FUSE after gc"
f_tree=$(sha256sum <"$STORE/materialized/$top7/$big")
[ "$f_fuse" = "$f_tree" ] || e2e_fail "$big through FUSE after gc differs from its tree"
redis_ping "gc-r7d-$$" 20 || e2e_fail "redis7 running across gc: $pong"
stop_container "gc-r7d-$$"
e2e_log "3. FUSE tree: redis6's ${#victims[@]} own layers gone from ROOT/mnt, redis7's ${#L7[@]} there ($big reads the same through FUSE); redis7 running across gc: PONG"
"$CS" gc "${D[@]}" --grace 0 >"$W/gc3.txt" || e2e_fail "second gc"
e2e_log "3. gc: $(cat "$W/gc2.json")"
got=$(python3 - "$W/gc2.json" "${victims[@]}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert sorted(r["layersRemoved"]) == sorted(sys.argv[2:]), ("removed", r["layersRemoved"], sys.argv[2:])
print(r["bytesFreed"])
PY
) || e2e_fail "gc did not remove exactly redis6's own layers: $(cat "$W/gc2.json")"
[ "$got" = "$want" ] || e2e_fail "gc freed $got bytes, the contents and copies only redis6 used take $want"
drop=$((before - after))
[ "$drop" -ge "$want" ] || e2e_fail "the store's disk use dropped by $drop bytes, expected at least $want"
grep -q '^gc: 0 layers removed, [0-9]* kept; 0 contents removed (0 in use); 0.0 MiB freed' "$W/gc3.txt" ||
    e2e_fail "a second gc still found something: $(cat "$W/gc3.txt")"
while read -r p; do [ ! -e "$p" ] || e2e_fail "unshared content kept: $p"; done <"$ROOT/gc-unshared.txt"
while read -r p; do [ -f "$p" ] || e2e_fail "shared content removed: $p"; done <"$ROOT/gc-shared.txt"
for d in "${victims[@]}"; do
    [ ! -e "$STORE/materialized/${d#sha256:}" ] || e2e_fail "tree of $d kept"
done
sl7b=$(rootfs_tree default "$R/redis7:sl" "${SN[@]}") || e2e_fail "tree after gc: $sl7b"
[ "$sl7b" = "$ov7" ] || e2e_fail "redis7 rootfs after gc differs: '$sl7b' vs '$ov7'"
pull_redis_ping "$R/redis7:sl" "gc-r7b-$$" "${SN[@]}"
e2e_log "3. daemon: $(grep -o 'gc: [0-9]* layers removed.*' "$E2E_DIR/logs/starlight-daemon.log" | sed -n 2p)"
e2e_log "3. freed $got bytes = $n_unshared contents only redis6 used (+ copies); store use dropped $drop bytes; $n_shared shared contents kept; redis7 PONG, tree unchanged; second gc frees 0"

# ---------------------------------------------------------------- 4: restart
pull_edge_daemon_stop
pull_edge_daemon_start "$U"
e2e_wait_for "containerd to reach the restarted snapshotter" 30 e2e_ctr snapshots "${SN[@]}" ls
pull_redis_ping "$R/redis7:sl" "gc-r7c-$$" "${SN[@]}"
"$CS" gc "${D[@]}" --grace 0 --json >"$W/gc4.json" || e2e_fail "gc after restart"
grep -q '"layersRemoved":\[\]' "$W/gc4.json" || e2e_fail "gc after restart: $(cat "$W/gc4.json")"
e2e_log "4. restart: redis7 PONG from the kept layers; gc finds nothing to remove"

# ---------------------------------------------------------------- 5: proxy prune
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/redis7:sl" "docker://$R/redis7b:sl" || e2e_fail "copy redis7:sl to redis7b:sl"
"$CS" notify --proxy "$U" --insecure "$R/redis7b:sl" >/dev/null 2>"$W/notify7b.err" ||
    { cat "$W/notify7b.err" >&2; e2e_fail "notify redis7b"; }
PSQL=(psql -X -q -t -A "$E2E_PG_CONNINFO")
in_list() { printf "'%s'," "$@" | sed 's/,$//'; }
"${PSQL[@]}" -c "INSERT INTO ranks (layer_id, path, rank_sum, n)
    SELECT l.id, (SELECT f.path FROM files f WHERE f.layer_id = l.id AND f.digest IS NOT NULL
                  ORDER BY f.idx LIMIT 1), 1, 1
    FROM layers l WHERE l.digest IN ($(in_list "${L6[-1]}" "${L7[-1]}"))" >/dev/null ||
    e2e_fail "insert ranks"
mdigest() { # mdigest REPO: the manifest digest of REPO:sl
    curl -fsS -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$R/v2/$1/manifests/sl" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}
d6=$(mdigest redis6)
d7=$(mdigest redis7b)
[ -n "$d6" ] && [ -n "$d7" ] || e2e_fail "manifest digests: '$d6' '$d7'"
curl -fsS -X DELETE "http://$R/v2/redis6/manifests/$d6" >/dev/null || e2e_fail "delete redis6@$d6"
curl -fsS -X DELETE "http://$R/v2/redis7b/manifests/$d7" >/dev/null || e2e_fail "delete redis7b@$d7"
curl -fsS -X POST "$U/starlight/prune?insecure=1&min-age=0" >"$W/prune.json" || e2e_fail "POST /starlight/prune"
e2e_log "5. prune: $(cat "$W/prune.json")"
python3 - "$W/prune.json" "$R/redis6@$d6" "$R/redis7b@$d7" "${#L6[@]}" <<'PY' || e2e_fail "prune answer: $(cat "$W/prune.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert sorted(r["imagesRemoved"]) == sorted(sys.argv[2:4]), r
assert r["layersRemoved"] == int(sys.argv[4]) and r["unchecked"] == 0, r
PY
q() { "${PSQL[@]}" -c "$1"; }
[ "$(q "SELECT count(*) FROM images WHERE repository LIKE '%/redis6' OR repository LIKE '%/redis7b'")" = 0 ] ||
    e2e_fail "pruned image rows left"
[ "$(q "SELECT count(*) FROM images WHERE repository LIKE '%/redis7'")" = 1 ] || e2e_fail "redis7's row pruned"
[ "$(q "SELECT count(*) FROM layers WHERE digest IN ($(in_list "${L6[@]}"))")" = 0 ] ||
    e2e_fail "redis6's layers left"
[ "$(q "SELECT count(*) FROM layers WHERE digest IN ($(in_list "${L7[@]}"))")" = "${#L7[@]}" ] ||
    e2e_fail "redis7's layers pruned"
[ "$(q "SELECT count(*) FROM ranks r JOIN layers l ON l.id = r.layer_id WHERE l.digest = '${L7[-1]}'")" = 1 ] ||
    e2e_fail "the rank of redis7's (shared) layer was lost"
[ "$(q "SELECT count(*) FROM files f JOIN layers l ON l.id = f.layer_id WHERE l.digest IN ($(in_list "${L6[@]}"))")" = 0 ] ||
    e2e_fail "files of pruned layers left"
plan=$(pull_plan_bytes "$U" "$R" "linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')" redis7 redis7) ||
    e2e_fail "delta for redis7 after prune"
e2e_log "5. prune: redis6 and redis7b rows and redis6's ${#L6[@]} layers (files, ranks) gone; redis7 kept with its ranks; delta redis7 still planned (from itself: $plan bytes)"
# ---------------------------------------------------------------- 6: periodic proxy prune
# redis7c: the same manifest as redis7 under another name (every layer shared), deleted from the
# registry; a second proxy on the same database prunes by itself every second.
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$R/redis7:sl" "docker://$R/redis7c:sl" || e2e_fail "copy redis7:sl to redis7c:sl"
"$CS" notify --proxy "$U" --insecure "$R/redis7c:sl" >/dev/null 2>"$W/notify7c.err" ||
    { cat "$W/notify7c.err" >&2; e2e_fail "notify redis7c"; }
[ "$(q "SELECT count(*) FROM images WHERE repository LIKE '%/redis7c'")" = 1 ] || e2e_fail "redis7c not recorded"
d7c=$(mdigest redis7c)
[ -n "$d7c" ] || e2e_fail "manifest digest of redis7c"
curl -fsS -X DELETE "http://$R/v2/redis7c/manifests/$d7c" >/dev/null || e2e_fail "delete redis7c@$d7c"
bad=$("$PX" --prune-interval 500ms 2>&1) && e2e_fail "--prune-interval 500ms accepted"
case "$bad" in *"--prune-interval \`500ms\`"*) ;; *) e2e_fail "--prune-interval 500ms: $bad" ;; esac
pport2=$(e2e_free_port)
"$PX" --listen "127.0.0.1:$pport2" --postgres "$E2E_PG_CONNINFO" --registry "$R" --registry-insecure \
    --cache-max-bytes 0 --prune-interval 1s --prune-min-age 0 --open-metrics \
    >>"$E2E_DIR/logs/proxy-prune.log" 2>&1 &
e2e_track_pid proxy-prune $!
U2="http://127.0.0.1:$pport2"
e2e_wait_for "the pruning proxy" 20 curl -fsS -o /dev/null "$U2/health-check"
gone7c() { [ "$(q "SELECT count(*) FROM images WHERE repository LIKE '%/redis7c'")" = 0 ]; }
e2e_wait_for "the periodic prune to remove redis7c" 30 gone7c
metric() { curl -fsS "$U2/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
runs=$(metric starlight_prune_periodic_runs_total)
imgs=$(metric starlight_prune_images_removed_total)
errs=$(metric starlight_prune_errors_total)
[ "${runs:-0}" -ge 1 ] && [ "${imgs:-0}" = 1 ] && [ "${errs:-x}" = 0 ] ||
    e2e_fail "prune metrics: periodic runs '$runs', images removed '$imgs', errors '$errs'"
[ "$(q "SELECT count(*) FROM images WHERE repository LIKE '%/redis7'")" = 1 ] || e2e_fail "periodic prune removed redis7"
[ "$(q "SELECT count(*) FROM layers WHERE digest IN ($(in_list "${L7[@]}"))")" = "${#L7[@]}" ] ||
    e2e_fail "periodic prune removed redis7's (shared) layers"
[ "$(q "SELECT count(*) FROM ranks r JOIN layers l ON l.id = r.layer_id WHERE l.digest = '${L7[-1]}'")" = 1 ] ||
    e2e_fail "the rank of redis7's (shared) layer was lost in the periodic prune"
grep -q 'periodic prune every 1000 ms' "$E2E_DIR/logs/proxy-prune.log" || e2e_fail "no periodic prune in the log"
e2e_log "6. periodic prune (--prune-interval 1s): redis7c's row gone after its deletion from the registry; redis7 and its shared layers and rank kept; metrics: periodic runs $runs, images removed $imgs, errors $errs"
e2e_log "PASS"
