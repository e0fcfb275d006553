#!/usr/bin/env bash
# `make demo`: the foundation's main job, end to end on this machine.
#   1. builds a realistic image without pulling anything (redis 7.0 on Debian bookworm, via
#      debootstrap; cached after the first run; SL_DEMO_IMAGE=busybox for a 1-second image),
#   2. pushes it into a local distribution registry (127.0.0.1 only),
#   3. converts it with `ctr-starlight convert` and shows what conversion produced:
#      per-layer sizes, TOC entries and chunks (`ctr-starlight inspect`),
#   4. runs the converted image with stock containerd + runc to show it is still a normal image.
# Everything started here is stopped by PID on exit. Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
export SL_BUILD=$build SL_BIN=$build/bin
. "$(dirname "$0")/../tests/e2e/lib.sh"

image=${SL_DEMO_IMAGE:-redis7}
CS="$SL_BIN/ctr-starlight"
[ -x "$CS" ] || e2e_fail "$CS missing: run make build"
e2e_require skopeo curl python3 gzip tar

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. build the $image test image (no pulls; cached after the first run)"
start=$(date +%s)
e2e_build_images "$image" >/dev/null
echo "ready in $(($(date +%s) - start)) s"

say "2. start a local registry and push $image"
e2e_start_registry
R=$E2E_REGISTRY
e2e_push_image "$image" "demo/$image:src"
echo "pushed $R/demo/$image:src"

say "3. convert to the Starlight format"
t0=$(date +%s%N)
"$CS" convert --insecure-source --insecure-destination "$R/demo/$image:src" \
    "$R/demo/$image:starlight"
t1=$(date +%s%N)
echo "convert took $(((t1 - t0) / 1000000)) ms"

say "4. what conversion produced (footer + TOC of each layer, read by HTTP Range)"
"$CS" inspect --insecure "$R/demo/$image:starlight"

manifest() {
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$R/v2/demo/$image/manifests/$1"
}
python3 - "$(manifest src)" "$(manifest starlight)" <<'EOF'
import json, sys
src, dst = json.loads(sys.argv[1]), json.loads(sys.argv[2])
s = sum(l["size"] for l in src["layers"])
d = sum(l["size"] for l in dst["layers"])
print("\nsource layers %.1f MB, Starlight layers %.1f MB (%+.1f%%)" % (s / 1e6, d / 1e6,
                                                                     100.0 * (d - s) / s))
ann = dst["layers"][0].get("annotations", {})
for k in sorted(ann):
    print("  layer 0 annotation %s = %s" % (k, ann[k]))
EOF

say "5. the converted blob is still one gzip stream of a normal tar (last entries):"
first=$(manifest starlight | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][-1]["digest"])')
curl -fsS "http://$R/v2/demo/$image/blobs/$first" | gzip -dc | tar -tv | tail -n 3

say "6. stock containerd + runc (overlayfs snapshotter) runs the converted image"
e2e_start_containerd
e2e_ctr_timeout 300 images pull --plain-http "$R/demo/$image:starlight" >/dev/null
case "$image" in
redis*)
    id="demo-$$"
    e2e_ctr run -d "$R/demo/$image:starlight" "$id" >/dev/null
    n=0
    ping() {
        n=$((n + 1))
        [ "$(e2e_ctr tasks exec --exec-id "p$n" "$id" redis-cli ping 2>/dev/null)" = PONG ]
    }
    e2e_wait_for "redis to answer PING" 30 ping
    echo "redis-cli ping -> PONG ($(e2e_ctr tasks exec --exec-id v "$id" redis-server --version | cut -d' ' -f1-3))"
    ;;
*)
    e2e_ctr run --rm "$R/demo/$image:starlight" "demo-$$" echo "hello from the converted image"
    ;;
esac

say "done: the proxy and the lazy-pulling daemon build on this (see docs/architecture.md)"
