#!/usr/bin/env bash
# Scenario: the test Kubernetes API server (tests/e2e/k8s/apiserver.py) is checked with the real
# kubectl 1.32, then the C client (common/k8s through sl-k8s-tool) is run against it:
#  1. kubectl: get, apply (create, then unchanged), annotate, label, selectors, get -w with a
#     timeout, wait --for=condition, a Job through `create --dry-run=client -o json | create -f -`,
#     delete; the request log records method, path, query, content type and user;
#  2. C client: list with selectors, create/409 AlreadyExists, update with a stale
#     resourceVersion/409 Conflict, merge and JSON patches, Events (a repeat bumps count), 429
#     with Retry-After;
#  3. reflector: a watch stream cut mid-event resumes from its resourceVersion (no relist, the
#     cut event is delivered once); a 410 as an HTTP status and as an ERROR event inside a 200
#     stream (both from a compacted history and forced) each cause one relist, and changes made
#     while the client was blind (delete, add, modify) all arrive, the delete as a synthesised
#     DELETED; a restarted client resumes from the resourceVersion it kept (no list) and gets
#     what changed while it was down, or relists when that version was compacted;
#  4. Lease: two contenders, one leader; the leader killed (SIGKILL), the other takes over
#     within the lease duration; a clean stop releases the Lease;
#  5. in-cluster mode over TLS (generated CA) with a service-account token file; the token is
#     rotated on the server and in the file, and the running watch carries on (re-read on 401).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../k8s/lib.sh"

e2e_require python3 curl kubectl openssl
T="$SL_BIN/sl-k8s-tool"
[ -x "$T" ] || e2e_skip "build first: $T missing"
W="$E2E_DIR/work"
mkdir -p "$W"
k8s_apiserver_start
K=(--kubeconfig "$K8S_KUBECONFIG")
NSP=/api/v1/namespaces/default/pods

log_has() { # log_has JQ-LIKE-PYTHON-EXPR: true when some request log entry satisfies it
  python3 - "$K8S_LOG" "$1" <<'PY'
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(eval(sys.argv[2], {}, {"e": e}) for e in entries) else 1)
PY
}

# ---- 1. kubectl ----------------------------------------------------------------------------------
cat >"$W/pod.yaml" <<'Y'
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - {name: c, image: "registry.example/web:1"}
Y
[ "$(k8s_kubectl get pods -o name 2>&1)" = "" ] || e2e_fail "kubectl get pods: not empty"
k8s_kubectl apply -f "$W/pod.yaml" | k8s_grep "pod/web created" || e2e_fail "kubectl apply (create)"
k8s_kubectl apply -f "$W/pod.yaml" | k8s_grep "pod/web unchanged" ||
  e2e_fail "kubectl apply (unchanged)"
log_has 'e["method"]=="POST" and "fieldValidation=Strict" in e["query"]' ||
  e2e_fail "kubectl apply did not send fieldValidation=Strict (openapi v3 stub not used)"
k8s_kubectl annotate pod web starlight-c.dev/provision=true | k8s_grep annotated ||
  e2e_fail "kubectl annotate"
k8s_kubectl label pod web tier=front | k8s_grep labeled || e2e_fail "kubectl label"
log_has 'e["method"]=="PATCH" and e["contentType"]=="application/merge-patch+json" and "fieldManager=kubectl-annotate" in e["query"]' ||
  e2e_fail "kubectl annotate did not send a merge patch"
[ "$(k8s_kubectl get pods -l 'tier in (front,back),app' -o name)" = pod/web ] ||
  e2e_fail "label selector (in, exists)"
[ "$(k8s_kubectl get pods -l 'tier!=front' -o name)" = "" ] || e2e_fail "label selector !="
[ "$(k8s_kubectl get pods -A --field-selector spec.nodeName=node1 -o name)" = pod/web ] ||
  e2e_fail "field selector spec.nodeName"
[ "$(k8s_kubectl get pod web -o jsonpath='{.metadata.annotations.starlight-c\.dev/provision}')" = true ] ||
  e2e_fail "annotation not stored"
# get -w: lists, then watches from the list's resourceVersion; held open until the timeout
(timeout 6 kubectl "${K[@]}" get pods -w -o name >"$W/getw.out" 2>&1 || true) &
wpid=$!
sleep 1.5
k8s_kubectl apply -f - <<'Y' >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: web2, labels: {app: web}}
spec: {containers: [{name: c, image: "registry.example/web:1"}]}
Y
wait "$wpid"
grep -qx pod/web2 "$W/getw.out" || { cat "$W/getw.out"; e2e_fail "kubectl get -w missed web2"; }
log_has 'e["method"]=="GET" and "watch=true" in e["query"] and "resourceVersion=" in e["query"]' ||
  e2e_fail "kubectl get -w sent no watch with a resourceVersion"
# wait --for=condition: satisfied by a status patch made meanwhile
(k8s_kubectl wait --for=condition=Ready pod/web --timeout=20s >"$W/wait.out" 2>&1; echo $? >"$W/wait.rc") &
sleep 1.5
"$T" "${K[@]}" patch $NSP/web/status \
  '{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}' >/dev/null
e2e_wait_for "kubectl wait" 20 test -s "$W/wait.rc"
[ "$(cat "$W/wait.rc")" = 0 ] || { cat "$W/wait.out"; e2e_fail "kubectl wait --for=condition=Ready"; }
log_has '"allowWatchBookmarks=true" in e["query"] and "timeoutSeconds=" in e["query"]' ||
  e2e_fail "kubectl wait sent no bookmark watch"
# a Job the way kubectl can send it as JSON; the server fills in selector and pod labels
k8s_kubectl create job trace --image=busybox --dry-run=client -o json -- true |
  k8s_kubectl create -f - | k8s_grep "job.batch/trace created" || e2e_fail "kubectl create job"
[ -n "$(k8s_kubectl get job trace -o jsonpath='{.spec.selector.matchLabels}')" ] ||
  e2e_fail "job without a selector"
k8s_kubectl delete pod web2 --timeout=15s | k8s_grep deleted || e2e_fail "kubectl delete"
[ "$(k8s_kubectl get pods -o name)" = pod/web ] || e2e_fail "web2 still listed after delete"
log_has 'e["user"]=="system:anonymous" and e["path"]=="/api/v1/namespaces/default/pods/web2" and e["method"]=="DELETE"' ||
  e2e_fail "request log lacks the DELETE"
curl -sf "$K8S_URL/_test/log" | python3 -c 'import json,sys; l=json.load(sys.stdin); assert len(l) > 20' ||
  e2e_fail "request log over HTTP"
echo "kubectl checks passed"

# ---- 2. C client requests ------------------------------------------------------------------------
for i in 1 2 3; do
  "$T" "${K[@]}" create $NSP "{\"metadata\":{\"name\":\"p$i\",\"labels\":{\"starlight-c.dev/provision\":\"true\"}},\"spec\":{\"nodeName\":\"n$((i % 2))\",\"containers\":[{\"name\":\"c\",\"image\":\"img$i\"}]}}" >/dev/null
done
rc=0; "$T" "${K[@]}" create $NSP '{"metadata":{"name":"p1"}}' >/dev/null 2>&1 || rc=$?
[ "$rc" = 5 ] || e2e_fail "create of an existing pod: rc $rc, expected AlreadyExists (5)"
out=$("$T" "${K[@]}" list /api/v1/pods -f spec.nodeName=n1 -l starlight-c.dev/provision=true)
[ "$(echo "$out" | grep -c '^default/')" = 2 ] || { echo "$out"; e2e_fail "list with selectors"; }
rc=0; "$T" "${K[@]}" update $NSP/p1 '{"metadata":{"name":"p1","resourceVersion":"2"}}' >/dev/null 2>&1 || rc=$?
[ "$rc" = 3 ] || e2e_fail "stale update: rc $rc, expected Conflict (3)"
"$T" "${K[@]}" patch $NSP/p1 '{"metadata":{"annotations":{"a":"1"}}}' | k8s_grep '"a":"1"' ||
  e2e_fail "merge patch"
"$T" "${K[@]}" patch --type json $NSP/p1 '[{"op":"add","path":"/metadata/labels/x~1y","value":"2"}]' |
  grep -q '"x/y":"2"' || e2e_fail "JSON patch"
"$T" "${K[@]}" event default Pod p1 "" StarlightTest "hello from e2e" Warning --events 3
[ "$(k8s_kubectl get events -o jsonpath='{.items[0].involvedObject.name} {.items[0].reason} {.items[0].type} {.items[0].count}')" = "p1 StarlightTest Warning 3" ] ||
  e2e_fail "event not visible to kubectl (or its repeats not counted): $(k8s_kubectl get events -o json)"
[ "$(k8s_kubectl get events -o name | wc -l)" = 1 ] || e2e_fail "repeats made new Events"
k8s_hook fail-next "status=429&retry_after=1&n=1"
t0=$(date +%s%N)
"$T" "${K[@]}" get $NSP/p2 >/dev/null || e2e_fail "GET after a 429 with Retry-After"
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$dt" -ge 900 ] || e2e_fail "Retry-After: 1 not honoured (${dt} ms)"
echo "C client requests passed (429 retried after ${dt} ms)"

# ---- 3. reflector ----------------------------------------------------------------------------------
WOUT="$W/watch.out"
"$T" "${K[@]}" watch /api/v1/pods -l starlight-c.dev/provision=true --timeout 120 \
  --watch-timeout 60 >"$WOUT" 2>"$W/watch.err" &
WPID=$!
e2e_track_pid sl-k8s-tool-watch "$WPID"
e2e_wait_for "first list" 10 grep -q '^synced' "$WOUT"
seen() { grep -c "^$1 default/$2 " "$WOUT" || true; }
lists() { grep -c '^synced' "$WOUT" || true; }
seen_is() { [ "$(seen "$1" "$2")" = "$3" ]; }
lists_ge() { [ "$(lists)" -ge "$1" ]; }

# (a) a stream cut in the middle of an event: re-watch from the last resourceVersion, no relist
k8s_hook cut-watches mid_event=1
"$T" "${K[@]}" create $NSP '{"metadata":{"name":"cut1","labels":{"starlight-c.dev/provision":"true"}}}' >/dev/null
e2e_wait_for "the cut event after the re-watch" 15 seen_is ADDED cut1 1
sleep 0.5
[ "$(seen ADDED cut1)" = 1 ] || e2e_fail "cut event delivered $(seen ADDED cut1) times"
[ "$(lists)" = 1 ] || e2e_fail "a cut stream caused a relist"

blind_changes() { # make changes the client cannot see (watches frozen), then apply $1 to end them
  k8s_hook freeze on=1
  "$T" "${K[@]}" delete $NSP/"$2" >/dev/null
  "$T" "${K[@]}" create $NSP "{\"metadata\":{\"name\":\"$3\",\"labels\":{\"starlight-c.dev/provision\":\"true\"}}}" >/dev/null
  "$T" "${K[@]}" patch $NSP/"$4" "{\"metadata\":{\"annotations\":{\"blind\":\"$3\"}}}" >/dev/null
  $1
  k8s_hook freeze on=0
}
check_relist() { # NTH-LIST DELETED ADDED MODIFIED
  e2e_wait_for "relist #$1" 15 lists_ge "$1"
  e2e_wait_for "DELETED $2 after relist #$1" 10 seen_is DELETED "$2" 1
  e2e_wait_for "ADDED $3 after relist #$1" 10 seen_is ADDED "$3" 1
  [ "$(lists)" = "$1" ] || e2e_fail "expected $1 lists, saw $(lists)"
  grep -q "^MODIFIED default/$4 " "$WOUT" || e2e_fail "modification of $4 missed"
}
# (b) compacted history, answered as HTTP 410
compact_cut() { k8s_hook compact; k8s_hook cut-watches; }
blind_changes compact_cut p1 b1 p2
check_relist 2 p1 b1 p2
# (c) compacted history, answered as an ERROR event inside a 200 stream
k8s_hook too-old-form form=event
blind_changes compact_cut p2 b2 p3
check_relist 3 p2 b2 p3
k8s_hook too-old-form form=http
# (d) forced: an ERROR 410 event on the open stream
force_event() { k8s_hook force-410 "form=event&n=0&active=1"; }
blind_changes force_event p3 b3 b1
check_relist 4 p3 b3 b1
# (e) forced: the next watch request answered HTTP 410
force_http() { k8s_hook force-410 "form=http&n=1"; k8s_hook cut-watches; }
blind_changes force_http b2 b4 b3
check_relist 5 b2 b4 b3
kill -TERM "$WPID"
wait "$WPID" || e2e_fail "watch tool exited non-zero"
stats=$(grep '^stats' "$WOUT")
echo "$stats"
case "$stats" in *"relists_410=4 "*) ;; *) e2e_fail "expected 4 relists on 410: $stats" ;; esac
case "$stats" in *"synthesized_deletes=4 "*) ;; *) e2e_fail "expected 4 synthesised deletes: $stats" ;; esac
log_has '"allowWatchBookmarks=true" in e["query"] and "timeoutSeconds=60" in e["query"] and "labelSelector=starlight-c.dev%2Fprovision%3Dtrue" in e["query"] and e["status"]==410' ||
  e2e_fail "no watch answered HTTP 410 in the log"
# (f) a restarted client resumes from the resourceVersion it kept (no list), and one whose
#     resourceVersion was compacted meanwhile relists
RV=$(sed -n 's/^stats .* rv=\([0-9]*\)$/\1/p' "$WOUT")
[ -n "$RV" ] || e2e_fail "no resourceVersion in: $stats"
"$T" "${K[@]}" create $NSP '{"metadata":{"name":"r1","labels":{"starlight-c.dev/provision":"true"}}}' >/dev/null
"$T" "${K[@]}" delete $NSP/cut1 >/dev/null
"$T" "${K[@]}" watch /api/v1/pods -l starlight-c.dev/provision=true --resume-rv "$RV" \
  --events 2 --timeout 20 --watch-timeout 60 >"$W/resume.out" 2>"$W/resume.err" ||
  { cat "$W/resume.out" "$W/resume.err"; e2e_fail "resumed watch"; }
k8s_grep -x "ADDED default/r1 [0-9]*" "$W/resume.out" || e2e_fail "resume missed the add: $(cat "$W/resume.out")"
k8s_grep "^DELETED default/cut1 " "$W/resume.out" || e2e_fail "resume missed the delete"
k8s_grep "^stats lists=0 relists_410=0 " "$W/resume.out" || e2e_fail "resume listed: $(grep stats "$W/resume.out")"
k8s_hook compact
"$T" "${K[@]}" watch /api/v1/pods -l starlight-c.dev/provision=true --resume-rv "$RV" \
  --timeout 3 --watch-timeout 60 >"$W/resume2.out" 2>"$W/resume2.err" || true
k8s_grep "^stats lists=1 relists_410=1 " "$W/resume2.out" ||
  e2e_fail "a compacted resume point did not relist: $(grep stats "$W/resume2.out")"
k8s_grep -x "ADDED default/r1 [0-9]*" "$W/resume2.out" || e2e_fail "relist after resume lacks r1"
echo "reflector checks passed"

# ---- 4. Lease leader election ----------------------------------------------------------------------
"$T" "${K[@]}" lease default sl-e2e c1 --duration-ms 4000 --renew-ms 3000 --retry-ms 500 >"$W/c1.out" 2>&1 &
L1=$!; e2e_track_pid lease-c1 "$L1"
"$T" "${K[@]}" lease default sl-e2e c2 --duration-ms 4000 --renew-ms 3000 --retry-ms 500 >"$W/c2.out" 2>&1 &
L2=$!; e2e_track_pid lease-c2 "$L2"
e2e_wait_for "a leader" 10 sh -c "grep -qx leading '$W/c1.out' || grep -qx leading '$W/c2.out'"
sleep 2
n=$(cat "$W/c1.out" "$W/c2.out" | grep -cx leading || true)
[ "$n" = 1 ] || e2e_fail "$n leaders"
if grep -qx leading "$W/c1.out"; then lead=$L1 other=$L2 oout=$W/c2.out; else lead=$L2 other=$L1 oout=$W/c1.out; fi
kill -KILL "$lead"
t0=$(date +%s%N)
e2e_wait_for "takeover" 10 grep -qx leading "$oout"
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
# the standby's clock starts when it last saw the record change (up to one retry period after
# the last renewal) and it checks once per retry period (500 ms + 20% jitter): D + 2 retries,
# plus 500 ms for scheduling on a loaded machine
[ "$dt" -le 6000 ] || e2e_fail "takeover took ${dt} ms (lease 4000 ms + two retries)"
lease=$("$T" "${K[@]}" get /apis/coordination.k8s.io/v1/namespaces/default/leases/sl-e2e)
echo "$lease" | k8s_grep '"leaseTransitions":1' || e2e_fail "leaseTransitions not 1: $lease"
kill -TERM "$other"
wait "$other" || e2e_fail "lease tool exited non-zero"
lease=$("$T" "${K[@]}" get /apis/coordination.k8s.io/v1/namespaces/default/leases/sl-e2e)
echo "$lease" | k8s_grep '"holderIdentity":""' || e2e_fail "lease not released: $lease"
echo "lease checks passed (takeover ${dt} ms after SIGKILL)"

# ---- 5. in-cluster over TLS with a rotating token ------------------------------------------------
SA="$W/sa"
mkdir -p "$SA" "$W/tls"
python3 "$(dirname "$0")/../k8s/apiserver.py" --tls --cert-dir "$W/tls" --require-auth \
  --token tok1=system:serviceaccount:starlight:daemon --port-file "$W/tls.port" \
  --log-file "$W/tls.log" >"$W/tls-apiserver.log" 2>&1 &
TPID=$!; e2e_track_pid apiserver-tls "$TPID"
e2e_wait_for "TLS API server" 20 test -s "$W/tls.port"
cp "$W/tls/ca.crt" "$SA/ca.crt"
echo tok1 >"$SA/token"
echo default >"$SA/namespace"
IC=(env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$(cat "$W/tls.port")")
"${IC[@]}" "$T" --sa-dir "$SA" list $NSP | k8s_grep '^rv ' || e2e_fail "in-cluster list over TLS"
"${IC[@]}" "$T" --sa-dir "$SA" watch $NSP --timeout 60 --watch-timeout 30 >"$W/icw.out" 2>&1 &
IW=$!; e2e_track_pid sl-k8s-tool-icwatch "$IW"
e2e_wait_for "in-cluster watch synced" 10 grep -q '^synced' "$W/icw.out"
echo tok2 >"$SA/token.new" && mv "$SA/token.new" "$SA/token"
curl -sfk -X POST "https://127.0.0.1:$(cat "$W/tls.port")/_test/token?value=tok2&only=1&user=system:serviceaccount:starlight:daemon" >/dev/null
curl -sfk -X POST "https://127.0.0.1:$(cat "$W/tls.port")/_test/cut-watches" >/dev/null
curl -sfk -X POST -H "Authorization: Bearer tok2" -H "Content-Type: application/json" \
  -d '{"metadata":{"name":"after-rotation"}}' "https://127.0.0.1:$(cat "$W/tls.port")$NSP" >/dev/null
e2e_wait_for "event after token rotation" 15 grep -q '^ADDED default/after-rotation' "$W/icw.out"
kill -TERM "$IW"; wait "$IW" || true
grep -q '"status": 401' "$W/tls.log" || e2e_fail "the rotation never produced a 401"
grep -q '"user": "system:serviceaccount:starlight:daemon", "status": 200' "$W/tls.log" ||
  e2e_fail "no authenticated request in the TLS log"
echo "in-cluster TLS + token rotation passed"
echo "k8s-apiserver: all checks passed"
