#!/usr/bin/env bash
# Blob cache throughput: reads one large random blob (default 100 MB) from a local
# docker-registry on 127.0.0.1 through proxy/cache (cold, warm, 8 warm readers at once) and
# directly with curl (whole blob, and in 8 MiB Range pieces like the cache's requests), all
# in one run. Usage: bench/blobcache.sh BUILD_DIR [SIZE_MB]
# Prints a markdown table (and writes it as CSV to CSV_OUT when that is set).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
mb=${2:-100}
export SL_BUILD="$build" SL_BIN="$build/bin"
. "$here/../tests/e2e/lib.sh"
E2E_NAME=bench-blobcache
tool="$build/bench/sl-blobcache-bench"
[ -x "$tool" ] || e2e_fail "build $tool first (cmake --build $build)"
e2e_require docker-registry curl python3 sha256sum
e2e_tmpdir >/dev/null
tmp="$E2E_DIR/work"
mkdir -p "$tmp"
e2e_start_registry
base="http://$E2E_REGISTRY"

head -c "$((mb * 1000 * 1000))" /dev/urandom >"$tmp/blob"
size=$(stat -c %s "$tmp/blob")
digest="sha256:$(sha256sum "$tmp/blob" | cut -d' ' -f1)"
repo=bench/blobcache
loc=$(curl -sf -X POST -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case "$loc" in http*) ;; *) loc="$base$loc" ;; esac
sep='?'
case "$loc" in *\?*) sep='&' ;; esac
curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$tmp/blob" \
  "$loc${sep}digest=$digest" -o /dev/null
rm -f "$tmp/blob"
sync

# Direct: one GET of the whole blob, then 8 MiB Range GETs in sequence (one connection each).
t=$(curl -sf -o /dev/null -w '%{time_total}' "$base/v2/$repo/blobs/$digest")
direct=$(python3 -c "print(f'{$t:.3f} {$size/$t/1e6:.1f}')")
piece=$((8 * 1024 * 1024))
start=$(date +%s.%N)
for ((o = 0; o < size; o += piece)); do
  e=$((o + piece - 1))
  [ $e -ge "$size" ] && e=$((size - 1))
  curl -sf -o /dev/null -H "Range: bytes=$o-$e" "$base/v2/$repo/blobs/$digest"
done
end=$(date +%s.%N)
ranged=$(python3 -c "t=$end-$start; print(f'{t:.3f} {$size/t/1e6:.1f}')")

out=$("$tool" "$E2E_REGISTRY" "$repo" "$digest" "$size" "$tmp/cache" 8)

{
  echo "phase,seconds,MB_per_s"
  echo "curl-direct,${direct// /,}"
  echo "curl-8MiB-ranges,${ranged// /,}"
  echo "$out" | grep -v '^stats' | tr ' ' ','
} >"$tmp/result.csv"
[ -n "${CSV_OUT:-}" ] && cp "$tmp/result.csv" "$CSV_OUT"

echo "| read of a ${mb} MB blob (127.0.0.1 registry) | seconds | MB/s |"
echo "|---|---|---|"
tail -n +2 "$tmp/result.csv" | while IFS=, read -r name s r; do
  echo "| $name | $s | $r |"
done
echo "$out" | grep '^stats'
