#!/usr/bin/env python3
"""Checks one eStargz layer blob made by ctr-remote against an independent tar listing.

  compare.py BLOB [SL_FORMAT_TOOL]

1. `gzip -dc BLOB | tar -tv` (GNU tar) lists the layer; its regular files, minus
   stargz.index.json and the eStargz landmark files, are the reference.
2. The blob's own TOC (stargz.index.json, read here with the standard library) must list the
   same regular files, and the 51-byte footer must point at the TOC's gzip member: this checks
   the fixture, i.e. that ctr-remote made what we think it made.
3. With SL_FORMAT_TOOL (the project's reader): `toc --entries BLOB` must list the same regular
   files with the tar's sizes and sha256 digests, count them (`regularFiles`, landmarks may be
   included) and the TOC's chunks (`chunks`); `verify BLOB` must exit 0.
Prints one summary line; exits 1 on any mismatch.
"""
import gzip
import hashlib
import io
import json
import re
import struct
import subprocess
import sys
import tarfile
import zlib

TOC_NAME = "stargz.index.json"
LANDMARKS = {".prefetch.landmark", ".no.prefetch.landmark"}
FOOTER_SIZE = 51
VERBOSE = re.compile(r"^(\S)\S*\s+\S+\s+\S+\s+\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? (.*)$")

errors = []


def norm(name):
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def skip(name):
    return name == TOC_NAME or name in LANDMARKS


def tar_contents(blob):
    """sha256 and size of every regular file, read with Python's tarfile."""
    out = {}
    # gzip.open, not tarfile's "r|gz": the blob is many concatenated gzip members
    with gzip.open(blob) as g, tarfile.open(fileobj=g, mode="r|") as tf:
        for m in tf:
            if m.isreg():
                h = hashlib.sha256()
                f = tf.extractfile(m)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                out[norm(m.name)] = (m.size, "sha256:" + h.hexdigest())
    return out


def check_tool(tool, blob, ref, toc, summary):
    """The project's reader: `toc --entries` and `verify` must agree with the references."""
    p = subprocess.run([tool, "toc", "--entries", blob], capture_output=True)
    if p.returncode != 0:
        errors.append("sl-format-tool toc exited %d: %s"
                      % (p.returncode, p.stderr.decode(errors="replace").strip()))
        return
    js = json.loads(p.stdout)
    listed = [e for e in js.get("list", []) if e.get("type") == "reg"]
    got = [norm(e["name"]) for e in listed if not skip(norm(e["name"]))]
    if sorted(got) != sorted(ref):
        diff("sl-format-tool toc --entries", ref, got)
    landmarks = sum(1 for e in listed if norm(e["name"]) in LANDMARKS)
    count = js.get("regularFiles")
    if count not in (len(ref), len(ref) + landmarks):
        errors.append("sl-format-tool counts %r regular files, reference %d (+%d landmarks)"
                      % (count, len(ref), landmarks))
    if toc is not None:
        want_chunks = sum(1 for e in toc.get("entries", [])
                          if e.get("type") == "chunk" or (e.get("type") == "reg" and e.get("size")))
        if js.get("chunks") != want_chunks:
            errors.append("sl-format-tool counts %r chunks, the TOC has %d"
                          % (js.get("chunks"), want_chunks))
    contents = tar_contents(blob)
    bad = []
    for e in listed:
        name = norm(e["name"])
        if name not in contents:
            continue
        size, digest = contents[name]
        if e.get("size") != size or ("digest" in e and e["digest"] != digest):
            bad.append(name)
    if bad:
        errors.append("sl-format-tool size/digest differ from the tar for %s" % bad[:5])
    summary.append("reader agrees (%s regular, %s chunks)" % (count, js.get("chunks")))
    p = subprocess.run([tool, "verify", blob], capture_output=True)
    if p.returncode != 0:
        errors.append("sl-format-tool verify exited %d: %s"
                      % (p.returncode, p.stderr.decode(errors="replace").strip()))
    else:
        summary.append("verify ok")


def tar_regular(blob):
    """Regular files per `gzip -dc | tar -tv`, GNU tar being the independent reference."""
    gz = subprocess.Popen(["gzip", "-dc", blob], stdout=subprocess.PIPE)
    out = subprocess.run(["tar", "-tv", "--numeric-owner", "--quoting-style=literal"],
                         stdin=gz.stdout, capture_output=True, check=True,
                         env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout
    gz.stdout.close()
    if gz.wait() != 0:
        errors.append("gzip -dc failed: the blob is not one valid gzip stream")
    names = []
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        m = VERBOSE.match(line)
        if not m:
            errors.append("cannot parse tar -tv line: %r" % line)
            continue
        if m.group(1) == "-" and not skip(norm(m.group(2))):
            names.append(norm(m.group(2)))
    return names


def blob_toc(blob):
    """The TOC JSON and its offset, found through the eStargz footer."""
    with open(blob, "rb") as f:
        data = f.read()
    footer = data[-FOOTER_SIZE:]
    # The footer is an empty gzip member whose extra field holds "%016xSTARGZ".
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(footer)) as g:
            if g.read() != b"":
                errors.append("footer member is not empty")
    except OSError as e:
        errors.append("footer is not a gzip member: %s" % e)
    flg = footer[3]
    if not flg & 4:
        errors.append("footer has no FEXTRA field")
        return None, None
    xlen = struct.unpack("<H", footer[10:12])[0]
    extra = footer[12:12 + xlen]
    # subfield 'S','G', len 22: "%016x" offset + "STARGZ"
    payload = extra[4:] if extra[:2] == b"SG" else extra
    m = re.match(rb"^([0-9a-f]{16})STARGZ$", payload)
    if not m:
        errors.append("footer extra field %r is not eStargz" % extra)
        return None, None
    off = int(m.group(1), 16)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    raw = d.decompress(data[off:len(data) - FOOTER_SIZE])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        member = tf.next()
        if member is None or member.name != TOC_NAME:
            errors.append("footer offset %d does not lead to %s" % (off, TOC_NAME))
            return None, off
        return json.load(tf.extractfile(member)), off


def toc_regular(toc):
    """Regular files of the TOC; also checks that each file's chunks tile it exactly."""
    names, covered, sizes = [], {}, {}
    for e in toc.get("entries", []):
        name = norm(e["name"])
        if e.get("type") == "reg":
            sizes[name] = e.get("size", 0)
            covered[name] = 0
            if not skip(name):
                names.append(name)
        if e.get("type") in ("reg", "chunk") and name in covered:
            if e.get("chunkOffset", 0) != covered[name]:
                errors.append("TOC: %s chunk at %d, expected %d"
                              % (name, e.get("chunkOffset", 0), covered[name]))
            # chunkSize 0 or absent means "up to the end of the file"
            covered[name] = (e.get("chunkOffset", 0) + e["chunkSize"] if e.get("chunkSize")
                             else sizes[name])
    for name, size in sizes.items():
        if covered[name] != size:
            errors.append("TOC: chunks of %s cover %d of %d bytes" % (name, covered[name], size))
    return names


def diff(what, want, got):
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    errors.append("%s: %d regular files, reference has %d (missing %s, extra %s)"
                  % (what, len(got), len(want), missing, extra))


def main():
    blob = sys.argv[1]
    tool = sys.argv[2] if len(sys.argv) > 2 else None
    ref = tar_regular(blob)
    toc, _ = blob_toc(blob)
    summary = ["%d regular files" % len(ref)]
    if toc is not None:
        got = toc_regular(toc)
        if sorted(got) != sorted(ref):
            diff("the blob's TOC", ref, got)
        chunks = sum(1 for e in toc.get("entries", [])
                     if e.get("type") == "chunk" or (e.get("type") == "reg" and e.get("size")))
        summary.append("TOC agrees (%d chunks)" % chunks)
    if tool:
        check_tool(tool, blob, ref, toc, summary)
    for e in errors:
        print("FAIL: %s: %s" % (blob, e), file=sys.stderr)
    print(", ".join(summary))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
