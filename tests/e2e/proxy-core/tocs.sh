# shellcheck shell=bash
# Sourced by the proxy scenarios (proxy-core, proxy). dump_tocs IMG: the TOC of every layer of
# $R/IMG:sl, read independently of the proxy with sl-format-tool ($FT), into $W/IMG.tocN.json
# (bottom layer first), for expect.py.
dump_tocs() {
    local img=$1 i=0 d
    for d in $(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$R/v2/$img/manifests/sl" | python3 -c \
        'import json,sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'); do
        curl -fsS -o "$W/blob" "http://$R/v2/$img/blobs/$d"
        "$FT" toc --entries "$W/blob" >"$W/$img.toc$i.json" || e2e_fail "$img layer $i TOC"
        i=$((i + 1))
    done
    rm -f "$W/blob"
}
