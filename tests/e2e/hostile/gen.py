#!/usr/bin/env python3
"""Writes the hostile input corpus (issue 9, item 6) at test time; nothing large is committed.

  gen.py layers OUTDIR OUTSIDE   source layers (tar+gzip) for the converter, as OUTDIR/src-*.tgz;
                                 OUTSIDE is a directory outside every store that escapes aim at
  gen.py tocs GOOD_BLOB OUTDIR   Starlight blobs derived from GOOD_BLOB (a converted layer) with
                                 a hostile TOC, as OUTDIR/toc-*.blob; prints NAME TOC_DIGEST
  gen.py expect NAME             the outcome each consumer must give for NAME (see EXPECT)

Python standard library only.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

FOOTER = 51  # eStargz footer (docs/format.md)


def tar_gz(members, fmt=tarfile.PAX_FORMAT):
    """members: (TarInfo fields dict, bytes)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for f, data in members:
            ti = tarfile.TarInfo(f["name"])
            ti.type = f.get("type", tarfile.REGTYPE)
            ti.mode = f.get("mode", 0o644)
            ti.linkname = f.get("linkname", "")
            ti.devmajor = f.get("devmajor", 0)
            ti.devminor = f.get("devminor", 0)
            ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return gzip.compress(buf.getvalue(), mtime=0)


def reg(name, data=b"x\n"):
    return ({"name": name}, data)


def good_members():
    return [({"name": "etc", "type": tarfile.DIRTYPE, "mode": 0o755}, b""),
            reg("etc/hostile-ok", b"still served\n"),
            reg("big.bin", os.urandom(200_000))]


def cmd_layers(out, outside):
    os.makedirs(out, exist_ok=True)
    L = {}
    L["traversal"] = [reg("ok.txt"), reg("../../escape-traversal", b"evil\n")]
    L["absolute"] = [reg("ok.txt"), reg(outside + "/planted-absolute", b"evil\n")]
    # a symlink pointing out of the layer, then a file written through it
    L["symlink-escape"] = [({"name": "esc", "type": tarfile.SYMTYPE, "linkname": outside}, b""),
                           reg("esc/planted-symlink", b"evil\n")]
    L["symlink-dotdot"] = [({"name": "up", "type": tarfile.SYMTYPE,
                             "linkname": "../../../../../../../../.."}, b""),
                           reg("up" + outside + "/planted-dotdot", b"evil\n")]
    L["hardlink-passwd"] = [reg("ok.txt"),
                            ({"name": "pw", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, b"")]
    L["hardlink-dotdot"] = [reg("ok.txt"),
                            ({"name": "pw", "type": tarfile.LNKTYPE,
                              "linkname": "../../../../etc/passwd"}, b"")]
    L["devices"] = [({"name": "dev", "type": tarfile.DIRTYPE, "mode": 0o755}, b""),
                    ({"name": "dev/evil-mem", "type": tarfile.CHRTYPE, "devmajor": 1,
                      "devminor": 1, "mode": 0o666}, b""),
                    ({"name": "dev/evil-sda", "type": tarfile.BLKTYPE, "devmajor": 8,
                      "devminor": 0, "mode": 0o666}, b""),
                    ({"name": "dev/evil-fifo", "type": tarfile.FIFOTYPE}, b""),
                    reg("ok.txt")]
    L["name-4k"] = [reg("/".join(["d" * 200] * 20) + "/" + "f" * 75),  # 4095 bytes: the limit
                    reg("ok.txt")]
    L["name-over-4k"] = [reg("/".join(["d" * 200] * 20) + "/" + "f" * 200), reg("ok.txt")]
    L["name-component-300"] = [reg("n" * 300), reg("ok.txt")]
    L["many-entries"] = ([({"name": "m", "type": tarfile.DIRTYPE, "mode": 0o755}, b"")] +
                         [reg("m/%06d" % i, b"") for i in range(100_000)])
    for name, members in L.items():
        open(os.path.join(out, "src-%s.tgz" % name), "wb").write(tar_gz(members))
    good = tar_gz(good_members())
    open(os.path.join(out, "src-good.tgz"), "wb").write(good)
    open(os.path.join(out, "src-truncated.tgz"), "wb").write(good[: len(good) // 2])
    open(os.path.join(out, "src-garbage-tail.tgz"), "wb").write(good + os.urandom(4096))
    open(os.path.join(out, "src-concat-garbage.tgz"), "wb").write(
        good + gzip.compress(os.urandom(8192), mtime=0))
    open(os.path.join(out, "src-not-gzip.tgz"), "wb").write(os.urandom(65536))


def read_toc(blob):
    extra = blob[-FOOTER + 16: -FOOTER + 16 + 22]
    if not extra.endswith(b"STARGZ"):
        sys.exit("gen.py: no eStargz footer")
    off = int(extra[:16], 16)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob[off:-FOOTER]))) as t:
        return off, json.loads(t.extractfile(t.next()).read())


def toc_member(toc):
    js = json.dumps(toc).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo("stargz.index.json")
        ti.size = len(js)
        t.addfile(ti, io.BytesIO(js))
    return gzip.compress(buf.getvalue(), mtime=0), "sha256:" + hashlib.sha256(js).hexdigest()


def cmd_tocs(good_path, out):
    os.makedirs(out, exist_ok=True)
    blob = open(good_path, "rb").read()
    off, toc = read_toc(blob)
    head, footer = blob[:off], blob[-FOOTER:]
    regs = [e for e in toc["entries"] if e.get("type") == "reg" and e.get("size", 0) > 0]
    big = next(e for e in regs if e["name"] == "big.bin")

    def variant(name, mutate, raw=None):
        t = json.loads(json.dumps(toc))
        mutate(t)
        member, digest = toc_member(t)
        data = raw(member) if raw else head + member + footer
        open(os.path.join(out, "toc-%s.blob" % name), "wb").write(data)
        print(name, digest)

    def first(t, n):
        return next(e for e in t["entries"] if e.get("name") == n)

    variant("traversal", lambda t: first(t, "etc/hostile-ok").update(name="../../evil"))
    variant("absolute", lambda t: first(t, "etc/hostile-ok").update(name="/etc/evil"))
    variant("out-of-range", lambda t: first(t, "big.bin").update(offset=len(blob) + 4096))

    def overlap(t):  # two files' bytes at the same place
        first(t, "etc/hostile-ok").update(offset=big["offset"])
    variant("overlap-files", overlap)

    def overlap_chunks(t):  # a chunk of big.bin starting inside the previous one
        cs = [e for e in t["entries"] if e.get("name") == "big.bin"]
        if len(cs) < 2:
            sys.exit("gen.py: big.bin has %d chunks; convert with a smaller --chunk-size" % len(cs))
        cs[1]["chunkOffset"] = cs[0].get("chunkOffset", 0) + 1
    variant("overlap-chunks", overlap_chunks)

    def size_lie(t):
        first(t, "big.bin")["size"] = 1 << 40
    variant("size-lie", size_lie)
    variant("symlink-escape", lambda t: t["entries"].extend(
        [{"name": "esc", "type": "symlink", "linkName": "/etc", "mode": 0o777},
         {"name": "esc/evil", "type": "reg", "size": 0, "mode": 0o644}]))
    variant("hardlink-passwd", lambda t: t["entries"].append(
        {"name": "pw", "type": "hardlink", "linkName": "/etc/passwd", "mode": 0o644}))
    variant("name-4k", lambda t: first(t, "etc/hostile-ok").update(name="a" * 5000))

    def many(t):
        t["entries"] += [{"name": "m%06d" % i, "type": "reg", "size": 0, "mode": 0o644}
                         for i in range(100_000)]
    variant("many-entries", many)
    variant("truncated-toc", lambda t: None, lambda m: head + m[: len(m) // 2] + footer)
    variant("garbage-toc", lambda t: None, lambda m: head + os.urandom(len(m)) + footer)
    variant("no-footer", lambda t: None, lambda m: head + m)


def main():
    a = sys.argv[1:]
    if a[:1] == ["layers"] and len(a) == 3:
        cmd_layers(a[1], a[2])
    elif a[:1] == ["tocs"] and len(a) == 3:
        cmd_tocs(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
