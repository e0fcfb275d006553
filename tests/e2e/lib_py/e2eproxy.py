"""Pieces shared by the e2e scenarios' Python helpers (pull/tools.py, resume/tool.py,
hostile/hostile-proxy.py; standard library only): the parts of a TCP relay, a delta answer's
header split and re-join (docs/protocol.md), and a fake proxy serving one delta.

A script next to a scenario imports it with
    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib_py"))
"""
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def listen(at):
    """A listening TCP socket on `at` ((host, port))."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(at)
    ls.listen(16)
    return ls


def serve(ls, handle):
    """Accepts connections on `ls` forever, each handled by handle(conn) on its own thread."""
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def pump_up(c, u):
    """Copies the client's bytes to the upstream until the client's end, then half-closes."""
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            u.sendall(b)
    except OSError:
        pass
    try:
        u.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def send_paced(c, b, rate):
    """Sends `b` in 4 KiB pieces at `rate` bytes/s (0: no limit)."""
    for i in range(0, len(b), 4096):
        piece = b[i:i + 4096]
        c.sendall(piece)
        if rate > 0:
            time.sleep(len(piece) / rate)


def delta_split(delta):
    """A delta answer's header (parsed), payload length and payload."""
    hl, pl = struct.unpack(">QQ", delta[16:32])
    return json.loads(delta[32:32 + hl]), pl, delta[32 + hl:]


def delta_join(delta, h, pl, payload):
    """The delta answer `delta` with its header replaced by `h`."""
    hj = json.dumps(h, separators=(",", ":")).encode()
    return delta[:16] + struct.pack(">QQ", len(hj), pl) + hj + payload


def serve_delta(at, body, health, post=False):
    """A fake proxy on `at`: /starlight/delta answers `body`, /health-check `health` (bytes),
    anything else 404; POST as GET when `post`. Serves forever."""

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/health-check"):
                b = health
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

        if post:
            do_POST = do_GET

    ThreadingHTTPServer(at, H).serve_forever()
