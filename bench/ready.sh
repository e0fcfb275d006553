#!/usr/bin/env bash
# Time to READY of the node daemon, on loopback (no WAN): how long `ctr-starlight pull` takes
# from its request until the daemon reports the image ready (header decoded, TOCs checked,
# layers recorded and published, image registered in containerd), and until the pull is
# complete. Usage: bench/ready.sh BUILD_DIR [RUNS]   (RUNS default 5)
#
# registry + PostgreSQL + starlight-proxy on 127.0.0.1; per run a fresh edge node (containerd
# + starlight-daemon, empty root): redis7 fresh; then another fresh node: redis6, then the
# update redis6 -> redis7. Times are the daemon's own (its log line "pull REF: ... header
# after H ms, ready after R ms, complete after C ms"). Prints one line per pull and the
# medians. SL_READY_PERF=DIR records each pull of the daemon with `perf record -g` into
# DIR/LABEL-RUN.data (perf report -i ... --no-children). Run it niced on a shared machine: `nice -n 19 ionice -c3 bench/ready.sh build`.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-5}
export SL_BUILD=$build SL_BIN=$build/bin
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/e2e/lib.sh"
. "$src/tests/e2e/pull/common.sh"
E2E_NAME=bench-ready
PX=$SL_BIN/starlight-proxy
CS=$SL_BIN/ctr-starlight
[ "$(id -u)" = 0 ] || e2e_fail "the READY benchmark needs root (containerd, FUSE)"
e2e_require "$PX" "$CS" "$SL_BIN/starlight-daemon" skopeo curl containerd ctr runc

pull_cloud_start
for img in redis6 redis7; do
    layout=$(e2e_build_images "$img") || e2e_fail "build $img"
    skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$R/$img:src" ||
        e2e_fail "push $img"
    "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
        "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$E2E_DIR/logs/convert.log" ||
        { cat "$E2E_DIR/logs/convert.log" >&2; e2e_fail "convert $img"; }
done

# pull IMG LABEL: one pull through the edge daemon, then its times from the daemon's log
pull() {
    local line perf=
    if [ -n "${SL_READY_PERF:-}" ]; then
        mkdir -p "$SL_READY_PERF"
        perf record -q -g -F 999 -p "$PULL_EDGE_DAEMON_PID" -o "$SL_READY_PERF/$2-$i.data" \
            >/dev/null 2>&1 &
        perf=$!
        sleep 0.5
    fi
    "$CS" pull --daemon "$PULL_EDGE_CTL" --insecure --quiet "$R/$1:sl" >/dev/null ||
        e2e_fail "ctr-starlight pull $1"
    if [ -n "$perf" ]; then
        kill -INT "$perf"
        wait "$perf" || true
    fi
    line=$(grep -o "pull $R/$1:sl: .*complete after [0-9]* ms" "$E2E_DIR/logs/starlight-daemon.log" |
        tail -1)
    grep -o "pull $R/$1:sl: header [0-9]* bytes: .*" "$E2E_DIR/logs/starlight-daemon.log" |
        tail -1 | sed "s|^pull $R/|  |" >&2
    echo "$2 $(sed 's/.*header after \([0-9]*\) ms, ready after \([0-9]*\) ms, complete after \([0-9]*\) ms/\1 \2 \3/' <<<"$line")" |
        tee -a "$E2E_DIR/times"
}
: >"$E2E_DIR/times"
for ((i = 1; i <= runs; i++)); do
    pull_edge_start "$U"
    pull redis7 fresh
    pull_edge_stop
    pull_edge_start "$U"
    pull redis6 fresh6
    pull redis7 update
    pull_edge_stop
done
python3 - "$E2E_DIR/times" <<'PY'
import statistics, sys
rows = {}
for l in open(sys.argv[1]):
    k, *v = l.split()
    rows.setdefault(k, []).append([float(x) for x in v])
for k, v in rows.items():
    med = [statistics.median(c) for c in zip(*v)]
    print("%-7s n=%d  header %6.0f ms  ready %6.0f ms  complete %6.0f ms   (ready: %s)" %
          (k, len(v), med[0], med[1], med[2], " ".join("%.0f" % r[1] for r in v)))
PY
