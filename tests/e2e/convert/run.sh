#!/usr/bin/env bash
# Scenario: `ctr-starlight convert` against a real distribution registry.
#  1. busybox, features (whiteouts, opaque dirs, hardlinks, xattrs, devices, multi-chunk file)
#     and redis 7.0 convert; for every layer `gzip -dc | tar -t` lists the source's entries plus
#     stargz.index.json, and every entry's metadata and bytes match the source;
#     every chunk verifies against its chunkDigest; `inspect` reads each TOC by Range.
#  2. Converting a converted image gives the same manifest digest (idempotent).
#  3. An OCI index converts platform by platform (--platform filters).
#  4. Stock containerd (default overlayfs snapshotter) pulls and runs the converted images.
#  5. Bad input fails with an error naming the image and layer, and pushes nothing:
#     truncated gzip, `../` entries, unknown media type, a registry answering 500 to uploads;
#     a TOC pointing outside its blob is refused by `inspect` and `sl-format-tool`.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

e2e_require python3 curl gzip tar skopeo timeout
CS="$SL_BIN/ctr-starlight"
FT="$SL_BIN/sl-format-tool"
[ -x "$CS" ] && [ -x "$FT" ] || e2e_fail "build first: $CS or $FT missing"
tool() { python3 "$here/tool.py" "$@"; }

images=(busybox features)
[ "${SL_E2E_SKIP_REDIS:-0}" = 1 ] || images+=(redis7)

e2e_tmpdir >/dev/null
W="$E2E_DIR/work"
mkdir -p "$W"
e2e_start_registry
R=$E2E_REGISTRY

convert() { "$CS" convert --insecure-source --insecure-destination "$@"; }
layers_of() { # REPO REF -> layer digests, one per line
    tool manifest "$R" "$1" "$2" | python3 -c \
        'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}
blob() { curl -fsS -o "$3" "http://$R/v2/$1/blobs/$2"; }
blob_count() { find "$E2E_DIR/registry/storage" -path '*/blobs/*' -name data | wc -l; }

# ---------------------------------------------------------------- 1 + 2: convert and check
for img in "${images[@]}"; do
    e2e_log "push and convert $img"
    e2e_push_image "$img" "$img:src"
    start=$(date +%s%N)
    out=$(convert "$R/$img:src" "$R/$img:sl" 2>"$W/$img.convert.log") ||
        { cat "$W/$img.convert.log" >&2; e2e_fail "convert $img"; }
    e2e_log "  converted in $((($(date +%s%N) - start) / 1000000)) ms: $out"
    [[ "$out" == "$R/$img:sl@sha256:"* ]] || e2e_fail "convert printed '$out'"

    mapfile -t src_layers < <(layers_of "$img" src)
    mapfile -t sl_layers < <(layers_of "$img" sl)
    [ "${#src_layers[@]}" -eq "${#sl_layers[@]}" ] && [ "${#sl_layers[@]}" -gt 0 ] ||
        e2e_fail "$img: ${#src_layers[@]} source layers, ${#sl_layers[@]} converted"
    for i in "${!sl_layers[@]}"; do
        blob "$img" "${src_layers[i]}" "$W/src.blob"
        blob "$img" "${sl_layers[i]}" "$W/sl.blob"
        gzip -dc "$W/src.blob" | tar -t >"$W/src.list" || e2e_fail "$img layer $i: source tar"
        gzip -dc "$W/sl.blob" | tar -t >"$W/sl.list" ||
            e2e_fail "$img layer $i: converted blob is not gzip+tar"
        { cat "$W/src.list"; echo stargz.index.json; } | diff -u - "$W/sl.list" >&2 ||
            e2e_fail "$img layer $i: tar -t listing differs from the source's plus the TOC"
        tool compare "$W/src.blob" "$W/sl.blob" >&2 ||
            e2e_fail "$img layer $i: entries or bytes differ from the source"
        "$FT" verify "$W/sl.blob" >"$W/verify.json" ||
            e2e_fail "$img layer $i: sl-format-tool verify"
    done
    "$CS" inspect --insecure --json "$R/$img:sl" >"$W/inspect.json" ||
        e2e_fail "inspect $img:sl"
    n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for l in d["layers"] if l["tocVerified"]))' "$W/inspect.json")
    [ "$n" -eq "${#sl_layers[@]}" ] || e2e_fail "inspect verified $n of ${#sl_layers[@]} TOCs"

    again=$(convert "$R/$img:sl" "$R/$img:sl2" 2>"$W/$img.reconvert.log") ||
        { cat "$W/$img.reconvert.log" >&2; e2e_fail "reconvert $img"; }
    [ "${again#*@}" = "${out#*@}" ] ||
        e2e_fail "$img: converting the converted image changed the digest (${out#*@} -> ${again#*@})"
    e2e_log "  $img: ${#sl_layers[@]} layers identical to the source, TOCs verified, idempotent"
done

# ---------------------------------------------------------------- 3: index, per platform
host_arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
other_arch=$([ "$host_arch" = arm64 ] && echo amd64 || echo arm64)
e2e_push_image busybox multi:a
e2e_push_image features multi:b
da=$(tool manifest "$R" multi a | sha256sum | cut -d' ' -f1)
db=$(tool manifest "$R" multi b | sha256sum | cut -d' ' -f1)
tool push-index "$R" multi idx "sha256:$da=linux/$host_arch" "sha256:$db=linux/$other_arch" \
    >/dev/null
convert --platform "linux/$host_arch" "$R/multi:idx" "$R/multi:idx-one" >/dev/null 2>"$W/idx1.log" ||
    { cat "$W/idx1.log" >&2; e2e_fail "convert index --platform"; }
convert "$R/multi:idx" "$R/multi:idx-all" >/dev/null 2>"$W/idx2.log" ||
    { cat "$W/idx2.log" >&2; e2e_fail "convert index (all)"; }
check_index() { # TAG EXPECTED_COUNT
    tool manifest "$R" multi "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["mediaType"].endswith("index.v1+json"), d["mediaType"]
ms = d["manifests"]
assert len(ms) == int(sys.argv[1]), ms
assert ms[0]["platform"]["architecture"] == sys.argv[2], ms[0]
' "$2" "$host_arch" || e2e_fail "index $1 is not as expected"
}
check_index idx-one 1
check_index idx-all 2
"$CS" inspect --insecure --platform "linux/$other_arch" "$R/multi:idx-all" >/dev/null ||
    e2e_fail "inspect the second platform of the converted index"
e2e_log "index: --platform keeps one entry, all keeps two, both platforms converted"

# ---------------------------------------------------------------- 4: stock containerd runs them
e2e_start_containerd
for img in "${images[@]}"; do
    e2e_ctr_timeout 300 images pull --plain-http "$R/$img:sl" >"$W/pull-$img.log" 2>&1 ||
        { cat "$W/pull-$img.log" >&2; e2e_fail "stock ctr pull $img:sl"; }
done
out=$(e2e_ctr_timeout 60 run --rm "$R/busybox:sl" "conv-bb-$$" echo converted-hello) ||
    e2e_fail "stock containerd could not run converted busybox: $out"
[ "$out" = converted-hello ] || e2e_fail "busybox printed '$out'"
out=$(e2e_ctr_timeout 60 run --rm "$R/features:sl" "conv-ft-$$" sh /check.sh 2>&1) || true
[ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "features /check.sh on the converted image: $out"
if [[ " ${images[*]} " == *" redis7 "* ]]; then
    id="conv-redis-$$"
    e2e_ctr_timeout 60 run -d "$R/redis7:sl" "$id" >/dev/null || e2e_fail "ctr run redis7:sl"
    n=0
    ping() {
        n=$((n + 1))
        [ "$(e2e_ctr tasks exec --exec-id "p$n" "$id" redis-cli ping 2>/dev/null)" = PONG ]
    }
    e2e_wait_for "converted redis to answer PING" 30 ping
    e2e_ctr tasks kill -s SIGKILL "$id" >/dev/null
    stopped() { [ "$(e2e_ctr tasks ls | awk -v id="$id" '$1 == id { print $3 }')" = STOPPED ]; }
    e2e_wait_for "redis task to stop" 10 stopped
    e2e_ctr tasks delete "$id" >/dev/null 2>&1 || true
    e2e_ctr containers delete "$id" >/dev/null 2>&1 || true
fi
e2e_log "stock containerd pulled and ran every converted image"

# ---------------------------------------------------------------- 5: bad input
expect_fail() { # NAME SRC_REF DST_REF PATTERN...: convert must fail, name things, push nothing
    local name=$1 src=$2 dst=$3 before after pat
    shift 3
    before=$(blob_count)
    if convert "$src" "$dst" >"$W/$name.out" 2>"$W/$name.err"; then
        e2e_fail "$name: convert succeeded"
    fi
    after=$(blob_count)
    for pat in "$@"; do
        grep -qF -- "$pat" "$W/$name.err" ||
            { cat "$W/$name.err" >&2; e2e_fail "$name: error does not mention '$pat'"; }
    done
    [ "$before" -eq "$after" ] || e2e_fail "$name: $((after - before)) blobs pushed by a failed convert"
    if tool manifest "$R" "$(echo "${dst#*/}" | cut -d: -f1)" "${dst##*:}" >/dev/null; then
        e2e_fail "$name: the destination tag exists after a failed convert"
    fi
    e2e_log "  $name: $(tail -n1 "$W/$name.err" | cut -c1-220)"
}

blob busybox "$(layers_of busybox src | head -n1)" "$W/bb-src.blob"
tool layer-truncated "$W/bb-src.blob" "$W/trunc.blob"
tool push "$R" bad/trunc src "$W/trunc.blob" >/dev/null
expect_fail truncated "$R/bad/trunc:src" "$R/bad/trunc:sl" "$R/bad/trunc:src" "layer 0"

tool layer-traversal "$W/trav.blob"
tool push "$R" bad/trav src "$W/trav.blob" >/dev/null
expect_fail traversal "$R/bad/trav:src" "$R/bad/trav:sl" "$R/bad/trav:src" "layer 0" "../escape"

tool push "$R" bad/mt src "$W/bb-src.blob=application/vnd.example.unknown" >/dev/null
expect_fail media-type "$R/bad/mt:src" "$R/bad/mt:sl" "$R/bad/mt:src" "layer 0" \
    "application/vnd.example.unknown"

fport=$(e2e_free_port)
FAULT_PROXY_STATE="$W/fault" python3 "$here/tool.py" fault-proxy "$fport" "$R" \
    >"$E2E_DIR/logs/fault-proxy.log" 2>&1 &
e2e_track_pid fault-proxy $!
e2e_wait_for "fault proxy" 10 curl -fsS -o /dev/null "http://127.0.0.1:$fport/v2/"
before=$(blob_count)
if "$CS" convert --insecure-source --insecure-destination "$R/busybox:src" \
    "127.0.0.1:$fport/bad/upload:sl" >/dev/null 2>"$W/upload.err"; then
    e2e_fail "convert through a registry answering 500 succeeded"
fi
grep -q "500" "$W/upload.err" || { cat "$W/upload.err" >&2; e2e_fail "upload error lacks HTTP 500"; }
attempts=$(cat "$W/fault.count" 2>/dev/null || echo 0)
[ "$attempts" -ge 2 ] || e2e_fail "the failed upload was not retried ($attempts attempts)"
[ "$(blob_count)" -eq "$before" ] || e2e_fail "blobs landed through the failing registry"
tool manifest "$R" bad/upload sl >/dev/null && e2e_fail "tag exists after a failed upload"
e2e_log "  upload-500: $attempts attempts, then: $(tail -n1 "$W/upload.err" | cut -c1-200)"

blob busybox "$(layers_of busybox sl | head -n1)" "$W/bb-sl.blob"
toc=$(tool layer-lying-toc "$W/bb-sl.blob" "$W/lying.blob")
tool push "$R" bad/toc sl "$W/lying.blob=application/vnd.oci.image.layer.v1.tar+gzip=$toc" \
    >/dev/null
if "$CS" inspect --insecure "$R/bad/toc:sl" >/dev/null 2>"$W/toc.err"; then
    e2e_fail "inspect accepted a TOC pointing outside its blob"
fi
grep -qF "$R/bad/toc:sl" "$W/toc.err" && grep -qF "layer 0" "$W/toc.err" ||
    { cat "$W/toc.err" >&2; e2e_fail "lying TOC error does not name image and layer"; }
if "$FT" toc "$W/lying.blob" >/dev/null 2>"$W/toc2.err"; then
    e2e_fail "sl-format-tool accepted a TOC pointing outside its blob"
fi
e2e_log "  lying TOC: $(tail -n1 "$W/toc.err" | cut -c1-200)"
e2e_log "convert scenario passed"
