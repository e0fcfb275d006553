#!/usr/bin/env bash
# Scenario: the Kubernetes flows end to end — test API server (kubectl 1.32), starlight-
# controller (TLS webhook + controllers), starlight-daemon with its node watcher, containerd +
# runc, starlight-proxy + PostgreSQL + registry, all on loopback; the script plays kubelet:
#  1. an annotated Pod created with kubectl passes through the webhook (a real AdmissionReview
#     of kubectl's Pod) and is created with starlight-init first; once bound to the node
#     (nodeName patched) the daemon starts the prefetch; starlight-init, run with the injected
#     args, returns once the startup set is local; the app container then starts in
#     containerd namespace k8s.io with the starlight snapshotter; a Deployment whose image
#     changes makes the node running its old pod fetch the new image (controller → Node
#     starlight-c.dev/prewarm → node daemon → starlight-c.dev/prewarmed);
#  2. `kubectl starlight trace IMAGE --node N --wait` runs a trace Job end to end: the Job's
#     Pod (created and run as the Job controller and kubelet would) is traced by the node
#     daemon, which reports to the proxy; the controller writes Reported with the accesses on
#     the Job and the plugin prints it; the next deploy of the image on a clean node gets the
#     traced files first (starlight-init's startup phase comes with the traced prefix, and the
#     proxy's delta ranks the files the container read first, in order).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"
. "$here/../k8s/lib.sh"
. "$here/../webhook/controller.sh"

e2e_require python3 curl openssl skopeo psql kubectl containerd ctr runc
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
CTL_BIN="$SL_BIN/starlight-controller"
INIT="$SL_BIN/starlight-init"
for b in "$CS" "$PX" "$DAEMON" "$CTL_BIN" "$INIT" "$SL_BIN/kubectl-starlight"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
T="python3 $here/../webhook/tools.py"
W="$E2E_DIR/work"
mkdir -p "$W"
P="linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')"

pull_cloud_start
e2e_push_image features features:src
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/features:src" "$R/features:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify features"; }
IMG="$R/features:sl"
e2e_push_image busybox busybox:src
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/busybox:src" "$R/busybox:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify busybox"; }
NEW="$R/busybox:sl"

k8s_apiserver_start --token daemon-token=node --token ctl-token=controller
k8s_kubeconfig "$W/daemon.kubeconfig" daemon-token
k8s_kubeconfig "$W/controller.kubeconfig" ctl-token
K() { k8s_kubectl "$@"; }
NODE=node-e2e
K create -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Node","metadata":{"name":"$NODE","labels":{"kubernetes.io/hostname":"$NODE"}}}
Y

# the node: daemon (node watcher) + containerd
node_start() {
    mkdir -p "$E2E_DIR/root"
    NODE_NAME=$NODE "$DAEMON" --root "$E2E_DIR/root" --control-socket "$E2E_DIR/ctl.sock" \
        --snapshotter-socket "$E2E_DIR/snap.sock" --proxy "$U" \
        --containerd-socket "$E2E_DIR/containerd/containerd.sock" \
        --kubeconfig "$W/daemon.kubeconfig" >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
    PULL_EDGE_DAEMON_PID=$!
    PULL_EDGE_CTL=$E2E_DIR/ctl.sock
    e2e_track_pid starlight-daemon "$PULL_EDGE_DAEMON_PID"
    e2e_wait_for "the control socket" 15 curl -fsS --unix-socket "$PULL_EDGE_CTL" http://localhost/v1/version
    e2e_start_containerd "$E2E_DIR/snap.sock"
    e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots --snapshotter starlight ls
}
node_start
DLOG="$E2E_DIR/logs/starlight-daemon.log"

# the controller
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=starlight-controller.e2e.svc \
    -addext "subjectAltName=DNS:starlight-controller.e2e.svc,IP:127.0.0.1" \
    -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null
wh_start_controller controller --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
    --init-image e2e/starlight-init:1 --proxy "$U" --registry-insecure \
    --kubeconfig "$W/controller.kubeconfig" --lease-namespace default --trace-grace 20s
WP=$WH_WP MP=$WH_MP
e2e_wait_for "the controller" 15 sh -c "curl -fsS http://127.0.0.1:$MP/readyz | grep -q leader"

# ---------------------------------------------------------------- 1: pod → webhook → node
cat >"$W/pod.yaml" <<Y
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations: {starlight-c.dev/provision: "true"}
spec:
  containers:
  - {name: app, image: "$IMG"}
Y
K create --dry-run=client -o json -f "$W/pod.yaml" >"$W/pod.json"
$T review default CREATE "$W/pod.json" uid-web >"$W/pod.rv"
curl -fsS --cacert "$W/tls.crt" --resolve "starlight-controller.e2e.svc:$WP:127.0.0.1" \
    "https://starlight-controller.e2e.svc:$WP/mutate" -H 'Content-Type: application/json' \
    --data-binary "@$W/pod.rv" -o "$W/pod.ans"
$T patched "$W/pod.rv" "$W/pod.ans" >"$W/pod.patched.json" || e2e_fail "the webhook did not patch"
K create -f "$W/pod.patched.json" >/dev/null
K get pod web -o json >"$W/web.json"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"]["initContainers"][0]["name"])' "$W/web.json")" = starlight-init ] ||
    e2e_fail "created Pod without starlight-init first"
sleep 1
grep -q "pull $IMG" "$DLOG" && e2e_fail "the daemon pulled before the Pod was bound"
K patch pod web --type=merge -p "{\"spec\":{\"nodeName\":\"$NODE\"}}" >/dev/null
e2e_wait_for "the node daemon's prefetch" 20 grep -q "pull $IMG" "$DLOG"
mapfile -t ARGS < <($T initargs "$W/web.json")
ARGS[1]=$PULL_EDGE_CTL # the hostPath socket on this node
"$INIT" "${ARGS[@]}" >"$W/init1" 2>"$W/init1.err" || { cat "$W/init1.err" >&2; e2e_fail "starlight-init"; }
grep -q "^$IMG startup " "$W/init1" || e2e_fail "starlight-init: no startup line: $(cat "$W/init1")"
out=$(e2e_ctr_timeout 60 -n k8s.io run --rm --snapshotter starlight "$IMG" web-app \
    cat /data/owned.txt 2>&1) || e2e_fail "app container: $out"
e2e_log "1. kubectl Pod → webhook → bound → daemon prefetch; starlight-init: $(grep startup "$W/init1" | cut -d' ' -f2-); app ran in k8s.io"

# ---------------------------------------------------------------- 1b: update pre-warming
K create -f - >/dev/null <<Y
{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"upd","namespace":"default"},
 "spec":{"replicas":1,"selector":{"matchLabels":{"app":"upd"}},
  "template":{"metadata":{"labels":{"app":"upd"},"annotations":{"starlight-c.dev/provision":"true"}},
   "spec":{"containers":[{"name":"app","image":"$IMG"}]}}}}
Y
K create -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"upd-1","namespace":"default",
  "labels":{"app":"upd","starlight-c.dev/provision":"true"}},
 "spec":{"nodeName":"$NODE","containers":[{"name":"app","image":"$IMG"}]}}
Y
K set image deployment/upd "app=$NEW" >/dev/null
prewarmed() {
    K get node "$NODE" -o jsonpath='{.metadata.annotations.starlight-c\.dev/prewarmed}' 2>/dev/null |
        grep -qF "$NEW"
}
e2e_wait_for "the node to pre-warm $NEW" 30 prewarmed
grep -q "pull $NEW" "$DLOG" || e2e_fail "the daemon did not pull $NEW"
imgs=$(e2e_ctr -n k8s.io images ls -q) || e2e_fail "ctr images ls"
grep -qx "$NEW" <<<"$imgs" || e2e_fail "$NEW not in k8s.io after pre-warming"
e2e_log "1b. Deployment upd: $IMG -> $NEW: controller wrote the Node's prewarm, the daemon fetched it ($(K get node "$NODE" -o jsonpath='{.metadata.annotations.starlight-c\.dev/prewarmed}'))"

# ---------------------------------------------------------------- 2: kubectl starlight trace
export PATH="$SL_BIN:$PATH"
KUBECONFIG=$K8S_KUBECONFIG kubectl starlight trace "$IMG" --node "$NODE" --duration 4s --wait \
    --timeout 60s >"$W/plugin.out" 2>&1 &
plugin=$!
job=
for _ in $(seq 100); do
    job=$(K get jobs -l starlight-c.dev/trace=true -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
    [ -n "$job" ] && break
    sleep 0.2
done
[ -n "$job" ] || e2e_fail "no trace Job: $(cat "$W/plugin.out")"
# the Job controller's part: a Pod from the template; the scheduler's: bind it to the node
K get job "$job" -o json | python3 -c '
import json, sys
j = json.load(sys.stdin)
t = j["spec"]["template"]
m = dict(t["metadata"]); m["name"] = j["metadata"]["name"] + "-pod"; m["namespace"] = "default"
m.setdefault("labels", {})["batch.kubernetes.io/job-name"] = j["metadata"]["name"]
spec = dict(t["spec"]); spec["nodeName"] = spec.pop("nodeSelector")["kubernetes.io/hostname"]
json.dump({"apiVersion": "v1", "kind": "Pod", "metadata": m, "spec": spec}, sys.stdout)' >"$W/trace-pod.json"
K create -f "$W/trace-pod.json" >/dev/null
TUID=$(K get pod "$job-pod" -o jsonpath='{.metadata.uid}')
e2e_wait_for "the trace window" 15 grep -q "trace window opened for pod default/$job-pod" "$DLOG"
# kubelet's part: the container, in a cgroup named after the Pod's uid, reading in this order
order=(data/many/file-07.txt data/owned.txt data/many/file-03.txt)
script=""
for f in "${order[@]}"; do script="$script cat /$f >/dev/null; sleep 0.1;"; done
e2e_ctr_timeout 60 -n k8s.io run --rm --snapshotter starlight "$IMG" "pod$TUID-app" \
    sh -c "$script echo ok" >"$W/run.out" 2>&1 || { cat "$W/run.out" >&2; e2e_fail "traced container"; }
e2e_wait_for "the node's trace report" 20 sh -c "kubectl --kubeconfig '$K8S_KUBECONFIG' get events -o jsonpath='{range .items[*]}{.involvedObject.name}/{.reason}{\"\\n\"}{end}' | grep -q '^$job-pod/StarlightTraceReported\$'"
# the Job controller again: the Pod ended, the Job is Complete
K patch job "$job" --subresource=status --type=merge \
    -p '{"status":{"conditions":[{"type":"Complete","status":"True"}],"succeeded":1}}' >/dev/null
wait "$plugin" || { cat "$W/plugin.out" >&2; e2e_fail "kubectl starlight trace --wait"; }
grep -q ': Reported: [1-9][0-9]* accesses' "$W/plugin.out" || e2e_fail "plugin: $(cat "$W/plugin.out")"
e2e_log "2a. $(tail -1 "$W/plugin.out")"

# the next deploy on a clean node: the traced files first
curl -fsS "$U/starlight/delta?to=$IMG&platform=$P&insecure=1" -o "$W/delta" || e2e_fail "GET delta"
pull_delta_traced "$W/delta" "${order[@]}" >"$W/traced.out" || e2e_fail "delta not in the traced order"
# a clean node: no Pod bound to it any more (else its node watcher would prefetch their
# images before starlight-init asks, and the init would find the image already local)
for pod in $(K get pods -o name); do K delete "$pod" >/dev/null || e2e_fail "delete $pod"; done
left=$(K get pods -o name) || e2e_fail "list pods"
[ -z "$left" ] || e2e_fail "pods left: $left"
pull_edge_stop
rm -rf "$E2E_DIR/root"
node_start
ARGS[1]=$PULL_EDGE_CTL
"$INIT" "${ARGS[@]}" >"$W/init2" 2>"$W/init2.err" || { cat "$W/init2.err" >&2; e2e_fail "starlight-init (clean node)"; }
sl=$(grep "^$IMG startup " "$W/init2") || e2e_fail "no startup line: $(cat "$W/init2")"
python3 - "$sl" <<'PY' || e2e_fail "clean node: startup must come with the traced prefix: $sl"
import re, sys
t = re.search(r"traced=(\d+)/(\d+)", sys.argv[1]); c = re.search(r"contents=(\d+)/(\d+)", sys.argv[1])
assert t and t.group(1) == t.group(2) and int(t.group(2)) >= 3, sys.argv[1]
assert int(c.group(1)) < int(c.group(2)), sys.argv[1]
PY
e2e_log "2b. clean node: $(tr '\n' ' ' <"$W/traced.out"); starlight-init: $(echo "$sl" | cut -d' ' -f2-)"
