#!/usr/bin/env python3
"""Deterministic layer tars and OCI image layouts for Starlight-C test images.

Python standard library only. Every tar entry gets mtime 0, numeric owners and no user/group
names, and entries are written in name order, so the same input gives the same bytes.

Subcommands:
  busybox-layer OUT.tar            one layer: /bin/busybox, its applet symlinks, /etc, /tmp...
  dir-layer DIR OUT.tar [--upper]  a directory tree as a layer; with --upper, DIR is an overlayfs
                                   upperdir and whiteouts/opaque dirs become .wh. entries
  layout OUTDIR --config JSON --layer A.tar [--layer B.tar ...] [--ref TAG] [--created-by S ...]
                                   gzip (-n) each layer and write oci-layout, index.json, blobs
"""
import argparse
import hashlib
import io
import json
import os
import platform
import stat
import subprocess
import sys
import tarfile

EPOCH = "1970-01-01T00:00:00Z"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def go_arch():
    """The machine's architecture in OCI/Go spelling."""
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


class Layer:
    """A deterministic tar writer. Callers add entries in any order; close() sorts them."""

    def __init__(self, path):
        self.path = path
        self.entries = {}  # name -> (TarInfo, data bytes or file path or None)

    def _info(self, name, typ, mode, uid=0, gid=0, xattrs=None):
        name = name.strip("/")
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = 0
        if xattrs:
            # PAX SCHILY.xattr.* records, as GNU tar --xattrs writes them; binary values are
            # carried through surrogateescape (tarfile then writes hdrcharset=BINARY).
            ti.pax_headers = {
                "SCHILY.xattr." + k: (v.decode("utf-8", "surrogateescape")
                                      if isinstance(v, bytes) else v)
                for k, v in sorted(xattrs.items())
            }
        return ti

    def dir(self, name, mode=0o755, **kw):
        self.entries[name.strip("/")] = (self._info(name, tarfile.DIRTYPE, mode, **kw), None)

    def file(self, name, data=b"", mode=0o644, src=None, **kw):
        ti = self._info(name, tarfile.REGTYPE, mode, **kw)
        if src is not None:
            ti.size = os.path.getsize(src)
            self.entries[ti.name] = (ti, ("path", src))
        else:
            if isinstance(data, str):
                data = data.encode()
            ti.size = len(data)
            self.entries[ti.name] = (ti, ("bytes", data))

    def symlink(self, name, target, **kw):
        ti = self._info(name, tarfile.SYMTYPE, 0o777, **kw)
        ti.linkname = target
        self.entries[ti.name] = (ti, None)

    def hardlink(self, name, target, mode=0o644, **kw):
        ti = self._info(name, tarfile.LNKTYPE, mode, **kw)
        ti.linkname = target.strip("/")
        self.entries[ti.name] = (ti, None)

    def chardev(self, name, major, minor, mode=0o666, **kw):
        ti = self._info(name, tarfile.CHRTYPE, mode, **kw)
        ti.devmajor, ti.devminor = major, minor
        self.entries[ti.name] = (ti, None)

    def fifo(self, name, mode=0o644, **kw):
        self.entries[name.strip("/")] = (self._info(name, tarfile.FIFOTYPE, mode, **kw), None)

    def close(self):
        # Sort like `tar --sort=name` does within a directory walk: parents before children,
        # siblings by byte order of their names.
        def key(name):
            return [p.encode("utf-8", "surrogateescape") for p in name.split("/")]

        with tarfile.open(self.path, "w", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tf:
            for name in sorted(self.entries, key=key):
                ti, payload = self.entries[name]
                if payload is None:
                    tf.addfile(ti)
                elif payload[0] == "bytes":
                    tf.addfile(ti, io.BytesIO(payload[1]))
                else:
                    with open(payload[1], "rb") as f:
                        tf.addfile(ti, f)


def read_xattrs(path, upper):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if upper and n.startswith("trusted.overlay."):
            continue  # overlayfs bookkeeping, never part of an image
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def dir_layer(root, out, upper=False):
    """Tar the tree under root. upper=True converts overlayfs whiteouts to OCI whiteouts."""
    layer = Layer(out)
    seen = {}  # (dev, ino) -> first name, for hardlinks
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.join(rel_dir, n)
            st = os.lstat(p)
            kw = {"uid": st.st_uid, "gid": st.st_gid}
            mode = stat.S_IMODE(st.st_mode)
            if upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                layer.file(os.path.join(rel_dir, ".wh." + n), b"", mode=0o644)
                continue
            xattrs = read_xattrs(p, upper)
            if stat.S_ISDIR(st.st_mode):
                layer.dir(rel, mode, xattrs=xattrs, **kw)
                if upper:
                    try:
                        opq = os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False)
                    except OSError:
                        opq = b""
                    if opq == b"y":
                        layer.file(os.path.join(rel, ".wh..wh..opq"), b"", mode=0o644)
            elif stat.S_ISLNK(st.st_mode):
                layer.symlink(rel, os.readlink(p), xattrs=xattrs, **kw)
            elif stat.S_ISREG(st.st_mode):
                k = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and k in seen:
                    layer.hardlink(rel, seen[k], mode, xattrs=xattrs, **kw)
                else:
                    seen[k] = rel
                    layer.file(rel, src=p, mode=mode, xattrs=xattrs, **kw)
            elif stat.S_ISCHR(st.st_mode):
                layer.chardev(rel, os.major(st.st_rdev), os.minor(st.st_rdev), mode, **kw)
            elif stat.S_ISBLK(st.st_mode):
                ti = layer._info(rel, tarfile.BLKTYPE, mode, **kw)
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                layer.entries[ti.name] = (ti, None)
            elif stat.S_ISFIFO(st.st_mode):
                layer.fifo(rel, mode, **kw)
            # sockets are not representable in a layer; skip them
    layer.close()


def busybox_layer(out, busybox="/bin/busybox"):
    layer = Layer(out)
    for d, m in [("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755),
                 ("usr/sbin", 0o755), ("etc", 0o755), ("dev", 0o755), ("proc", 0o755),
                 ("sys", 0o755), ("root", 0o700), ("home", 0o755), ("var", 0o755),
                 ("tmp", 0o1777)]:
        layer.dir(d, m)
    layer.file("bin/busybox", src=busybox, mode=0o755)
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    for a in applets:
        if a != "bin/busybox":
            layer.symlink(a, "/bin/busybox")
    layer.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
               "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    layer.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    layer.close()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def put_blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def layout(outdir, layers, config, ref="latest", created_by=None):
    blobs = os.path.join(outdir, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    diff_ids, descs, history = [], [], []
    for i, tar in enumerate(layers):
        diff_ids.append("sha256:" + sha256_file(tar))
        tmp = os.path.join(blobs, ".tmp-layer")
        with open(tmp, "wb") as f:
            subprocess.run(["gzip", "-n", "-c", tar], check=True, stdout=f)
        d = sha256_file(tmp)
        size = os.path.getsize(tmp)
        os.replace(tmp, os.path.join(blobs, d))
        descs.append({"mediaType": MT_LAYER_GZIP, "digest": "sha256:" + d, "size": size})
        by = created_by[i] if created_by and i < len(created_by) else os.path.basename(tar)
        history.append({"created": EPOCH, "created_by": by})
    cfg = {
        "architecture": go_arch(),
        "os": "linux",
        "created": EPOCH,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    cdig, csize = put_blob(blobs, canonical(cfg))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cdig, "size": csize},
        "layers": descs,
    }
    mdig, msize = put_blob(blobs, canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST, "digest": mdig, "size": msize,
            "platform": {"architecture": go_arch(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }],
    }
    with open(os.path.join(outdir, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(outdir, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("busybox-layer")
    p.add_argument("out")
    p.add_argument("--busybox", default="/bin/busybox")
    p = sub.add_parser("dir-layer")
    p.add_argument("dir")
    p.add_argument("out")
    p.add_argument("--upper", action="store_true")
    p = sub.add_parser("layout")
    p.add_argument("outdir")
    p.add_argument("--config", required=True, help="image config 'config' object as JSON")
    p.add_argument("--layer", action="append", required=True)
    p.add_argument("--created-by", action="append")
    p.add_argument("--ref", default="latest")
    a = ap.parse_args()
    if a.cmd == "busybox-layer":
        busybox_layer(a.out, a.busybox)
    elif a.cmd == "dir-layer":
        dir_layer(a.dir, a.out, a.upper)
    else:
        layout(a.outdir, a.layer, json.loads(a.config), a.ref, a.created_by)


if __name__ == "__main__":
    sys.exit(main())
