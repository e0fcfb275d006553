#!/usr/bin/env bash
# Read-path benchmark (issue 8, item 5): sequential and random read throughput inside a
# container whose image is fully local, Starlight-C's snapshotter against containerd's
# overlayfs, the same image (SL_BENCH_READ_IMAGE, default redis7) on both.
# Usage: bench/readpath.sh BUILD_DIR [short|full]   (short: 3 runs, full: 5; SL_BENCH_RUNS)
#
# Loopback only (no WAN): registry + PostgreSQL + starlight-proxy on 127.0.0.1, one edge node
# (containerd + starlight-daemon). The image is pulled both ways — `ctr images pull` of the
# unconverted image (unpacked to overlayfs) and `ctr-starlight pull` of the converted one,
# waited for until complete — then, per run and system, interleaved, a container runs
# bench/tools/readbench.c (compiled statically, bind-mounted read-only as /sl-readbench) over
# /usr /etc /var of the image:
#   cold  after `sync; echo 3 > /proc/sys/vm/drop_caches` (this drops the page cache of the
#         whole machine: other work on it slows down a little for a moment), and sl-readbench
#         --drop drops the random phase's files again after the sequential pass (fadvise), so
#         cold random reads miss the page cache (for FUSE only FUSE's own cache: the daemon's
#         reads of the store files may still hit);
#   warm  the same container command again right after (page cache hot: steady state).
# Sequential = every file read whole in 128 KiB reads; random = SL_BENCH_READ_OPS (200000) 4 KiB
# preads at fixed pseudo-random offsets. The checksums of all systems must be equal (same
# bytes read), else the benchmark fails.
# Systems: overlayfs (containerd's default snapshotter); starlight = the snapshotter with the
# image's layers materialised (the script waits until every layer has its tree under
# ROOT/store/materialized and fails if a measured container's overlay has any other lowerdir,
# e.g. a FUSE one: sl-readbench prints the lowerdirs of its own root mount); starlight-fuse
# (extra column, SL_BENCH_READ_FUSE=0 skips it) = the same snapshotter with every lowerdir on
# the daemon's FUSE tree (ROOT/mnt), obtained with `ctr-starlight optimizer on` around those
# runs (new mounts then stay on FUSE: docs/operations.md), so it includes trace recording. Rows: bench/results/readpath.csv (SL_BENCH_READ_CSV),
# table: bench/results/readpath.md.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
mode=${2:-short}
export SL_BUILD=$build SL_BIN=$build/bin
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/tests/e2e/lib.sh"
. "$src/tests/e2e/pull/common.sh"
E2E_NAME=bench-readpath

case "$mode" in
short) runs=${SL_BENCH_RUNS:-3} ;;
full) runs=${SL_BENCH_RUNS:-5} ;;
*)
    echo "usage: $0 BUILD_DIR [short|full]" >&2
    exit 2
    ;;
esac
img=${SL_BENCH_READ_IMAGE:-redis7}
ops=${SL_BENCH_READ_OPS:-200000}
csv=${SL_BENCH_READ_CSV:-$src/bench/results/readpath.csv}
PX=$SL_BIN/starlight-proxy
CS=$SL_BIN/ctr-starlight
[ "$(id -u)" = 0 ] || e2e_fail "the read-path benchmark needs root (containerd, FUSE)"
e2e_require "$PX" "$CS" "$SL_BIN/starlight-daemon" skopeo curl containerd ctr runc "${CC:-cc}"

tool=$build/bench/sl-readbench
mkdir -p "$build/bench"
"${CC:-cc}" -O2 -Wall -Wextra -Werror -static -o "$tool" "$src/bench/tools/readbench.c" ||
    e2e_fail "cannot build sl-readbench (static glibc: libc6-dev)"

layout=$(e2e_build_images "$img") || e2e_fail "build $img"
pull_cloud_start
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$R/$img:src" ||
    e2e_fail "push $img"
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$E2E_DIR/logs/convert.log" ||
    { cat "$E2E_DIR/logs/convert.log" >&2; e2e_fail "convert $img"; }
pull_edge_start "$U"
e2e_ctr images pull --plain-http "$R/$img:src" >/dev/null || e2e_fail "ctr images pull"
"$CS" pull --daemon "$PULL_EDGE_CTL" --insecure --quiet "$R/$img:sl" ||
    e2e_fail "ctr-starlight pull"
e2e_log "$img: local on overlayfs ($R/$img:src) and on the starlight snapshotter ($R/$img:sl)"
ROOT=$E2E_DIR/root
mapfile -t layers < <(pull_layers "$R" "$img")
[ "${#layers[@]}" -gt 0 ] || e2e_fail "no layers in $R/$img:sl"
materialized() {
    local d
    for d in "${layers[@]}"; do [ -d "$ROOT/store/materialized/${d#sha256:}" ] || return 1; done
}
e2e_wait_for "the ${#layers[@]} layers of $img to be materialised" 120 materialized
e2e_log "$img: ${#layers[@]} layers materialised under ROOT/store/materialized"
fuse=${SL_BENCH_READ_FUSE:-1}
systems=(overlayfs starlight)
[ "$fuse" = 0 ] || systems+=(starlight-fuse)

mkdir -p "$(dirname "$csv")"
echo "system,run,cache,files,bytes,seq_mbps,rand_iops,rand_mbps,checksum,load1,lower" >"$csv"
n=0
# lower_kind LOWERDIR SYSTEM: overlayfs, materialized or fuse, after checking that every
# lowerdir of the container's root is what SYSTEM claims to measure (else the run fails)
lower_kind() {
    local lower=$1 sys=$2 d nm=0 nf=0 no=0 want='' ds
    IFS=: read -ra ds <<<"$lower"
    for d in "${ds[@]}"; do
        case "$d" in
        "$ROOT/store/materialized/"*) nm=$((nm + 1)) ;;
        "$ROOT/mnt/"*) nf=$((nf + 1)) ;;
        *) no=$((no + 1)) ;;
        esac
    done
    case "$sys" in
    overlayfs) [ "$nm$nf" = 00 ] && [ "$no" -gt 0 ] && want=overlayfs ;;
    starlight) [ "$nm" = "${#layers[@]}" ] && [ "$nf$no" = 00 ] && want=materialized ;;
    starlight-fuse) [ "$nf" = "${#layers[@]}" ] && [ "$nm$no" = 00 ] && want=fuse ;;
    esac
    [ -n "$want" ] || e2e_fail "$sys: the container's lowerdirs are not what it measures ($nm materialised, $nf FUSE, $no other of ${#layers[@]} layers): $lower"
    echo "$want"
}
read_once() { # SYSTEM RUN CACHE
    local sys=$1 run=$2 cache=$3 ref=$R/$img:src args=() out kind drop=()
    [ "$sys" = overlayfs ] || { ref=$R/$img:sl args=(--snapshotter starlight); }
    [ "$sys" != starlight-fuse ] || "$CS" optimizer --daemon "$PULL_EDGE_CTL" on --group readpath >/dev/null ||
        e2e_fail "optimizer on"
    if [ "$cache" = cold ]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
        drop=(--drop)
    fi
    n=$((n + 1))
    out=$(e2e_ctr_timeout 600 run --rm "${args[@]}" \
        --mount "type=bind,src=$tool,dst=/sl-readbench,options=rbind:ro" \
        "$ref" "rb-$n-$$" /sl-readbench --random "$ops" "${drop[@]}" /usr /etc /var 2>&1) ||
        e2e_fail "sl-readbench in $sys: $out"
    [ "$sys" != starlight-fuse ] || "$CS" optimizer --daemon "$PULL_EDGE_CTL" off >/dev/null ||
        e2e_fail "optimizer off"
    kv() { sed -n "s/^$1=//p" <<<"$out"; }
    [ "$(kv root_fs)" = overlay ] || e2e_fail "$sys: the container's root is $(kv root_fs), not overlay"
    kind=$(lower_kind "$(kv root_lowerdir)" "$sys") || exit 1
    [ "$run" != 1 ] || [ "$cache" != cold ] || e2e_log "$sys lowerdirs ($kind): $(kv root_lowerdir)"
    echo "$sys,$run,$cache,$(kv files),$(kv bytes),$(kv seq_mbps),$(kv rand_iops),$(kv rand_mbps),$(kv checksum),$(cut -d' ' -f1 /proc/loadavg),$kind" >>"$csv"
    e2e_log "$sys run $run $cache: seq $(kv seq_mbps) MB/s, random $(kv rand_iops) IOPS ($(kv files) files, $(kv bytes) B, $kind lowerdirs)"
}
# one unmeasured pass each, so that both systems start from the same state
for sys in "${systems[@]}"; do read_once "$sys" 0 warm >/dev/null; done
for ((r = 1; r <= runs; r++)); do
    for sys in "${systems[@]}"; do
        read_once "$sys" "$r" cold
        read_once "$sys" "$r" warm
    done
done
sed -i '/^[a-z-]*,0,/d' "$csv"

python3 - "$csv" "${csv%.csv}.md" "$img" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sums = {r["checksum"] for r in rows}
if len(sums) != 1:
    sys.exit("readpath: the systems read different bytes (checksums %s)" % sorted(sums))
systems = [s for s in ("overlayfs", "starlight", "starlight-fuse") if any(r["system"] == s for r in rows)]
fuse = "starlight-fuse" in systems
med = {}
for cache in ("cold", "warm"):
    for s in systems:
        rs = [r for r in rows if r["system"] == s and r["cache"] == cache]
        med[(s, cache)] = {k: statistics.median(float(r[k]) for r in rs)
                           for k in ("seq_mbps", "rand_iops", "rand_mbps")}
out = ["Image %s, %s files, %.1f MB read sequentially; medians of %d runs; load average %s–%s. "
       "Starlight: materialised layers (every measured container's lowerdirs checked to be under "
       "ROOT/store/materialized)%s." % (
           sys.argv[3], rows[0]["files"], int(rows[0]["bytes"]) / 1e6,
           len(rows) // (2 * len(systems)), min(r["load1"] for r in rows),
           max(r["load1"] for r in rows),
           "; FUSE (for comparison, not the goal): the same snapshotter with every lowerdir on "
           "the daemon's FUSE tree (optimizer on, so trace recording included)" if fuse else ""),
       "",
       "| page cache | overlayfs seq MB/s | Starlight seq MB/s | ratio | overlayfs random IOPS "
       "| Starlight random IOPS | ratio | goal ≥ 0.98× |" + (" FUSE seq | FUSE random |" if fuse else ""),
       "|---|---:|---:|---:|---:|---:|---:|---|" + ("---:|---:|" if fuse else "")]
for cache in ("cold", "warm"):
    o, s = med[("overlayfs", cache)], med[("starlight", cache)]
    rs, rr = s["seq_mbps"] / o["seq_mbps"], s["rand_iops"] / o["rand_iops"]
    line = "| %s | %.0f | %.0f | %.2f× | %.0f | %.0f | %.2f× | %s |" % (
        cache, o["seq_mbps"], s["seq_mbps"], rs, o["rand_iops"], s["rand_iops"], rr,
        "met" if min(rs, rr) >= 0.98 else "**missed**")
    if fuse:
        f = med[("starlight-fuse", cache)]
        line += " %.0f MB/s (%.2f×) | %.0f IOPS (%.2f×) |" % (
            f["seq_mbps"], f["seq_mbps"] / o["seq_mbps"], f["rand_iops"], f["rand_iops"] / o["rand_iops"])
    out.append(line)
rng = lambda s, c, k: [float(r[k]) for r in rows if r["system"] == s and r["cache"] == c]
out += ["", "Spread over the runs (min–max): " + "; ".join(
    "%s %s seq %.0f–%.0f MB/s, random %.0f–%.0f IOPS" % (
        s, c, min(rng(s, c, "seq_mbps")), max(rng(s, c, "seq_mbps")),
        min(rng(s, c, "rand_iops")), max(rng(s, c, "rand_iops")))
    for c in ("cold", "warm") for s in systems) + "."]
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
EOF
