#!/usr/bin/env python3
"""A counting, fault-injecting HTTP proxy in front of a registry, for test-blobcache.

Usage: count-proxy.py PORTFILE UPSTREAM_PORT. Listens on 127.0.0.1 (port written to
PORTFILE), forwards GET/HEAD to 127.0.0.1:UPSTREAM_PORT and counts blob GETs.
Control (never forwarded):
  GET /_ctl/stats        -> {"blob_gets": N, "ranges": ["a-b", ...]}
  GET /_ctl/reset        -> zero the counters
  GET /_ctl/mode/NAME    -> how blob GETs are answered from now on:
      normal   forwarded as is
      cut      headers and half the body, then the connection is closed
      short    a 206 whose body is shorter than the range asked for
      fail     HTTP 500
  GET /_ctl/delay/MS     -> wait MS milliseconds before answering blob GETs
"""
import http.client
import http.server
import json
import sys
import threading
import time

LOCK = threading.Lock()
STATE = {"blob_gets": 0, "ranges": [], "mode": "normal", "delay": 0.0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        parts = self.path.split("/")[2:]
        with LOCK:
            if parts[0] == "stats":
                body = json.dumps({"blob_gets": STATE["blob_gets"],
                                   "ranges": STATE["ranges"]}).encode()
                return self.reply(200, body)
            if parts[0] == "reset":
                STATE["blob_gets"] = 0
                STATE["ranges"] = []
            elif parts[0] == "mode":
                STATE["mode"] = parts[1]
            elif parts[0] == "delay":
                STATE["delay"] = int(parts[1]) / 1000.0
        self.reply(200, b"{}")

    def forward(self):
        if self.path.startswith("/_ctl/"):
            return self.control()
        is_blob = self.command == "GET" and "/blobs/" in self.path
        with LOCK:
            mode, delay = STATE["mode"], STATE["delay"]
            if is_blob:
                STATE["blob_gets"] += 1
                STATE["ranges"].append(self.headers.get("Range", "").replace("bytes=", ""))
        if is_blob and delay:
            time.sleep(delay)
        if is_blob and mode == "fail":
            return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        status = resp.status
        if is_blob and status in (200, 206) and mode in ("cut", "short"):
            if mode == "short":
                body = body[: len(body) // 2]
            else:
                self.send_response(status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        self.send_response(status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = forward
    do_HEAD = forward


UPSTREAM = int(sys.argv[2])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os  # noqa: E402
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
srv.serve_forever()
