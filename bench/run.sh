#!/usr/bin/env bash
# Runs the benchmarks. Usage: bench/run.sh BUILD_DIR [short|full]   (`make bench`, `make bench-full`)
#   short: a few minutes, redis 7.0 only; full: every image.
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
