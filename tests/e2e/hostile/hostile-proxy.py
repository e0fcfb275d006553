#!/usr/bin/env python3
"""A fake starlight-proxy for the hostile scenario: serves DELTA (a real delta of a good image)
with its header made hostile, and /health-check. Standard library only.

  hostile-proxy.py HOST:PORT DELTA MODE
  MODE: overlap          two contents claim the same payload bytes
        toc=BLOB         the layer's TOC tail replaced by BLOB's (a gen.py toc-*.blob of the
                         same layer), its tocDigest, size and the manifest's annotation and
                         digest rewritten to vouch for it: only the TOC reader can refuse it
        name-long        a file path of 6000 bytes
        path-escape      a file path that climbs out of the layer (etc/../../../etc/passwd)
        content-size     a content (and its file) 1 TiB larger than its chunks
"""
import base64
import hashlib
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib_py"))
from e2eproxy import delta_join, delta_split, serve_delta  # noqa: E402


def hostile(delta, mode):
    h, pl, payload = delta_split(delta)
    layer = next(l for l in h["layers"] if not l["held"] and l["files"])
    if mode == "overlap":
        if len(h["contents"]) < 2:
            sys.exit("hostile-proxy: the delta has %d contents" % len(h["contents"]))
        h["contents"][1]["payloadOffset"] = h["contents"][0]["payloadOffset"]
        h["contents"][1]["chunks"][0]["payloadOffset"] = h["contents"][0]["payloadOffset"]
    elif mode == "name-long":
        layer["files"][0]["path"] = "a/" * 2999 + "b"
    elif mode == "path-escape":
        layer["files"][0]["path"] = "etc/../../../etc/passwd"
    elif mode == "content-size":
        f = next(f for f in layer["files"] if f["source"] == "payload")
        f["size"] += 1 << 40
        h["contents"][f["content"]]["size"] += 1 << 40
    elif mode.startswith("toc="):
        blob = open(mode[4:], "rb").read()
        off = int(blob[-51 + 16: -51 + 32], 16)
        js = hostile_toc_json(blob, off)
        digest = "sha256:" + hashlib.sha256(js).hexdigest()
        t = h["target"]
        m = json.loads(base64.b64decode(t["manifest"]))
        ml = next(x for x in m["layers"] if x["digest"] == layer["digest"])
        ml["size"] = len(blob)
        ann = ml.setdefault("annotations", {})
        for k in ("containerd.io/snapshot/remote/starlight/toc.digest",
                  "containerd.io/snapshot/stargz/toc.digest"):
            ann[k] = digest
        mb = json.dumps(m).encode()
        t["manifest"] = base64.b64encode(mb).decode()
        t["digest"] = "sha256:" + hashlib.sha256(mb).hexdigest()
        layer.update(size=len(blob), tocOffset=off, tocDigest=digest,
                     tocTail=base64.b64encode(blob[off:]).decode())
    else:
        sys.exit(__doc__)
    return delta_join(delta, h, pl, payload)


def hostile_toc_json(blob, off):
    import gzip
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob[off:-51]))) as t:
        return t.extractfile(t.next()).read()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    body = hostile(open(sys.argv[2], "rb").read(), sys.argv[3])
    serve_delta((host, int(port)), body, b'{"status":"OK"}', post=True)


if __name__ == "__main__":
    main()
