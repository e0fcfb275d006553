#!/usr/bin/env bash
# Scenario: starlight-controller against the test Kubernetes API server (tests/e2e/k8s) driven
# by the real kubectl 1.32:
#  1. an annotated Pod as kubectl sends it (create --dry-run=client -o json) goes through the
#     TLS webhook as an AdmissionReview; the patched Pod is created with kubectl and comes out
#     with starlight-init first;
#  2. two controllers (each with its own token) elect one leader with a Lease; only the holder
#     writes (checked in the API server's request log);
#  3. update pre-warming: a Deployment's image changes → the node running its old pod gets
#     starlight-c.dev/prewarm {from, to, owner, generation};
#  4. the leader is killed: the other takes over within the lease duration and handles the
#     next image change; a 410 inside the watch stream (ERROR event) forces a relist and the
#     change made meanwhile is not missed; a controller restarted after changes it did not
#     see derives them again (level-triggered) without duplicate writes;
#  5. trace Jobs: a Complete Job whose Pod has the node's StarlightTraceReported Event gets
#     starlight-c.dev/trace-result {"phase":"Reported","accesses":N} and an Event; a Failed
#     Job gets phase Failed;
#  6. `kubectl starlight trace IMAGE --node N --wait` (the real kubectl finding the plugin on
#     PATH) creates the trace Job — the same Job as manifests/trace-job.yaml, which kubectl
#     validates — and prints the outcome once the node (simulated here: Pod, Event, Job
#     completion) has reported; `kubectl starlight status` shows node-1's pre-warming.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../k8s/lib.sh"
. "$here/../webhook/controller.sh"

e2e_require python3 curl openssl kubectl
CTL_BIN="$SL_BIN/starlight-controller"
[ -x "$CTL_BIN" ] || e2e_skip "build first: $CTL_BIN missing"
T="python3 $here/../webhook/tools.py"
W="$(e2e_tmpdir)/work"
mkdir -p "$W"

k8s_apiserver_start --token ctl-a=ctl-a --token ctl-b=ctl-b --token ctl-c=ctl-c --bookmark-ms 500
kc() { # kc USER: a kubeconfig for that token
    sed "s/token: e2e-token/token: $1/" "$K8S_KUBECONFIG" >"$W/kubeconfig-$1"
    echo "$W/kubeconfig-$1"
}
K() { k8s_kubectl "$@"; }
jget() { # jget KIND NAME PYEXPR: evaluate PYEXPR on the object `o` (kubectl get -o json)
    K get "$1" "$2" -o json 2>/dev/null | python3 -c "import json,sys; o=json.load(sys.stdin); print($3)"
}

# ---------------------------------------------------------------- 1: kubectl → webhook
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=starlight-controller.e2e.svc \
    -addext "subjectAltName=DNS:starlight-controller.e2e.svc,IP:127.0.0.1" \
    -keyout "$W/tls.key" -out "$W/tls.crt" 2>/dev/null
cat >"$W/pod.yaml" <<'Y'
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  annotations: {starlight-c.dev/provision: "true"}
spec:
  containers:
  - {name: app, image: "registry.e2e:5000/app:1"}
Y
K create --dry-run=client -o json -f "$W/pod.yaml" >"$W/pod.json"
$T review default CREATE "$W/pod.json" uid-kubectl >"$W/pod.rv"
start_controller() { # NAME USER [ARGS...]: starts a controller; sets WP_<NAME>, MP_<NAME>
    local name=$1 user=$2
    shift 2
    wh_start_controller "$name" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
        --init-image e2e/starlight-init:1 --kubeconfig "$(kc "$user")" \
        --lease-namespace default --lease-duration 3s --renew-deadline 2s --retry-period 500ms \
        --trace-grace 3s --identity "$name" "$@"
    printf -v "WP_$name" %s "$WH_WP"
    printf -v "MP_$name" %s "$WH_MP"
    printf -v "PID_$name" %s "$WH_PID"
}
start_controller a ctl-a
curl -fsS --cacert "$W/tls.crt" --resolve "starlight-controller.e2e.svc:$WP_a:127.0.0.1" \
    "https://starlight-controller.e2e.svc:$WP_a/mutate" -H 'Content-Type: application/json' \
    --data-binary "@$W/pod.rv" -o "$W/pod.ans"
$T patched "$W/pod.rv" "$W/pod.ans" >"$W/pod.patched.json" || e2e_fail "no patch for kubectl's pod"
K create -f "$W/pod.patched.json" >/dev/null
[ "$(jget pod web-0 'o["spec"]["initContainers"][0]["name"]')" = starlight-init ] ||
    e2e_fail "the created Pod has no starlight-init first"
[ "$(jget pod web-0 'o["metadata"]["labels"]["starlight-c.dev/provision"]')" = true ] ||
    e2e_fail "the created Pod lacks the opt-in label"
# namespace opt-in by label, read through the API (a Pod without the annotation)
K create -f - >/dev/null <<'Y'
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"warm","labels":{"starlight-c.dev/provision":"enabled"}}}
Y
$T pod plain none registry.e2e:5000/app:1 >"$W/plain.json"
for ns in warm default; do
    $T review "$ns" CREATE "$W/plain.json" "uid-$ns" >"$W/ns-$ns.rv"
    curl -fsS --cacert "$W/tls.crt" --resolve "starlight-controller.e2e.svc:$WP_a:127.0.0.1" \
        "https://starlight-controller.e2e.svc:$WP_a/mutate" -H 'Content-Type: application/json' \
        --data-binary "@$W/ns-$ns.rv" -o "$W/ns-$ns.ans"
done
$T patched "$W/ns-warm.rv" "$W/ns-warm.ans" >/dev/null || e2e_fail "labelled namespace: no patch"
rc=0 && $T patched "$W/ns-default.rv" "$W/ns-default.ans" >/dev/null || rc=$?
[ "$rc" = 3 ] || e2e_fail "unlabelled namespace: patched"
e2e_log "1. kubectl's Pod → webhook → kubectl create: initContainers[0]=starlight-init, label set; namespace labelled provision=enabled opts its Pods in"

# ---------------------------------------------------------------- 2: two controllers, one leader
start_controller b ctl-b
holder() { jget lease starlight-controller 'o["spec"].get("holderIdentity","")' || true; }
e2e_wait_for "a Lease holder" 15 sh -c "[ -n \"\$(kubectl --kubeconfig '$K8S_KUBECONFIG' get lease starlight-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)\" ]"
h=$(holder)
case "$h" in a_*) LEADER=a STANDBY=b ;; b_*) LEADER=b STANDBY=a ;; *) e2e_fail "holder $h" ;; esac
lmp=MP_$LEADER smp=MP_$STANDBY
[ "$(curl -fsS "http://127.0.0.1:${!lmp}/readyz")" = "ok leader" ] || e2e_fail "leader readyz"
[ "$(curl -fsS "http://127.0.0.1:${!smp}/readyz")" = "ok standby" ] || e2e_fail "standby readyz"
e2e_log "2. Lease held by $h; /readyz: leader / standby"

# ---------------------------------------------------------------- 3: pre-warming
K create -f - >/dev/null <<'Y'
{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"}}
Y
K create -f - >/dev/null <<'Y'
{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
 "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
  "template":{"metadata":{"labels":{"app":"web"},"annotations":{"starlight-c.dev/provision":"true"}},
   "spec":{"containers":[{"name":"app","image":"registry.e2e:5000/app:1"}]}}}}
Y
K create -f - >/dev/null <<'Y'
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-abc","namespace":"default",
  "labels":{"app":"web","starlight-c.dev/provision":"true"}},
 "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.e2e:5000/app:1"}]}}
Y
prewarm() { jget node node-1 'o["metadata"].get("annotations",{}).get("starlight-c.dev/prewarm","")'; }
has_entry() { # FROM TO
    prewarm | python3 -c 'import json,sys; l=json.loads(sys.stdin.read() or "[]"); sys.exit(0 if any(e["from"]==sys.argv[1] and e["to"]==sys.argv[2] and e["owner"]=="default/Deployment/web" for e in l) else 1)' "$1" "$2"
}
sleep 1
[ -z "$(prewarm)" ] || e2e_fail "prewarm before any image change: $(prewarm)"
K set image deployment/web app=registry.e2e:5000/app:2 >/dev/null
e2e_wait_for "node-1's prewarm annotation (app:1 -> app:2)" 15 has_entry registry.e2e:5000/app:1 registry.e2e:5000/app:2
e2e_log "3. Deployment image app:1 → app:2: node-1 prewarm=$(prewarm)"
writers() { # users that wrote Nodes or Jobs
    curl -fsS "$K8S_URL/_test/log" | python3 -c 'import json,sys; print(" ".join(sorted({r["user"] for r in json.load(sys.stdin) if r["method"] in ("PATCH","PUT") and ("/nodes/" in r["path"] or "/jobs/" in r["path"])})))'
}
[ "$(writers)" = "ctl-$LEADER" ] || e2e_fail "writers: $(writers) (leader ctl-$LEADER)"

# ---------------------------------------------------------------- 4: failover, 410, restart
pidv=PID_$LEADER
t0=$(date +%s.%N)
kill -KILL "${!pidv}"
wait "${!pidv}" 2>/dev/null || true
e2e_wait_for "the standby to take over" 10 sh -c "curl -fsS http://127.0.0.1:${!smp}/readyz | grep -q leader"
t1=$(date +%s.%N)
took=$(python3 -c "print('%.1f' % ($t1-$t0))")
python3 -c "import sys; sys.exit(0 if $took <= 5.0 else 1)" || e2e_fail "takeover took $took s (lease 3 s)"
case "$(holder)" in "${STANDBY}"_*) ;; *) e2e_fail "holder after takeover: $(holder)" ;; esac
K set image deployment/web app=registry.e2e:5000/app:3 >/dev/null
e2e_wait_for "the new leader's prewarm (app:1 -> app:3)" 15 has_entry registry.e2e:5000/app:1 registry.e2e:5000/app:3
[ "$(writers)" = "$(printf '%s\n' "ctl-$LEADER" "ctl-$STANDBY" | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
    e2e_fail "writers after takeover: $(writers)"
e2e_log "4a. leader $LEADER killed: $STANDBY leads after $took s and wrote app:1 → app:3"

# a 410 inside the open watch streams: the controller relists; a change made meanwhile
curl -fsS -X POST "$K8S_URL/_test/reset-log" >/dev/null
k8s_hook freeze on=1
K set image deployment/web app=registry.e2e:5000/app:4 >/dev/null
k8s_hook force-410 "form=event&active=1&n=4"
k8s_hook freeze on=0
e2e_wait_for "prewarm after the relist (app:1 -> app:4)" 20 has_entry registry.e2e:5000/app:1 registry.e2e:5000/app:4
lists=$(curl -fsS "$K8S_URL/_test/log" | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["method"]=="GET" and r["path"]=="/apis/apps/v1/deployments" and "watch=true" not in r["query"]))')
[ "$lists" -ge 1 ] || e2e_fail "no relist of deployments after the 410"
e2e_log "4b. ERROR 410 in the watch streams: $lists relist(s) of deployments, app:4 not missed"

# the leader goes away cleanly, changes happen, a fresh controller derives them
spid=PID_$STANDBY
kill -TERM "${!spid}"
wait "${!spid}" 2>/dev/null || true
K set image deployment/web app=registry.e2e:5000/app:5 >/dev/null
curl -fsS -X POST "$K8S_URL/_test/reset-log" >/dev/null
start_controller c ctl-c
e2e_wait_for "the restarted controller's prewarm (app:1 -> app:5)" 15 has_entry registry.e2e:5000/app:1 registry.e2e:5000/app:5
n=$(curl -fsS "$K8S_URL/_test/log" | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["method"]=="PATCH" and r["path"].endswith("/nodes/node-1")))')
[ "$n" = 1 ] || e2e_fail "restarted controller wrote node-1 $n times (want 1: app:5 only)"
e2e_log "4c. restarted controller: app:1 → app:5 derived from the lists, one write"

# ---------------------------------------------------------------- 5: trace Jobs
mkjob() { # NAME
    K create -f - >/dev/null <<Y
{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"$1","namespace":"default"},
 "spec":{"backoffLimit":0,"template":{"metadata":{"annotations":{"starlight-c.dev/trace":"true","starlight-c.dev/trace-duration":"5s"}},
   "spec":{"restartPolicy":"Never","nodeName":"node-1","containers":[{"name":"app","image":"registry.e2e:5000/app:5"}]}}}}
Y
}
mkjob trace-ok
mkjob trace-bad
K create -f - >/dev/null <<'Y'
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"trace-ok-x","namespace":"default",
  "labels":{"batch.kubernetes.io/job-name":"trace-ok"}},
 "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.e2e:5000/app:5"}]}}
Y
puid=$(jget pod trace-ok-x 'o["metadata"]["uid"]')
K create -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Event","metadata":{"name":"trace-ok-x.1","namespace":"default",
  "annotations":{"starlight-c.dev/trace-report":"{\"traces\":1,\"podTraces\":1,\"accesses\":17,\"groups\":1}"}},
 "involvedObject":{"kind":"Pod","apiVersion":"v1","namespace":"default","name":"trace-ok-x","uid":"$puid"},
 "reason":"StarlightTraceReported","type":"Normal","source":{"component":"starlight-daemon","host":"node-1"},
 "message":"reported 1 traces (1 of this pod's containers), 17 accesses, 1 groups to http://proxy:8090"}
Y
K patch job trace-ok --subresource=status --type=merge \
    -p '{"status":{"conditions":[{"type":"Complete","status":"True"}],"succeeded":1}}' >/dev/null
K patch job trace-bad --subresource=status --type=merge \
    -p '{"status":{"conditions":[{"type":"Failed","status":"True","reason":"BackoffLimitExceeded","message":"Job has reached the specified backoff limit"}]}}' >/dev/null
result() { jget job "$1" 'o["metadata"].get("annotations",{}).get("starlight-c.dev/trace-result","")'; }
e2e_wait_for "trace-ok's result" 15 sh -c "kubectl --kubeconfig '$K8S_KUBECONFIG' get job trace-ok -o json | grep -q trace-result"
e2e_wait_for "trace-bad's result" 15 sh -c "kubectl --kubeconfig '$K8S_KUBECONFIG' get job trace-bad -o json | grep -q trace-result"
result trace-ok | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["phase"]=="Reported" and r["accesses"]==17 and r["images"]==["registry.e2e:5000/app:5"], r' ||
    e2e_fail "trace-ok: $(result trace-ok)"
result trace-bad | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["phase"]=="Failed" and "backoff" in r["message"], r' ||
    e2e_fail "trace-bad: $(result trace-bad)"
K get events -o json | python3 -c '
import json, sys
ev = json.load(sys.stdin)["items"]
got = {(e["involvedObject"]["name"], e["reason"]) for e in ev if e["involvedObject"]["kind"] == "Job"}
assert ("trace-ok", "StarlightTraceReported") in got and ("trace-bad", "StarlightTraceFailed") in got, got
' || e2e_fail "Job events"
e2e_log "5. trace Jobs: trace-ok $(result trace-ok); trace-bad Failed; Events on both Jobs"

# ---------------------------------------------------------------- 6: kubectl starlight
PLUG="$SL_BIN/kubectl-starlight"
[ -x "$PLUG" ] || e2e_fail "build first: $PLUG missing"
export PATH="$SL_BIN:$PATH"
sed 's/IMAGE # .*/registry.e2e:5000\/app:5/; s/NODE # .*/node-1/' "$E2E_SRC/manifests/trace-job.yaml" \
    >"$W/trace-job.yaml"
K create --dry-run=client -o json -f "$W/trace-job.yaml" >"$W/manifest-job.json" ||
    e2e_fail "kubectl rejects manifests/trace-job.yaml"
simulate_node() { # the node daemon's part for the plugin's Job: Pod, trace Event, completion
    local job="" i puid
    for i in $(seq 100); do
        job=$(K get jobs -l app.kubernetes.io/managed-by=kubectl-starlight -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)
        [ -n "$job" ] && break
        sleep 0.2
    done
    [ -n "$job" ] || return 1
    echo "$job" >"$W/plugin-job"
    K create -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Pod","metadata":{"name":"$job-p","namespace":"default",
  "labels":{"batch.kubernetes.io/job-name":"$job","starlight-c.dev/provision":"true"}},
 "spec":{"nodeName":"node-1","containers":[{"name":"app","image":"registry.e2e:5000/app:5"}]}}
Y
    puid=$(jget pod "$job-p" 'o["metadata"]["uid"]')
    K create -f - >/dev/null <<Y
{"apiVersion":"v1","kind":"Event","metadata":{"name":"$job-p.1","namespace":"default",
  "annotations":{"starlight-c.dev/trace-report":"{\"traces\":1,\"podTraces\":1,\"accesses\":42,\"groups\":1}"}},
 "involvedObject":{"kind":"Pod","apiVersion":"v1","namespace":"default","name":"$job-p","uid":"$puid"},
 "reason":"StarlightTraceReported","type":"Normal","source":{"component":"starlight-daemon","host":"node-1"},
 "message":"reported 1 traces (1 of this pod's containers), 42 accesses, 1 groups to http://proxy:8090"}
Y
    K patch job "$job" --subresource=status --type=merge \
        -p '{"status":{"conditions":[{"type":"Complete","status":"True"}],"succeeded":1}}' >/dev/null
}
simulate_node &
sim=$!
KUBECONFIG=$K8S_KUBECONFIG kubectl starlight trace registry.e2e:5000/app:5 --node node-1 \
    --duration 5s --wait --timeout 30s >"$W/plugin.out" 2>&1 || { cat "$W/plugin.out" >&2; e2e_fail "kubectl starlight trace --wait"; }
wait "$sim" || e2e_fail "node simulation"
grep -q 'Reported: 42 accesses' "$W/plugin.out" || e2e_fail "plugin output: $(cat "$W/plugin.out")"
job=$(cat "$W/plugin-job")
K get job "$job" -o json >"$W/plugin-job.json"
python3 - "$W/plugin-job.json" "$W/manifest-job.json" <<'PY' || e2e_fail "the plugin's Job differs from manifests/trace-job.yaml"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ta, tb = a["spec"]["template"], b["spec"]["template"]
for k in ("starlight-c.dev/provision", "starlight-c.dev/trace", "starlight-c.dev/trace-group"):
    assert ta["metadata"]["annotations"][k] == tb["metadata"]["annotations"][k], k
sl = lambda m: {k: v for k, v in m.get("labels", {}).items() if k.startswith("starlight-c.dev/")}
assert sl(ta["metadata"]) == sl(tb["metadata"]) != {}, (ta["metadata"], tb["metadata"])
assert ta["metadata"]["annotations"]["starlight-c.dev/trace-duration"] == "5s"
assert ta["spec"]["nodeSelector"] == tb["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "node-1"}
assert ta["spec"]["restartPolicy"] == tb["spec"]["restartPolicy"] == "Never"
assert a["spec"]["backoffLimit"] == b["spec"]["backoffLimit"] == 0
assert a["metadata"]["labels"]["starlight-c.dev/trace"] == b["metadata"]["labels"]["starlight-c.dev/trace"] == "true"
assert ta["spec"]["containers"][0]["image"] == tb["spec"]["containers"][0]["image"]
PY
KUBECONFIG=$K8S_KUBECONFIG kubectl starlight status >"$W/status.out" 2>&1 ||
    e2e_fail "kubectl starlight status: $(cat "$W/status.out")"
grep -q '^node-1 .*registry.e2e:5000/app:1 -> registry.e2e:5000/app:5: pending' "$W/status.out" ||
    e2e_fail "status: $(cat "$W/status.out")"
e2e_log "6. kubectl starlight trace --wait: $(tail -1 "$W/plugin.out"); status: $(tail -1 "$W/status.out")"

# ---------------------------------------------------------------- RBAC: what the controllers called
python3 - "$K8S_LOG" <<'PY' >"$W/rbac.out" || e2e_fail "controller requests outside docs/kubernetes.md §4: $(cat "$W/rbac.out")"
import json, sys
allowed = {("", "pods"): {"list", "watch"}, ("", "nodes"): {"get", "patch"},
           ("", "namespaces"): {"get"}, ("", "events"): {"list", "create", "patch"},
           ("apps", "deployments"): {"list", "watch"}, ("apps", "statefulsets"): {"list", "watch"},
           ("apps", "daemonsets"): {"list", "watch"}, ("batch", "jobs"): {"list", "watch", "patch"},
           ("coordination.k8s.io", "leases"): {"get", "create", "update"}}
used, bad = set(), []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("user") not in ("ctl-a", "ctl-b", "ctl-c"):
        continue
    seg = [s for s in r["path"].split("/") if s]
    if seg[:2] == ["api", "v1"]:
        group, rest = "", seg[2:]
    elif seg[:1] == ["apis"] and len(seg) >= 3:
        group, rest = seg[1], seg[3:]
    else:
        bad.append(r["path"]); continue
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    res, name = rest[0], (rest[1] if len(rest) > 1 else None)
    m = r["method"]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(m)
    if m == "GET":
        verb = "get" if name else ("watch" if "watch=true" in r["query"] else "list")
    used.add((group, res, verb))
    if verb not in allowed.get((group, res), set()):
        bad.append("%s %s (%s %s/%s)" % (m, r["path"], verb, group, res))
print(" ".join(sorted("%s%s:%s" % (g + "/" if g else "", res, v) for g, res, v in used)))
if bad:
    print("outside the documented rules:", sorted(set(bad)))
    sys.exit(1)
PY
e2e_log "RBAC: the controllers' requests are within docs/kubernetes.md §4: $(cat "$W/rbac.out")"
