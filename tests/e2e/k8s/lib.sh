# shellcheck shell=bash
# Test Kubernetes API server helpers for e2e scenarios (source after tests/e2e/lib.sh):
#   k8s_apiserver_start [ARGS...]  start tests/e2e/k8s/apiserver.py on 127.0.0.1:<free port>;
#                                  exports K8S_URL, K8S_PORT, K8S_PID, K8S_LOG (request log, JSON
#                                  lines), K8S_KUBECONFIG (token "e2e-token" for user e2e) and a
#                                  private HOME for kubectl's discovery cache
#   k8s_kubeconfig FILE TOKEN      write a kubeconfig for another identity (start the server with
#                                  --token TOKEN=USER to name it in the request log)
#   k8s_hook NAME [QUERY]          POST /_test/NAME?QUERY (fault injection; see apiserver.py)
#   k8s_kubectl ARGS...            /usr/bin/kubectl against it (30 s request timeout)
#   CMD | k8s_grep ARGS...         grep that reads all its input (no SIGPIPE for CMD under
#                                  pipefail, unlike grep -q)
K8S_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

k8s_apiserver_start() {
  local dir; dir=$(e2e_tmpdir)/apiserver
  mkdir -p "$dir"
  K8S_LOG=$dir/requests.jsonl
  rm -f "$dir/port"
  # the interpreter itself, not a wrapper (a pyenv shim may run python as its child: the PID
  # tracked below would then be the wrapper's, and the server would outlive the test)
  local py; py=$(python3 -c 'import sys; print(sys.executable)') || e2e_fail "python3 does not run"
  "$py" "$K8S_LIB_DIR/apiserver.py" --port-file "$dir/port" --log-file "$K8S_LOG" \
    --token e2e-token=e2e "$@" >"$dir/apiserver.log" 2>&1 &
  K8S_PID=$!
  e2e_track_pid apiserver "$K8S_PID"
  e2e_wait_for "test API server" 15 test -s "$dir/port"
  K8S_PORT=$(cat "$dir/port")
  local scheme=http
  case " $* " in *" --tls "*) scheme=https ;; esac
  K8S_URL=$scheme://127.0.0.1:$K8S_PORT
  K8S_KUBECONFIG=$dir/kubeconfig
  k8s_kubeconfig "$K8S_KUBECONFIG" e2e-token
  export K8S_URL K8S_PORT K8S_PID K8S_LOG K8S_KUBECONFIG
  export HOME=$dir/home
  mkdir -p "$HOME"
  e2e_wait_for "test API server /version" 15 curl -sf -H "Authorization: Bearer e2e-token" "$K8S_URL/version" -o /dev/null
}

k8s_kubeconfig() {
  cat >"$1" <<KC
apiVersion: v1
kind: Config
current-context: e2e
clusters:
- name: e2e
  cluster:
    server: "$K8S_URL"
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e, namespace: default}
users:
- name: e2e
  user:
    token: $2
KC
}

k8s_hook() {
  curl -sf -X POST "$K8S_URL/_test/$1${2:+?$2}" >/dev/null || e2e_fail "test hook $1 failed"
}

k8s_kubectl() {
  kubectl --kubeconfig "$K8S_KUBECONFIG" --request-timeout=30s "$@"
}

k8s_grep() {
  grep "$@" >/dev/null
}
