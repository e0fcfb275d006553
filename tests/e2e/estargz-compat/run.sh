#!/usr/bin/env bash
# Compatibility with eStargz made by the real tool: converts the busybox and features test
# images with Debian's `ctr-remote image convert --estargz --oci` inside a private containerd,
# takes the converted layer blobs from containerd's content store (through the new manifest),
# and checks each one with compare.py: `sl-format-tool toc --entries` and `verify` (the
# project's reader) must agree with `gzip -dc BLOB | tar -t` on the regular files (minus
# stargz.index.json and landmarks), their sizes and sha256, and with the TOC on the chunk
# count. compare.py also checks the blob's own TOC and footer, validating the fixture itself.
# Without $SL_BIN/sl-format-tool only the fixture checks run and the scenario skips (77);
# under CI it fails.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
tool="$SL_BIN/sl-format-tool"
e2e_require ctr-remote python3 gzip tar
if [ ! -x "$tool" ]; then
    # The reader is what this scenario is about; without it only the fixture checks run.
    if [ "${CI:-}" = true ] || [ "${SL_E2E_REQUIRE_TOOL:-0}" = 1 ]; then
        e2e_fail "$tool is missing (build it first)"
    fi
    e2e_log "WARNING: $tool not built: checking the converted blobs without the reader"
    tool=
fi

e2e_tmpdir >/dev/null
# shellcheck disable=SC2119 # no argument: the stock overlayfs snapshotter
e2e_start_containerd

blob_path() { # digest -> file in containerd's content store
    echo "$E2E_CONTAINERD_ROOT/io.containerd.content.v1.content/blobs/${1%%:*}/${1#*:}"
}

image_digest() { # ref -> target digest
    e2e_ctr images ls | awk -v r="$1" '$1 == r { print $3 }'
}

# Layer digests of a manifest, descending into an index (this machine's platform) if needed.
layers_of() {
    python3 - "$(blob_path "$1")" "$E2E_CONTAINERD_ROOT/io.containerd.content.v1.content" <<'PY'
import json, platform, sys
path, store = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
if "manifests" in doc:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    m = [d for d in doc["manifests"] if d.get("platform", {}).get("architecture") == arch]
    d = (m or doc["manifests"])[0]["digest"]
    doc = json.load(open("%s/blobs/sha256/%s" % (store, d.split(":")[1])))
for layer in doc["layers"]:
    print(layer["digest"], layer["mediaType"], layer.get("annotations", {}).get(
        "containerd.io/snapshot/stargz/toc.digest", "-"))
PY
}

import() { # test image name -> sl-test/NAME:latest in containerd
    local layout
    layout=$(e2e_build_images "$1")
    tar -C "$layout" -cf "$E2E_DIR/$1.tar" oci-layout index.json blobs
    e2e_ctr images import --base-name "sl-test/$1" "$E2E_DIR/$1.tar" \
        >>"$E2E_DIR/logs/import.log" 2>&1 || e2e_fail "ctr images import $1"
    rm -f "$E2E_DIR/$1.tar"
}

import busybox
import features

# name, ctr-remote options: the default chunk size (4 MiB) and small chunks (1 MiB), so that
# files span many chunk entries.
conversions=(
    "busybox"
    "features"
    "features --estargz-chunk-size 1048576"
)
layers_checked=0
for conv in "${conversions[@]}"; do
    read -r name opts <<<"$conv"
    dst="sl-test/$name:esgz-${layers_checked}"
    e2e_log "ctr-remote image convert --estargz --oci ${opts:+$opts }$name"
    start=$(date +%s%N)
    # shellcheck disable=SC2086 # opts are words
    ctr-remote --address "$E2E_CONTAINERD_ADDRESS" image convert --estargz --oci $opts \
        "sl-test/$name:latest" "$dst" >>"$E2E_DIR/logs/convert.log" 2>&1 ||
        e2e_fail "ctr-remote convert $name"
    e2e_log "converted in $((($(date +%s%N) - start) / 1000000)) ms"
    digest=$(image_digest "$dst")
    [ -n "$digest" ] || e2e_fail "no image $dst after conversion"
    while read -r layer media toc; do
        blob=$(blob_path "$layer")
        [ -f "$blob" ] || e2e_fail "$name: layer $layer not in the content store"
        [ "$toc" != - ] || e2e_fail "$name: layer $layer has no TOC digest annotation"
        if ! result=$(python3 "$here/compare.py" "$blob" ${tool:+"$tool"}); then
            e2e_fail "$name layer $layer ($media) does not match"
        fi
        e2e_log "$name ${layer:7:12}: $result"
        layers_checked=$((layers_checked + 1))
    done < <(layers_of "$digest")
done

[ "$layers_checked" -eq 7 ] || e2e_fail "checked $layers_checked layers, expected 7"
if [ -z "$tool" ]; then
    e2e_skip "fixtures OK, but the reader was not checked (no $SL_BIN/sl-format-tool)"
else
    e2e_log "sl-format-tool agrees with GNU tar on every ctr-remote layer"
fi
