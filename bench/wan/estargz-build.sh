#!/usr/bin/env bash
# Builds containerd-stargz-grpc offline (no module downloads) from Debian's Go sources in
# GOPATH mode: golang-go + golang-github-containerd-stargz-snapshotter-dev (installed here when
# missing, apt only), bench/wan/estargz/main.go and a local stand-in for the one
# k8s.io/cri-api type stargz-snapshotter imports (Debian 12 has no package for it). Cached in
# ${SL_BENCH_CACHE:-~/.cache/starlight-c/bench}/containerd-stargz-grpc-KEY (KEY hashes the
# sources and the Go toolchain's version). Prints the binary's path; on failure prints the
# reason on stderr and exits 1.
# Usage: bench/wan/estargz-build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SL_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c/bench}
gocode=/usr/share/gocode
pkgs=(golang-go golang-github-containerd-stargz-snapshotter-dev golang-github-containerd-containerd-dev)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "estargz-build: installing ${missing[*]}" >&2
    apt-get update -qq >&2 || { echo "estargz-build: apt-get update failed" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || { echo "estargz-build: apt-get install failed" >&2; exit 1; }
fi
key=$({
    cat "$here/estargz/main.go" "$here/estargz/cri-api.go" "$0"
    go version
    dpkg-query -W golang-github-containerd-stargz-snapshotter-dev
} | sha256sum | cut -c1-16)
bin=$cache/containerd-stargz-grpc-$key
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/slbench/stargz-grpc" "$work/src/k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
cp "$here/estargz/main.go" "$work/src/slbench/stargz-grpc/"
cp "$here/estargz/cri-api.go" "$work/src/k8s.io/cri-api/pkg/apis/runtime/v1alpha2/"
start=$(date +%s)
echo "estargz-build: go build containerd-stargz-grpc (GOPATH mode, offline)" >&2
if ! (cd "$work/src/slbench/stargz-grpc" &&
    GO111MODULE=off GOPATH="$work:$gocode" GOPROXY=off GOFLAGS="" GOCACHE="$cache/go-build" \
        CGO_ENABLED=0 nice -n 10 go build -o "$work/containerd-stargz-grpc" . \
        >"$work/build.log" 2>&1); then
    echo "estargz-build: go build failed:" >&2
    tail -n 20 "$work/build.log" >&2
    exit 1
fi
mv "$work/containerd-stargz-grpc" "$bin"
find "$cache" -maxdepth 1 -name 'containerd-stargz-grpc-*' ! -name "${bin##*/}" -delete
echo "estargz-build: built in $(($(date +%s) - start)) s" >&2
echo "$bin"
