#!/usr/bin/env bash
# One round of the WAN benchmark at one RTT (bench/wan.sh runs one per RTT and app, each in a
# fresh process, so each gets fresh namespaces, a fresh cloud side and no traces from an
# earlier round). Usage: bench/wan/run-rtt.sh BUILD_DIR
#
# Environment (bench/wan.sh sets these):
#   SL_BENCH_RTT        RTT in ms (default 150)          SL_BENCH_RATE_MBIT  link rate (100)
#   SL_BENCH_APPS       apps (bench/wan/apps.sh; default redis)
#   SL_BENCH_RUNS       runs per system and app (3)
#   SL_BENCH_SYSTEMS    any of containerd starlight starlight-traced estargz bound (all)
#   SL_BENCH_WAN_CSV    CSV to append rows to (bench/results/wan.csv)
#
# 1. the link (tests/e2e/wan.sh): namespaces, the root `unreachable` route, tbf + NFQUEUE
#    delay, measured; 2. cloud namespace: registry, PostgreSQL, starlight-proxy; each app's old
#    and new image pushed (:src), converted and notified (:sl) and, for eStargz, converted by
#    `ctr-remote image convert --estargz --oci` (cached) and pushed (:esgz); 3. per app, runs
#    interleaved system by system, every run on a fresh edge node (containerd, starlight-daemon
#    or containerd-stargz-grpc started with empty roots, stopped by PID and deleted after):
#      deploy = the old image on an empty node; update = then the new image on that node;
#      each timed from the start of the pull until the app's probe passes; bytes = what the
#      edge end of the link received (/proc/net/dev of the edge namespace) until ready and
#      until the pull completed;
#    containerd  `ctr images pull` (+ unpack to overlayfs), `ctr run`; after each phase the app
#                is started again from the local image: its local start time (for the bound);
#    starlight   `ctr-starlight pull`, `ctr run --snapshotter starlight` once the image is
#                ready (the rest streams in behind); before any trace exists;
#    then traces are recorded once per app (optimizer on, each image run until ready, report)
#    starlight-traced  the same, the proxy now sending the traced files first;
#    estargz     `ctr-remote image rpull` + `ctr run` on containerd-stargz-grpc (background
#                fetch on, as shipped);
#    bound       one curl, over the same link, of exactly the bytes Starlight needed before the
#                app could start: the delta's prefix up to its last traced content (deploy:
#                the old image from nothing; update: the new one given the old), served by a
#                plain HTTP server in the cloud namespace. The report adds the local start.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
export SL_BUILD=$build SL_BIN=$build/bin
src=$(cd "$(dirname "$0")/../.." && pwd)
here=$src/bench/wan
. "$src/tests/e2e/lib.sh"
. "$src/tests/e2e/wan.sh"
. "$src/tests/e2e/pull/common.sh"
# shellcheck source=apps.sh
. "$here/apps.sh"
E2E_NAME=bench-wan

rtt=${SL_BENCH_RTT:-150} rate=${SL_BENCH_RATE_MBIT:-100}
read -r -a apps <<<"${SL_BENCH_APPS:-redis}"
runs=${SL_BENCH_RUNS:-3}
read -r -a systems <<<"${SL_BENCH_SYSTEMS:-containerd starlight starlight-traced estargz bound}"
csv=${SL_BENCH_WAN_CSV:-$src/bench/results/wan.csv}
CS="$SL_BIN/ctr-starlight"
[ "$(id -u)" = 0 ] || e2e_fail "the WAN benchmark needs root (namespaces, containerd, FUSE)"
e2e_require "$CS" "$SL_BIN/starlight-proxy" "$SL_BIN/starlight-daemon" skopeo curl python3 \
    nsenter containerd ctr runc psql
has() { [[ " ${systems[*]} " == *" $1 "* ]]; }
arch=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
P="linux/$arch"
W=$E2E_DIR/bench
mkdir -p "$W/logs" "$W/www"
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
# bytes received by the edge end of the link so far
link_rx() { wan_edge cat /proc/net/dev | awk -v i="we$$" '{ sub(/:/, " ") } $1 == i { print $2 }'; }

mkdir -p "$(dirname "$csv")"
[ -s "$csv" ] || echo "rtt_ms,rate_mbit,app,system,phase,run,ms,rx_ready,rx_total,load1,note" >"$csv"
# row APP SYSTEM PHASE RUN MS RX_READY RX_TOTAL [NOTE]
row() {
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$rtt" "$rate" "$1" "$2" "$3" "$4" "$5" "$6" \
        "$7" "$(cut -d' ' -f1 /proc/loadavg)" "${8:-}" >>"$csv"
    e2e_log "$1 $2 $3 run $4: ${5} ms, ${6} B until ready, ${7} B in all"
}

# --- images (built without pulls, cached) ---
declare -A layout
for app in "${apps[@]}"; do
    for img in $(app_images "$app"); do
        layout[$img]=$(e2e_build_images "$img") || e2e_fail "build $img"
    done
done

# --- eStargz: the snapshotter daemon (built offline, cached) and the converted images ---
ESGZ_BIN='' ESGZ_WHY=''
if has estargz; then
    if ! command -v ctr-remote >/dev/null; then
        ESGZ_WHY="ctr-remote missing (Debian package stargz-snapshotter)"
    elif ! ESGZ_BIN=$(bash "$here/estargz-build.sh" 2>"$W/logs/estargz-build.log"); then
        ESGZ_WHY="containerd-stargz-grpc did not build: $(tail -n 3 "$W/logs/estargz-build.log" | tr '\n,' '; ')"
        ESGZ_BIN=''
    fi
    [ -z "$ESGZ_WHY" ] || e2e_log "eStargz left out: $ESGZ_WHY"
fi
# esgz_archive IMG: esgz_tar[IMG] = an OCI archive of IMG converted by ctr-remote, cached by
# source digest (not in a subshell: it may start the converting containerd)
esgz_cache=${SL_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c/bench}/estargz
declare -A esgz_tar
esgz_archive() {
    local img=$1 key tar
    key=$({
        cat "${layout[$img]}/index.json"
        dpkg-query -W stargz-snapshotter
    } | sha256sum | cut -c1-16)
    tar=$esgz_cache/$img-$key.tar
    if [ ! -s "$tar" ]; then
        mkdir -p "$esgz_cache"
        e2e_log "ctr-remote image convert --estargz $img (cached after this)"
        [ -n "${E2E_CONTAINERD_PID:-}" ] || e2e_start_containerd
        tar -C "${layout[$img]}" -cf "$W/$img.src.tar" .
        e2e_ctr images import --no-unpack --index-name "bench/$img:src" "$W/$img.src.tar" >/dev/null
        ctr-remote --address "$E2E_CONTAINERD_ADDRESS" image convert --estargz --oci \
            "bench/$img:src" "bench/$img:esgz" >"$W/logs/esgz-$img.log" 2>&1 ||
            { cat "$W/logs/esgz-$img.log" >&2; e2e_fail "ctr-remote convert $img"; }
        e2e_ctr images export "$tar.tmp" "bench/$img:esgz" || e2e_fail "ctr images export $img"
        mv "$tar.tmp" "$tar"
        rm -f "$W/$img.src.tar"
    fi
    esgz_tar[$img]=$tar
}
if [ -n "$ESGZ_BIN" ]; then
    for app in "${apps[@]}"; do
        for img in $(app_images "$app"); do esgz_archive "$img"; done
    done
    # the converting containerd is not an edge node: stop it and delete its state
    [ -z "${E2E_CONTAINERD_PID:-}" ] || { PULL_EDGE_DAEMON_PID='' pull_edge_stop; }
    find "$esgz_cache" -name '*.tar' -mtime +30 -delete 2>/dev/null || true
fi

# --- the link and the cloud side ---
wan_setup "$rtt" "$rate"
# measured, not enforced: on a loaded machine the user-space delay adds to the RTT, and the
# benchmark records what the link was rather than stopping (in a subshell, wan_check's
# failure ends only the subshell; its log line has both numbers)
if ! (wan_check) 2>"$W/logs/wan-check.log"; then
    e2e_log "WARNING: the link is off its target: $(grep -o 'wan check: .*' "$W/logs/wan-check.log")"
fi
link=$(sed -n 's/.*wan check: RTT \([0-9.]*\) ms .* at \([0-9.]*\) Mbit.*/\1 \2/p' "$W/logs/wan-check.log")
[ -n "$link" ] || { cat "$W/logs/wan-check.log" >&2; e2e_fail "the link could not be measured"; }
e2e_log "link: measured RTT ${link% *} ms, ${link#* } Mbit/s"
echo "$rtt $rate $link" >>"${csv%.csv}-link.txt"
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_registry
E2E_NETNS=$WAN_CLOUD_NS E2E_BIND_IP=$WAN_CLOUD_IP e2e_start_postgres
R=$E2E_REGISTRY
pport=$(E2E_NETNS=$WAN_CLOUD_NS e2e_free_port)
mkdir -p "$E2E_DIR/proxy-cache"
"${WAN_CLOUD[@]}" "$SL_BIN/starlight-proxy" --listen "$WAN_CLOUD_IP:$pport" \
    --postgres "$E2E_PG_CONNINFO" --registry "$R" --registry-insecure \
    --cache-dir "$E2E_DIR/proxy-cache" --cache-max-bytes 4GiB >>"$E2E_DIR/logs/proxy.log" 2>&1 &
e2e_track_pid proxy $!
U="http://$WAN_CLOUD_IP:$pport"
e2e_wait_for "the proxy" 20 wan_cloud curl -fsS -o /dev/null "$U/health-check"
for app in "${apps[@]}"; do
    for img in $(app_images "$app"); do
        wan_cloud skopeo copy --quiet --dest-tls-verify=false "oci:${layout[$img]}:latest" \
            "docker://$R/$img:src" || e2e_fail "push $img"
        wan_cloud "$CS" convert --insecure-source --insecure-destination --notify --proxy "$U" \
            "$R/$img:src" "$R/$img:sl" >/dev/null 2>"$W/logs/convert-$img.log" ||
            { cat "$W/logs/convert-$img.log" >&2; e2e_fail "convert --notify $img"; }
        if [ -n "$ESGZ_BIN" ]; then
            wan_cloud skopeo copy --quiet --dest-tls-verify=false \
                "oci-archive:${esgz_tar[$img]}" "docker://$R/$img:esgz" ||
                e2e_fail "push the eStargz $img"
        fi
    done
done
e2e_log "cloud: registry $R, proxy $U; images ready"

# --- running an app ---
# app_start REF NAME [CTR RUN ARGS...]: run REF detached, host network (the edge namespace)
app_start() {
    local ref=$1 name=$2
    shift 2
    e2e_ctr_timeout 120 run -d --net-host --log-uri "file://$W/logs/app-$name.log" "$@" \
        "$ref" "$name" >/dev/null || e2e_fail "ctr run $ref"
}
# app_ready APP T0: wait (≤ 120 s) until APP's probe passes; prints ms since T0
app_ready() {
    local app=$1 t0=$2 end=$(($(date +%s) + 120))
    until app_probe "$app"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.05
    done
    ms_since "$t0"
}
app_stop() {
    e2e_ctr tasks kill -s SIGKILL "$1" >/dev/null 2>&1 || true
    e2e_wait_for "$1 to stop" 20 sh -c "! $E2E_CTR tasks ls | grep -w '$1' | grep -q RUNNING"
    e2e_ctr tasks delete "$1" >/dev/null 2>&1 || true
    e2e_ctr containers delete "$1" >/dev/null 2>&1 || true
}
# app_time APP REF NAME T0 [CTR RUN ARGS...]: start, wait until ready, stop; prints ms since T0
app_time() {
    local app=$1 ref=$2 name=$3 t0=$4 ms
    shift 4
    app_start "$ref" "$name" "$@"
    ms=$(app_ready "$app" "$t0") || {
        tail -n 20 "$W/logs/app-$name.log" >&2 || true
        e2e_fail "$app ($ref) not ready after 120 s"
    }
    app_stop "$name"
    echo "$ms"
}

# --- Starlight pulls (in the background: the app starts once the image is ready) ---
BG_PULL=''
e2e_on_exit '[ -z "$BG_PULL" ] || _e2e_stop "$BG_PULL" 5'
sl_pull() { # sl_pull IMG OUT: returns once IMG:sl is ready
    # no earlier pull's "ready after" may be seen before this pull's redirection truncates it
    rm -f "$2" "$2.err"
    "${WAN_EDGE[@]}" "$CS" pull --daemon "$PULL_EDGE_CTL" --insecure "$R/$1:sl" >"$2" 2>"$2.err" &
    BG_PULL=$! BG_OUT=$2
    local end=$(($(date +%s) + 120))
    until grep -qs 'ready after' "$2.err" || ! kill -0 "$BG_PULL" 2>/dev/null; do
        [ "$(date +%s)" -lt "$end" ] || e2e_fail "$1 not ready after 120 s"
        sleep 0.02
    done
    grep -qs 'ready after' "$2.err" || sl_pull_wait
}
sl_pull_wait() {
    wait "$BG_PULL" || { BG_PULL=''; cat "$BG_OUT.err" >&2; e2e_fail "ctr-starlight pull failed"; }
    BG_PULL=''
}

# --- the systems: one run = deploy (old, empty node) then update (new) on a fresh node ---
sys_containerd() { # APP RUN
    local app=$1 run=$2 img phase rx0 t0 ms local_ms
    pull_edge_start "$U" "$WAN_EDGE_NS"
    for phase in deploy update; do
        read -r old new <<<"$(app_images "$app")"
        img=$old
        [ "$phase" = deploy ] || img=$new
        rx0=$(link_rx)
        t0=$(date +%s%N)
        wan_edge ctr --address "$E2E_CONTAINERD_ADDRESS" images pull --plain-http \
            "$R/$img:src" >"$W/logs/ctr-pull.log" 2>&1 ||
            { cat "$W/logs/ctr-pull.log" >&2; e2e_fail "ctr images pull $img"; }
        ms=$(app_time "$app" "$R/$img:src" "c-$img-$run" "$t0")
        rx=$(($(link_rx) - rx0))
        row "$app" containerd "$phase" "$run" "$ms" "$rx" "$rx"
        # the app's own start, from the local image (overlayfs, warm page cache)
        t0=$(date +%s%N)
        local_ms=$(app_time "$app" "$R/$img:src" "l-$img-$run" "$t0")
        row "$app" local-start "$phase" "$run" "$local_ms" 0 0
    done
    pull_edge_stop
}

sys_starlight() { # APP RUN SYSTEM
    local app=$1 run=$2 sys=$3 img phase rx0 t0 ms rx note
    pull_edge_start "$U" "$WAN_EDGE_NS"
    for phase in deploy update; do
        read -r old new <<<"$(app_images "$app")"
        img=$old
        [ "$phase" = deploy ] || img=$new
        rx0=$(link_rx)
        t0=$(date +%s%N)
        sl_pull "$img" "$W/sl.pull"
        ms=$(app_time "$app" "$R/$img:sl" "s-$img-$run" "$t0" --snapshotter starlight)
        rx=$(($(link_rx) - rx0))
        sl_pull_wait
        # when the daemon had the image ready and complete (its own log, ms since the pull)
        note=$(grep -o "pull $R/$img:sl: .*" "$E2E_DIR/logs/starlight-daemon.log" | tail -n1 |
            sed -n 's/.*ready after \([0-9]*\) ms, complete after \([0-9]*\) ms.*/pull_ready_ms=\1;pull_complete_ms=\2/p')
        row "$app" "$sys" "$phase" "$run" "$ms" "$rx" "$(($(link_rx) - rx0))" "$note"
    done
    pull_edge_stop
}

esgz_edge_start() {
    mkdir -p "$E2E_DIR/root"
    "${WAN_EDGE[@]}" "$ESGZ_BIN" -root "$E2E_DIR/root" -address "$E2E_DIR/snap.sock" \
        -insecure "$R" >>"$E2E_DIR/logs/stargz.log" 2>&1 &
    # pull_edge_stop stops, forgets and cleans up after it like the starlight daemon
    PULL_EDGE_DAEMON_PID=$!
    e2e_track_pid starlight-daemon "$PULL_EDGE_DAEMON_PID"
    e2e_wait_for "containerd-stargz-grpc" 20 test -S "$E2E_DIR/snap.sock"
    # containerd knows the proxy snapshotter as "starlight" (e2e_start_containerd's name for
    # it); here it is containerd-stargz-grpc
    E2E_NETNS=$WAN_EDGE_NS e2e_start_containerd "$E2E_DIR/snap.sock"
    e2e_wait_for "containerd to reach stargz" 20 e2e_ctr snapshots --snapshotter starlight ls
}

sys_estargz() { # APP RUN
    local app=$1 run=$2 img phase rx0 t0 ms rx
    if [ -z "$ESGZ_BIN" ]; then
        for phase in deploy update; do row "$app" estargz "$phase" "$run" NA 0 0 "$ESGZ_WHY"; done
        return
    fi
    esgz_edge_start
    for phase in deploy update; do
        read -r old new <<<"$(app_images "$app")"
        img=$old
        [ "$phase" = deploy ] || img=$new
        rx0=$(link_rx)
        t0=$(date +%s%N)
        wan_edge ctr-remote --address "$E2E_CONTAINERD_ADDRESS" image rpull --plain-http \
            --snapshotter starlight "$R/$img:esgz" >"$W/logs/rpull.log" 2>&1 ||
            { cat "$W/logs/rpull.log" >&2; e2e_fail "ctr-remote image rpull $img"; }
        ms=$(app_time "$app" "$R/$img:esgz" "e-$img-$run" "$t0" --snapshotter starlight)
        rx=$(($(link_rx) - rx0))
        row "$app" estargz "$phase" "$run" "$ms" "$rx" "$rx"
    done
    pull_edge_stop
}

record_traces() { # APP: traces of both images, reported to the proxy
    local app=$1 img n
    pull_edge_start "$U" "$WAN_EDGE_NS"
    n=0
    for img in $(app_images "$app"); do
        sl_pull "$img" "$W/trace.pull"
        sl_pull_wait
        wan_edge "$CS" optimizer --daemon "$PULL_EDGE_CTL" on --group "bench-$img" >/dev/null ||
            e2e_fail "optimizer on"
        app_time "$app" "$R/$img:sl" "t-$img" "$(date +%s%N)" --snapshotter starlight >/dev/null
        wan_edge "$CS" optimizer --daemon "$PULL_EDGE_CTL" off >/dev/null || e2e_fail "optimizer off"
        n=$((n + 1))
    done
    wan_edge "$CS" report --daemon "$PULL_EDGE_CTL" --proxy "$U" >"$W/report.out" 2>&1 ||
        { cat "$W/report.out" >&2; e2e_fail "ctr-starlight report"; }
    grep -q '^reported [1-9]' "$W/report.out" || e2e_fail "nothing reported: $(cat "$W/report.out")"
    e2e_log "$app: $(head -n1 "$W/report.out")"
    pull_edge_stop
}

# delta_url OLD NEW PHASE: the delta Starlight asks for in PHASE
delta_url() {
    if [ "$3" = deploy ]; then
        echo "$U/starlight/delta?to=$R/$1:sl&platform=$P&insecure=1"
    else
        echo "$U/starlight/delta?to=$R/$2:sl&from=$R/$1:sl&platform=$P&insecure=1"
    fi
}

BOUND_PORT=''
bound_prepare() { # APP: the traced prefixes, served from the cloud namespace
    local app=$1 old new phase n
    read -r old new <<<"$(app_images "$app")"
    for phase in deploy update; do
        # the format the daemon asks for (docs/protocol.md §3: version 2 when accepted)
        wan_cloud curl -fsS -H "Accept: application/vnd.starlight.delta.v2" -o "$W/delta" \
            "$(delta_url "$old" "$new" "$phase")" ||
            e2e_fail "GET /starlight/delta ($app $phase)"
        n=$(python3 "$here/tools.py" traced-prefix "$W/delta") || e2e_fail "traced prefix ($app $phase)"
        head -c "$n" "$W/delta" >"$W/www/$app-$phase.bin"
        e2e_log "$app $phase: the bound transfers $n of $(stat -c %s "$W/delta") delta bytes"
    done
    if [ -z "$BOUND_PORT" ]; then
        BOUND_PORT=$(E2E_NETNS=$WAN_CLOUD_NS e2e_free_port)
        "${WAN_CLOUD[@]}" python3 -m http.server --bind "$WAN_CLOUD_IP" --directory "$W/www" \
            "$BOUND_PORT" >>"$E2E_DIR/logs/bound-http.log" 2>&1 &
        e2e_track_pid bound-http $!
        e2e_wait_for "the bound's HTTP server" 10 \
            wan_cloud curl -fsS -o /dev/null "http://$WAN_CLOUD_IP:$BOUND_PORT/"
    fi
}

sys_bound() { # APP RUN: one curl (a new connection) of the prefix, over the link
    local app=$1 run=$2 phase rx0 s ms
    for phase in deploy update; do
        rx0=$(link_rx)
        s=$(wan_edge curl -fsS -o /dev/null -w '%{time_total}' \
            "http://$WAN_CLOUD_IP:$BOUND_PORT/$app-$phase.bin") || e2e_fail "bound curl"
        ms=$(awk -v s="$s" 'BEGIN { printf "%d", s * 1000 }')
        rx=$(($(link_rx) - rx0))
        row "$app" bound-transfer "$phase" "$run" "$ms" "$rx" "$rx" \
            "bytes=$(stat -c %s "$W/www/$app-$phase.bin")"
    done
}

warm_proxy() { # APP: the proxy reads the app's layers from the registry once, outside the timings
    local old new phase
    read -r old new <<<"$(app_images "$1")"
    for phase in deploy update; do
        wan_cloud curl -fsS -o /dev/null "$(delta_url "$old" "$new" "$phase")" ||
            e2e_fail "GET /starlight/delta (warm-up)"
    done
}

for app in "${apps[@]}"; do
    e2e_log "=== $app ($(app_images "$app")), RTT $rtt ms, $rate Mbit/s, $runs runs"
    warm_proxy "$app"
    for ((r = 1; r <= runs; r++)); do
        if has containerd; then sys_containerd "$app" "$r"; fi
        if has starlight; then sys_starlight "$app" "$r" starlight; fi
        if has estargz; then sys_estargz "$app" "$r"; fi
    done
    if has starlight-traced || has bound; then
        record_traces "$app"
        if has bound; then bound_prepare "$app"; fi
        for ((r = 1; r <= runs; r++)); do
            if has starlight-traced; then sys_starlight "$app" "$r" starlight-traced; fi
            if has bound; then sys_bound "$app" "$r"; fi
        done
    fi
done
e2e_log "done: RTT $rtt ms, rows in $csv"
