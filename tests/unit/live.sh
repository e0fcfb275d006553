# shellcheck shell=bash
# Shared by the run-live.sh wrappers of the unit tests that talk to real servers on 127.0.0.1
# (tests/unit/common/registry, tests/unit/proxy/cache). Source it after `set -uo pipefail`.

# live_init NAME TOOL...: exit 77 (skip; 1 under CI=true) when a TOOL is not installed; makes
# the scratch directory $tmp (/tmp/NAME.XXXXXX) and installs the exit trap, which stops the
# PIDs in the array $pids and in $tmp/*/pid (start_registry runs in command substitutions)
# and removes $tmp.
live_init() {
  local name=$1 tool
  shift
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "run-live: $tool not installed" >&2
      [ "${CI:-}" = true ] && exit 1
      exit 77
    fi
  done
  tmp=$(mktemp -d "/tmp/$name.XXXXXX")
  pids=()
  trap _live_cleanup EXIT
}

_live_cleanup() {
  local f p
  for f in "$tmp"/*/pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
  rm -rf "$tmp"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL: until the server answers anything (any status) or 10 s pass.
wait_http() {
  local code
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)
    [ "$code" != 000 ] && return 0
    sleep 0.1
  done
  echo "run-live: $1 did not come up" >&2
  return 1
}

# wait_file FILE: until FILE is written (not empty) or 10 s pass.
wait_file() {
  for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done
  echo "run-live: $1 not written" >&2
  return 1
}

# start_registry NAME AUTH_YAML: a docker-registry on 127.0.0.1 at a free port (three tries),
# storage and log under $tmp/NAME, AUTH_YAML appended to its config; echoes the port.
start_registry() {
  local name=$1 auth=$2 port pid
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
    pid=$!
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
