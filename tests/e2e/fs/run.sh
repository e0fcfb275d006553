#!/usr/bin/env bash
# Scenario: the daemon's store + FUSE modules through sl-fs-tool, against tar + overlayfs.
#  1. busybox and features layers converted with sl-format-tool, imported and served: every
#     FUSE layer directory hashes like the same layer extracted by tar with whiteouts turned
#     into overlay form (0:0 char devices, trusted.overlay.opaque=y), and an overlay of the
#     FUSE layer dirs (top-most first, plus upper/work) hashes like an overlay of the tar dirs:
#     whiteouts, opaque dirs, hardlinks, symlinks, devices, xattrs, owners, modes, contents.
#  2. Lazy: only TOCs imported, big.bin's chunks held back and first fed corrupted (rejected).
#     A read of big.bin blocks (the corrupted bytes never appear), many parked reads hold no
#     thread (a present file still reads at once), and after SIGUSR1 every read completes with
#     the right sha256.
#  3. SIGTERM unmounts cleanly: nothing of the run is left in /proc/mounts.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

e2e_require python3 tar gzip sha256sum timeout mount umount
FT="$SL_BIN/sl-format-tool"
FS="$SL_BIN/sl-fs-tool"
[ -x "$FT" ] && [ -x "$FS" ] || e2e_fail "build first: $FT or $FS missing"
[ "$(id -u)" = 0 ] || e2e_skip "needs root (FUSE allow_other, overlayfs, mknod)"
[ -c /dev/fuse ] || e2e_skip "no /dev/fuse"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || e2e_skip "no overlayfs"
tree() { python3 "$here/tree.py" "$@"; }

e2e_tmpdir >/dev/null
W="$E2E_DIR/work"
mkdir -p "$W"
OVERLAYS=()
umount_overlays() {
    local m
    for m in "${OVERLAYS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    OVERLAYS=()
}
e2e_on_exit umount_overlays

# overlay NAME LOWER... : mounts $W/ov/NAME/merged (-> OV) with the lowers top-most first
overlay() {
    local name=$1 d="$W/ov/$1"
    shift
    mkdir -p "$d/upper" "$d/work" "$d/merged"
    local lower
    lower=$(IFS=:; echo "$*")
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" ||
        e2e_fail "mount overlay $name (lowerdir=$lower)"
    OVERLAYS+=("$d/merged")
    OV="$d/merged"
}

# serve NAME ARGS... : starts sl-fs-tool, waits for "ready"; sets SRV_PID, SRV_OUT
serve() {
    local name=$1
    shift
    SRV_OUT="$W/$name.out"
    "$FS" serve --root "$W/$name" "$@" >"$SRV_OUT" 2>"$E2E_DIR/logs/$name.log" &
    SRV_PID=$!
    e2e_track_pid "sl-fs-tool-$name" "$SRV_PID"
    e2e_wait_for "sl-fs-tool $name ready" 60 grep -qx ready "$SRV_OUT"
}
layer_dir() { awk -v d="$2" '$1 == "layer" && $2 == d { print $3; exit }' "$1"; }

# ---------------------------------------------------------------- 1: eager, tree equality
blobs=()
declare -A DIGESTS
for img in busybox features; do
    layout=$("$E2E_SRC/tests/images/build.sh" "$img") || e2e_fail "build image $img"
    i=0
    while read -r src; do
        i=$((i + 1))
        out="$W/$img-$i.blob"
        "$FT" convert "$src" "$out" >/dev/null || e2e_fail "convert $img layer $i"
        blobs+=("$out")
        DIGESTS[$img-$i]="sha256:$(sha256sum <"$out" | cut -d' ' -f1)"
        ref="$W/ref/$img-$i"
        mkdir -p "$ref"
        tar -xzf "$src" -C "$ref" --numeric-owner --same-owner -p --xattrs --xattrs-include='*' ||
            e2e_fail "tar -x $img layer $i"
        tree whiteouts "$ref"
    done < <(tree layers "$layout")
    eval "N_$img=$i"
done
e2e_log "serve ${#blobs[@]} blobs"
serve eager --trace "${blobs[@]}"
EAGER_PID=$SRV_PID EAGER_OUT=$SRV_OUT

for img in busybox features; do
    n_var="N_$img"
    lowers=() refs=()
    for ((i = ${!n_var}; i >= 1; i--)); do
        d=$(layer_dir "$EAGER_OUT" "${DIGESTS[$img-$i]}")
        [ -n "$d" ] && [ -d "$d" ] || e2e_fail "$img layer $i: no layer dir"
        tree hash "$d" >"$W/$img-$i.fuse.tree"
        tree hash "$W/ref/$img-$i" >"$W/$img-$i.ref.tree"
        diff -u "$W/$img-$i.ref.tree" "$W/$img-$i.fuse.tree" >&2 ||
            e2e_fail "$img layer $i: FUSE layer dir differs from the tar extraction"
        lowers+=("$d")
        refs+=("$W/ref/$img-$i")
    done
    overlay "$img-fuse" "${lowers[@]}"
    m_fuse=$OV
    overlay "$img-ref" "${refs[@]}"
    m_ref=$OV
    tree hash "$m_fuse" >"$W/$img.fuse.tree"
    tree hash "$m_ref" >"$W/$img.ref.tree"
    diff -u "$W/$img.ref.tree" "$W/$img.fuse.tree" >&2 ||
        e2e_fail "$img: overlay over FUSE differs from overlay over tar extractions"
    e2e_log "  $img: ${!n_var} layer dirs and the merged view ($(wc -l <"$W/$img.fuse.tree") paths) equal tar + overlayfs"
done

# the features image's semantics, spelled out (the hashes above already cover them)
m="$W/ov/features-fuse/merged"
[ ! -e "$m/data/deleted.txt" ] && [ ! -e "$m/data/gone-dir" ] || e2e_fail "whiteouts not applied"
grep -q . "$W/features-3.fuse.tree" && grep -q '^data/deleted.txt 20000 0:0 dev=0:0' \
    "$W/features-3.fuse.tree" || e2e_fail "whiteout not a 0:0 char device in the layer dir"
grep -q "^data/opaque .*xattr trusted.overlay.opaque=79" "$W/features-3.fuse.tree" ||
    e2e_fail "opaque dir lacks trusted.overlay.opaque=y"
grep -q '\.wh\.' "$W/features-3.fuse.tree" && e2e_fail "a .wh. marker is visible"
grep -q 'group=' "$W/features.fuse.tree" || e2e_fail "no hardlink group in the merged view"
grep -q '^trace open' "$EAGER_OUT" || e2e_fail "no trace event recorded"

umount_overlays
kill -TERM "$EAGER_PID"
wait "$EAGER_PID" || e2e_fail "sl-fs-tool eager exited non-zero"
grep -q "$W/eager/mnt" /proc/mounts && e2e_fail "eager mount left behind"
e2e_log "  eager: $(grep '^stats' "$EAGER_OUT")"

# ---------------------------------------------------------------- 2: lazy, parked reads
e2e_log "lazy: big.bin held and corrupted"
serve lazy --lazy --hold data/big.bin --corrupt data/big.bin \
    "$W/features-1.blob" "$W/features-2.blob" "$W/features-3.blob"
LAZY_PID=$SRV_PID LAZY_OUT=$SRV_OUT
e2e_wait_for "feeder idle" 60 grep -q '^feed idle' "$LAZY_OUT"
grep -q '^feed ACCEPTED-CORRUPT' "$LAZY_OUT" && e2e_fail "a corrupted chunk was accepted"
n_rej=$(grep -c '^feed rejected data/big.bin' "$LAZY_OUT" || true)
[ "$n_rej" -ge 1 ] || e2e_fail "no corrupted chunk was rejected"
lowers=()
for i in 3 2 1; do lowers+=("$(layer_dir "$LAZY_OUT" "${DIGESTS[features-$i]}")"); done
overlay lazy "${lowers[@]}"
m=$OV
want=$(sha256sum <"$W/ref/features-2/data/big.bin" | cut -d' ' -f1)

sha256sum <"$m/data/big.bin" >"$W/big.sha" 2>"$W/big.err" &
reader=$!
# more parked reads than libfuse has worker threads, at different 4 MiB chunks and offsets
readers=()
for k in $(seq 0 15); do
    dd if="${lowers[1]}/data/big.bin" of="$W/part.$k" bs=4096 skip=$((k * 137)) count=1 \
        status=none 2>/dev/null &
    readers+=($!)
done
sleep 2
kill -0 "$reader" 2>/dev/null || e2e_fail "read of big.bin finished before its chunks arrived"
[ -s "$W/big.sha" ] && e2e_fail "big.bin produced a digest while held"
for p in "${readers[@]}"; do kill -0 "$p" 2>/dev/null || e2e_fail "a parked dd finished early"; done
# parked reads hold no thread: present files still answer at once
timeout 5 sha256sum "$m/bin/busybox" >/dev/null || e2e_fail "present file blocked behind parked reads"
timeout 5 cat "$m/data/exact-4m.bin" >/dev/null || e2e_fail "present 4 MiB file blocked"

kill -USR1 "$LAZY_PID"
e2e_wait_for "held chunks fed" 60 grep -q '^feed done' "$LAZY_OUT"
timeout 30 tail --pid="$reader" -f /dev/null || e2e_fail "parked read did not complete"
wait "$reader" || e2e_fail "reading big.bin failed: $(cat "$W/big.err")"
got=$(cut -d' ' -f1 <"$W/big.sha")
[ "$got" = "$want" ] || e2e_fail "big.bin sha256 $got, want $want"
for k in "${!readers[@]}"; do
    wait "${readers[k]}" || e2e_fail "parked dd $k failed"
    dd if="$W/ref/features-2/data/big.bin" bs=4096 skip=$((k * 137)) count=1 status=none |
        cmp -s - "$W/part.$k" || e2e_fail "parked dd $k returned wrong bytes"
done
e2e_log "  parked reads completed with the right bytes (sha256 $want)"

umount_overlays
kill -TERM "$LAZY_PID"
wait "$LAZY_PID" || e2e_fail "sl-fs-tool lazy exited non-zero"
grep '^stats' "$LAZY_OUT" >&2
grep -q "chunks_rejected=$n_rej " "$LAZY_OUT" || e2e_fail "stats disagree on rejected chunks"
grep -q 'reads_parked=0 ' "$LAZY_OUT" && e2e_fail "no read was parked"

# ---------------------------------------------------------------- 3: nothing left behind
if grep -F "$E2E_DIR" /proc/mounts >&2; then
    e2e_fail "mounts left behind"
fi
e2e_log "all mounts gone"
