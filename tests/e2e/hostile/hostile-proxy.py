#!/usr/bin/env python3
"""A fake starlight-proxy for the hostile scenario: serves DELTA (a real delta of a good image)
with its header made hostile, and /health-check. Standard library only.

  hostile-proxy.py HOST:PORT DELTA MODE
  MODE: overlap          two contents claim the same payload bytes
        name-long        a file path of 6000 bytes
        path-escape      a file path that climbs out of the layer (etc/../../../etc/passwd)
        content-size     a content (and its file) 1 TiB larger than its chunks
"""
import json
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def hostile(delta, mode):
    hl, pl = struct.unpack(">QQ", delta[16:32])
    h = json.loads(delta[32:32 + hl])
    payload = delta[32 + hl:]
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
    else:
        sys.exit(__doc__)
    hj = json.dumps(h, separators=(",", ":")).encode()
    return delta[:16] + struct.pack(">QQ", len(hj), pl) + hj + payload


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    body = hostile(open(sys.argv[2], "rb").read(), sys.argv[3])

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/health-check"):
                b = b'{"status":"OK"}'
            elif self.path.startswith("/starlight/delta"):
                b = body
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        do_POST = do_GET

    ThreadingHTTPServer((host, int(port)), H).serve_forever()


if __name__ == "__main__":
    main()
