#!/usr/bin/env bash
# Starts the real servers test-registry-live talks to, all on 127.0.0.1 with ports chosen at
# run time, runs the test binary ($1) against them and stops everything by PID:
#   - docker-registry (distribution) anonymous          → SL_TEST_REG_ANON
#   - docker-registry with htpasswd Basic auth          → SL_TEST_REG_BASIC
#   - docker-registry with token auth + token-server.py → SL_TEST_REG_TOKEN, SL_TEST_TOKEN_URL
#   - fault-server.py (500/429/redirect/Range faults)   → SL_TEST_FAULT
# Exit 77 (skip) when docker-registry/htpasswd/openssl/python3 are missing, unless CI=true.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)

for tool in docker-registry htpasswd openssl python3 curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run-live: $tool not installed" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 77
  fi
done

tmp=$(mktemp -d /tmp/sl-registry-live.XXXXXX)
pids=()
cleanup() {
  # start_registry runs in a command substitution (a subshell): its PIDs come back in files.
  local f
  for f in "$tmp"/*/pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL: until the server answers anything (any status) or 10 s pass.
wait_http() {
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)
    [ "$code" != 000 ] && return 0
    sleep 0.1
  done
  echo "run-live: $1 did not come up" >&2
  return 1
}

wait_file() {
  for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "run-live: $1 not written" >&2
  return 1
}

# start_registry NAME AUTH_YAML: echoes the port.
start_registry() {
  local name=$1 auth=$2 port
  for _ in 1 2 3; do
    port=$(free_port)
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/$name/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
YAML
    docker-registry serve "$tmp/$name/config.yml" >"$tmp/$name/log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    echo "$pid" >"$tmp/$name/pid"
    if wait_http "http://127.0.0.1:$port/v2/" 2>/dev/null && kill -0 "$pid" 2>/dev/null; then
      echo "$port"
      return 0
    fi
    kill "$pid" 2>/dev/null # port taken in the meantime: try another
  done
  echo "run-live: docker-registry $name failed:" >&2
  cat "$tmp/$name/log" >&2
  return 1
}

# Token signing key and the certificate the registry trusts.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
  -days 1 -subj /CN=sl-test-token >/dev/null 2>&1 || { echo "run-live: openssl failed" >&2; exit 1; }
htpasswd -Bbn alice alice-pass >"$tmp/htpasswd" 2>/dev/null

python3 "$here/servers/token-server.py" "$tmp/token.port" "$tmp/key.pem" "$tmp/cert.pem" \
  sl-test-issuer tok tok-pass &
pids+=($!)
python3 "$here/servers/fault-server.py" "$tmp/fault.ports" &
pids+=($!)
wait_file "$tmp/token.port" || exit 1
wait_file "$tmp/fault.ports" || exit 1
token_port=$(cat "$tmp/token.port")
read -r fault_port storage_port <"$tmp/fault.ports"

anon=$(start_registry anon "") || exit 1
basic=$(start_registry basic "auth:
  htpasswd:
    realm: sl-basic
    path: $tmp/htpasswd") || exit 1
token=$(start_registry token "auth:
  token:
    realm: http://127.0.0.1:$token_port/token
    service: sl-test-registry
    issuer: sl-test-issuer
    rootcertbundle: $tmp/cert.pem") || exit 1

mkdir -p "$tmp/docker"
b64() { printf '%s' "$1" | base64 -w0; }
cat >"$tmp/docker/config.json" <<JSON
{"auths": {
  "127.0.0.1:$basic": {"auth": "$(b64 alice:alice-pass)"},
  "http://127.0.0.1:$token/": {"username": "tok", "password": "tok-pass"},
  "127.0.0.1:$fault_port": {"auth": "$(b64 fault:fault-pass)"}
}}
JSON

export SL_TEST_REG_ANON="127.0.0.1:$anon" SL_TEST_REG_BASIC="127.0.0.1:$basic" \
  SL_TEST_REG_TOKEN="127.0.0.1:$token" SL_TEST_TOKEN_URL="http://127.0.0.1:$token_port" \
  SL_TEST_FAULT="127.0.0.1:$fault_port" SL_TEST_DOCKER_CONFIG="$tmp/docker/config.json" \
  SL_TEST_TMP="$tmp"
"$bin"
rc=$?
if [ $rc -ne 0 ]; then
  for d in anon basic token; do echo "--- docker-registry $d log:"; tail -5 "$tmp/$d/log"; done
fi
exit $rc
