#!/usr/bin/env bash
# Builds a two-layer Debian image with an application, the way a Dockerfile would:
#   layer 1: debootstrap --variant=minbase SUITE (apt caches and lists removed)
#   layer 2: `apt-get install --no-install-recommends PACKAGES`, then SETUP (shell commands run
#            with sh -c in the chroot, optional), in an overlayfs over layer 1; the upperdir is
#            tarred with overlay whiteouts converted to OCI ones (.wh.NAME, .wh..wh..opq).
# CONFIG is the image config JSON (Cmd, Env, User, ...).
# Usage: debian-app.sh SUITE OUTDIR "PACKAGES" CONFIG [SETUP]. Needs root, debootstrap and the
# Debian mirror the machine's apt already uses (override with SL_DEBIAN_MIRROR).
# (debian-redis.sh is the older redis-only form; it stays unchanged so that cached redis
# images keep their cache keys.)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=$1 out=$2 packages=$3 config=$4 setup=${5:-}
name=debian-app-$suite

debian_mirror() {
    local url
    if [ -n "${SL_DEBIAN_MIRROR:-}" ]; then
        echo "$SL_DEBIAN_MIRROR"
        return
    fi
    # The first plain Debian archive URL in the apt sources (one-line or deb822 format).
    url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -Eo '(https?|ftp)://[^ ]+/debian/?( |$)' | grep -v -- '-security' |
        head -n1 | tr -d ' ') || true
    echo "${url:-http://deb.debian.org/debian}"
}

[ "$(id -u)" -eq 0 ] || {
    echo "debian-app.sh: needs root (debootstrap, chroot, overlayfs)" >&2
    exit 1
}
mirror=$(debian_mirror)
work=$(mktemp -d "${TMPDIR:-/tmp}/sl-image-$suite.XXXXXX")
cleanup() {
    local m
    for m in "$work/merged/proc" "$work/merged/etc/resolv.conf" "$work/merged"; do
        if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m"; fi
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "$name: debootstrap $suite from $mirror" >&2
base="$work/base"
debootstrap --variant=minbase "$suite" "$base" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}
printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"
chmod 755 "$base/usr/sbin/policy-rc.d"
# Nothing of the build machine stays in the image.
echo localhost >"$base/etc/hostname"
: >"$base/etc/resolv.conf"
find "$base/var/cache/apt" "$base/var/lib/apt/lists" -type f -delete
rm -f "$base/var/log/bootstrap.log"

mkdir -p "$work/upper" "$work/ovl-work" "$work/merged"
# Plain overlay semantics (no redirects, index or metacopy), so the upperdir is a layer diff.
opts="lowerdir=$base,upperdir=$work/upper,workdir=$work/ovl-work"
mount -t overlay overlay -o "$opts,redirect_dir=off,index=off,metacopy=off" "$work/merged"
mount -t proc proc "$work/merged/proc"
mount --bind -o ro /etc/resolv.conf "$work/merged/etc/resolv.conf"
in_chroot() {
    chroot "$work/merged" /usr/bin/env -i DEBIAN_FRONTEND=noninteractive LC_ALL=C \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
echo "$name: apt-get install $packages" >&2
{
    in_chroot apt-get -o APT::Sandbox::User=root update -q
    # shellcheck disable=SC2086 # a list of package names
    in_chroot apt-get -o APT::Sandbox::User=root install -y -q --no-install-recommends \
        $packages
    in_chroot apt-get clean
    # shellcheck disable=SC2086
    in_chroot dpkg-query -W $packages
    [ -z "$setup" ] || in_chroot /bin/sh -ec "$setup"
} >"$work/apt.log" 2>&1 || {
    tail -n 30 "$work/apt.log" >&2
    exit 1
}
# shellcheck disable=SC2086
for p in $packages; do grep -E "^$p\s" "$work/apt.log" | sed "s/^/$name: /" >&2 || true; done
umount "$work/merged/etc/resolv.conf"
umount "$work/merged/proc"
find "$work/merged/var/cache/apt" "$work/merged/var/lib/apt/lists" -type f -delete
umount "$work/merged"

echo "$name: writing layers" >&2
python3 "$here/oci.py" dir-layer "$base" "$work/base.tar"
python3 "$here/oci.py" dir-layer --upper "$work/upper" "$work/app.tar"
python3 "$here/oci.py" layout "$out" --layer "$work/base.tar" --layer "$work/app.tar" \
    --created-by "debootstrap --variant=minbase $suite" \
    --created-by "apt-get install --no-install-recommends $packages${setup:+ + setup}" \
    --config "$config"
