# shellcheck shell=bash
# Shared library for end-to-end scenarios and benchmarks. Source it from a bash script:
#
#   . "$(dirname "$0")/../lib.sh"      # sets -euo pipefail and installs the cleanup trap
#   e2e_require containerd ctr runc
#   e2e_start_registry                  # -> E2E_REGISTRY=127.0.0.1:PORT
#   e2e_start_containerd [SOCKET]       # -> e2e_ctr, e2e_ctr_timeout, E2E_CTR, E2E_CONTAINERD_*
#   e2e_start_postgres [DBNAME]         # -> E2E_PG_CONNINFO, E2E_PG_URL, E2E_PG_PORT
#   my-daemon & e2e_track_pid my-daemon $!
#
# Every daemon binds 127.0.0.1 only, on a port picked at run time, with its state in the
# per-run directory E2E_DIR. On exit (normal, error or signal) the trap runs commands
# registered with e2e_on_exit (last first), kills containerd's tasks, then containerd, then
# the other daemons by PID, unmounts everything under E2E_DIR and removes it
# (SL_E2E_KEEP=1 keeps the directory, for debugging). Logs of failed runs are printed.
#
# Exit codes: 0 pass, 1 fail, 77 skip (a missing component; under CI=true that fails).

set -euo pipefail

E2E_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${SL_BUILD:=$E2E_SRC/build}"
: "${SL_BIN:=$SL_BUILD/bin}"
export E2E_SRC SL_BUILD SL_BIN
E2E_NAME=$(basename "$(cd "$(dirname "$0")" && pwd)")
E2E_DIR=
E2E_PIDS=()    # "kind:pid" of started daemons, in start order
E2E_ON_EXIT=() # commands run first on exit, last registered first
E2E_AFTER_EXIT=() # commands run after every daemon is stopped, last registered first

e2e_log() {
    printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%H:%M:%S)" "$*" >&2
}

# e2e_fail MSG: report a failure and exit 1 (the trap cleans up).
e2e_fail() {
    printf '[%s] FAIL: %s\n' "$E2E_NAME" "$*" >&2
    exit 1
}

# e2e_skip MSG: exit 77, or fail when CI=true (CI must run every scenario).
e2e_skip() {
    if [ "${CI:-}" = true ]; then
        e2e_fail "cannot run under CI: $*"
    fi
    printf '[%s] SKIP: %s\n' "$E2E_NAME" "$*" >&2
    exit 77
}

# e2e_require CMD...: skip (or fail under CI) unless every command exists. A path (with a /)
# must be an executable file.
e2e_require() {
    local c missing=()
    for c in "$@"; do
        if [[ "$c" == */* ]]; then
            [ -x "$c" ] || missing+=("$c")
        else
            command -v "$c" >/dev/null 2>&1 || missing+=("$c")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] || e2e_skip "missing: ${missing[*]}"
}

# e2e_on_exit CMD...: run CMD (as one command line) at exit, before the standard teardown.
e2e_on_exit() {
    E2E_ON_EXIT+=("$*")
}

# e2e_after_exit CMD...: run CMD at exit after containerd and every tracked daemon are stopped
# (for what those daemons used: network namespaces, routes).
e2e_after_exit() {
    E2E_AFTER_EXIT+=("$*")
}

# Network namespaces (optional, for tests/e2e/wan.sh): with E2E_NETNS=NAME set for the call, the
# starters below run their daemon in /run/netns/NAME through `nsenter --net` (never
# `ip netns exec`, which remounts /sys) and it listens on E2E_BIND_IP (default 127.0.0.1 of
# that namespace); health checks run in the same namespace. Unset: the root namespace, as before.
#   E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_registry
_e2e_ns() { # _e2e_ns CMD...: run CMD in E2E_NETNS (or here)
    if [ -n "${E2E_NETNS:-}" ]; then
        nsenter --net="/run/netns/$E2E_NETNS" -- "$@"
    else
        "$@"
    fi
}

# _e2e_nsx: print nothing, or the nsenter prefix for E2E_NETNS, one word a line; for a daemon
# started in the background, `"${nsx[@]}" daemon &` keeps $! the daemon's pid (a function in
# the background would be a subshell).
_e2e_nsx() {
    [ -z "${E2E_NETNS:-}" ] || printf '%s\n' nsenter "--net=/run/netns/$E2E_NETNS" --
}

_e2e_bind_ip() {
    echo "${E2E_BIND_IP:-127.0.0.1}"
}

# e2e_wait_for DESC SECONDS CMD...: poll CMD every 0.1 s until it succeeds; fail after SECONDS.
e2e_wait_for() {
    local desc=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    e2e_fail "timed out after ${secs}s waiting for $desc"
}

# Remove leftovers of earlier runs that died without cleaning up: a run directory whose owner
# and daemons are all gone gets its mounts removed and is deleted.
_e2e_reap_stale() {
    local d pid alive
    for d in "${TMPDIR:-/tmp}"/sl-e2e.*; do
        [ -f "$d/owner.pid" ] || continue
        alive=0
        while read -r pid; do
            if _e2e_alive "$pid"; then alive=1; fi
        done < <(cat "$d/owner.pid" "$d/daemons.pid" 2>/dev/null)
        [ "$alive" = 0 ] || continue
        _e2e_unmount_under "$d"
        rm -rf --one-file-system "$d" 2>/dev/null || true
    done
}

_e2e_unmount_under() {
    local dir=$1 m
    # Deepest first; a mount that stays busy is detached lazily.
    findmnt -rn -o TARGET 2>/dev/null | awk -v d="$dir/" 'index($0, d) == 1' |
        awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- |
        while read -r m; do
            m=$(printf '%b' "$m") # findmnt escapes spaces as \x20
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done
}

# e2e_tmpdir: print the per-run directory E2E_DIR (created when lib.sh is sourced, so that a
# call in a command substitution cannot create a directory the trap never sees), traversable
# by other users (PostgreSQL runs as postgres), removed on exit.
e2e_tmpdir() {
    if [ -z "$E2E_DIR" ]; then
        _e2e_reap_stale
        E2E_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sl-e2e.XXXXXX")
        chmod 755 "$E2E_DIR"
        mkdir -p "$E2E_DIR/logs"
        echo "$$" >"$E2E_DIR/owner.pid"
        export E2E_DIR
    fi
    echo "$E2E_DIR"
}

# e2e_free_port: print a TCP port that nothing listens on and that was not handed out before
# in this run (remembered in a file: callers use it as $(e2e_free_port)). Ports come from
# 10000 up to just below the kernel's ephemeral range (ip_local_port_range, 32768 by default):
# a port inside it can be held at any moment by an outgoing connection's local end, and then a
# listener cannot bind it. Binding can still race with other work; the starters here retry on
# a bind failure.
e2e_free_port() {
    local p i used="$E2E_DIR/ports" lo=32768 span
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || lo=32768
    span=$((lo - 10000))
    [ "$span" -ge 2000 ] || span=22768 # ephemeral range starts too low: fall back to 10000-32767
    for ((i = 0; i < 200; i++)); do
        p=$((10000 + RANDOM % span))
        grep -qx "$p" "$used" 2>/dev/null && continue
        if [ -z "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] &&
            [ -z "$(_e2e_ns ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            echo "$p" >>"$used"
            echo "$p"
            return 0
        fi
    done
    e2e_fail "no free TCP port found"
}

# e2e_track_pid NAME PID: have the exit trap stop PID (SIGTERM, then SIGKILL after 10 s), after
# containerd and before the daemons started earlier. For a scenario's own daemons (a
# snapshotter, the proxy...). NAME is a label; "containerd" and "postgres" are reserved.
e2e_track_pid() {
    e2e_tmpdir >/dev/null
    E2E_PIDS+=("$1:$2")
    echo "$2" >>"$E2E_DIR/daemons.pid"
}

_e2e_alive() { # a zombie is not alive
    kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}

# _e2e_stop PID [SECONDS]: SIGTERM, wait, then SIGKILL.
_e2e_stop() {
    local pid=$1 secs=${2:-10} i
    _e2e_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        _e2e_alive "$pid" || break
        sleep 0.1
    done
    if _e2e_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# True unless this shell runs in a named network namespace (`ip netns exec`) or, where PID 1's
# namespace is visible, in any namespace other than PID 1's.
_e2e_in_root_netns() {
    local init
    [ -z "$(ip netns identify "$BASHPID" 2>/dev/null)" ] || return 1
    init=$(readlink /proc/1/ns/net 2>/dev/null) || return 0
    [ -z "$init" ] || [ "$(readlink /proc/self/ns/net)" = "$init" ]
}

# e2e_start_registry [EXTRA_YAML]: start a distribution registry on 127.0.0.1:<free port> with
# storage in E2E_DIR. EXTRA_YAML (optional) is appended to its config as top-level sections,
# e.g. `notifications:` with endpoints. Exports E2E_REGISTRY (host:port) and E2E_REGISTRY_PID.
e2e_start_registry() {
    local extra=${1:-} dir port pid attempt i nsx
    e2e_require docker-registry curl
    e2e_tmpdir >/dev/null
    dir="$E2E_DIR/registry"
    mkdir -p "$dir/storage"
    for attempt in 1 2 3; do
        port=$(e2e_free_port)
        cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: $(_e2e_bind_ip):$port
  secret: sl-e2e-$RANDOM$RANDOM
health:
  storagedriver:
    enabled: false
EOF
        [ -z "$extra" ] || printf '%s\n' "$extra" >>"$dir/config.yml"
        mapfile -t nsx < <(_e2e_nsx)
        "${nsx[@]}" docker-registry serve "$dir/config.yml" >>"$E2E_DIR/logs/registry.log" 2>&1 &
        pid=$!
        e2e_track_pid registry "$pid"
        for ((i = 0; i < 100; i++)); do
            _e2e_alive "$pid" || break
            if _e2e_ns curl -fsS -o /dev/null "http://$(_e2e_bind_ip):$port/v2/" 2>/dev/null; then
                E2E_REGISTRY="$(_e2e_bind_ip):$port"
                export E2E_REGISTRY E2E_REGISTRY_PID=$pid
                e2e_log "registry on $E2E_REGISTRY (pid $pid)"
                return 0
            fi
            sleep 0.1
        done
        _e2e_stop "$pid" 2
        e2e_log "registry did not come up on port $port (attempt $attempt)"
    done
    tail -n 20 "$E2E_DIR/logs/registry.log" >&2 || true
    e2e_fail "could not start docker-registry"
}

# e2e_start_containerd [SNAPSHOTTER_SOCKET]: start containerd with its own config, root, state
# and sockets under E2E_DIR, CRI disabled. With a socket, the config has a
# [proxy_plugins.starlight] snapshotter at that address (start the snapshotter first).
# Exports E2E_CONTAINERD_ADDRESS, E2E_CONTAINERD_ROOT, E2E_CONTAINERD_STATE,
# E2E_CONTAINERD_PID, E2E_CTR ("ctr --address ADDR", for word-splitting use) and the bash
# function e2e_ctr (exported with export -f).
e2e_start_containerd() {
    local sock=${1:-} dir pid i nsx
    e2e_require containerd ctr runc containerd-shim-runc-v2
    e2e_tmpdir >/dev/null
    _e2e_in_root_netns || e2e_fail "containerd must not start inside a network namespace" \
        "(runc then fails: no cgroup mount found); use nsenter --net for clients only," \
        "or E2E_NETNS"
    dir="$E2E_DIR/containerd"
    mkdir -p "$dir/root" "$dir/state" "$dir/opt"
    E2E_CONTAINERD_ADDRESS="$dir/containerd.sock"
    # unix socket paths are limited to 107 bytes
    [ "${#E2E_CONTAINERD_ADDRESS}" -lt 100 ] || e2e_fail "socket path too long: $dir (set TMPDIR)"
    {
        echo 'version = 2'
        echo "root = \"$dir/root\""
        echo "state = \"$dir/state\""
        echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
        echo '[grpc]'
        echo "  address = \"$E2E_CONTAINERD_ADDRESS\""
        echo '[ttrpc]'
        echo "  address = \"$dir/containerd.sock.ttrpc\""
        echo '[debug]'
        echo '  address = ""'
        echo '  level = "info"'
        echo '[metrics]'
        echo '  address = ""'
        echo '[plugins."io.containerd.internal.v1.opt"]'
        echo "  path = \"$dir/opt\""
        if [ -n "$sock" ]; then
            echo '[proxy_plugins.starlight]'
            echo '  type = "snapshot"'
            echo "  address = \"$sock\""
        fi
    } >"$dir/config.toml"
    mapfile -t nsx < <(_e2e_nsx)
    "${nsx[@]}" containerd --config "$dir/config.toml" >>"$E2E_DIR/logs/containerd.log" 2>&1 &
    pid=$!
    e2e_track_pid containerd "$pid"
    export E2E_CONTAINERD_ADDRESS E2E_CONTAINERD_PID=$pid
    export E2E_CONTAINERD_ROOT="$dir/root" E2E_CONTAINERD_STATE="$dir/state"
    export E2E_CTR="ctr --address $E2E_CONTAINERD_ADDRESS"
    for ((i = 0; i < 200; i++)); do
        _e2e_alive "$pid" || break
        if ctr --address "$E2E_CONTAINERD_ADDRESS" version >/dev/null 2>&1; then
            e2e_log "containerd on $E2E_CONTAINERD_ADDRESS (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$E2E_DIR/logs/containerd.log" >&2 || true
    e2e_fail "containerd did not start"
}

# e2e_ctr ARGS...: ctr talking to this run's containerd.
e2e_ctr() {
    ctr --address "$E2E_CONTAINERD_ADDRESS" "$@"
}
export -f e2e_ctr

# e2e_ctr_timeout SECONDS ARGS...: e2e_ctr, killed after SECONDS (exit 124).
e2e_ctr_timeout() {
    local secs=$1
    shift
    timeout "$secs" ctr --address "$E2E_CONTAINERD_ADDRESS" "$@"
}

# e2e_start_postgres [DBNAME]: initdb + pg_ctl as user postgres, data under E2E_DIR, listening
# on 127.0.0.1:<free port> and a unix socket in E2E_DIR/pg, fsync off; creates DBNAME
# (default starlight). Exports E2E_PG_PORT, E2E_PG_HOST (127.0.0.1), E2E_PG_SOCKDIR,
# E2E_PG_DB, E2E_PG_CONNINFO (libpq key=value), E2E_PG_URL (postgresql://...), E2E_PG_PID.
e2e_start_postgres() {
    local db=${1:-starlight} bin dir port attempt
    bin=${SL_PG_BIN:-/usr/lib/postgresql/15/bin}
    e2e_require "$bin/initdb" "$bin/pg_ctl" "$bin/createdb" runuser
    id postgres >/dev/null 2>&1 || e2e_skip "no postgres user"
    e2e_tmpdir >/dev/null
    dir="$E2E_DIR/pg"
    mkdir -p "$dir"
    chown postgres: "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --no-sync >>"$E2E_DIR/logs/postgres.log" 2>&1 || {
        tail -n 20 "$E2E_DIR/logs/postgres.log" >&2
        e2e_fail "initdb failed"
    }
    if [ "$(_e2e_bind_ip)" != 127.0.0.1 ]; then # initdb trusts loopback only
        echo "host all all $(_e2e_bind_ip)/32 trust" >>"$dir/data/pg_hba.conf"
    fi
    for attempt in 1 2 3; do
        port=$(e2e_free_port)
        if _e2e_ns runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" \
            -w -t 30 -o "-c fsync=off -c listen_addresses=$(_e2e_bind_ip) -p $port -k $dir" \
            start >>"$E2E_DIR/logs/postgres.log" 2>&1; then
            E2E_PG_PID=$(head -n1 "$dir/data/postmaster.pid")
            e2e_track_pid postgres "$E2E_PG_PID"
            runuser -u postgres -- "$bin/createdb" -h "$dir" -p "$port" "$db" \
                >>"$E2E_DIR/logs/postgres.log" 2>&1 || e2e_fail "createdb $db failed"
            E2E_PG_HOST=$(_e2e_bind_ip)
            export E2E_PG_PORT=$port E2E_PG_HOST E2E_PG_SOCKDIR=$dir E2E_PG_DB=$db
            export E2E_PG_PID
            export E2E_PG_CONNINFO="host=$E2E_PG_HOST port=$port user=postgres dbname=$db"
            export E2E_PG_URL="postgresql://postgres@$E2E_PG_HOST:$port/$db"
            e2e_log "postgres on $E2E_PG_HOST:$port (pid $E2E_PG_PID)"
            return 0
        fi
        cat "$dir/server.log" >>"$E2E_DIR/logs/postgres.log" 2>/dev/null || true
        e2e_log "postgres did not start on port $port (attempt $attempt)"
    done
    tail -n 20 "$E2E_DIR/logs/postgres.log" >&2 || true
    e2e_fail "could not start postgres"
}

# e2e_build_images NAME...: build (or take from the cache) test images; prints layout dirs.
e2e_build_images() {
    "$E2E_SRC/tests/images/build.sh" "$@"
}

# e2e_push_image NAME REPO:TAG: push a test image into this run's registry.
e2e_push_image() {
    "$E2E_SRC/tests/images/push.sh" "$1" "$E2E_REGISTRY" "$2"
}

# Kill every task of this run's containerd, then delete tasks and containers, in every
# namespace, so no shim outlives containerd.
_e2e_kill_tasks() {
    local ns t c
    for ns in $(e2e_ctr namespaces ls -q 2>/dev/null); do
        for t in $(e2e_ctr -n "$ns" tasks ls -q 2>/dev/null); do
            e2e_ctr -n "$ns" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
        done
        for t in $(e2e_ctr -n "$ns" tasks ls -q 2>/dev/null); do
            for ((i = 0; i < 50; i++)); do
                e2e_ctr -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 && break
                sleep 0.1
            done
        done
        for c in $(e2e_ctr -n "$ns" containers ls -q 2>/dev/null); do
            e2e_ctr -n "$ns" containers delete "$c" >/dev/null 2>&1 || true
        done
    done
}

# Shims of this run's containerd (their command line names its unique socket): stop them by
# PID if any survived their tasks.
_e2e_stray_shims() {
    local p cmd
    for p in /proc/[0-9]*; do
        cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        case "$cmd" in
        *containerd-shim*"$E2E_CONTAINERD_ADDRESS"*) echo "${p#/proc/}" ;;
        esac
    done
}

_e2e_cleanup() {
    local rc=$? i entry kind pid f
    set +e
    trap - EXIT INT TERM HUP
    for ((i = ${#E2E_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${E2E_ON_EXIT[i]}" || true
    done
    if [ -n "${E2E_CONTAINERD_PID:-}" ] && _e2e_alive "$E2E_CONTAINERD_PID"; then
        _e2e_kill_tasks
    fi
    # containerd first, then the rest in reverse start order
    for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do
        entry=${E2E_PIDS[i]}
        [ "${entry%%:*}" = containerd ] && _e2e_stop "${entry#*:}" 15
    done
    if [ -n "${E2E_CONTAINERD_ADDRESS:-}" ]; then
        for pid in $(_e2e_stray_shims); do
            _e2e_stop "$pid" 5
        done
    fi
    for ((i = ${#E2E_PIDS[@]} - 1; i >= 0; i--)); do
        entry=${E2E_PIDS[i]}
        kind=${entry%%:*} pid=${entry#*:}
        case "$kind" in
        containerd) ;;
        postgres)
            runuser -u postgres -- "${SL_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_ctl" \
                -D "$E2E_DIR/pg/data" -m immediate -w stop >/dev/null 2>&1
            _e2e_stop "$pid" 5
            ;;
        *) _e2e_stop "$pid" 10 ;;
        esac
    done
    for ((i = ${#E2E_AFTER_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${E2E_AFTER_EXIT[i]}" || true
    done
    if [ -n "$E2E_DIR" ] && [ -d "$E2E_DIR" ]; then
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
            for f in "$E2E_DIR"/logs/*.log; do
                [ -s "$f" ] || continue
                echo "----- $(basename "$f") (last 15 lines)" >&2
                grep -v 'level=info' "$f" | tail -n 15 >&2
            done
        fi
        _e2e_unmount_under "$E2E_DIR"
        if [ "${SL_E2E_KEEP:-0}" = 1 ]; then
            rm -f "$E2E_DIR/owner.pid"
            e2e_log "kept $E2E_DIR"
        else
            rm -rf --one-file-system "$E2E_DIR"
        fi
    fi
    exit "$rc"
}

trap _e2e_cleanup EXIT
e2e_tmpdir >/dev/null
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
