#!/usr/bin/env bash
# ctest hostile-format (issue 9, item 6, the consumers that need no daemon): the hostile corpus
# (gen.py, written at test time) through the layer writer and the TOC reader of common/format,
# as `ctr-starlight convert` and every TOC consumer (proxy ingest, daemon, inspect) use them —
# via sl-format-tool, so the ASan build (make unit-asan) runs it under ASan/UBSan too.
#   source layers: each is refused with the error named below, or converted into a blob whose
#     TOC verifies and names only relative paths inside the layer;
#   hostile TOCs (derived from a good converted blob): each is refused with the error below,
#     or accepted only when harmless (a 100 000-entry TOC, a leading "/" read as relative);
#   nothing appears outside the run directory: a sentinel directory is unchanged.
# Usage: format.sh SL_FORMAT_TOOL
set -euo pipefail
FT=${1:?usage: format.sh SL_FORMAT_TOOL}
here=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/sl-hostile-format.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "hostile-format: FAIL: $*" >&2; exit 1; }
mkdir -p "$T/outside"
echo "sentinel $$" >"$T/outside/sentinel"
snap() { (cd "$T/outside" && find . -printf '%p %s %m\n' | sort && sha256sum sentinel); }
before=$(snap)

python3 "$here/gen.py" layers "$T/src" "$T/outside"

# name -> expected: "ok" or a substring of the error
declare -A LAYER=(
    [good]=ok
    [traversal]='path escapes the layer root'
    [absolute]=ok # "/x/y" is read as "x/y" (tar semantics), inside the layer
    [symlink-escape]='parent `esc` is not a directory'
    [symlink-dotdot]='parent `up` is not a directory'
    [hardlink-passwd]='hardlink target `/etc/passwd` is absolute'
    [hardlink-dotdot]='escapes the layer root'
    [devices]=ok # recorded; the daemon mounts its FUSE layer nodev,nosuid
    [name-4k]=ok
    [name-over-4k]='(limit 4096)'
    [name-component-300]=ok
    [many-entries]=ok
    [truncated]='truncated gzip input'
    [garbage-tail]=ok     # bytes after the end of the archive are ignored, as tar does
    [concat-garbage]=ok   # a second gzip member after the end of the archive: ignored too
    [not-gzip]='not a tar, tar+gzip or tar+zstd'
)
for n in "${!LAYER[@]}"; do
    want=${LAYER[$n]}
    [ -f "$T/src/src-$n.tgz" ] || fail "gen.py wrote no src-$n.tgz"
    if "$FT" convert --chunk-size 65536 "$T/src/src-$n.tgz" "$T/src/$n.blob" >/dev/null 2>"$T/$n.err"; then
        [ "$want" = ok ] || fail "convert accepted src-$n (expected: $want)"
        "$FT" verify "$T/src/$n.blob" >/dev/null 2>"$T/$n.verr" ||
            fail "src-$n converted into a blob that does not verify: $(cat "$T/$n.verr")"
        "$FT" toc --entries "$T/src/$n.blob" >"$T/$n.toc"
        python3 - "$T/$n.toc" "$n" <<'PY' || fail "src-$n: TOC names leave the layer"
import json, sys
d = json.load(open(sys.argv[1]))
for e in d["list"]:
    n = e["name"]
    if n.startswith("/") or ".." in n.split("/"):
        sys.exit("bad name %r" % n)
    if e["type"] == "hardlink" and (e["linkName"].startswith("/") or ".." in e["linkName"].split("/")):
        sys.exit("bad hardlink %r" % e["linkName"])
if sys.argv[2] == "many-entries" and d["entries"] < 100000:
    sys.exit("only %d entries" % d["entries"])
PY
        echo "hostile-format: src-$n: converted, TOC verified"
    else
        [ "$want" != ok ] || fail "convert refused src-$n: $(cat "$T/$n.err")"
        grep -qF -- "$want" "$T/$n.err" || fail "src-$n: error does not say '$want': $(cat "$T/$n.err")"
        [ ! -s "$T/src/$n.blob" ] || true
        echo "hostile-format: src-$n: refused: $(tail -c 160 "$T/$n.err")"
    fi
done

python3 "$here/gen.py" tocs "$T/src/good.blob" "$T/toc" >"$T/toc-digests"
declare -A TOC=(
    [traversal]='escapes the root'
    [absolute]=ok
    [out-of-range]='is not before the TOC'
    [overlap-files]='two chunks share the member'
    [overlap-chunks]='chunk 1 starts at'
    [size-lie]='chunks cover'
    [symlink-escape]='parent `esc` is not a directory'
    [hardlink-passwd]='is absolute'
    [name-4k]='(limit 4096)'
    [many-entries]=ok
    [truncated-toc]='truncated gzip data'
    [garbage-toc]='TOC member'
    [no-footer]='no eStargz/stargz footer'
)
for n in "${!TOC[@]}"; do
    want=${TOC[$n]}
    b=$T/toc/toc-$n.blob
    [ -f "$b" ] || fail "gen.py wrote no toc-$n.blob"
    if "$FT" verify "$b" >/dev/null 2>"$T/t$n.err"; then
        [ "$want" = ok ] || fail "verify accepted toc-$n (expected: $want)"
        echo "hostile-format: toc-$n: accepted (harmless)"
    else
        [ "$want" != ok ] || fail "verify refused toc-$n: $(cat "$T/t$n.err")"
        grep -qF -- "$want" "$T/t$n.err" || fail "toc-$n: error does not say '$want': $(cat "$T/t$n.err")"
        echo "hostile-format: toc-$n: refused: $(tail -c 160 "$T/t$n.err")"
    fi
    # the digest in the manifest annotation must still be checked against what was read
    d=$(awk -v n="$n" '$1 == n { print $2 }' "$T/toc-digests")
    if [ "$want" = ok ] && "$FT" toc --toc-digest "sha256:$(printf '0%.0s' $(seq 64))" "$b" >/dev/null 2>&1; then
        fail "toc-$n: a wrong --toc-digest was accepted"
    fi
    [ -n "$d" ] || fail "no digest for toc-$n"
done

[ "$(snap)" = "$before" ] || fail "the sentinel directory outside changed"
[ -z "$(find "$T" \( -name 'planted-*' -o -name 'escape-*' -o -name evil \) -print -quit)" ] ||
    fail "a hostile name was created on disk"
echo "hostile-format: ${#LAYER[@]} source layers, ${#TOC[@]} hostile TOCs: all as expected"
