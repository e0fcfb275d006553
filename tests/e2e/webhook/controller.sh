# shellcheck shell=bash
# wh_start_controller NAME ARGS...: start starlight-controller with ARGS plus
# --webhook-listen/--metrics-listen on free loopback ports, retrying with new ports when a bind
# fails (a port picked free can be taken meanwhile, e.g. as the local end of a connection).
# Sets WH_WP, WH_MP, WH_PID; the log is E2E_DIR/logs/NAME.log. Source after lib.sh.
wh_start_controller() {
    local name=$1 attempt i
    shift
    for attempt in 1 2 3 4; do
        WH_WP=$(e2e_free_port)
        WH_MP=$(e2e_free_port)
        "$SL_BIN/starlight-controller" --webhook-listen "127.0.0.1:$WH_WP" \
            --metrics-listen "127.0.0.1:$WH_MP" "$@" >>"$E2E_DIR/logs/$name.log" 2>&1 &
        WH_PID=$!
        for i in $(seq 75); do
            curl -fsS -o /dev/null "http://127.0.0.1:$WH_MP/healthz" 2>/dev/null && break
            kill -0 "$WH_PID" 2>/dev/null || break
            sleep 0.2
        done
        if curl -fsS -o /dev/null "http://127.0.0.1:$WH_MP/healthz" 2>/dev/null; then
            e2e_track_pid "$name" "$WH_PID"
            return 0
        fi
        kill "$WH_PID" 2>/dev/null || true
        wait "$WH_PID" 2>/dev/null || true
        e2e_log "$name: start attempt $attempt failed ($(tail -1 "$E2E_DIR/logs/$name.log"))"
    done
    e2e_fail "$name did not start (see $name.log)"
}
