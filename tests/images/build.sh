#!/usr/bin/env bash
# Builds test images as OCI image layouts without pulling anything, caches them and prints
# one layout directory per NAME on stdout (progress goes to stderr).
#
#   tests/images/build.sh NAME...      NAME: busybox, features, redis6, redis7, nginx118,
#                                      nginx122, python39, python311, postgres13, postgres15,
#                                      redis7next, python311next (minor updates of redis7 and
#                                      python311: rebuilt from scratch, the app's file changed)
#
# Cache: ${SL_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c/images}/NAME-KEY, where
# KEY hashes the scripts that build NAME (and the busybox binary it copies), so editing a
# script rebuilds that image and only that image. SL_IMAGE_REBUILD=1 forces a rebuild.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SL_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c/images}

usage() {
    echo "usage: $0 NAME...   (busybox features redis6 redis7 nginx118 nginx122 python39" \
        "python311 postgres13 postgres15 redis7next python311next)" >&2
    exit 2
}

# Files whose bytes define an image; the cache key is their hash.
inputs() {
    case "$1" in
    busybox) echo "$here/busybox.sh $here/oci.py /bin/busybox" ;;
    features) echo "$here/features.sh $here/features.py $here/oci.py /bin/busybox" ;;
    redis6 | redis7) echo "$here/$1.sh $here/debian-redis.sh $here/oci.py" ;;
    nginx118 | nginx122) echo "$here/$1.sh $here/debian-nginx.sh $here/debian-app.sh $here/oci.py" ;;
    python39 | python311) echo "$here/$1.sh $here/debian-python.sh $here/debian-app.sh $here/oci.py" ;;
    postgres13 | postgres15)
        echo "$here/$1.sh $here/debian-postgres.sh $here/debian-app.sh $here/oci.py"
        ;;
    # a minor update: its builder, the recipe, and share.py + the old image's inputs (it checks
    # the two against each other)
    redis7next) echo "$here/$1.sh $here/debian-app.sh $here/share.py $(inputs redis7)" ;;
    python311next) echo "$here/$1.sh $here/debian-app.sh $here/share.py $(inputs python311)" ;;
    *) return 1 ;;
    esac
}

cache_key() {
    local f files
    files=$(inputs "$1") || {
        echo "build.sh: unknown image '$1'" >&2
        usage
    }
    {
        echo "$1 $(uname -m)"
        for f in $files; do
            [ -r "$f" ] || {
                echo "build.sh: missing input $f" >&2
                exit 1
            }
            sha256sum <"$f"
        done
    } | sha256sum | cut -c1-16
}

build_one() {
    local name=$1 key dir tmp start
    key=$(cache_key "$name")
    dir="$cache/$name-$key"
    mkdir -p "$cache"
    # One builder per image at a time; a second caller waits, then finds the result.
    exec {lock}>"$cache/.$name.lock"
    flock "$lock"
    if [ "${SL_IMAGE_REBUILD:-0}" = 1 ] && [ -d "$dir" ]; then
        rm -rf "$dir"
    fi
    if [ ! -f "$dir/index.json" ]; then
        start=$(date +%s)
        echo "build.sh: building $name -> $dir" >&2
        tmp=$(mktemp -d "$cache/.tmp-$name.XXXXXX")
        if ! bash "$here/$name.sh" "$tmp" >&2; then
            rm -rf "$tmp"
            echo "build.sh: building $name failed" >&2
            exit 1
        fi
        chmod 755 "$tmp"
        mv "$tmp" "$dir"
        echo "build.sh: built $name in $(($(date +%s) - start)) s" >&2
        # Older builds of the same image only take space.
        find "$cache" -maxdepth 1 -name "$name-*" ! -name "$name-$key" -exec rm -rf {} +
    fi
    exec {lock}>&-
    echo "$dir"
}

[ $# -gt 0 ] || usage
for n in "$@"; do
    build_one "$n"
done
