#!/usr/bin/env python3
"""Load client for tests/e2e/proxy-load: N workers pull deltas through one proxy at once.

Usage: load.py CONTROL_DIR WORKERS

CONTROL_DIR/targets.json maps a target name to {"url", "sha256", "length", "etag"} (the
reference response of that delta). The scenario steers the run through files in CONTROL_DIR:
  target   the name of the target workers request next (re-read before every request)
  phase    a label recorded with every request (e.g. steady, db-down, registry-restart)
  stop     workers finish their request in progress and exit
Each worker keeps one HTTP/1.1 keep-alive connection (a new one after any failure) and
classifies every response:
  ok       200, Content-Length and ETag as the reference, every byte hashed to its sha256
  busy     503 with a JSON body {"error": ...} and Retry-After (the database is down)
  cut      the body ended early or the connection failed (the registry went away mid-stream);
           counted under the phase current when it ended (the fault's), not when it started
  bad      anything else: another status, a 503 without the JSON error, or — worst — a body
           of full length whose bytes differ from the reference
Other results count under the phase current when the request started. Every 0.2 s and at the
end, CONTROL_DIR/status.json gets the counts per phase and kind, and per worker the kind,
phase and start time (monotonic, as `clock` in the file) of its last request.
On exit the same summary is printed on stdout.
"""
import hashlib
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

ctl, workers = sys.argv[1], int(sys.argv[2])
targets = json.load(open(os.path.join(ctl, "targets.json")))
lock = threading.Lock()
counts = {}  # phase -> kind -> n
last = [None] * workers  # per worker: {"kind", "start", "phase", "target"}
bad = []  # first few bad results, for the log


def read_ctl(name, default=""):
    try:
        with open(os.path.join(ctl, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


def record(w, phase, tname, kind, start, detail=""):
    with lock:
        counts.setdefault(phase, {}).setdefault(kind, 0)
        counts[phase][kind] += 1
        last[w] = {"kind": kind, "start": start, "phase": phase, "target": tname}
        if kind == "bad" and len(bad) < 10:
            bad.append("%s %s: %s" % (phase, tname, detail))


def one(conn, t):
    """Returns (kind, detail)."""
    u = urllib.parse.urlsplit(t["url"])
    conn.request("GET", u.path + "?" + u.query)
    resp = conn.getresponse()
    if resp.status == 503:
        body = resp.read()
        try:
            err = json.loads(body).get("error")
        except ValueError:
            err = None
        if not err or not resp.getheader("Retry-After"):
            return "bad", "503 without a JSON error and Retry-After: %r" % body[:200]
        return "busy", ""
    if resp.status != 200:
        return "bad", "status %d: %r" % (resp.status, resp.read()[:200])
    length = int(resp.getheader("Content-Length", "-1"))
    if length != t["length"] or resp.getheader("ETag") != t["etag"]:
        return "bad", "length %d etag %s" % (length, resp.getheader("ETag"))
    h = hashlib.sha256()
    n = 0
    while True:
        piece = resp.read(1 << 20)
        if not piece:
            break
        h.update(piece)
        n += len(piece)
    if n < length:
        return "cut", "%d of %d bytes" % (n, length)
    if h.hexdigest() != t["sha256"]:
        return "bad", "%d bytes whose sha256 differs from the reference" % n
    return "ok", ""


def worker(w):
    conn = None
    while not os.path.exists(os.path.join(ctl, "stop")):
        tname = read_ctl("target")
        phase = read_ctl("phase", "?")
        t = targets[tname]
        u = urllib.parse.urlsplit(t["url"])
        start = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
            kind, detail = one(conn, t)
        except (http.client.IncompleteRead, ConnectionError, OSError,
                http.client.HTTPException) as e:
            kind, detail = "cut", repr(e)
        if kind == "cut":
            phase = read_ctl("phase", "?")
        record(w, phase, tname, kind, start, detail)
        if kind != "ok":
            if conn is not None:
                conn.close()
            conn = None
            if kind == "busy":
                time.sleep(0.2)  # Retry-After, shortened for the test
    if conn is not None:
        conn.close()


def dump():
    with lock:
        s = {"clock": time.monotonic(), "counts": counts, "last": last, "bad": bad}
    tmp = os.path.join(ctl, "status.json.tmp")
    with open(tmp, "w") as f:
        json.dump(s, f)
    os.replace(tmp, os.path.join(ctl, "status.json"))
    return s


threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
for t in threads:
    t.start()
while any(t.is_alive() for t in threads):
    dump()
    time.sleep(0.2)
print(json.dumps(dump(), indent=1))
