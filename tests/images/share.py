#!/usr/bin/env python3
"""What two OCI image layouts share: layer digests and file contents (by sha256).

  share.py OLD_LAYOUT NEW_LAYOUT [--check] [--min-share FRACTION] [--names OLD NEW]

Prints the layer digests each image has in common with the other, and how many of the new
image's regular files (of its merged view: whiteouts and opaque directories applied) have
content that is also somewhere in the old image, by count and by bytes, plus the largest
files that are new. With --check, fails (exit 1) unless no layer digest is shared (every layer
was rebuilt) and at least FRACTION (default 0.5) of the new image's file bytes are shared: the
shape of a minor update (tests/images/README.md). --names: the images' names in the output
(default: the layout directories' names). Python standard library only.
"""
import argparse
import hashlib
import json
import os
import sys
import tarfile


def blob(layout, digest):
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        sys.exit("share.py: %s: bad digest %r" % (layout, digest))
    return os.path.join(layout, "blobs", "sha256", hexd)


def manifest(layout):
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    ms = idx.get("manifests") or []
    if len(ms) != 1:
        sys.exit("share.py: %s: expected one manifest, found %d" % (layout, len(ms)))
    with open(blob(layout, ms[0]["digest"])) as f:
        return json.load(f)


def clean(name):
    """a tar entry name as a relative path without "./" or "/" prefixes"""
    name = os.path.normpath("/" + name).lstrip("/")
    return name or "."


def drop_under(files, d):
    """forget every file below directory d"""
    pre = d + "/" if d not in ("", ".") else ""
    for p in [p for p in files if p.startswith(pre)]:
        del files[p]


def merged_files(layout, layers):
    """path -> (sha256, size) of the regular files of the image's merged view"""
    files = {}
    dirs = set()
    for desc in layers:
        seen = {}  # this layer's regular files, for hardlinks to them
        with tarfile.open(blob(layout, desc["digest"]), "r|*") as tf:
            for ti in tf:
                name = clean(ti.name)
                d, base = os.path.split(name)
                if base == ".wh..wh..opq":
                    drop_under(files, d)
                    continue
                if base.startswith(".wh."):
                    gone = os.path.join(d, base[4:])
                    files.pop(gone, None)
                    drop_under(files, gone)
                    continue
                if ti.isdir():
                    dirs.add(name)  # directories merge with the lower layers' ones
                    continue
                # any other entry replaces whatever the lower layers had at its path
                files.pop(name, None)
                if name in dirs:
                    dirs.discard(name)
                    drop_under(files, name)
                if ti.isreg():
                    h = hashlib.sha256()
                    f = tf.extractfile(ti)
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                    files[name] = seen[name] = (h.hexdigest(), ti.size)
                elif ti.islnk():
                    target = clean(ti.linkname)
                    src = seen.get(target) or files.get(target)
                    if src:
                        files[name] = src
    return files


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--min-share", type=float, default=0.5)
    ap.add_argument("--names", nargs=2, metavar=("OLD", "NEW"))
    a = ap.parse_args()
    mo, mn = manifest(a.old), manifest(a.new)
    lo = [d["digest"] for d in mo["layers"]]
    ln = [d["digest"] for d in mn["layers"]]
    common = [d for d in ln if d in set(lo)]
    fo, fn = merged_files(a.old, mo["layers"]), merged_files(a.new, mn["layers"])
    old_contents = {v[0] for v in fo.values()}
    total_n, total_b = len(fn), sum(v[1] for v in fn.values())
    shared = {p: v for p, v in fn.items() if v[0] in old_contents}
    shared_b = sum(v[1] for v in shared.values())
    new_files = sorted(((v[1], p) for p, v in fn.items() if p not in shared), reverse=True)
    share = shared_b / total_b if total_b else 0.0
    name_o, name_n = a.names or (os.path.basename(a.old.rstrip("/")),
                                 os.path.basename(a.new.rstrip("/")))
    print("share %s -> %s: layers %d -> %d, %d layer digest(s) in common" % (
        name_o, name_n, len(lo), len(ln), len(common)))
    print("share %s -> %s: %d of %d files (%.1f%%), %.1f of %.1f MB (%.1f%%) of the new "
          "image's file contents are in the old one" % (
              name_o, name_n, len(shared), total_n, 100.0 * len(shared) / max(total_n, 1),
              shared_b / 1e6, total_b / 1e6, 100.0 * share))
    print("share %s -> %s: %d files with new content, %.1f KB; largest: %s" % (
        name_o, name_n, len(new_files), sum(s for s, _ in new_files) / 1e3,
        ", ".join("/%s (%d B)" % (p, s) for s, p in new_files[:8]) or "none"))
    if a.check:
        if common:
            sys.exit("share.py: %s shares layer(s) %s with %s: not a rebuild" % (
                name_n, " ".join(common), name_o))
        if share < a.min_share:
            sys.exit("share.py: only %.1f%% of %s's file bytes are in %s (minimum %.0f%%)" % (
                100.0 * share, name_n, name_o, 100.0 * a.min_share))


if __name__ == "__main__":
    main()
