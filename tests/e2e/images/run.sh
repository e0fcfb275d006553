#!/usr/bin/env bash
# Validates the test images themselves with stock parts: builds busybox, features and (unless
# SL_E2E_SKIP_REDIS=1) the redis6/redis7 pair, pushes them into a fresh registry, checks the
# registry holds the layouts' manifests byte for byte, then pulls and runs each with stock
# containerd + runc: busybox echoes, features' /check.sh prints OK, redis answers PING.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
. "$(dirname "$0")/../lib.sh"

e2e_require skopeo python3 curl timeout


images=(busybox features)
if [ "${SL_E2E_SKIP_REDIS:-0}" != 1 ]; then
    images+=(redis6 redis7)
fi

e2e_tmpdir >/dev/null
e2e_log "building ${images[*]}"
mapfile -t layouts < <(e2e_build_images "${images[@]}")
[ "${#layouts[@]}" -eq "${#images[@]}" ] || e2e_fail "build.sh printed ${#layouts[@]} paths"

e2e_start_registry
# shellcheck disable=SC2119 # no argument: the stock overlayfs snapshotter
e2e_start_containerd

manifest_digest() { # layout dir -> digest of its (only) manifest
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
        "$1/index.json"
}

for i in "${!images[@]}"; do
    name=${images[i]}
    e2e_log "push $name"
    e2e_push_image "$name" "sl-test/$name:latest"
    want=$(manifest_digest "${layouts[i]}")
    got=$(curl -fsS -o /dev/null -D - \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$E2E_REGISTRY/v2/sl-test/$name/manifests/latest" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }')
    [ "$got" = "$want" ] || e2e_fail "$name: registry holds manifest $got, layout has $want"
    e2e_log "pull $name"
    e2e_ctr_timeout 300 images pull --plain-http "$E2E_REGISTRY/sl-test/$name:latest" \
        >"$E2E_DIR/logs/pull-$name.log" 2>&1 || {
        cat "$E2E_DIR/logs/pull-$name.log" >&2
        e2e_fail "ctr images pull $name"
    }
done

ref() { echo "$E2E_REGISTRY/sl-test/$1:latest"; }

e2e_log "run busybox"
out=$(e2e_ctr_timeout 60 run --rm "$(ref busybox)" "e2e-busybox-$$" echo hello-from-busybox) ||
    e2e_fail "ctr run busybox failed: $out"
[ "$out" = hello-from-busybox ] || e2e_fail "busybox printed '$out'"

e2e_log "run features /check.sh"
out=$(e2e_ctr_timeout 60 run --rm "$(ref features)" "e2e-features-$$" sh /check.sh 2>&1) || true
printf '  check.sh: %s\n' "$out" >&2
[ "$(echo "$out" | tail -n1)" = OK ] || e2e_fail "features /check.sh did not print OK"

for name in "${images[@]}"; do
    case "$name" in
    redis6) want_major=6 ;;
    redis7) want_major=7 ;;
    *) continue ;;
    esac
    id="e2e-$name-$$"
    e2e_log "run $name"
    e2e_ctr_timeout 60 run -d "$(ref "$name")" "$id" >/dev/null || e2e_fail "ctr run $name"
    n=0
    ping() {
        n=$((n + 1))
        [ "$(e2e_ctr tasks exec --exec-id "ping-$n" "$id" redis-cli ping 2>/dev/null)" = PONG ]
    }
    e2e_wait_for "$name to answer PING" 30 ping
    ver=$(e2e_ctr tasks exec --exec-id version "$id" redis-server --version)
    e2e_log "$name: PONG from $ver"
    [[ "$ver" == *" v=$want_major."* ]] || e2e_fail "$name runs the wrong redis: $ver"
    e2e_ctr tasks kill -s SIGKILL "$id" >/dev/null
    stopped() { [ "$(e2e_ctr tasks ls | awk -v id="$id" '$1 == id { print $3 }')" = STOPPED ]; }
    e2e_wait_for "$name task to stop" 10 stopped
    e2e_ctr tasks delete "$id" >/dev/null 2>&1 || e2e_fail "ctr tasks delete $id"
    e2e_ctr containers delete "$id" >/dev/null
done

e2e_log "all images pulled and ran with stock containerd"
