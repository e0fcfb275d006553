#!/usr/bin/env bash
# Runs test-blobcache ($1) against a real docker-registry on 127.0.0.1 behind count-proxy.py
# (which counts blob GETs and injects faults), ports chosen at run time, stopped by PID:
#   SL_TEST_REG     the registry itself (pushes)
#   SL_TEST_PROXY   the counting proxy (cache reads), control under /_ctl/
# Exit 77 (skip) when docker-registry/python3/curl are missing, unless CI=true.
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)

. "$here/../../live.sh"
live_init sl-blobcache-test docker-registry python3 curl
port=$(start_registry registry "") || exit 1

python3 "$here/count-proxy.py" "$tmp/proxy.port" "$port" &
pids+=($!)
wait_file "$tmp/proxy.port" || exit 1

proxy_port=$(cat "$tmp/proxy.port")
export SL_TEST_REG="127.0.0.1:$port" SL_TEST_PROXY="127.0.0.1:$proxy_port" SL_TEST_TMP="$tmp"
"$bin"
