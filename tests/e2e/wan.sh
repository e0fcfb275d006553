# shellcheck shell=bash
# Emulated WAN link between two network namespaces, for e2e scenarios and benchmarks. Source it
# after lib.sh:
#
#   . "$(dirname "$0")/../lib.sh"
#   . "$(dirname "$0")/../wan.sh"
#   wan_setup 100 100      # RTT 100 ms, 100 Mbit/s
#   wan_check              # optional: measures RTT and bandwidth, fails when off by >20%/25%
#   wan_cloud CMD...       # run CMD in the cloud namespace (nsenter --net)
#   wan_edge CMD...        # run CMD in the edge namespace
#
# Layout: namespaces slc-<pid> (cloud) and sle-<pid> (edge) joined by a veth pair on a /30 of
# the benchmarking range 198.18.0.0/15 chosen from the pid (.1 cloud, .2 edge). Bandwidth: tbf
# on both veth ends. Delay (the kernel has no netem): an iptables mangle PREROUTING rule in each
# namespace sends what arrives on the veth to NFQUEUE 0 (--queue-bypass: no delay program, no
# delay) and one sl-netdelay per namespace holds each packet RTT/2 ms. Delay is applied on
# ingress only: egress delay collapses TCP.
#
# Safety: before anything else the root namespace gets `ip route add unreachable <the /30>`, so
# a request that mistakenly leaves from the root namespace fails locally instead of going off
# the machine. Nothing is added to the root namespace's iptables. Teardown (registered with
# e2e_after_exit: it runs after lib.sh has stopped every daemon, so nothing still uses the
# link) kills the delay programs by PID, deletes both namespaces, then removes the route.
# Leftovers of runs that died without teardown (namespaces named after a dead pid) are removed.
#
# Exports WAN_CLOUD_NS, WAN_EDGE_NS, WAN_CLOUD_IP, WAN_EDGE_IP, WAN_RTT_MS, WAN_RATE_MBIT,
# WAN_NET (the /30).

WAN_CLOUD_NS='' WAN_EDGE_NS='' WAN_NET='' WAN_ROUTE_ADDED=0
WAN_DELAY_PIDS=()

# wan_cloud CMD... / wan_edge CMD...: run CMD in that namespace. nsenter --net changes only
# the network namespace (`ip netns exec` also remounts /sys, which breaks containerd and runc).
# For a daemon started in the background use the arrays WAN_CLOUD / WAN_EDGE (the same
# prefix): `"${WAN_CLOUD[@]}" daemon ... &` keeps $! the daemon's pid.
wan_cloud() { nsenter --net="/run/netns/$WAN_CLOUD_NS" -- "$@"; }
wan_edge() { nsenter --net="/run/netns/$WAN_EDGE_NS" -- "$@"; }
WAN_CLOUD=() WAN_EDGE=()

# _wan_net PID: the /30 of 198.18.0.0/15 for PID, as "A.B.C.D" (network address).
_wan_net() {
    local off=$((($1 % 32768) * 4))
    echo "198.$((18 + (off >> 16))).$(((off >> 8) & 255)).$((off & 255))"
}

_wan_ip() { # _wan_ip NET N: NET + N
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    echo "$a.$b.$c.$((d + $2))"
}

# Remove namespaces (and their route) left by runs whose shell is gone.
_wan_reap_stale() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case "$ns" in
        slc-[0-9]* | sle-[0-9]*) pid=${ns#sl?-} ;;
        *) continue ;;
        esac
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        kill -0 "$pid" 2>/dev/null && continue
        _wan_kill_ns_procs "$ns"
        ip netns del "$ns" 2>/dev/null || true
        ip route del unreachable "$(_wan_net "$pid")/30" 2>/dev/null || true
        e2e_log "wan: removed stale namespace $ns"
    done
}

# Processes still inside namespace NS (a run killed by SIGKILL leaves its delay programs).
_wan_kill_ns_procs() {
    local pid
    for pid in $(ip netns pids "$1" 2>/dev/null); do
        kill -TERM "$pid" 2>/dev/null || true
    done
}

# wan_setup RTT_MS RATE_MBIT
wan_setup() {
    local rtt=$1 rate=$2 veth_c veth_e ns i pid half
    if ! [[ "$rtt" =~ ^[0-9]+$ && "$rate" =~ ^[1-9][0-9]*$ ]]; then
        e2e_fail "wan_setup RTT_MS RATE_MBIT: integers expected, got '$rtt' '$rate'"
    fi
    e2e_require ip iptables tc nsenter "$SL_BIN/sl-netdelay"
    [ "$(id -u)" = 0 ] || e2e_skip "wan: needs root (network namespaces)"
    _e2e_in_root_netns || e2e_fail "wan_setup must run in the root network namespace"
    _wan_reap_stale
    WAN_NET=$(_wan_net $$)
    # safety first: nothing in this range may leave the machine from the root namespace
    ip route add unreachable "$WAN_NET/30" || e2e_fail "wan: cannot add unreachable $WAN_NET/30"
    WAN_ROUTE_ADDED=1
    e2e_after_exit _wan_teardown
    WAN_CLOUD_NS=slc-$$ WAN_EDGE_NS=sle-$$
    WAN_CLOUD=(nsenter "--net=/run/netns/$WAN_CLOUD_NS" --)
    # shellcheck disable=SC2034 # for scenarios
    WAN_EDGE=(nsenter "--net=/run/netns/$WAN_EDGE_NS" --)
    WAN_CLOUD_IP=$(_wan_ip "$WAN_NET" 1) WAN_EDGE_IP=$(_wan_ip "$WAN_NET" 2)
    WAN_RTT_MS=$rtt WAN_RATE_MBIT=$rate
    export WAN_CLOUD_NS WAN_EDGE_NS WAN_CLOUD_IP WAN_EDGE_IP WAN_RTT_MS WAN_RATE_MBIT WAN_NET
    ip netns add "$WAN_CLOUD_NS" || e2e_fail "wan: ip netns add $WAN_CLOUD_NS"
    ip netns add "$WAN_EDGE_NS" || e2e_fail "wan: ip netns add $WAN_EDGE_NS"
    veth_c=wc$$ veth_e=we$$
    ip link add "$veth_c" netns "$WAN_CLOUD_NS" type veth peer name "$veth_e" \
        netns "$WAN_EDGE_NS" || e2e_fail "wan: veth pair"
    half=$(awk -v r="$rtt" 'BEGIN { printf "%.3f", r / 2 }')
    for ns in "$WAN_CLOUD_NS:$veth_c:$WAN_CLOUD_IP" "$WAN_EDGE_NS:$veth_e:$WAN_EDGE_IP"; do
        IFS=: read -r ns veth i <<<"$ns"
        nsenter --net="/run/netns/$ns" sh -ec "
            ip link set lo up
            ip addr add $i/30 dev $veth
            ip link set $veth up
            tc qdisc add dev $veth root tbf rate ${rate}mbit burst 256kb latency 50ms
            iptables -t mangle -A PREROUTING -i $veth -j NFQUEUE --queue-num 0 --queue-bypass
            sysctl -qw net.ipv4.tcp_slow_start_after_idle=0
        " || e2e_fail "wan: configure $ns"
        if [ "$rtt" -gt 0 ]; then
            nsenter --net="/run/netns/$ns" -- "$SL_BIN/sl-netdelay" --queue 0 --delay "$half" \
                >>"$E2E_DIR/logs/netdelay-$ns.log" 2>&1 &
            pid=$!
            WAN_DELAY_PIDS+=("$pid")
            echo "$pid" >>"$E2E_DIR/daemons.pid"
        fi
    done
    # the delay programs are bound once a packet takes the delay (with --queue-bypass an
    # unbound queue passes packets straight through)
    if [ "$rtt" -gt 0 ]; then
        for ns in "$WAN_CLOUD_NS" "$WAN_EDGE_NS"; do
            e2e_wait_for "sl-netdelay in $ns" 5 grep -q 'delay' "$E2E_DIR/logs/netdelay-$ns.log"
        done
        for pid in "${WAN_DELAY_PIDS[@]}"; do
            _e2e_alive "$pid" || e2e_fail "sl-netdelay exited: $(cat "$E2E_DIR"/logs/netdelay-*.log)"
        done
    fi
    e2e_wait_for "wan link" 10 wan_edge ping -c1 -W1 "$WAN_CLOUD_IP"
    e2e_log "wan: $WAN_CLOUD_NS ($WAN_CLOUD_IP) <-> $WAN_EDGE_NS ($WAN_EDGE_IP)," \
        "RTT ${rtt} ms, ${rate} Mbit/s"
}

_wan_teardown() {
    local pid ns
    for pid in "${WAN_DELAY_PIDS[@]}"; do
        _e2e_stop "$pid" 5
    done
    for ns in "$WAN_CLOUD_NS" "$WAN_EDGE_NS"; do
        [ -n "$ns" ] || continue
        # anything else still inside (a daemon a scenario forgot to track)
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            e2e_log "wan: stopping stray pid $pid in $ns"
            _e2e_stop "$pid" 5
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "$WAN_ROUTE_ADDED" = 1 ]; then
        ip route del unreachable "$WAN_NET/30" 2>/dev/null || true
        WAN_ROUTE_ADDED=0
    fi
}

# wan_check: measure the link: RTT as curl's time_connect from the edge to an HTTP server in
# the cloud (a TCP handshake is one round trip), and the rate of a 20 MB transfer on a warm
# connection (the second of two downloads on one connection, so slow start is behind it).
# Prints both; fails when RTT is off by more than 20% or the rate by more than 25%.
wan_check() {
    local dir port pid out rtt_ms mbit
    dir="$E2E_DIR/wan-check"
    mkdir -p "$dir/www"
    head -c $((20 * 1000 * 1000)) /dev/urandom >"$dir/www/blob"
    port=$(e2e_free_port)
    # HTTP/1.1 (keep-alive), so that two downloads share one connection
    "${WAN_CLOUD[@]}" python3 -c '
import functools, http.server, sys
h = http.server.SimpleHTTPRequestHandler
h.protocol_version = "HTTP/1.1"
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])),
    functools.partial(h, directory=sys.argv[3])).serve_forever()
' "$WAN_CLOUD_IP" "$port" "$dir/www" >>"$E2E_DIR/logs/wan-http.log" 2>&1 &
    pid=$!
    e2e_track_pid wan-http "$pid"
    e2e_wait_for "http server in $WAN_CLOUD_NS" 10 \
        wan_edge curl -fsS -o /dev/null "http://$WAN_CLOUD_IP:$port/"
    rtt_ms=$(wan_edge curl -fsS -o /dev/null -w '%{time_connect}\n' \
        "http://$WAN_CLOUD_IP:$port/" | awk '{ printf "%.1f", $1 * 1000 }')
    # the first download warms the connection up; the second (same connection, slow start
    # after idle is off) measures the link: bytes over the time after its first byte
    out=$(wan_edge curl -fsS -o /dev/null -o /dev/null \
        -w '%{size_download} %{time_starttransfer} %{time_total}\n' \
        "http://$WAN_CLOUD_IP:$port/blob" "http://$WAN_CLOUD_IP:$port/blob" | tail -n1)
    mbit=$(awk '{ printf "%.1f", $1 * 8 / ($3 - $2) / 1e6 }' <<<"$out")
    _e2e_stop "$pid" 5
    e2e_log "wan check: RTT ${rtt_ms} ms (asked ${WAN_RTT_MS}), 20 MB at ${mbit} Mbit/s" \
        "(asked ${WAN_RATE_MBIT}; $(awk '{ printf "%.2f", $3 }' <<<"$out") s)"
    awk -v m="$rtt_ms" -v w="$WAN_RTT_MS" 'BEGIN { exit !(w == 0 ? m < 5 : m >= 0.8 * w && m <= 1.2 * w) }' ||
        e2e_fail "wan: measured RTT ${rtt_ms} ms is not within 20% of ${WAN_RTT_MS} ms"
    awk -v m="$mbit" -v w="$WAN_RATE_MBIT" 'BEGIN { exit !(m >= 0.75 * w && m <= 1.25 * w) }' ||
        e2e_fail "wan: measured ${mbit} Mbit/s is not within 25% of ${WAN_RATE_MBIT} Mbit/s"
    export WAN_MEASURED_RTT_MS=$rtt_ms WAN_MEASURED_MBIT=$mbit
}
