#!/usr/bin/env bash
# Proxy benchmark (issue 3), on loopback, in one run:
#   - time to the first payload byte of a fresh redis7 delta against the plan time (goal: at
#     most one registry round trip + 20 ms after the plan): cold (fresh process, planned on
#     request), prewarmed (fresh process, re-notified: the plan is made in the background after
#     the notify, the blob cache is still empty) and warm;
#   - aggregate throughput of 1, 10 and 50 concurrent delta streams (cold and warm cache)
#     against the registry's own blob throughput at the same concurrency (curl of the layer
#     blobs; goal >= 0.9x);
#   - the proxy's peak RSS (VmHWM) with 50 streams (goal < 100 MB).
# Usage: bench/proxy.sh BUILD_DIR [short|full]   (short: 1 run per point, full: SL_BENCH_RUNS)
# Raw numbers: bench/results/proxy.csv (SL_BENCH_PROXY_CSV); a markdown table on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd)
mode=${2:-short}
export SL_BUILD="$build" SL_BIN="$build/bin"
. "$here/../tests/e2e/lib.sh"
e2e_require python3 curl skopeo
E2E_NAME=bench-proxy
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
[ -x "$CS" ] && [ -x "$PX" ] || e2e_fail "build first: $CS or $PX missing"
runs=1
[ "$mode" = full ] && runs=${SL_BENCH_RUNS:-3}
CONC=${SL_BENCH_PROXY_CONC:-1 10 50}
csv=${SL_BENCH_PROXY_CSV:-$here/results/proxy.csv}
mkdir -p "$(dirname "$csv")"
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"

W="$E2E_DIR/work"
mkdir -p "$W"
e2e_start_registry
e2e_start_postgres
R=$E2E_REGISTRY
e2e_push_image redis7 redis7:src
"$CS" convert --insecure-source --insecure-destination "$R/redis7:src" "$R/redis7:sl" \
    >/dev/null 2>"$W/convert.log" || { cat "$W/convert.log" >&2; e2e_fail "convert redis7"; }
mapfile -t blobs < <(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$R/v2/redis7/manifests/sl" | python3 -c \
    'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]')
blob_urls=()
for d in "${blobs[@]}"; do blob_urls+=("http://$R/v2/redis7/blobs/$d"); done

pport=$(e2e_free_port)
U="http://127.0.0.1:$pport"
DELTA="$U/starlight/delta?to=$R/redis7:sl&platform=$P&insecure=1"
PROXY_PID=
proxy_start() { # a fresh proxy process with an empty cache
    proxy_stop
    rm -rf "$E2E_DIR/cache"
    mkdir -p "$E2E_DIR/cache"
    "$PX" --listen "127.0.0.1:$pport" --postgres "$E2E_PG_CONNINFO" --registry "$R" \
        --registry-insecure --cache-dir "$E2E_DIR/cache" --open-metrics --log-level warn \
        >>"$E2E_DIR/logs/proxy.log" 2>&1 &
    PROXY_PID=$!
    e2e_track_pid proxy "$PROXY_PID"
    e2e_wait_for "proxy" 20 curl -fsS -o /dev/null "$U/health-check"
}
proxy_stop() {
    [ -n "$PROXY_PID" ] || return 0
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=
}
hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$PROXY_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${1:-$PROXY_PID}/stat"; } # utime + stime
TCK=$(getconf CLK_TCK)
metric() { curl -fsS "$U/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
now() { date +%s.%N; }
prewarm() { # re-notify on a fresh process and wait for the background plan; prints its ms
    local n0
    n0=$(metric starlight_delta_plans_prewarmed_total)
    curl -fsS -X POST -o /dev/null "$U/starlight/notify?ref=$R/redis7:sl&insecure=1" || e2e_fail "notify"
    e2e_wait_for "prewarmed plan" 60 test_prewarmed "$n0"
    python3 -c "print('%.2f' % (float('$(metric starlight_delta_prewarm_seconds_total)') * 1000))"
}
test_prewarmed() { [ "$(metric starlight_delta_plans_prewarmed_total)" -gt "$1" ]; }

proxy_start
curl -fsS -X POST -o /dev/null "$U/starlight/notify?ref=$R/redis7:sl&insecure=1" || e2e_fail "notify"
delta_bytes=$(curl -fsS "$DELTA" | wc -c)
blob_bytes=0
for u in "${blob_urls[@]}"; do blob_bytes=$((blob_bytes + $(curl -fsS "$u" | wc -c))); done
e2e_log "redis7 delta $delta_bytes bytes; layer blobs $blob_bytes bytes; $runs run(s) per point"
echo "metric,concurrency,cache,run,value,unit" >"$csv"
row() { echo "$1,$2,$3,$4,$5,$6" >>"$csv"; }

# ---------------------------------------------------------------- time to first payload byte
# ttfb.py URL: prints "headers_ms first_payload_ms" — the response headers, and the first byte
# after the delta head (prelude + header JSON), measured from sending the request.
cat >"$W/ttfb.py" <<'EOF'
import socket, struct, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((u.hostname, u.port))
t0 = time.monotonic()
s.sendall(("GET %s?%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (u.path, u.query, u.netloc)).encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(65536)
th = time.monotonic()
body = buf.split(b"\r\n\r\n", 1)[1]
while len(body) < 32:
    body += s.recv(65536)
head = 32 + struct.unpack(">Q", body[16:24])[0]
while len(body) <= head:
    chunk = s.recv(1 << 20)
    if not chunk:
        sys.exit("short body")
    body += chunk
tp = time.monotonic()
print("%.2f %.2f" % ((th - t0) * 1e3, (tp - t0) * 1e3))
EOF
rtt_ms() { # one small Range read of a layer blob from the registry, like a cache fill
    curl -fsS -o /dev/null -r 0-1048575 -w '%{time_total}\n' "${blob_urls[-1]}" | awk '{ printf "%.2f", $1 * 1000 }'
}
declare -A T
for ((run = 1; run <= runs; run++)); do
    for cache in cold prewarmed warm; do
        if [ "$cache" != warm ]; then proxy_start; fi
        if [ "$cache" = prewarmed ]; then
            pw=$(prewarm)
            row prewarm_plan_ms 1 "$cache" "$run" "$pw" ms
            e2e_log "prewarm run $run: background plan $pw ms"
        fi
        p0=$(metric starlight_delta_plan_seconds_total)
        read -r hdr first < <(python3 "$W/ttfb.py" "$DELTA")
        p1=$(metric starlight_delta_plan_seconds_total)
        plan=$(python3 -c "print('%.2f' % ((float('$p1') - float('$p0')) * 1000))")
        after=$(python3 -c "print('%.2f' % ($first - $plan))")
        rtt=$(rtt_ms)
        row plan_ms 1 "$cache" "$run" "$plan" ms
        row headers_ms 1 "$cache" "$run" "$hdr" ms
        row first_payload_ms 1 "$cache" "$run" "$first" ms
        row after_plan_ms 1 "$cache" "$run" "$after" ms
        row registry_rtt_ms 1 "$cache" "$run" "$rtt" ms
        e2e_log "ttfb $cache run $run: plan $plan ms, headers $hdr ms, first payload byte $first ms, registry 1 MiB read $rtt ms"
    done
done

# ---------------------------------------------------------------- throughput
streams() { # N CMD...: N copies at once; prints the wall seconds
    local n=$1 i t0 pids=()
    shift
    t0=$(now)
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || e2e_fail "a stream failed: $*"; done
    python3 -c "print('%.3f' % ($(now) - $t0))"
}
mbps() { python3 -c "print('%.1f' % ($1 * $2 / $3 / 1e6))"; }
for ((run = 1; run <= runs; run++)); do
    for c in $CONC; do
        r0=$(cpu_ticks "$E2E_REGISTRY_PID")
        s=$(streams "$c" curl -fsS -o /dev/null "${blob_urls[@]}")
        row registry_MBps "$c" - "$run" "$(mbps "$c" "$blob_bytes" "$s")" MB/s
        row registry_cpu_pct "$c" - "$run" "$(python3 -c "print('%.0f' % (($(cpu_ticks "$E2E_REGISTRY_PID") - $r0) / $TCK / $s * 100))")" %
        for cache in cold prewarmed warm; do
            proxy_start
            [ "$cache" != prewarmed ] || prewarm >/dev/null
            [ "$cache" != warm ] || curl -fsS -o /dev/null "$DELTA" # warm the cache
            c0=$(cpu_ticks)
            s=$(streams "$c" curl -fsS -o /dev/null "$DELTA")
            row proxy_MBps "$c" "$cache" "$run" "$(mbps "$c" "$delta_bytes" "$s")" MB/s
            row proxy_cpu_pct "$c" "$cache" "$run" "$(python3 -c "print('%.0f' % (($(cpu_ticks) - $c0) / $TCK / $s * 100))")" %
            [ "$c" -lt 50 ] || row rss_hwm_mb "$c" "$cache" "$run" "$(hwm_mb)" MB
        done
        [ "$(metric starlight_proxy_delta_streams_failed_total)" = 0 ] || e2e_fail "failed streams"
        e2e_log "throughput run $run, $c streams: $(grep -E "^(registry|proxy|rss)[A-Za-z_]*,$c,[a-z-]+,$run," "$csv" | cut -d, -f1,3,5 | tr '\n' ' ')"
    done
done
proxy_stop

# ---------------------------------------------------------------- table (medians)
python3 - "$csv" "$CONC" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(metric, conc, cache):
    v = [float(r["value"]) for r in rows if r["metric"] == metric and r["concurrency"] == str(conc) and r["cache"] == cache]
    return statistics.median(v) if v else float("nan")
print("| cache | plan ms | response headers ms | first payload byte ms | after the plan ms | registry 1 MiB read ms | goal: after plan <= RTT + 20 ms |")
print("|---|---:|---:|---:|---:|---:|---|")
for cache in ("cold", "prewarmed", "warm"):
    plan, hdr, first, after, rtt = (med(m, 1, cache) for m in ("plan_ms", "headers_ms", "first_payload_ms", "after_plan_ms", "registry_rtt_ms"))
    print("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %s |" % (cache, plan, hdr, first, after, rtt, "met" if after <= rtt + 20 else "MISSED"))
print("prewarm (background plan after the notify): %.1f ms" % med("prewarm_plan_ms", 1, "prewarmed"))
print()
print("| streams | registry MB/s (CPU %) | proxy cold MB/s (CPU %) | ratio | proxy prewarmed MB/s (CPU %) | ratio | proxy warm MB/s (CPU %) | ratio | proxy VmHWM MB (cold / prewarmed / warm) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for c in sys.argv[2].split():
    reg, cold, pre, warm = med("registry_MBps", c, "-"), med("proxy_MBps", c, "cold"), med("proxy_MBps", c, "prewarmed"), med("proxy_MBps", c, "warm")
    rc, cc, pc, wc = med("registry_cpu_pct", c, "-"), med("proxy_cpu_pct", c, "cold"), med("proxy_cpu_pct", c, "prewarmed"), med("proxy_cpu_pct", c, "warm")
    rss = "%.1f / %.1f / %.1f" % (med("rss_hwm_mb", c, "cold"), med("rss_hwm_mb", c, "prewarmed"), med("rss_hwm_mb", c, "warm")) if int(c) >= 50 else ""
    print("| %s | %.0f (%.0f) | %.0f (%.0f) | %.2f× | %.0f (%.0f) | %.2f× | %.0f (%.0f) | %.2f× | %s |" % (c, reg, rc, cold, cc, cold / reg, pre, pc, pre / reg, warm, wc, warm / reg, rss))
EOF
