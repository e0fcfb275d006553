#!/usr/bin/env bash
# Pushes a test image into a (plain-HTTP) registry, building it first if needed.
#   tests/images/push.sh NAME REGISTRY_HOSTPORT REPO:TAG
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -ne 3 ]; then
    echo "usage: $0 NAME REGISTRY_HOSTPORT REPO:TAG" >&2
    exit 2
fi
name=$1 registry=$2 ref=$3
layout=$("$here/build.sh" "$name")
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$registry/$ref" >&2
