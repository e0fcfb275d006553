#!/usr/bin/env bash
# Scenario: the admission webhook and starlight-init on real parts (starlight-controller over
# TLS with a certificate made by the openssl CLI, curl as the API server's webhook client,
# starlight-proxy + PostgreSQL + registry, starlight-daemon + containerd + runc), on loopback:
#  1. an annotated Pod whose images are a Starlight image and a plain one: the answer's
#     JSONPatch (applied by an independent implementation) puts starlight-init first with only
#     the Starlight image, adds the volume, label and images annotation; re-sending the patched
#     Pod changes nothing; a Pod of plain images only, a Pod not opted in and an UPDATE are
#     allowed without a patch; opt-in by --opt-in-namespaces and /mutate-namespace, opt-out by
#     annotation; a malformed review gets 400 with a message and a log line; a dead proxy
#     lets the Pod through unchanged with a warning; /metrics and /healthz answer; a rotated
#     certificate (files replaced in place) is served without a restart;
#  2. starlight-init run as kubelet would, with the injected args (the socket is the test
#     daemon's): exit 0 once the image's startup set is local (untraced: the whole image),
#     the image is registered in containerd namespace k8s.io and a container of it starts
#     there with the starlight snapshotter; after traces are reported to the proxy, on a clean
#     node the startup set is the traced prefix; daemon absent: exit 0 with a warning,
#     --strict: exit 1.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"
. "$here/controller.sh"

e2e_require python3 curl openssl skopeo psql containerd ctr runc
[ "$(id -u)" = 0 ] || e2e_skip "needs root (containerd, FUSE, overlay mounts)"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
CTL_BIN="$SL_BIN/starlight-controller"
INIT="$SL_BIN/starlight-init"
for b in "$CS" "$PX" "$CTL_BIN" "$INIT" "$SL_BIN/starlight-daemon"; do
    [ -x "$b" ] || e2e_skip "build first: $b missing"
done
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
T="python3 $here/tools.py"
W="$E2E_DIR/work"
mkdir -p "$W"
P="linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')"

pull_cloud_start
e2e_push_image features features:src
e2e_push_image busybox plain:1 # never converted nor notified: not a Starlight image
"$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
    "$R/features:src" "$R/features:sl" >/dev/null 2>"$W/convert.log" ||
    { cat "$W/convert.log" >&2; e2e_fail "convert --notify features"; }
SLIMG="$R/features:sl"
PLAIN="$R/plain:1"

# ---------------------------------------------------------------- 1: the webhook
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=e2e-ca -keyout "$W/ca.key" \
    -out "$W/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=starlight-controller.e2e.svc \
    -keyout "$W/tls.key" -out "$W/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:starlight-controller.e2e.svc,IP:127.0.0.1\n' >"$W/san.ext"
openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.crt" -CAkey "$W/ca.key" -CAcreateserial -days 1 \
    -extfile "$W/san.ext" -out "$W/tls.crt" 2>/dev/null
start_controller() { # NAME PROXY_URL: sets WP, MP
    wh_start_controller "$1" --tls-cert "$W/tls.crt" --tls-key "$W/tls.key" \
        --init-image e2e/starlight-init:1 --proxy "$2" --registry-insecure \
        --opt-in-namespaces apps --prewarm=false --trace-jobs=false
    WP=$WH_WP MP=$WH_MP
}
start_controller controller "$U"
admit() { # PATH REVIEW_FILE ANSWER_FILE: prints the HTTP status
    curl -sS --cacert "$W/ca.crt" -H 'Content-Type: application/json' \
        --resolve "starlight-controller.e2e.svc:$WP:127.0.0.1" \
        "https://starlight-controller.e2e.svc:$WP$1" --data-binary "@$2" -o "$3" -w '%{http_code}'
}
case_patch() { # NAME NS ANNOTATION PATH IMAGES... → W/NAME.pod (patched) or fails
    local name=$1 ns=$2 ann=$3 path=$4
    shift 4
    $T pod "$name" "$ann" "$@" >"$W/$name.in"
    $T review "$ns" CREATE "$W/$name.in" "uid-$name" >"$W/$name.rv"
    [ "$(admit "$path" "$W/$name.rv" "$W/$name.ans")" = 200 ] || e2e_fail "$name: HTTP status"
    $T patched "$W/$name.rv" "$W/$name.ans" >"$W/$name.pod"
}
case_nopatch() { # NAME NS ANNOTATION PATH IMAGES...: allowed without a patch
    local name=$1 ns=$2 ann=$3 path=$4 rc=0
    shift 4
    $T pod "$name" "$ann" "$@" >"$W/$name.in"
    $T review "$ns" CREATE "$W/$name.in" "uid-$name" >"$W/$name.rv"
    [ "$(admit "$path" "$W/$name.rv" "$W/$name.ans")" = 200 ] || e2e_fail "$name: HTTP status"
    $T patched "$W/$name.rv" "$W/$name.ans" >/dev/null || rc=$?
    [ "$rc" = 3 ] || e2e_fail "$name: expected no patch: $(cat "$W/$name.ans")"
}

case_patch web default true /mutate "$SLIMG" "$PLAIN" "$SLIMG"
python3 - "$W/web.pod" "$SLIMG" <<'PY' || e2e_fail "patched pod: $(cat "$W/web.pod")"
import json, sys
pod, img = json.load(open(sys.argv[1])), sys.argv[2]
m, s = pod["metadata"], pod["spec"]
assert m["labels"]["starlight-c.dev/provision"] == "true", m
assert m["annotations"]["starlight-c.dev/images"] == img, m
ic = s["initContainers"][0]
assert ic["name"] == "starlight-init" and ic["image"] == "e2e/starlight-init:1", ic
assert ic["args"] == ["--socket", "/run/starlight/starlight-daemon.sock", "--namespace", "k8s.io",
                      "--image", img, "--insecure"], ic["args"]
assert ic["env"] == [{"name": "STARLIGHT_IMAGES", "value": img}], ic["env"]
assert ic["volumeMounts"] == [{"name": "starlight-run", "mountPath": "/run/starlight"}], ic
assert s["volumes"] == [{"name": "starlight-run",
                         "hostPath": {"path": "/run/starlight", "type": "DirectoryOrCreate"}}], s
assert [c["image"] for c in s["containers"]][0] == img and len(s["containers"]) == 3, s
PY
# re-invocation on the patched Pod: nothing more
$T review default CREATE "$W/web.pod" uid-again >"$W/again.rv"
[ "$(admit /mutate "$W/again.rv" "$W/again.ans")" = 200 ] || e2e_fail "again: status"
rc=0 && $T patched "$W/again.rv" "$W/again.ans" >/dev/null || rc=$?
[ "$rc" = 3 ] || e2e_fail "re-invocation patched again"
case_nopatch plainonly default true /mutate "$PLAIN"
case_nopatch notopted default none /mutate "$SLIMG"
case_nopatch optout apps false /mutate "$SLIMG"
case_patch byns apps none /mutate "$SLIMG"
case_patch bypath other none /mutate-namespace "$SLIMG"
$T pod upd true "$SLIMG" >"$W/upd.in"
$T review default UPDATE "$W/upd.in" uid-upd >"$W/upd.rv"
[ "$(admit /mutate "$W/upd.rv" "$W/upd.ans")" = 200 ] || e2e_fail "UPDATE: status"
rc=0 && $T patched "$W/upd.rv" "$W/upd.ans" >/dev/null || rc=$?
[ "$rc" = 3 ] || e2e_fail "an UPDATE was patched"
e2e_log "1a. patched: annotated (Starlight image only), opted-in namespace, /mutate-namespace; unchanged: plain images, not opted in, opted out, UPDATE, re-invocation"

printf '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}' \
    >"$W/bad1.rv"
printf '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' >"$W/bad2.rv"
for b in bad1 bad2; do
    st=$(admit /mutate "$W/$b.rv" "$W/$b.ans")
    [ "$st" = 400 ] || e2e_fail "$b: HTTP $st"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["code"]==400 and "AdmissionReview" in d["error"], d' \
        "$W/$b.ans" || e2e_fail "$b: $(cat "$W/$b.ans")"
done
n=$(grep -c 'malformed AdmissionReview' "$E2E_DIR/logs/controller.log" || true)
[ "$n" = 2 ] || e2e_fail "expected 2 log lines for malformed reviews, got $n"
e2e_log "1b. malformed reviews: 400 ($(cat "$W/bad1.ans" | head -c 120)) and logged"

dead=$(e2e_free_port)
WP_SAVE=$WP MP_SAVE=$MP
start_controller controller-deadproxy "http://127.0.0.1:$dead"
case_nopatch deadproxy default true /mutate "$SLIMG"
WP=$WP_SAVE MP=$MP_SAVE
grep -q 'unreachable while checking' "$E2E_DIR/logs/controller-deadproxy.log" ||
    e2e_fail "no warning about the unreachable proxy"
e2e_log "1c. proxy unreachable: allowed unchanged, logged"

curl -fsS "http://127.0.0.1:$MP/metrics" >"$W/metrics"
grep -q '^starlight_webhook_reviews_total{result="patched"} 3$' "$W/metrics" ||
    e2e_fail "metrics: $(grep reviews_total "$W/metrics")"
grep -q '^starlight_webhook_reviews_total{result="bad-request"} 2$' "$W/metrics" ||
    e2e_fail "metrics: bad-request count"
grep -q '^starlight_webhook_proxy_questions_total{answer="other"} 1$' "$W/metrics" ||
    e2e_fail "metrics: proxy questions $(grep proxy_questions "$W/metrics")"
[ "$(curl -fsS --cacert "$W/ca.crt" --resolve "starlight-controller.e2e.svc:$WP:127.0.0.1" \
    "https://starlight-controller.e2e.svc:$WP/healthz")" = ok ] || e2e_fail "healthz over TLS"
e2e_log "1d. /metrics: $(grep -c '^starlight_webhook' "$W/metrics") series; /healthz ok"

# certificate rotation (a Secret updated in place): new connections get the new certificate
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=e2e-ca2 -keyout "$W/ca2.key" \
    -out "$W/ca2.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=starlight-controller.e2e.svc \
    -keyout "$W/tls2.key" -out "$W/tls2.csr" 2>/dev/null
openssl x509 -req -in "$W/tls2.csr" -CA "$W/ca2.crt" -CAkey "$W/ca2.key" -CAcreateserial \
    -days 1 -extfile "$W/san.ext" -out "$W/tls2.crt" 2>/dev/null
mv "$W/tls2.key" "$W/tls.key"
mv "$W/tls2.crt" "$W/tls.crt"
rotated() {
    curl -fsS --cacert "$W/ca2.crt" --resolve "starlight-controller.e2e.svc:$WP:127.0.0.1" \
        "https://starlight-controller.e2e.svc:$WP/healthz" >/dev/null 2>&1
}
e2e_wait_for "the rotated certificate" 15 rotated
curl -fsS --cacert "$W/ca.crt" --resolve "starlight-controller.e2e.svc:$WP:127.0.0.1" \
    "https://starlight-controller.e2e.svc:$WP/healthz" >/dev/null 2>&1 &&
    e2e_fail "the old certificate is still served"
cp "$W/ca2.crt" "$W/ca.crt" # admit() trusts the new CA from here on
e2e_log "1e. certificate rotated in place: served to new connections without a restart"

# ---------------------------------------------------------------- 2: starlight-init
pull_edge_start "$U"
mapfile -t ARGS < <($T initargs "$W/web.pod")
[ "${ARGS[0]}" = --socket ] || e2e_fail "args: ${ARGS[*]}"
ARGS[1]=$PULL_EDGE_CTL # the hostPath socket of this test node
run_init() { # OUT ARGS...: starlight-init as kubelet would run it
    local out=$1
    shift
    STARLIGHT_IMAGES="$SLIMG" "$INIT" "$@" >"$out" 2>"$out.err"
}
t0=$(date +%s.%N)
run_init "$W/init1" "${ARGS[@]}" || { cat "$W/init1.err" >&2; e2e_fail "starlight-init exit $?"; }
t1=$(date +%s.%N)
grep -q "^$SLIMG header " "$W/init1" || e2e_fail "no header line: $(cat "$W/init1")"
grep -q "^$SLIMG startup .* traced=0/0$" "$W/init1" || e2e_fail "no startup line: $(cat "$W/init1")"
sl=$(grep "^$SLIMG startup " "$W/init1")
python3 - "$sl" <<'PY' || e2e_fail "untraced image: the startup set must be the whole image: $sl"
import re, sys
m = re.search(r"contents=(\d+)/(\d+)", sys.argv[1])
assert m and m.group(1) == m.group(2) and int(m.group(2)) > 0, sys.argv[1]
PY
grep -q "^$SLIMG ready " "$W/init1" || e2e_fail "no ready line"
e2e_ctr -n k8s.io images ls -q | grep -qx "$SLIMG" || e2e_fail "image not in namespace k8s.io"
out=$(e2e_ctr_timeout 60 -n k8s.io run --rm --snapshotter starlight "$SLIMG" app-$$ \
    cat /data/owned.txt 2>&1) || e2e_fail "app container in k8s.io: $out"
e2e_log "2a. starlight-init: $(tr '\n' ';' <"$W/init1" | head -c 300) ($(python3 -c "print('%.1f' % ($t1-$t0))") s); app container ran in k8s.io: $(echo "$out" | head -c 40)"

# traces for the image: two files of its top layer ranked first
curl -fsS -r 0-1048575 "$U/starlight/delta?to=$SLIMG&platform=$P&insecure=1" -o "$W/delta.head" ||
    true
python3 - "$W/delta.head" >"$W/report.json" <<'PY' || e2e_fail "build a trace report"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack(">Q", b[16:24])[0]
h = json.loads(b[32:32 + hl])
top = len(h["layers"]) - 1
files = [f["path"] for f in h["layers"][top]["files"] if f["source"] == "payload"][:2]
assert files, h["layers"][top]
acc = [{"image": 0, "layer": top, "path": p, "timeNs": 1000 * (i + 1)} for i, p in enumerate(files)]
json.dump({"version": 1, "groups": [{"name": "e2e", "images": [h["target"]["digest"]],
                                     "accesses": acc}]}, sys.stdout)
PY
curl -fsS -X POST "$U/starlight/report" -H 'Content-Type: application/json' \
    --data-binary "@$W/report.json" >"$W/report.ans" || e2e_fail "report traces to the proxy"
pull_edge_stop
pull_edge_start "$U"
ARGS[1]=$PULL_EDGE_CTL
run_init "$W/init2" "${ARGS[@]}" || { cat "$W/init2.err" >&2; e2e_fail "starlight-init (traced)"; }
sl=$(grep "^$SLIMG startup " "$W/init2") || e2e_fail "no startup line: $(cat "$W/init2")"
python3 - "$sl" <<'PY' || e2e_fail "traced image: startup must come with the traced contents: $sl"
import re, sys
t = re.search(r"traced=(\d+)/(\d+)", sys.argv[1])
assert t and t.group(1) == t.group(2) and int(t.group(2)) >= 1, sys.argv[1]
PY
e2e_log "2b. after a trace report, on a clean node: $sl"

# no daemon: warn and exit 0; --strict: exit 1
rc=0
"$INIT" --socket "$E2E_DIR/nothing.sock" --image "$SLIMG" >"$W/init3" 2>"$W/init3.err" || rc=$?
[ "$rc" = 0 ] && grep -q 'daemon not reachable' "$W/init3.err" || e2e_fail "no daemon: rc=$rc $(cat "$W/init3.err")"
rc=0
"$INIT" --socket "$E2E_DIR/nothing.sock" --image "$SLIMG" --strict >"$W/init4" 2>"$W/init4.err" ||
    rc=$?
[ "$rc" = 1 ] || e2e_fail "--strict without a daemon: rc=$rc"
e2e_log "2c. no daemon: exit 0 with a warning; --strict: exit 1"
