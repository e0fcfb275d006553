# shellcheck shell=bash
# Helpers shared by the pull scenarios (tests/e2e/pull on loopback, tests/e2e/pull-wan over an
# emulated WAN link). Source after lib.sh. The network commands run through SL_NETEXEC, a
# command prefix (word-split; empty: here), e.g. `nsenter --net=/run/netns/NS --` to reach a
# registry or proxy that lives in a network namespace.

# pull_layers REGISTRY IMG: the layer digests of REGISTRY/IMG:sl, bottom first.
pull_layers() {
    # shellcheck disable=SC2086
    ${SL_NETEXEC:-} curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$1/v2/$2/manifests/sl" |
        python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}

# pull_plan_bytes PROXY_URL REGISTRY PLATFORM FROM TO: the payload length the proxy plans for
# REGISTRY/TO:sl given REGISTRY/FROM:sl (the prelude's bytes 24..31).
pull_plan_bytes() {
    # shellcheck disable=SC2086
    ${SL_NETEXEC:-} curl -fsS -r 0-31 \
        "$1/starlight/delta?to=$2/$5:sl&platform=$3&from=$2/$4:sl&insecure=1" |
        python3 -c 'import struct,sys; print(struct.unpack(">Q", sys.stdin.buffer.read()[24:32])[0])'
}

# pull_fetched_payload IMG DAEMON_LOG: the payload bytes of the last pull of IMG:sl the daemon
# logged.
pull_fetched_payload() {
    grep -o "pull .*$1:sl: [0-9]* bytes (payload [0-9]*)" "$2" |
        tail -1 | sed 's/.*payload \([0-9]*\))/\1/'
}

# pull_redis_ping REF NAME [SNAPSHOTTER_ARGS...]: run REF detached as container NAME
# (redis-server on the container's own loopback), wait for `redis-cli ping` to answer PONG,
# then kill and delete it. Fails the scenario otherwise.
pull_redis_ping() {
    local ref=$1 name=$2 pong= i
    shift 2
    e2e_ctr_timeout 60 run -d "$@" "$ref" "$name" \
        redis-server --bind 127.0.0.1 --save '' >/dev/null || e2e_fail "ctr run $ref"
    e2e_on_exit "ctr --address '$E2E_CONTAINERD_ADDRESS' tasks kill -s SIGKILL $name >/dev/null 2>&1"
    for i in $(seq 50); do
        pong=$(e2e_ctr_timeout 10 tasks exec --exec-id "p$i" "$name" redis-cli ping 2>&1) || true
        [ "$pong" = PONG ] && break
        sleep 0.2
    done
    e2e_ctr tasks kill -s SIGKILL "$name" >/dev/null 2>&1 || true
    e2e_wait_for "redis to stop" 10 sh -c "! ctr --address $E2E_CONTAINERD_ADDRESS tasks ls | grep $name | grep -q RUNNING"
    e2e_ctr tasks delete "$name" >/dev/null 2>&1 || true
    e2e_ctr containers delete "$name" >/dev/null 2>&1 || true
    [ "$pong" = PONG ] || e2e_fail "redis in ctr run $ref: $pong"
}
