#!/usr/bin/env python3
"""Helpers for tests/e2e/fs/run.sh (standard library only).

  tree.py layers LAYOUT            layer blob paths of an OCI layout's image, bottom first
  tree.py whiteouts DIR            turn a tar-extracted layer into an overlay layer in place:
                                   .wh.NAME -> 0:0 char device NAME, .wh..wh..opq -> the
                                   directory gets trusted.overlay.opaque=y (mtimes kept)
  tree.py hash DIR                 one line per path: type, mode, owner, size, link target,
                                   device numbers, xattrs, nlink, hardlink group, mtime, sha256
"""
import hashlib
import json
import os
import stat
import sys


def layers(layout):
    idx = json.load(open(os.path.join(layout, "index.json")))
    digest = idx["manifests"][0]["digest"]
    man = json.load(open(os.path.join(layout, "blobs", *digest.split(":"))))
    for layer in man["layers"]:
        print(os.path.join(layout, "blobs", *layer["digest"].split(":")))


def whiteouts(root):
    for dirpath, dirnames, filenames in os.walk(root):
        st = os.lstat(dirpath)
        changed = False
        for name in list(filenames) + list(dirnames):
            if not name.startswith(".wh."):
                continue
            p = os.path.join(dirpath, name)
            if name == ".wh..wh..opq":
                os.unlink(p)
                os.setxattr(dirpath, "trusted.overlay.opaque", b"y")
            elif name.startswith(".wh..wh."):
                os.unlink(p)
            else:
                wst = os.lstat(p)
                os.unlink(p)
                dev = os.path.join(dirpath, name[4:])
                os.mknod(dev, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                os.utime(dev, ns=(wst.st_atime_ns, wst.st_mtime_ns), follow_symlinks=False)
            changed = True
        if changed:
            os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hash_tree(root):
    groups = {}
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames) + ([""] if dirpath == root else []):
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            f = [rel, "%o" % st.st_mode, "%d:%d" % (st.st_uid, st.st_gid)]
            if stat.S_ISREG(kind):
                f += ["size=%d" % st.st_size, "nlink=%d" % st.st_nlink, "sha256=" + sha256(p)]
                if st.st_nlink > 1:
                    first = groups.setdefault((st.st_dev, st.st_ino), rel)
                    f.append("group=" + first)
            elif stat.S_ISLNK(kind):
                f.append("-> " + os.readlink(p))
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                f.append("dev=%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
            if rel != ".":
                f.append("mtime=%d" % st.st_mtime)
            try:
                names = sorted(os.listxattr(p, follow_symlinks=False))
            except OSError:
                names = []
            for x in names:
                try:
                    v = os.getxattr(p, x, follow_symlinks=False)
                except OSError as e:
                    v = ("error %d" % e.errno).encode()
                f.append("xattr %s=%s" % (x, v.hex()))
            lines.append(" ".join(f))
    print("\n".join(lines))


if __name__ == "__main__":
    cmd, arg = sys.argv[1], sys.argv[2]
    {"layers": layers, "whiteouts": whiteouts, "hash": hash_tree}[cmd](arg)
