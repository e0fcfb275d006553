#!/usr/bin/env bash
# Builds the component images (OCI image layouts) from the project's binaries, without any
# image pull or Docker: each image is Debian's busybox-static (a shell and tools for probes and
# scripts), the shared libraries the binaries need as this Debian 12 machine has them, CA
# certificates, and the binaries. Optionally pushes them with skopeo.
#
#   images/build.sh [--build DIR] [--out DIR] [--push REGISTRY] [--tls-verify] [COMPONENT...]
#
# COMPONENT: proxy daemon controller init (default: every one whose binaries are built).
# Images (the Helm chart's default repositories; tag = the project version):
#   starlight-c/starlight-proxy       starlight-proxy
#   starlight-c/starlight-daemon      starlight-daemon, ctr-starlight (node DaemonSet, helm test)
#   starlight-c/starlight-controller  starlight-controller
#   starlight-c/starlight-init        starlight-init, ctr-starlight (injected initContainer)
# Layouts go to OUT/NAME (default build/images), cached: an image is rebuilt only when one of
# its input files (binaries, libraries, scripts) changed. Prints one layout path per image.
# --push REGISTRY copies each to docker://REGISTRY/starlight-c/NAME:TAG (plain HTTP unless
# --tls-verify).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build="$src/build"
out=
push=
tls=false
comps=()
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --tls-verify) tls=true; shift ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    *) comps+=("$1"); shift ;;
    esac
done
build=$(cd "$build" && pwd)
bin="$build/bin"
out=${out:-$build/images}
mkdir -p "$out"
out=$(cd "$out" && pwd)
oci="$src/tests/images/oci.py"
version=$(sed -n 's/^project(starlight-c VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$version" ] || { echo "build.sh: no project version in CMakeLists.txt" >&2; exit 1; }

binaries() {
    case "$1" in
    proxy) echo starlight-proxy ;;
    daemon) echo starlight-daemon ctr-starlight ;;
    controller) echo starlight-controller ;;
    init) echo starlight-init ctr-starlight ;;
    *) return 1 ;;
    esac
}

# The image config: entrypoint, user and what the image is.
config() {
    local c=$1 first
    first=$(binaries "$c" | cut -d' ' -f1)
    local user=0
    case "$c" in proxy | controller) user=65534 ;; esac
    printf '{"Entrypoint":["/usr/bin/%s"],"User":"%s","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Labels":{"org.opencontainers.image.title":"starlight-c/starlight-%s","org.opencontainers.image.version":"%s"}}' \
        "$first" "$user" "$c" "$version"
}

if [ "${#comps[@]}" -eq 0 ]; then
    for c in proxy daemon controller init; do
        ok=1
        for b in $(binaries "$c"); do [ -x "$bin/$b" ] || ok=0; done
        if [ "$ok" = 1 ]; then comps+=("$c"); else echo "build.sh: $c not built, skipped" >&2; fi
    done
fi
[ "${#comps[@]}" -gt 0 ] || { echo "build.sh: nothing to build (make build first)" >&2; exit 1; }

# Shared libraries a binary loads (resolved on this machine), including the dynamic loader.
libs_of() {
    ldd "$1" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'
}

build_one() {
    local c=$1 name="starlight-$1" dir="$out/starlight-$1" b f key tmp files=()
    for b in $(binaries "$c"); do
        [ -x "$bin/$b" ] || { echo "build.sh: $bin/$b missing (make build)" >&2; return 1; }
        files+=("$bin/$b")
        while read -r f; do files+=("$(readlink -f "$f")"); done < <(libs_of "$bin/$b")
    done
    files+=(/bin/busybox /etc/ssl/certs/ca-certificates.crt "$oci" "$0")
    key=$({
        echo "$c $version $(config "$c")"
        for f in "${files[@]}"; do sha256sum "$f"; done
    } | sha256sum | cut -c1-16)
    if [ -f "$dir/index.json" ] && [ "$(cat "$dir/.key" 2>/dev/null)" = "$key" ]; then
        echo "build.sh: $name:$version up to date" >&2
        echo "$dir"
        return 0
    fi
    echo "build.sh: building $name:$version" >&2
    tmp=$(mktemp -d "$out/.tmp-$name.XXXXXX")
    mkdir -p "$tmp/root/usr/bin" "$tmp/root/etc/ssl/certs"
    python3 "$oci" busybox-layer "$tmp/base.tar"
    cp /etc/ssl/certs/ca-certificates.crt "$tmp/root/etc/ssl/certs/"
    for b in $(binaries "$c"); do
        install -m 0755 "$bin/$b" "$tmp/root/usr/bin/$b"
        while read -r f; do
            # Same path as on the host (/lib/x86_64-linux-gnu/…, /lib64/ld-linux-…), the
            # file the symlink points to copied under the name the binary asks for.
            mkdir -p "$tmp/root$(dirname "$f")"
            [ -e "$tmp/root$f" ] || cp -L "$f" "$tmp/root$f"
        done < <(libs_of "$bin/$b")
    done
    # Debian 12 is merged-/usr: /lib and /lib64 are links into /usr, but only busybox's /bin
    # exists in the base layer, so the library directories stay real directories here.
    python3 "$oci" dir-layer "$tmp/root" "$tmp/app.tar"
    python3 "$oci" layout "$tmp/layout" --layer "$tmp/base.tar" --layer "$tmp/app.tar" \
        --ref "$version" \
        --created-by "busybox-static: /bin/busybox and applet links" \
        --created-by "$(binaries "$c"), their shared libraries (Debian 12), CA certificates" \
        --config "$(config "$c")"
    echo "$key" >"$tmp/layout/.key"
    rm -rf "$dir"
    mv "$tmp/layout" "$dir"
    rm -rf "$tmp"
    echo "$dir"
}

for c in "${comps[@]}"; do
    binaries "$c" >/dev/null || { echo "build.sh: unknown component $c" >&2; exit 2; }
    dir=$(build_one "$c")
    echo "$dir"
    if [ -n "$push" ]; then
        dst="docker://$push/starlight-c/starlight-$c:$version"
        echo "build.sh: pushing $dst" >&2
        skopeo copy --quiet --dest-tls-verify="$tls" "oci:$dir:$version" "$dst" >&2
    fi
done
