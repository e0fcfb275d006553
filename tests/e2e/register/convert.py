#!/usr/bin/env python3
"""convert.py LAYOUT OUTDIR FORMAT_TOOL: converts every layer of an OCI layout's image with
sl-format-tool and writes OUTDIR/{manifest.json,config.json,index.json,blobs.txt}: the
manifest and config of the converted image (layer digests, sizes, diff_ids, the TOC
annotation), an index naming the manifest with its platform, and the converted blob paths,
bottom first."""
import hashlib
import json
import os
import subprocess
import sys

layout, out, tool = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)


def blob(d):
    return os.path.join(layout, "blobs", d.replace(":", "/"))


idx = json.load(open(os.path.join(layout, "index.json")))
mdesc = idx["manifests"][0]
man = json.load(open(blob(mdesc["digest"])))
cfg = json.load(open(blob(man["config"]["digest"])))
paths, layers, diffs = [], [], []
for i, l in enumerate(man["layers"]):
    p = os.path.join(out, "layer-%d.blob" % i)
    res = json.loads(subprocess.check_output([tool, "convert", blob(l["digest"]), p]))
    paths.append(p)
    diffs.append(res["diffID"])
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": res["digest"], "size": res["size"],
                   "annotations": {"containerd.io/snapshot/remote/starlight/toc.digest":
                                   res["tocDigest"]}})
cfg["rootfs"]["diff_ids"] = diffs
cbytes = json.dumps(cfg, sort_keys=True).encode()
man["layers"] = layers
man["config"]["digest"] = "sha256:" + hashlib.sha256(cbytes).hexdigest()
man["config"]["size"] = len(cbytes)
man["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
mbytes = json.dumps(man, sort_keys=True).encode()
index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [{"mediaType": man["mediaType"],
                        "digest": "sha256:" + hashlib.sha256(mbytes).hexdigest(),
                        "size": len(mbytes), "platform": mdesc.get("platform")}]}
open(os.path.join(out, "config.json"), "wb").write(cbytes)
open(os.path.join(out, "manifest.json"), "wb").write(mbytes)
open(os.path.join(out, "index.json"), "w").write(json.dumps(index, sort_keys=True))
open(os.path.join(out, "blobs.txt"), "w").write("\n".join(paths) + "\n")
