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

. "$here/../../live.sh"
live_init sl-registry-live docker-registry htpasswd openssl python3 curl

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
