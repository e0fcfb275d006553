#!/usr/bin/env python3
"""Helpers for the convert scenario (Python standard library only).

  compare SRC_BLOB CONV_BLOB         the converted layer's tar holds exactly the source's entries
                                     (same metadata, same bytes) plus stargz.index.json
  push REG REPO TAG LAYER...         push blobs + config + manifest (plain HTTP); a LAYER is
                                     PATH[=MEDIA_TYPE[=ANNOTATION_TOC_DIGEST]]
  push-index REG REPO TAG DIGEST=OS/ARCH...
                                     push an OCI index of manifests already in REPO
  layer-traversal OUT                a gzip layer with a `../escape` entry
  layer-truncated IN OUT             IN cut in the middle of its deflate stream
  layer-lying-toc IN OUT             IN (a Starlight blob) with a TOC entry pointing outside
                                     the blob; prints the new TOC digest
  fault-proxy PORT UPSTREAM          forwards reads to UPSTREAM, answers 500 to every upload and
                                     manifest PUT, counts them in PORT.count next to nothing else
  manifest REG REPO REF              prints the manifest (or exits 1 on 404)
  flaky-blobs PORT UPSTREAM N        forwards everything to UPSTREAM, but answers 503 to the
                                     first N blob GETs (Range reads included); the number
                                     refused so far goes to $FAULT_PROXY_STATE.count
"""
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import socketserver
import struct
import sys
import tarfile
import threading
import urllib.request

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join([MT_INDEX, MT_MANIFEST,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def fail(msg):
    print("tool.py: " + msg, file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- compare

def entries(path):
    out = []
    with tarfile.open(path, "r:*") as t:
        for ti in t:
            data = None
            if ti.isreg():
                data = hashlib.sha256(t.extractfile(ti).read()).hexdigest()
            xattrs = {k: v for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            out.append((ti.name.rstrip("/"), {
                "type": ti.type if ti.type != tarfile.AREGTYPE else tarfile.REGTYPE,
                "mode": ti.mode, "uid": ti.uid, "gid": ti.gid, "mtime": int(ti.mtime),
                "linkname": ti.linkname, "size": ti.size if ti.isreg() else 0, "data": data,
                "dev": (ti.devmajor, ti.devminor) if (ti.ischr() or ti.isblk()) else None,
                "xattrs": xattrs}))
    return out


def cmd_compare(src, conv):
    a = entries(src)
    b = entries(conv)
    toc = [e for e in b if e[0] == "stargz.index.json"]
    if len(toc) != 1:
        fail("converted layer holds %d stargz.index.json entries, want 1" % len(toc))
    b = [e for e in b if e[0] != "stargz.index.json"]
    a = [e for e in a if e[0] != "stargz.index.json"]
    if [n for n, _ in a] != [n for n, _ in b]:
        fail("entry lists differ: only in source %s, only in converted %s" % (
            sorted(set(n for n, _ in a) - set(n for n, _ in b))[:5],
            sorted(set(n for n, _ in b) - set(n for n, _ in a))[:5]))
    files = 0
    for (name, ea), (_, eb) in zip(a, b):
        for k in ea:
            if ea[k] != eb[k]:
                fail("%s: %s differs: source %r, converted %r" % (name, k, ea[k], eb[k]))
        files += ea["data"] is not None
    print("compare: %d entries, %d regular files identical" % (len(a), files))


# ---------------------------------------------------------------- registry pushes

def req(method, url, body=None, headers=None):
    r = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(reg, repo, data):
    d = sha(data)
    st, h, _ = req("POST", "http://%s/v2/%s/blobs/uploads/" % (reg, repo))
    if st != 202:
        fail("POST upload: HTTP %d" % st)
    loc = h["Location"]
    if loc.startswith("/"):
        loc = "http://%s%s" % (reg, loc)
    loc += ("&" if "?" in loc else "?") + "digest=" + d
    st, _, body = req("PUT", loc, data, {"Content-Type": "application/octet-stream"})
    if st != 201:
        fail("PUT blob: HTTP %d %s" % (st, body[:200]))
    return d


def put_manifest(reg, repo, ref, doc, mt):
    data = json.dumps(doc).encode()
    st, _, body = req("PUT", "http://%s/v2/%s/manifests/%s" % (reg, repo, ref), data,
                      {"Content-Type": mt})
    if st != 201:
        fail("PUT manifest: HTTP %d %s" % (st, body[:300]))
    return sha(data)


def diff_id(data):
    try:
        return sha(gzip.decompress(data))
    except Exception:  # a deliberately broken layer: any well-formed digest will do
        return sha(data)


def cmd_push(reg, repo, tag, layers):
    descs, ids = [], []
    for spec in layers:
        parts = spec.split("=")
        data = open(parts[0], "rb").read()
        d = push_blob(reg, repo, data)
        desc = {"mediaType": parts[1] if len(parts) > 1 and parts[1] else MT_LAYER,
                "digest": d, "size": len(data)}
        if len(parts) > 2:
            desc["annotations"] = {"containerd.io/snapshot/remote/starlight/toc.digest": parts[2]}
        descs.append(desc)
        ids.append(diff_id(data))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": ids}}).encode()
    cd = push_blob(reg, repo, config)
    doc = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
           "config": {"mediaType": MT_CONFIG, "digest": cd, "size": len(config)},
           "layers": descs}
    print(put_manifest(reg, repo, tag, doc, MT_MANIFEST))


def cmd_push_index(reg, repo, tag, specs):
    mans = []
    for spec in specs:
        digest, plat = spec.split("=")
        st, h, body = req("GET", "http://%s/v2/%s/manifests/%s" % (reg, repo, digest),
                          headers={"Accept": ACCEPT})
        if st != 200:
            fail("GET manifest %s: HTTP %d" % (digest, st))
        p = plat.split("/")
        entry = {"mediaType": h.get("Content-Type", MT_MANIFEST).split(";")[0],
                 "digest": digest, "size": len(body),
                 "platform": {"os": p[0], "architecture": p[1]}}
        if len(p) > 2:
            entry["platform"]["variant"] = p[2]
        mans.append(entry)
    print(put_manifest(reg, repo, tag, {"schemaVersion": 2, "mediaType": MT_INDEX,
                                        "manifests": mans}, MT_INDEX))


def cmd_manifest(reg, repo, ref):
    st, _, body = req("GET", "http://%s/v2/%s/manifests/%s" % (reg, repo, ref),
                      headers={"Accept": ACCEPT})
    if st != 200:
        sys.exit(1)
    sys.stdout.write(body.decode())


# ---------------------------------------------------------------- hostile layers

def tar_gz(entries_):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries_:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def cmd_layer_traversal(out):
    open(out, "wb").write(tar_gz([("ok.txt", b"fine\n"), ("../escape", b"evil\n")]))


def cmd_layer_truncated(src, out):
    data = open(src, "rb").read()
    open(out, "wb").write(data[: len(data) // 2])


FOOTER = 51


def cmd_layer_lying_toc(src, out):
    blob = open(src, "rb").read()
    extra = blob[-FOOTER + 16: -FOOTER + 16 + 22]
    if not extra.endswith(b"STARGZ"):
        fail("%s has no eStargz footer" % src)
    toc_off = int(extra[:16], 16)
    tar = gzip.decompress(blob[toc_off:-FOOTER])
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        ti = t.next()
        toc = json.loads(t.extractfile(ti).read())
    for e in toc["entries"]:
        if e.get("type") == "reg" and e.get("size", 0) > 0:
            e["offset"] = len(blob) + 4096  # points past the end of the blob
            break
    else:
        fail("no regular file to lie about")
    js = json.dumps(toc).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo("stargz.index.json")
        ti.size = len(js)
        t.addfile(ti, io.BytesIO(js))
    member = gzip.compress(buf.getvalue(), mtime=0)
    head = blob[:toc_off]
    footer = blob[-FOOTER:]
    open(out, "wb").write(head + member + footer)
    print(sha(js))


# ---------------------------------------------------------------- fault proxy

def cmd_fault_proxy(port, upstream, flaky_blob_gets=None):
    """Without flaky_blob_gets: refuse every upload (500). With it: forward uploads too, and
    refuse the first flaky_blob_gets blob GETs with 503 instead."""
    counter = {"uploads": 0, "reserved": 0}
    lock = threading.Lock()
    if flaky_blob_gets is not None:
        flaky_blob_gets = int(flaky_blob_gets)
    count_file = "%s.count" % os.environ.get("FAULT_PROXY_STATE", "/dev/null")

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def forward(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            c = http.client.HTTPConnection(upstream, timeout=30)
            hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            c.request(self.command, self.path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            self.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def refuse(self, status=500):
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            with lock:
                counter["uploads"] += 1
                if count_file != "/dev/null.count":
                    with open(count_file, "w") as f:
                        f.write(str(counter["uploads"]))
            body = b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def flaky_get(self):
            with lock:  # decide and count at once: exactly N refusals with parallel readers
                fail = "/blobs/sha256:" in self.path and counter["reserved"] < flaky_blob_gets
                counter["reserved"] += fail
            if fail:
                self.refuse(503)
            else:
                self.forward()

        if flaky_blob_gets is None:
            do_GET = do_HEAD = forward
            do_POST = do_PUT = do_PATCH = refuse
        else:
            do_GET = flaky_get
            do_HEAD = do_POST = do_PUT = do_PATCH = forward

    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    S(("127.0.0.1", int(port)), H).serve_forever()


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__)
        sys.exit(2)
    cmd, args = a[0], a[1:]
    {
        "compare": lambda: cmd_compare(*args),
        "push": lambda: cmd_push(args[0], args[1], args[2], args[3:]),
        "push-index": lambda: cmd_push_index(args[0], args[1], args[2], args[3:]),
        "manifest": lambda: cmd_manifest(*args),
        "layer-traversal": lambda: cmd_layer_traversal(*args),
        "layer-truncated": lambda: cmd_layer_truncated(*args),
        "layer-lying-toc": lambda: cmd_layer_lying_toc(*args),
        "fault-proxy": lambda: cmd_fault_proxy(*args[:2]),
        "flaky-blobs": lambda: cmd_fault_proxy(args[0], args[1], args[2]),
    }[cmd]()


if __name__ == "__main__":
    main()
