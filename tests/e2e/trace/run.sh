#!/usr/bin/env bash
# Scenario: startup traces end to end, on real containerd + runc, starlight-daemon,
# starlight-proxy, PostgreSQL and a registry, all on loopback:
#  1. features converted, notified and pulled through the daemon;
#  2. `ctr-starlight optimizer on --group g1`, then `ctr run --snapshotter starlight` of a
#     script reading four files of two layers in a known order, and of busybox (another
#     image, same group), then `optimizer off`: two finished traces whose cgroups name the
#     containers;
#  3. the daemon restarts: the trace is still there;
#  4. `ctr-starlight report` to a dead proxy fails and keeps the trace;
#  5. `ctr-starlight report` to the proxy: one group with both traces (joint optimisation);
#     the traces are gone from the daemon, and the proxy's
#     delta for features (nothing held) sends the traced contents first, the four files in the
#     order the script read them.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

pull_node_prereqs
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"

pull_cloud_start
pull_convert features busybox

pull_edge_start "$U"
D=(--daemon "$PULL_EDGE_CTL")
SN=(--snapshotter starlight)
"$CS" pull "${D[@]}" --insecure "$R/features:sl" >"$W/pull" 2>"$W/pull.err" ||
    { cat "$W/pull.err" >&2; e2e_fail "pull features"; }
"$CS" pull "${D[@]}" --insecure "$R/busybox:sl" >"$W/pull.bb" 2>"$W/pull.err" ||
    { cat "$W/pull.err" >&2; e2e_fail "pull busybox"; }
e2e_log "1. features and busybox converted, notified, pulled: $(cat "$W/pull")"

# ---------------------------------------------------------------- 2: record
traces() { "$CS" traces "${D[@]}" --json; }
ntraces() { traces | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["traces"]))'; }
order=(data/many/file-07.txt data/owned.txt data/many/file-03.txt data/replaced.txt)
script=""
for f in "${order[@]}"; do script="$script cat /$f >/dev/null; sleep 0.1;"; done
"$CS" optimizer "${D[@]}" on --group g1 | grep -q 'optimizer on (group g1)' || e2e_fail "optimizer on"
name="sl-trace-$$"
e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/features:sl" "$name" sh -c "$script echo done" \
    >"$W/run.out" 2>&1 || { cat "$W/run.out" >&2; e2e_fail "ctr run features"; }
e2e_ctr_timeout 60 run --rm "${SN[@]}" "$R/busybox:sl" "$name-bb" cat /etc/group \
    >"$W/run.out" 2>&1 || { cat "$W/run.out" >&2; e2e_fail "ctr run busybox"; }
"$CS" optimizer "${D[@]}" off >"$W/off.out" || e2e_fail "optimizer off"
traces >"$W/traces.json"
python3 - "$W/traces.json" "$name" <<'PY' || e2e_fail "traces after the run: $(cat "$W/traces.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert not d["optimizer"]["enabled"], d
mine = [t for t in d["traces"] if t["cgroup"].endswith(sys.argv[2])]
assert len(mine) == 1 and mine[0]["finished"] and mine[0]["group"] == "g1", d
assert mine[0]["accesses"] >= 4, d
bb = [t for t in d["traces"] if t["cgroup"].endswith(sys.argv[2] + "-bb")]
assert len(bb) == 1 and bb[0]["finished"] and bb[0]["group"] == "g1", d
assert len(d["traces"]) == 2, d
PY
cgroups=$(python3 -c 'import json,sys; print(" ".join("%s(%d)" % (t["cgroup"], t["accesses"]) for t in json.load(open(sys.argv[1]))["traces"]))' "$W/traces.json")
e2e_log "2. optimizer on → ctr run → off: $(cat "$W/off.out"): $cgroups"

# ---------------------------------------------------------------- 3: restart
n_before=$(ntraces)
pull_edge_daemon_stop
pull_edge_daemon_start "$U"
[ "$(ntraces)" = "$n_before" ] || e2e_fail "the daemon restart lost traces"
e2e_log "3. daemon restarted: $n_before trace(s) kept"

# ---------------------------------------------------------------- 4: dead proxy
dead=$(e2e_free_port)
if "$CS" report "${D[@]}" --proxy "http://127.0.0.1:$dead" >"$W/dead.out" 2>&1; then
    e2e_fail "report to a dead proxy succeeded: $(cat "$W/dead.out")"
fi
[ "$(ntraces)" = "$n_before" ] || e2e_fail "a failed report deleted traces"
e2e_log "4. report to a dead proxy failed ($(tail -1 "$W/dead.out")); traces kept"

# ---------------------------------------------------------------- 5: report, then the order
"$CS" report "${D[@]}" >"$W/report.out" 2>&1 || { cat "$W/report.out" >&2; e2e_fail "report"; }
grep -q '^reported 2 traces of 2 images in 1 groups' "$W/report.out" ||
    e2e_fail "two images in one group should make one group: $(cat "$W/report.out")"
[ "$(ntraces)" = 0 ] || e2e_fail "traces left after a successful report"
curl -fsS "$U/starlight/delta?to=$R/features:sl&platform=$P&insecure=1" -o "$W/delta" ||
    e2e_fail "GET /starlight/delta"
pull_delta_traced "$W/delta" "${order[@]}" >"$W/delta.check" ||
    e2e_fail "the delta does not send the traced contents first, in the recorded order"
e2e_log "5. $(cat "$W/report.out"); delta: traced first, in the recorded order" \
    "($(grep -E '^(traced_contents|contents|positions)=' "$W/delta.check" | tr '\n' ' '))"
