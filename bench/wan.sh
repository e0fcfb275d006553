#!/usr/bin/env bash
# WAN benchmark (issue 8): deploy and update over an emulated link, Starlight-C side by side
# with containerd's default pull (overlayfs), eStargz (containerd-stargz-grpc) and the bound.
# Usage: bench/wan.sh BUILD_DIR [short|full]
#   short (`make bench`): redis, RTT 150 ms, SL_BENCH_RUNS runs (default 3), ~6 min.
#   full  (`make bench-full`): redis nginx python postgres (updates across Debian releases)
#         and redis-minor python-minor (minor updates: the image rebuilt, the app's file
#         changed; bench/wan/apps.sh), RTT 25 50 150 300 ms.
# Overrides: SL_BENCH_RTTS ("150"), SL_BENCH_RATE_MBIT (100), SL_BENCH_APPS, SL_BENCH_RUNS,
# SL_BENCH_SYSTEMS (containerd starlight starlight-traced estargz bound).
# Each app at each RTT runs in its own process (bench/wan/run-rtt.sh: fresh namespaces, cloud
# side and traces; a failed round leaves its rows out, the others go on); rows go to bench/results/wan.csv (SL_BENCH_WAN_CSV; a new file per invocation, the
# previous one kept as wan.csv.prev), then bench/wan/tools.py writes bench/results/wan.md and
# the PNG plots wan-deploy.png, wan-update.png and wan-update-minor.png (time against RTT per
# system; updates across releases and minor updates apart).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
mode=${2:-short}
case "$mode" in
short)
    rtts=${SL_BENCH_RTTS:-150}
    export SL_BENCH_APPS=${SL_BENCH_APPS:-redis}
    ;;
full)
    rtts=${SL_BENCH_RTTS:-25 50 150 300}
    export SL_BENCH_APPS=${SL_BENCH_APPS:-redis nginx python postgres redis-minor python-minor}
    ;;
*)
    echo "usage: $0 BUILD_DIR [short|full]" >&2
    exit 2
    ;;
esac
export SL_BENCH_RUNS=${SL_BENCH_RUNS:-3}
csv=${SL_BENCH_WAN_CSV:-$here/results/wan.csv}
export SL_BENCH_WAN_CSV=$csv
mkdir -p "$(dirname "$csv")"
[ ! -s "$csv" ] || mv "$csv" "$csv.prev"
rm -f "${csv%.csv}-link.txt"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "commit: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "apps: $SL_BENCH_APPS; RTTs: $rtts ms; rate ${SL_BENCH_RATE_MBIT:-100} Mbit/s; runs $SL_BENCH_RUNS"
} >"${csv%.csv}-meta.txt"
failed=()
for rtt in $rtts; do
    for app in $SL_BENCH_APPS; do
        echo "=== bench: WAN, RTT $rtt ms, $app"
        SL_BENCH_RTT=$rtt SL_BENCH_APPS=$app bash "$here/wan/run-rtt.sh" "$build" ||
            failed+=("$app@${rtt}ms")
    done
done
python3 "$here/wan/tools.py" report "$csv" "$(dirname "$csv")"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "bench: WAN rounds that failed: ${failed[*]} (their rows are missing)" >&2
    exit 1
fi
