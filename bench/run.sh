#!/usr/bin/env bash
# Runs the benchmarks. Usage: bench/run.sh BUILD_DIR [short|full]   (`make bench`, `make bench-full`)
#   short: ~10 minutes, redis only, the WAN benchmark at one RTT (150 ms);
#   full: every image, the WAN benchmark for every app (with the minor-update pairs) at RTT
#         25, 50, 150, 300 ms.
# Each benchmark writes its raw numbers under bench/results/ and prints a markdown table;
# bench/README.md records the numbers of a reference run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
mode=${2:-short}
case "$mode" in
short | full) ;;
*)
    echo "usage: $0 BUILD_DIR [short|full]" >&2
    exit 2
    ;;
esac

echo "=== bench: convert ($mode)"
bash "$here/convert.sh" "$build" "$mode"

echo "=== bench: proxy ($mode)"
bash "$here/proxy.sh" "$build" "$mode"

echo "=== bench: WAN deploy and update ($mode)"
bash "$here/wan.sh" "$build" "$mode"

echo "=== bench: read path ($mode)"
bash "$here/readpath.sh" "$build" "$mode"
