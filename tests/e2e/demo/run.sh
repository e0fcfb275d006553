#!/usr/bin/env bash
# Scenario: `make demo` in the test suite, short (SL_DEMO_SHORT=1: redis 7.0 only, no 6.0 -> 7.0
# row): scripts/demo.sh runs (its own WAN, cloud and edge nodes, torn down on its exit), prints
# its table, and from its numbers (SL_DEMO_RESULTS):
#  - the traced Starlight deploy reached PONG sooner than the untraced one of the same run;
#  - after the report the proxy's delta for a fresh node sends the traced contents first, and
#    they include redis' binary.
# SL_E2E_SKIP_REDIS=1: skipped (exit 77; the demo is redis).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

if [ "${SL_E2E_SKIP_REDIS:-0}" = 1 ]; then
    printf '[%s] SKIP: the demo needs redis (SL_E2E_SKIP_REDIS=1)\n' "$E2E_NAME" >&2
    exit 77
fi
e2e_require skopeo curl python3 nsenter containerd ctr runc ip iptables tc
[ "$(id -u)" = 0 ] || e2e_skip "needs root (namespaces, containerd, FUSE, mounts)"
for b in ctr-starlight starlight-proxy starlight-daemon sl-netdelay; do
    [ -x "$SL_BIN/$b" ] || e2e_skip "build first: $SL_BIN/$b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"

out=$E2E_DIR/demo.out res=$E2E_DIR/demo.results
SL_DEMO_SHORT=1 SL_DEMO_RESULTS=$res bash "$E2E_SRC/scripts/demo.sh" "$SL_BUILD" >"$out" 2>&1 ||
    { cat "$out" >&2; e2e_fail "scripts/demo.sh failed"; }
grep -q 'to PONG' "$out" && grep -q '^(3) Starlight, fresh, traced ' "$out" ||
    { cat "$out" >&2; e2e_fail "no table"; }
sed -n '/to PONG.*speedup/,/^$/p' "$out" >&2
[ -s "$res" ] || e2e_fail "no results in $res"
val() { sed -n "s/^$1=//p" "$res"; }
untraced=$(val sl_untraced_ms) traced=$(val sl_traced_ms)
[ -n "$untraced" ] && [ -n "$traced" ] || e2e_fail "results: $(cat "$res")"
[ "$traced" -lt "$untraced" ] ||
    e2e_fail "the traced deploy ($traced ms) was not faster than the untraced one ($untraced ms)"
[ "$(val delta_traced_first)" = 1 ] && [ "$(val delta_traced_contents)" -gt 0 ] ||
    e2e_fail "the delta does not send traced contents first: $(cat "$res")"
val delta_traced_paths | tr , '\n' | grep -q 'bin/redis' ||
    e2e_fail "redis' binary is not among the traced contents: $(val delta_traced_paths)"
e2e_log "demo: PONG traced $traced ms < untraced $untraced ms;" \
    "$(val delta_traced_contents) of $(val delta_contents) contents traced, sent first"
