#!/usr/bin/env bash
# Scenario: node setup. `ctr-starlight install` on `containerd config default` output, twice
# (one entry, second run "unchanged"), then a real containerd started with that file (own
# root/state/sockets, CRI disabled) next to a real starlight-daemon on the snapshotter socket:
# `containerd config dump` keeps the CRI settings and `ctr plugins ls` lists the starlight
# snapshotter as ok. Uninstall restores the file byte for byte. Also: the daemon's /metrics.
. "$(dirname "$0")/../lib.sh"
e2e_require containerd ctr curl "$SL_BIN/ctr-starlight" "$SL_BIN/starlight-daemon"
_e2e_in_root_netns || e2e_fail "containerd must not start inside a network namespace"
e2e_tmpdir >/dev/null
CS="$SL_BIN/ctr-starlight"
W="$E2E_DIR/install"
C="$W/containerd"
mkdir -p "$C/root" "$C/state" "$C/opt"
CFG="$C/config.toml"
SNAP="$W/snap.sock"
CTL="$W/ctl.sock"
ADDR="$C/containerd.sock"

# The packaged default, with this run's paths and the CRI plugin off (it wants CNI).
containerd config default |
    sed -e "s|^root = .*|root = \"$C/root\"|" -e "s|^state = .*|state = \"$C/state\"|" \
        -e "s|^disabled_plugins = \[\]|disabled_plugins = [\"io.containerd.grpc.v1.cri\"]|" \
        -e "s|\"/run/containerd/containerd.sock\"|\"$ADDR\"|" \
        -e "s|\"/opt/containerd\"|\"$C/opt\"|" >"$CFG"
grep -q "^root = \"$C/root\"" "$CFG" && grep -q "\"$ADDR\"" "$CFG" ||
    e2e_fail "could not adapt containerd config default"
cp "$CFG" "$W/orig.toml"

# --dry-run writes nothing and shows the diff.
"$CS" install --containerd-config "$CFG" --snapshotter-socket "$SNAP" --dry-run >"$W/dry.out"
cmp -s "$CFG" "$W/orig.toml" || e2e_fail "--dry-run changed the file"
grep -q '^+\[proxy_plugins.starlight\]' "$W/dry.out" || e2e_fail "dry-run diff: $(cat "$W/dry.out")"
grep -q '^-      snapshotter = "overlayfs"' "$W/dry.out" || e2e_fail "dry-run diff lacks the CRI line"

"$CS" install --containerd-config "$CFG" --snapshotter-socket "$SNAP" >"$W/i1.out"
grep -q updated "$W/i1.out" || e2e_fail "first install: $(cat "$W/i1.out")"
cmp -s "$CFG.starlight-backup" "$W/orig.toml" || e2e_fail "backup differs from the original"
cp "$CFG" "$W/installed.toml"
"$CS" install --containerd-config "$CFG" --snapshotter-socket "$SNAP" >"$W/i2.out"
grep -q unchanged "$W/i2.out" || e2e_fail "second install: $(cat "$W/i2.out")"
cmp -s "$CFG" "$W/installed.toml" || e2e_fail "second install changed the file"
[ "$(grep -c '^\[proxy_plugins.starlight\]' "$CFG")" = 1 ] || e2e_fail "proxy plugin not once"
e2e_log "1. install: one entry; second run unchanged"

# The daemon first (containerd dials the proxy plugin lazily), then containerd.
"$SL_BIN/starlight-daemon" --root "$W/root" --control-socket "$CTL" --snapshotter-socket "$SNAP" \
    --containerd-socket "$ADDR" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
e2e_track_pid starlight-daemon $!
e2e_wait_for "the control socket" 15 curl -fsS --unix-socket "$CTL" http://localhost/v1/version
containerd --config "$CFG" >>"$E2E_DIR/logs/containerd.log" 2>&1 &
e2e_track_pid containerd $!
export E2E_CONTAINERD_ADDRESS="$ADDR" E2E_CONTAINERD_STATE="$C/state" E2E_CONTAINERD_ROOT="$C/root"
e2e_wait_for "containerd" 20 ctr --address "$ADDR" version

containerd --config "$CFG" config dump >"$W/dump.toml"
grep -A3 '^ *\[proxy_plugins.starlight\]' "$W/dump.toml" | grep -q "address = \"$SNAP\"" ||
    e2e_fail "config dump lacks the proxy plugin"
# The running containerd has CRI off, so its dump omits the CRI table: dump the same file with
# CRI on to see containerd read our CRI settings.
sed 's|^disabled_plugins = .*|disabled_plugins = []|' "$CFG" >"$W/cri.toml"
containerd --config "$W/cri.toml" config dump >"$W/dump-cri.toml"
grep -q '^ *snapshotter = "starlight"' "$W/dump-cri.toml" || e2e_fail "config dump lacks the CRI snapshotter"
grep -q '^ *disable_snapshot_annotations = false' "$W/dump-cri.toml" ||
    e2e_fail "config dump: disable_snapshot_annotations"
ok=0
for _ in $(seq 50); do
    if ctr --address "$ADDR" plugins ls | grep -Eq 'io\.containerd\.snapshotter\.v1 +starlight +.* ok'; then
        ok=1 && break
    fi
    sleep 0.2
done
ctr --address "$ADDR" plugins ls | grep -E 'starlight|TYPE' >&2
[ "$ok" = 1 ] || e2e_fail "ctr plugins ls: starlight snapshotter not ok"
ctr --address "$ADDR" snapshots --snapshotter starlight ls >/dev/null ||
    e2e_fail "the starlight snapshotter does not answer"
e2e_log "2. containerd runs with the file; plugin starlight ok"

if curl -fsS --unix-socket "$CTL" http://localhost/metrics >"$W/metrics.txt" 2>/dev/null; then
    grep -q '^starlight_snapshotter_calls_total' "$W/metrics.txt" ||
        e2e_fail "metrics lack snapshotter calls: $(head -20 "$W/metrics.txt")"
    e2e_log "3. /metrics: $(grep -c '^starlight_' "$W/metrics.txt") samples"
fi

"$CS" uninstall --containerd-config "$CFG" >"$W/u1.out"
cmp -s "$CFG" "$W/orig.toml" || e2e_fail "uninstall did not restore the file: $(diff "$W/orig.toml" "$CFG")"
"$CS" uninstall --containerd-config "$CFG" | grep -q unchanged || e2e_fail "second uninstall"

# Missing file: install creates a minimal version-2 config, uninstall removes it; k3s template.
"$CS" install --containerd-config "$W/new/config.toml" | grep -q created || e2e_fail "create"
grep -q '^version = 2' "$W/new/config.toml" || e2e_fail "created config lacks version = 2"
"$CS" uninstall --containerd-config "$W/new/config.toml" | grep -q removed || e2e_fail "remove"
[ ! -e "$W/new/config.toml" ] || e2e_fail "uninstall left the created file"
"$CS" install --k3s --containerd-config "$W/k3s/config.toml.tmpl" >/dev/null 2>&1
head -1 "$W/k3s/config.toml.tmpl" | grep -q '^{{ template "base" . }}' || e2e_fail "k3s template"
# Errors: a file that cannot be parsed is refused (exit 1) and left alone.
printf 'version = 2\n[grpc\n' >"$W/bad.toml"
rc=0
"$CS" install --containerd-config "$W/bad.toml" 2>"$W/bad.err" || rc=$?
[ "$rc" = 1 ] && grep -q 'line 2' "$W/bad.err" || e2e_fail "bad file: rc=$rc $(cat "$W/bad.err")"
e2e_log "4. uninstall restored the file byte for byte; create/remove; k3s; refusal"
echo "install: PASS"
