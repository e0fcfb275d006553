#!/usr/bin/env bash
# Converter benchmark: Starlight-C against `ctr-remote image convert --estargz` (eStargz, from
# Debian's stargz-snapshotter), on the same machine in the same run.
#
#   bench/convert.sh BUILD_DIR [short|full]      short: redis7; full: redis6 and redis7
#
# For every image, each system is run SL_BENCH_RUNS times (default 3, interleaved so that
# machine noise spreads over all systems) and the median wall time is reported:
#   starlight-e2e   `ctr-starlight convert` from the local registry to the local registry
#                   (download + convert + upload; a fresh destination repository per run so
#                   every blob is really uploaded);
#   starlight-core  `sl-format-tool convert` over each source layer file, wall time summed over
#                   the layers (the converter alone: the like-for-like number against ctr-remote,
#                   which converts from containerd's local content store);
#   ctr-remote      `ctr-remote image convert --estargz --oci SRC DST` with the source already
#                   imported into containerd; DST is removed with `images rm --sync` between runs
#                   and the script checks that its converted blobs left the content store, so
#                   no run re-uses an earlier run's output;
#   ctr-remote-level6  (full only) the same with `--estargz-compression-level 6`, Starlight-C's
#                   default level, to separate the compression level from the rest.
# Both tools run with their default settings (Starlight-C: gzip level 6, 4 MiB chunks;
# ctr-remote: gzip level 9, no chunking). Sizes are the sums of the layer blobs (configs and
# manifests are a few hundred bytes). MB = 10^6 bytes; MB/s is uncompressed input per second.
#
# Output: bench/results/convert.csv (image,system,run,seconds,input_uncompressed_bytes,
# source_bytes,output_bytes; override with SL_BENCH_CSV) and a markdown table of medians on
# stdout (also written next to the CSV as convert.md). Services (registry, containerd) come
# from tests/e2e/lib.sh, bind 127.0.0.1 only and are stopped by its exit trap.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 BUILD_DIR [short|full]" >&2
    exit 2
fi
SL_BUILD=$(cd "$1" && pwd)
SL_BIN="$SL_BUILD/bin"
export SL_BUILD SL_BIN
mode=${2:-short}
case "$mode" in
short) images=(redis7) ;;
full) images=(redis6 redis7) ;;
*)
    echo "$0: mode must be short or full, not '$mode'" >&2
    exit 2
    ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../tests/e2e/lib.sh"

runs=${SL_BENCH_RUNS:-3}
csv=${SL_BENCH_CSV:-$here/results/convert.csv}
CS="$SL_BIN/ctr-starlight"
FT="$SL_BIN/sl-format-tool"
e2e_require "$CS" "$FT" ctr-remote python3 gzip tar curl skopeo
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || e2e_fail "SL_BENCH_RUNS must be a positive integer"

W="$E2E_DIR/work"
mkdir -p "$W/tmp" "$(dirname "$csv")"
e2e_start_registry
# shellcheck disable=SC2119 # no snapshotter socket: plain containerd
e2e_start_containerd
R=$E2E_REGISTRY

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# json OP < DOCUMENT: index-child (first manifest digest of an index, empty for a manifest),
# layer-digests (one per line), layer-bytes (sum of layer sizes).
json() {
    python3 -c '
import json, sys
d, op = json.load(sys.stdin), sys.argv[1]
if op == "index-child":
    print(d["manifests"][0]["digest"] if isinstance(d.get("manifests"), list) else "")
elif op == "layer-digests":
    print("\n".join(l["digest"] for l in d["layers"]))
elif op == "layer-bytes":
    print(sum(l["size"] for l in d["layers"]))
' "$1"
}

# reg_layer_sizes REPO REF: sum of the layer sizes of REPO:REF in the local registry (a
# manifest, or the first manifest of an index).
reg_manifest() {
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.oci.image.index.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
        "http://$R/v2/$1/manifests/$2"
}
reg_layer_sizes() {
    local m c
    m=$(reg_manifest "$1" "$2")
    c=$(json index-child <<<"$m")
    if [ -n "$c" ]; then
        m=$(reg_manifest "$1" "$c")
    fi
    json layer-bytes <<<"$m"
}

# ctr_manifest NAME: the (first) image manifest of containerd image NAME, as JSON.
ctr_manifest() {
    local d m c
    d=$(e2e_ctr images ls | awk -v n="$1" '$1 == n { print $3 }')
    [ -n "$d" ] || e2e_fail "containerd has no image $1"
    m=$(e2e_ctr content get "$d")
    c=$(json index-child <<<"$m")
    if [ -n "$c" ]; then
        m=$(e2e_ctr content get "$c")
    fi
    echo "$m"
}

echo "image,system,run,seconds,input_uncompressed_bytes,source_bytes,output_bytes" >"$csv"
record() { # IMAGE SYSTEM RUN SECONDS OUTPUT_BYTES
    echo "$1,$2,$3,$4,$input_bytes,$source_bytes,$5" >>"$csv"
    e2e_log "  $1 $2 run $3: $4 s, $5 bytes"
}

e2e_log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
e2e_log "ctr-remote: $(dpkg-query -W -f '${Version}' stargz-snapshotter 2>/dev/null || echo '?')"

# ctr_remote_run IMAGE RUN SYSTEM [OPTION...]: one ctr-remote conversion from the content store
# into the content store, recorded as SYSTEM; then the result is removed (synchronous garbage
# collection) and none of its layer blobs may stay behind for the next run to find.
ctr_remote_run() {
    local img=$1 run=$2 system=$3 t0 t1 m d cr_layers
    shift 3
    t0=$(now)
    ctr-remote --address "$E2E_CONTAINERD_ADDRESS" image convert --estargz --oci "$@" \
        "bench/$img:src" "bench/$img:esgz" >"$W/cr.log" 2>&1 ||
        { cat "$W/cr.log" >&2; e2e_fail "ctr-remote convert $img"; }
    t1=$(now)
    m=$(ctr_manifest "bench/$img:esgz")
    mapfile -t cr_layers < <(json layer-digests <<<"$m")
    record "$img" "$system" "$run" "$(elapsed "$t0" "$t1")" "$(json layer-bytes <<<"$m")"
    e2e_ctr images rm --sync "bench/$img:esgz" >/dev/null
    for d in "${cr_layers[@]}"; do
        if e2e_ctr content info "$d" >/dev/null 2>&1; then
            e2e_fail "ctr-remote output $d still in the content store after images rm --sync"
        fi
    done
}

for img in "${images[@]}"; do
    layout=$(e2e_build_images "$img" | tail -n 1)
    [ -f "$layout/index.json" ] || e2e_fail "no OCI layout for $img"
    manifest=$(json index-child <"$layout/index.json")
    mapfile -t layers < <(json layer-digests <"$layout/blobs/sha256/${manifest#sha256:}")
    [ "${#layers[@]}" -gt 0 ] || e2e_fail "$img: no layers"
    input_bytes=0 source_bytes=0
    for l in "${layers[@]}"; do
        f="$layout/blobs/sha256/${l#sha256:}"
        source_bytes=$((source_bytes + $(stat -c %s "$f")))
        input_bytes=$((input_bytes + $(gzip -dc "$f" | wc -c)))
    done
    e2e_log "$img: ${#layers[@]} layers, $source_bytes bytes gzip, $input_bytes bytes tar"

    # Sources: the registry (Starlight-C end to end) and containerd's content store (ctr-remote).
    e2e_push_image "$img" "$img:src"
    tar -C "$layout" -cf "$W/$img.tar" .
    e2e_ctr images import --no-unpack --index-name "bench/$img:src" "$W/$img.tar" >/dev/null
    rm -f "$W/$img.tar"

    for ((run = 1; run <= runs; run++)); do
        e2e_log "$img run $run/$runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
        # Starlight-C end to end, registry -> registry, into a repository never used before.
        dst="$img-sl-$run"
        t0=$(now)
        "$CS" convert --insecure-source --insecure-destination --progress=false \
            --tmp-dir "$W/tmp" "$R/$img:src" "$R/$dst:latest" >"$W/sl.out" 2>"$W/sl.log" ||
            { cat "$W/sl.log" >&2; e2e_fail "ctr-starlight convert $img"; }
        t1=$(now)
        record "$img" starlight-e2e "$run" "$(elapsed "$t0" "$t1")" "$(reg_layer_sizes "$dst" latest)"

        # Starlight-C converter core, layer file -> layer file.
        secs=0 out_bytes=0
        for i in "${!layers[@]}"; do
            f="$layout/blobs/sha256/${layers[i]#sha256:}"
            t0=$(now)
            "$FT" convert "$f" "$W/core.$i" >"$W/core.json" 2>"$W/core.log" ||
                { cat "$W/core.log" >&2; e2e_fail "sl-format-tool convert $img layer $i"; }
            t1=$(now)
            secs=$(awk -v s="$secs" -v d="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.3f", s + d }')
            out_bytes=$((out_bytes + $(stat -c %s "$W/core.$i")))
            rm -f "$W/core.$i"
        done
        record "$img" starlight-core "$run" "$secs" "$out_bytes"

        ctr_remote_run "$img" "$run" ctr-remote
        if [ "$mode" = full ]; then
            ctr_remote_run "$img" "$run" ctr-remote-level6 --estargz-compression-level 6
        fi
    done
done

table=$(python3 - "$csv" "$runs" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
runs = sys.argv[2]
systems = ["starlight-e2e", "starlight-core", "ctr-remote", "ctr-remote-level6"]
label = {
    "starlight-e2e": "Starlight-C `ctr-starlight convert` (registry → registry)",
    "starlight-core": "Starlight-C `sl-format-tool convert` (converter core)",
    "ctr-remote": "`ctr-remote image convert --estargz --oci`",
    "ctr-remote-level6": "same, `--estargz-compression-level 6` (Starlight-C's level)",
}
images = list(dict.fromkeys(r["image"] for r in rows))
has6 = any(r["system"] == "ctr-remote-level6" for r in rows)
print(f"Medians of {runs} runs. MB = 10^6 bytes; MB/s is uncompressed input per second; "
      "size is the converted layers against the source layers; speedup is ctr-remote's time "
      "over this row's time.")
print()
print("| image | system | seconds | MB/s | input MB (tar) | source MB (gzip) | output MB | "
      "size vs source | speedup vs ctr-remote |" + (" vs ctr-remote level 6 |" if has6 else ""))
print("|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if has6 else ""))
for img in images:
    med = {}
    for s in systems:
        rs = [r for r in rows if r["image"] == img and r["system"] == s]
        if not rs:
            continue
        med[s] = (statistics.median(float(r["seconds"]) for r in rs),
                  statistics.median(int(r["output_bytes"]) for r in rs),
                  int(rs[0]["input_uncompressed_bytes"]), int(rs[0]["source_bytes"]))
    def speedup(ref, s, sec):
        if ref not in med or not s.startswith("starlight") or sec <= 0:
            return "–"
        return f"{med[ref][0] / sec:.1f}×"
    for s, (sec, out, inp, src) in med.items():
        line = (f"| {img} | {label[s]} | {sec:.2f} | {inp / 1e6 / sec:.1f} | {inp / 1e6:.1f} | "
                f"{src / 1e6:.2f} | {out / 1e6:.2f} | {100 * (out - src) / src:+.1f}% | "
                f"{speedup('ctr-remote', s, sec)} |")
        if has6:
            line += f" {speedup('ctr-remote-level6', s, sec)} |"
        print(line)
EOF
)
printf '%s\n' "$table" | tee "${csv%.csv}.md"
e2e_log "wrote $csv"
