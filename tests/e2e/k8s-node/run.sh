#!/usr/bin/env bash
# Scenario: the daemon's Kubernetes node watcher, on the test API server + real containerd +
# starlight-daemon + starlight-proxy + registry + PostgreSQL, all on loopback:
#  1. a Pod created with kubectl, labelled starlight-c.dev/provision=true, is left alone while
#     unbound; once bound to the node (spec.nodeName patched) the daemon pulls its app and init
#     images (not starlight-init's) into containerd namespace k8s.io: `ctr -n k8s.io images ls`
#     lists them, /v1/status has their layers complete, the Pod gets StarlightPrefetched Events;
#     a bound Pod without the label is ignored; a watch event whose Pod has no
#     metadata.namespace (hostile API data) is ignored with a log line, the daemon serves on;
#  2. a Pod annotated starlight-c.dev/trace=true opens a trace window: a container whose cgroup
#     carries the Pod's uid (as kubelet names them) reads files; after trace-duration the trace
#     is reported to the proxy and the Pod gets a StarlightTraceReported Event naming it;
#  3. the Node's starlight-c.dev/prewarm annotation makes the daemon pull the `to` image, which
#     then appears in starlight-c.dev/prewarmed (merge patch);
#  4. /metrics counts the watcher's pulls; the request log shows the calls the daemon makes
#     (for RBAC); SIGTERM stops the daemon cleanly.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"
. "$here/../k8s/lib.sh"

e2e_require python3 curl skopeo psql kubectl
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
T="$SL_BIN/sl-k8s-tool"
for b in "$CS" "$PX" "$DAEMON" "$T"; do
  [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
W="$E2E_DIR/work"
mkdir -p "$W"

pull_cloud_start
for img in busybox features; do
  e2e_push_image "$img" "$img:src"
  "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify $img"; }
done
# a second reference for the prewarm check (same contents, another tag)
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
  "$R/busybox:src" "$R/busybox:next" >/dev/null 2>"$W/convert.log" ||
  { cat "$W/convert.log" >&2; e2e_fail "convert busybox:next"; }

DUSER=system:serviceaccount:starlight:starlight-daemon
k8s_apiserver_start --token "daemon-token=$DUSER"
k8s_kubeconfig "$W/daemon.kubeconfig" daemon-token
NODE=node-e2e
k8s_kubectl apply -f - >/dev/null <<Y
apiVersion: v1
kind: Node
metadata: {name: $NODE, labels: {kubernetes.io/hostname: $NODE}}
Y

ROOT="$E2E_DIR/root"
CTL="$E2E_DIR/ctl.sock"
SNAP="$E2E_DIR/snap.sock"
CTRD_SOCK="$E2E_DIR/containerd/containerd.sock"
NODE_NAME=$NODE "$DAEMON" --root "$ROOT" --control-socket "$CTL" --snapshotter-socket "$SNAP" \
  --proxy "$U" --containerd-socket "$CTRD_SOCK" --kubeconfig "$W/daemon.kubeconfig" \
  >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
DPID=$!
e2e_track_pid starlight-daemon "$DPID"
e2e_wait_for "the control socket" 15 curl -fsS --unix-socket "$CTL" http://localhost/v1/version
e2e_start_containerd "$SNAP"
e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots --snapshotter starlight ls
DLOG="$E2E_DIR/logs/starlight-daemon.log"
e2e_wait_for "the node watcher's watches" 15 grep -q 'watch=true' "$K8S_LOG"

k8s_images() { e2e_ctr -n k8s.io images ls -q; }
has_image() { k8s_images | k8s_grep -x "$1"; }

# ---------------------------------------------------------------- 1: bound pods
k8s_kubectl apply -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, starlight-c.dev/provision: "true"}
  annotations: {starlight-c.dev/provision: "true"}
spec:
  initContainers:
  - {name: starlight-init, image: "127.0.0.1:9/starlight-init:none"}
  - {name: setup, image: "$R/features:sl"}
  containers:
  - {name: app, image: "$R/busybox:sl"}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, labels: {app: plain}}
spec:
  nodeName: $NODE
  containers:
  - {name: app, image: "$R/never-pulled:sl"}
Y
sleep 2
grep -q "pull $R/busybox:sl" "$DLOG" && e2e_fail "pulled before the pod was bound"
"$T" --kubeconfig "$K8S_KUBECONFIG" patch /api/v1/namespaces/default/pods/web \
  "{\"spec\":{\"nodeName\":\"$NODE\"}}" >/dev/null
t0=$(date +%s%N)
e2e_wait_for "busybox:sl in k8s.io" 60 has_image "$R/busybox:sl"
e2e_wait_for "features:sl in k8s.io" 60 has_image "$R/features:sl"
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
grep -q "pull 127.0.0.1:9/starlight-init" "$DLOG" && e2e_fail "starlight-init's image was pulled"
grep -q "never-pulled" "$DLOG" && e2e_fail "a pod without the opt-in label was pulled"
e2e_wait_for "pulls complete in /v1/status" 60 sh -c \
  "curl -fsS --unix-socket '$CTL' http://localhost/v1/status | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"layers\"] and all(l[\"complete\"] for l in d[\"layers\"]) and not d[\"pulls\"]'"
ev_reasons() { k8s_kubectl get events -o jsonpath='{range .items[*]}{.involvedObject.name}/{.reason}{"\n"}{end}'; }
e2e_wait_for "StarlightPrefetched events" 15 sh -c "[ \$(kubectl --kubeconfig '$K8S_KUBECONFIG' get events -o jsonpath='{range .items[*]}{.involvedObject.name}/{.reason}{\"\\n\"}{end}' | grep -c '^web/StarlightPrefetched\$') = 2 ]"
ev_reasons | k8s_grep -x web/StarlightPrefetching || e2e_fail "no StarlightPrefetching event: $(ev_reasons | tr '\n' ' ')"
e2e_log "1. bound pod: both images in k8s.io ${dt} ms after the bind: $(k8s_images | tr '\n' ' ')"

# a Pod without metadata.namespace in a watch event: ignored with a log line, no crash
curl -sf -X POST -H 'Content-Type: application/json' \
  "$K8S_URL/_test/raw-event?resource=pods" -d "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",
  \"metadata\":{\"name\":\"nons\",\"uid\":\"0000-nons\",
  \"labels\":{\"starlight-c.dev/provision\":\"true\"}},
  \"spec\":{\"nodeName\":\"$NODE\",\"containers\":[{\"name\":\"a\",\"image\":\"$R/nons:sl\"}]}}" \
  >/dev/null || e2e_fail "raw-event hook failed"
e2e_wait_for "the no-namespace Pod to be ignored" 15 grep -q \
  "ignoring a Pod without metadata.uid, .name or .namespace (name 'nons'" "$DLOG"
kill -0 "$DPID" 2>/dev/null || e2e_fail "the daemon died on a Pod without a namespace"
curl -fsS --unix-socket "$CTL" http://localhost/v1/version >/dev/null ||
  e2e_fail "the daemon stopped serving after a Pod without a namespace"
grep -q "pull $R/nons:sl" "$DLOG" && e2e_fail "a Pod without a namespace was pulled"
e2e_log "1b. a watched Pod without metadata.namespace is ignored with a log line"

# ---------------------------------------------------------------- 2: trace window
k8s_kubectl apply -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata:
  name: traced
  labels: {starlight-c.dev/provision: "true"}
  annotations: {starlight-c.dev/trace: "true", starlight-c.dev/trace-duration: "4s",
                starlight-c.dev/trace-group: "k8s-e2e"}
spec:
  nodeName: $NODE
  containers:
  - {name: app, image: "$R/features:sl"}
Y
UID_T=$(k8s_kubectl get pod traced -o jsonpath='{.metadata.uid}')
e2e_wait_for "the trace window" 15 grep -q "trace window opened for pod default/traced" "$DLOG"
# kubelet puts the containers of a Pod under a cgroup named after its uid
e2e_ctr_timeout 60 -n k8s.io run --rm --snapshotter starlight "$R/features:sl" "pod$UID_T-app" \
  sh -c 'cat /data/owned.txt /data/many/file-03.txt >/dev/null; echo ok' >"$W/run.out" 2>&1 ||
  { cat "$W/run.out" >&2; e2e_fail "ctr run in the trace window"; }
e2e_wait_for "StarlightTraceReported" 20 sh -c "kubectl --kubeconfig '$K8S_KUBECONFIG' get events -o jsonpath='{range .items[*]}{.reason} {.message}{\"\\n\"}{end}' | grep -q '^StarlightTraceReported reported [1-9][0-9]* traces (1 of this pod'"
msg=$(k8s_kubectl get events -o jsonpath='{range .items[*]}{.reason} {.message}{"\n"}{end}' | grep '^StarlightTraceReported')
e2e_log "2. trace window: $msg"

# ---------------------------------------------------------------- 3: node prewarm
pw="[{\"from\":\"$R/busybox:sl\",\"to\":\"$R/busybox:next\",\"owner\":\"default/Deployment/web\",\"generation\":2}]"
k8s_kubectl annotate node "$NODE" "starlight-c.dev/prewarm=$pw" >/dev/null
e2e_wait_for "busybox:next in k8s.io" 60 has_image "$R/busybox:next"
e2e_wait_for "the prewarmed annotation" 15 sh -c \
  "kubectl --kubeconfig '$K8S_KUBECONFIG' get node $NODE -o jsonpath='{.metadata.annotations.starlight-c\\.dev/prewarmed}' | grep -qF '\"$R/busybox:next\"'"
python3 - "$K8S_LOG" <<'PY' || e2e_fail "the prewarmed annotation was not written with a merge patch"
import json, sys
es = [json.loads(l) for l in open(sys.argv[1])]
assert any(e["method"] == "PATCH" and e["path"].startswith("/api/v1/nodes/") and
           e["contentType"] == "application/merge-patch+json" and
           "fieldManager=starlight-daemon" in e["query"] for e in es)
PY
e2e_log "3. prewarm: $R/busybox:next pulled and recorded on the node"

# ---------------------------------------------------------------- 4: metrics, RBAC, stop
m=$(curl -fsS --unix-socket "$CTL" http://localhost/metrics)
echo "$m" | k8s_grep '^starlight_k8s_pulls_total{reason="pod",result="ok"} 3' ||
  e2e_fail "pod pulls metric: $(echo "$m" | grep starlight_k8s_pulls_total)"
echo "$m" | k8s_grep '^starlight_k8s_pulls_total{reason="prewarm",result="ok"} 1' ||
  e2e_fail "prewarm pulls metric"
echo "$m" | k8s_grep '^starlight_k8s_trace_reports_total{result="ok"} 1' || e2e_fail "trace metric"
python3 - "$K8S_LOG" "$DUSER" >"$W/rbac.txt" <<'PY'
import json, re, sys
seen = set()
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["user"] != sys.argv[2]:
        continue
    m = re.match(r"^/api/v1/(?:namespaces/[^/]+/)?([a-z]+)(/[^/]+)?(/status)?$", e["path"])
    if not m:
        continue
    verb = {"GET": "watch" if "watch=true" in e["query"] else ("get" if m.group(2) else "list"),
            "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[e["method"]]
    seen.add("%s %s" % (m.group(1), verb))
print("\n".join(sorted(seen)))
PY
e2e_log "4. daemon API calls: $(tr '\n' ',' <"$W/rbac.txt")"
# exactly the rules docs/kubernetes.md §4 lists for the daemon (events patch: repeats only)
want="events create,nodes get,nodes list,nodes patch,nodes watch,pods list,pods watch,"
[ "$(grep -v '^events patch$' "$W/rbac.txt" | tr '\n' ',')" = "$want" ] ||
  e2e_fail "daemon API calls differ from the documented RBAC: $(tr '\n' ',' <"$W/rbac.txt")"
kill -TERM "$DPID"
rc=0; wait "$DPID" || rc=$?
[ "$rc" = 0 ] || e2e_fail "starlight-daemon exited with $rc"
grep -q "stopped" "$DLOG" || e2e_fail "daemon did not log its stop"
e2e_log "k8s-node: all checks passed"
