#!/usr/bin/env bash
# Runs test-blobcache ($1) against a real docker-registry on 127.0.0.1 behind count-proxy.py
# (which counts blob GETs and injects faults), ports chosen at run time, stopped by PID:
#   SL_TEST_REG     the registry itself (pushes)
#   SL_TEST_PROXY   the counting proxy (cache reads), control under /_ctl/
# Exit 77 (skip) when docker-registry/python3/curl are missing, unless CI=true.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)

for tool in docker-registry python3 curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run-live: $tool not installed" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 77
  fi
done

tmp=$(mktemp -d /tmp/sl-blobcache-test.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" != 000 ] && return 0
    sleep 0.1
  done
  return 1
}

port=
for _ in 1 2 3; do
  port=$(free_port)
  cat >"$tmp/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/data
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$tmp/config.yml" >"$tmp/registry.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  if wait_http "http://127.0.0.1:$port/v2/" && kill -0 "$pid" 2>/dev/null; then
    break
  fi
  kill "$pid" 2>/dev/null
  port=
done
[ -n "$port" ] || { echo "run-live: docker-registry failed" >&2; cat "$tmp/registry.log" >&2; exit 1; }

python3 "$here/count-proxy.py" "$tmp/proxy.port" "$port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/proxy.port" ] && break; sleep 0.1; done
[ -s "$tmp/proxy.port" ] || { echo "run-live: count-proxy did not start" >&2; exit 1; }

proxy_port=$(cat "$tmp/proxy.port")
export SL_TEST_REG="127.0.0.1:$port" SL_TEST_PROXY="127.0.0.1:$proxy_port" SL_TEST_TMP="$tmp"
"$bin"
