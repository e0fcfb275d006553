#!/usr/bin/env bash
# Scenario: the hostile input corpus (issue 9, item 6) through the real pipeline on loopback:
# docker-registry + PostgreSQL + starlight-proxy + starlight-daemon (FUSE) + containerd/runc.
# The corpus is written at test time by gen.py (nothing large committed).
#  1. every hostile source layer through `ctr-starlight convert`: refused with an error naming
#     the image, the layer and the problem, pushing nothing; or converted (harmless ones);
#  2. every converted one through the proxy's notify (TOC ingest) and hostile TOCs pushed
#     with their TOC digest annotation straight to the registry: the proxy refuses each
#     hostile TOC with a clear error (4xx) and keeps serving;
#  3. the daemon pulls every accepted image through the proxy and serves it over FUSE
#     (devices inert: the FUSE mount is nodev; 100 000 entries listed; 4 KiB names read);
#  4. a fake proxy serves the good image's delta with hostile headers (overlapping contents,
#     a 6000-byte name, a path climbing out of the layer, a content 1 TiB larger than its
#     chunks) and hostile TOC tails that the rewritten manifest vouches for (traversal,
#     symlink escape, hardlink to /etc/passwd, overlapping or out-of-range chunks), so only
#     the daemon's TOC reader stands in the way: each refused with an error;
#  5. after all that the daemon still pulls and reads the good image right and busybox pulls
#     and runs (`ctr run --snapshotter starlight`); a sentinel
#     directory outside every store is unchanged and no planted file exists anywhere named.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../pull/common.sh"

e2e_require python3 curl psql ctr
[ "$(id -u)" = 0 ] || e2e_skip "needs root (FUSE mounts)"
[ -e /dev/fuse ] || e2e_skip "no /dev/fuse"
CS="$SL_BIN/ctr-starlight"
PX="$SL_BIN/starlight-proxy"
DAEMON="$SL_BIN/starlight-daemon"
for b in "$CS" "$PX" "$DAEMON"; do [ -x "$b" ] || e2e_fail "build first: $b missing"; done
tool() { python3 "$here/../convert/tool.py" "$@"; }

e2e_tmpdir >/dev/null
W=$E2E_DIR/work
OUT=$E2E_DIR/outside # what the escapes aim at: must stay as it is
mkdir -p "$W" "$OUT"
echo "sentinel $$" >"$OUT/sentinel"
snap() { (cd "$OUT" && find . -printf '%p %s %m\n' | sort && sha256sum sentinel); }
before=$(snap)
passwd_before=$(sha256sum /etc/passwd)
start_ts=$(date +%s)

python3 "$here/gen.py" layers "$W/src" "$OUT"
pull_cloud_start
P=linux/$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')

# ---------------------------------------------------------------- 1: convert
declare -A LAYER=(
    [good]=ok [absolute]=ok [devices]=ok [name-4k]=ok [name-component-300]=ok
    [many-entries]=ok [garbage-tail]=ok [concat-garbage]=ok
    [traversal]='path escapes the layer root'
    [symlink-escape]='parent `esc` is not a directory'
    [symlink-dotdot]='parent `up` is not a directory'
    [hardlink-passwd]='hardlink target `/etc/passwd` is absolute'
    [hardlink-dotdot]='escapes the layer root'
    [name-over-4k]='(limit 4096)'
    [truncated]='truncated gzip input'
    [not-gzip]='not a tar, tar+gzip or tar+zstd'
)
accepted=()
for n in "${!LAYER[@]}"; do
    want=${LAYER[$n]}
    tool push "$R" "h/$n" src "$W/src/src-$n.tgz" >/dev/null
    if "$CS" convert --chunk-size 64KiB --insecure-source --insecure-destination "$R/h/$n:src" "$R/h/$n:sl" \
        >"$W/$n.conv" 2>"$W/$n.cerr"; then
        [ "$want" = ok ] || e2e_fail "convert accepted $n (expected: $want)"
        accepted+=("$n")
    else
        [ "$want" != ok ] || { cat "$W/$n.cerr" >&2; e2e_fail "convert refused $n"; }
        grep -qF -- "$want" "$W/$n.cerr" && grep -qF "layer 0" "$W/$n.cerr" ||
            { cat "$W/$n.cerr" >&2; e2e_fail "convert $n: the error does not name layer 0 and '$want'"; }
        tool manifest "$R" "h/$n" sl >/dev/null && e2e_fail "convert $n: the tag exists after a refusal"
        e2e_log "1. $n refused: $(tail -n1 "$W/$n.cerr" | sed 's/.*layer 0 `[^`]*`: //' | cut -c1-150)"
    fi
done
e2e_log "1. converted: ${accepted[*]}"

# ---------------------------------------------------------------- 2: notify (TOC ingest)
e2e_push_image busybox bb:src
"$CS" convert --insecure-source --insecure-destination "$R/bb:src" "$R/bb:sl" >/dev/null 2>"$W/bb.cerr" ||
    { cat "$W/bb.cerr" >&2; e2e_fail "convert busybox"; }
"$CS" notify --proxy "$U" --insecure "$R/bb:sl" >"$W/bb.notify" 2>&1 ||
    { cat "$W/bb.notify" >&2; e2e_fail "notify busybox"; }
for n in "${accepted[@]}"; do
    "$CS" notify --proxy "$U" --insecure "$R/h/$n:sl" >"$W/$n.notify" 2>&1 ||
        { cat "$W/$n.notify" >&2; e2e_fail "notify $n"; }
done
e2e_log "2. the proxy ingested every converted image's TOCs"
layers_of() { tool manifest "$R" "$1" "$2" | python3 -c 'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'; }
curl -fsS -o "$W/good.blob" "http://$R/v2/h/good/blobs/$(layers_of h/good sl | head -n1)"
python3 "$here/gen.py" tocs "$W/good.blob" "$W/toc" >"$W/toc-digests"
declare -A TOC=(
    [traversal]='escapes the root' [out-of-range]='is not before the TOC'
    [overlap-files]='two chunks share the member' [overlap-chunks]='chunk 1 starts at'
    [size-lie]='chunks cover' [symlink-escape]='parent `esc` is not a directory'
    [hardlink-passwd]='is absolute' [name-4k]='(limit 4096)'
    [truncated-toc]='gzip' [garbage-toc]='TOC member' [no-footer]='footer'
)
MT=application/vnd.oci.image.layer.v1.tar+gzip
for n in "${!TOC[@]}"; do
    d=$(awk -v n="$n" '$1 == n { print $2 }' "$W/toc-digests")
    tool push "$R" "t/$n" sl "$W/toc/toc-$n.blob=$MT=$d" >/dev/null
    if "$CS" notify --proxy "$U" --insecure "$R/t/$n:sl" >"$W/t$n.notify" 2>&1; then
        e2e_fail "the proxy ingested the hostile TOC $n"
    fi
    grep -qF -- "${TOC[$n]}" "$W/t$n.notify" ||
        { cat "$W/t$n.notify" >&2; e2e_fail "notify of TOC $n: the error does not say '${TOC[$n]}'"; }
    e2e_log "2. TOC $n refused: $(tail -n1 "$W/t$n.notify" | cut -c1-170)"
done
curl -fsS -o /dev/null "$U/health-check" || e2e_fail "the proxy stopped serving"

# ---------------------------------------------------------------- 3: daemon pull + FUSE
ROOT=$E2E_DIR/root
CTL=$E2E_DIR/ctl.sock
mkdir -p "$ROOT"
"$DAEMON" --root "$ROOT" --control-socket "$CTL" --snapshotter-socket "$E2E_DIR/snap.sock" \
    --containerd-socket "$E2E_DIR/containerd/containerd.sock" \
    >>"$E2E_DIR/logs/starlight-daemon.log" 2>&1 &
DPID=$!
e2e_track_pid starlight-daemon "$DPID"
e2e_wait_for "the control socket" 15 curl -fsS --unix-socket "$CTL" http://localhost/v1/version
e2e_start_containerd "$E2E_DIR/snap.sock"
e2e_wait_for "containerd to reach the snapshotter" 20 e2e_ctr snapshots --snapshotter starlight ls
pull() { "$CS" pull --daemon "$CTL" --proxy "$U" --insecure "$@"; }
mnt_of() { echo "$ROOT/mnt/$(layers_of "$1" sl | head -n1 | sed 's/^sha256://')"; }
for n in "${accepted[@]}"; do
    [ "$n" = good ] && continue # pulled last, after the hostile deltas
    pull "$R/h/$n:sl" >"$W/$n.pull" 2>&1 || { cat "$W/$n.pull" >&2; e2e_fail "pull $n"; }
    m=$(mnt_of "h/$n")
    case "$n" in
    devices)
        [ -c "$m/dev/evil-mem" ] && [ -b "$m/dev/evil-sda" ] && [ -p "$m/dev/evil-fifo" ] ||
            e2e_fail "devices: the nodes are not served as nodes"
        grep -E " $ROOT/mnt fuse[^ ]* [^ ]*nodev" /proc/mounts | grep -q nosuid ||
            e2e_fail "the FUSE mount is not nodev,nosuid: $(grep " $ROOT/mnt " /proc/mounts)"
        if head -c 16 "$m/dev/evil-mem" >/dev/null 2>&1; then
            e2e_fail "a char device from a layer could be opened (host memory)"
        fi ;;
    many-entries)
        c=$(ls "$m/m" | wc -l)
        [ "$c" = 100000 ] || e2e_fail "many-entries: $c entries listed" ;;
    name-4k)
        f=$(cd "$W/src" && python3 -c 'print("/".join(["d" * 200] * 20) + "/" + "f" * 75)')
        [ "$(cd "$m" && cat "$f")" = x ] || e2e_fail "name-4k: the 4095-byte path does not read" ;;
    absolute)
        [ "$(cat "$m/${OUT#/}/planted-absolute")" = evil ] ||
            e2e_fail "absolute: /x/y is not served as x/y inside the layer" ;;
    esac
    e2e_log "3. $n pulled and served: $(tail -n1 "$W/$n.pull" | cut -c1-120)"
done

# ---------------------------------------------------------------- 4: hostile headers
curl -fsS -o "$W/good.delta" "$U/starlight/delta?to=$R/h/good:sl&platform=$P&insecure=1" ||
    e2e_fail "GET the good delta"
declare -A HDR=([overlap]='payloadOffset' [name-long]='at most 4096 bytes'
    [path-escape]='is not a normalised relative path' [content-size]='chunks cover')
for n in traversal symlink-escape hardlink-passwd overlap-files out-of-range; do
    HDR["toc=$W/toc/toc-$n.blob"]=${TOC[$n]}
done
for mode in "${!HDR[@]}"; do
    tag=${mode##*/} # overlap, ..., toc-traversal.blob
    fport=$(e2e_free_port)
    python3 "$here/hostile-proxy.py" "127.0.0.1:$fport" "$W/good.delta" "$mode" \
        >>"$E2E_DIR/logs/hostile-proxy.log" 2>&1 &
    fpid=$!
    e2e_track_pid "hostile-proxy-$tag" "$fpid"
    e2e_wait_for "the hostile proxy ($tag)" 10 curl -fsS -o /dev/null "http://127.0.0.1:$fport/health-check"
    if "$CS" pull --daemon "$CTL" --proxy "http://127.0.0.1:$fport" "$R/h/good:sl" >"$W/h.$tag" 2>&1; then
        e2e_fail "hostile header ($tag) accepted"
    fi
    grep -qF -- "${HDR[$mode]}" "$W/h.$tag" ||
        { cat "$W/h.$tag" >&2; e2e_fail "hostile header ($tag): the error does not say '${HDR[$mode]}'"; }
    e2e_log "4. $tag: $(tail -n1 "$W/h.$tag" | sed 's/.*good:sl[^:]*: //' | cut -c1-170)"
    kill "$fpid"
done

# ---------------------------------------------------------------- 5: still serving, nothing touched
pull "$R/h/good:sl" >"$W/good.pull" 2>&1 || { cat "$W/good.pull" >&2; e2e_fail "the daemon does not pull the good image after the hostile ones"; }
m=$(mnt_of h/good)
[ "$(cat "$m/etc/hostile-ok")" = "still served" ] || e2e_fail "good image: wrong bytes"
pull "$R/bb:sl" >"$W/bb.pull" 2>&1 || { cat "$W/bb.pull" >&2; e2e_fail "pull busybox after the hostile ones"; }
out=$(e2e_ctr_timeout 60 run --rm --snapshotter starlight "$R/bb:sl" "hostile-bb-$$" echo still-running 2>&1) || true
[ "$out" = still-running ] || e2e_fail "ctr run busybox after the hostile inputs: $out"
python3 - "$W/src/src-good.tgz" "$m/big.bin" <<'PY' || e2e_fail "good image: big.bin differs from the layer"
import gzip, io, sys, tarfile
t = tarfile.open(fileobj=io.BytesIO(gzip.decompress(open(sys.argv[1], "rb").read())))
assert t.extractfile("big.bin").read() == open(sys.argv[2], "rb").read()
PY
curl -fsS --unix-socket "$CTL" http://localhost/v1/status >/dev/null || e2e_fail "the daemon stopped answering"
kill -0 "$DPID" || e2e_fail "the daemon died"
[ "$(snap)" = "$before" ] || e2e_fail "the sentinel directory outside the store changed"
[ "$(sha256sum /etc/passwd)" = "$passwd_before" ] || e2e_fail "/etc/passwd changed"
for f in /escape-traversal "$E2E_DIR/escape-traversal" /tmp/escape-traversal /etc/evil /evil; do
    [ ! -e "$f" ] || e2e_fail "a hostile name created $f"
done
[ -z "$(find "$OUT" "$E2E_DIR" -path "$ROOT" -prune -o -path "$W" -prune -o \
    \( -name 'planted-*' -o -name 'escape-*' \) -print -quit)" ] ||
    e2e_fail "a planted file exists outside the store"
e2e_log "5. the good image pulled and read, busybox pulled and run (ctr run) after every hostile input; sentinel, /etc/passwd unchanged ($(($(date +%s) - start_ts)) s)"
e2e_log "PASS"
