#!/usr/bin/env python3
"""Scripted registry stand-in that misbehaves on purpose, for test-registry-live.

Listens on two loopback ports (both chosen by the kernel, written to PORTS_FILE as "A B"):
port A plays the registry, port B plays blob storage on a different host:port. Routes on A:

  /v2/                              200
  /v2/flaky/manifests/v1            500 on the first request, then 200 (a manifest)
  /v2/broken/manifests/v1           always 500 with a registry JSON error
  /v2/busy/manifests/v1             429 Retry-After: 1 on the first request, then 200
  /v2/redir/blobs/<d>               401 Basic challenge without credentials; with them a
                                    307 to port B, which answers 400 if Authorization arrives
  /v2/norange/blobs/<d>             ignores Range: always 200 with the whole blob
  /v2/midfail/blobs/<d>             first GET dies halfway through; later GETs honour Range
  /v2/upload500/blobs/<d>           HEAD 404;  POST /v2/upload500/blobs/uploads/ always 500
  /v2/patchfail/blobs/uploads/      a chunked upload whose first PATCH stores half the chunk
                                    and answers 500; GET on the upload reports the Range
  /_hits?path=P                     how many requests P received
"""
import base64
import hashlib
import re
import sys
import threading
from urllib.parse import unquote
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOB = bytes(range(256)) * 40  # 10240 bytes
STORAGE_BLOB = b"hello from blob storage\n"
MANIFEST = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,'
            b'"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},'
            b'"layers":[]}')
CREDS = "Basic " + base64.b64encode(b"fault:fault-pass").decode()

hits = {}
upload = bytearray()
lock = threading.Lock()
storage_port = [0]


def count(path):
    with lock:
        hits[path] = hits.get(path, 0) + 1
        return hits[path]


class Registry(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self.drain()
        n = count(self.path.split("?")[0])
        if self.path.startswith("/v2/upload500/blobs/uploads/"):
            return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}')
        if self.path.startswith("/v2/patchfail/blobs/uploads/"):
            del upload[:]
            return self.send(202, b"", extra=[("Location", "/v2/patchfail/blobs/uploads/u1?s=0")])
        self.send(404, b"")

    def do_PATCH(self):
        n = count("patch")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        a, b = map(int, self.headers.get("Content-Range", "0-0").split("-"))
        if a != len(upload) or b - a + 1 != len(body):
            return self.send(416, b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"range"}]}')
        if n == 1:
            upload.extend(body[: len(body) // 2])
            return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"chunk lost"}]}')
        upload.extend(body)
        self.send(202, b"", extra=[("Location", "/v2/patchfail/blobs/uploads/u1?s=%d" % len(upload)),
                                   ("Range", "0-%d" % (len(upload) - 1))])

    def do_PUT(self):
        self.drain()
        if self.path.startswith("/v2/patchfail/blobs/uploads/u1"):
            d = "sha256:" + hashlib.sha256(upload).hexdigest()
            if ("digest=" + d.replace(":", "%3a")) not in self.path.lower():
                return self.send(400, b'{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}')
            return self.send(201, b"", extra=[("Docker-Content-Digest", d)])
        self.send(404, b"")

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_hits":
            q = unquote(self.path.split("path=", 1)[1]) if "path=" in self.path else ""
            with lock:
                return self.send(200, str(hits.get(q, 0)).encode(), "text/plain")
        n = count(path)
        if path == "/v2/":
            return self.send(200, b"{}")
        if path == "/v2/patchfail/blobs/uploads/u1":
            return self.send(204, b"", extra=[("Location", "/v2/patchfail/blobs/uploads/u1?s=%d" % len(upload)),
                                              ("Range", "0-%d" % (len(upload) - 1))])
        if path == "/v2/flaky/manifests/v1":
            if n == 1:
                return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"try again"}]}')
            return self.send(200, MANIFEST, "application/vnd.oci.image.manifest.v1+json")
        if path == "/v2/broken/manifests/v1":
            return self.send(500, b'{"errors":[{"code":"UNKNOWN","message":"storage exploded"}]}')
        if path == "/v2/busy/manifests/v1":
            if n == 1:
                return self.send(429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
                                 extra=[("Retry-After", "1")])
            return self.send(200, MANIFEST, "application/vnd.oci.image.manifest.v1+json")
        m = re.match(r"^/v2/(redir|norange|midfail|upload500|patchfail)/blobs/(sha256:[0-9a-f]{64})$", path)
        if m:
            repo = m.group(1)
            if repo in ("upload500", "patchfail"):
                return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"nope"}]}')
            if repo == "redir":
                if self.headers.get("Authorization") != CREDS:
                    return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"x"}]}',
                                     extra=[("WWW-Authenticate", 'Basic realm="fault"')])
                loc = "http://127.0.0.1:%d/storage/%s" % (storage_port[0], m.group(2))
                return self.send(307, b"", extra=[("Location", loc)])
            if repo == "norange":
                return self.send(200, BLOB, "application/octet-stream")
            if repo == "midfail":
                rng = self.headers.get("Range")
                if n == 1 or not rng:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(BLOB)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(BLOB[: len(BLOB) // 2])
                        self.wfile.flush()
                    self.close_connection = True
                    return
                a, b = re.match(r"bytes=(\d+)-(\d*)", rng).groups()
                a = int(a)
                b = int(b) if b else len(BLOB) - 1
                return self.send(206, BLOB[a:b + 1], "application/octet-stream",
                                 [("Content-Range", "bytes %d-%d/%d" % (a, b, len(BLOB)))])
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}')


class Storage(Registry):
    def do_GET(self):
        count("storage")
        if self.headers.get("Authorization"):
            return self.send(400, b"Authorization header leaked to blob storage", "text/plain")
        if self.path.startswith("/storage/"):
            return self.send(200, STORAGE_BLOB, "application/octet-stream")
        self.send(404, b"")


def main():
    a = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    b = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    storage_port[0] = b.server_address[1]
    threading.Thread(target=b.serve_forever, daemon=True).start()
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("%d %d\n" % (a.server_address[1], b.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    a.serve_forever()


if __name__ == "__main__":
    main()
