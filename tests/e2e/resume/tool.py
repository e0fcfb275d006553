#!/usr/bin/env python3
"""Helpers of the resume scenario (loopback only):
  relay PORT UPSTREAM_PORT RATE [FLIP]  TCP relay to 127.0.0.1:UPSTREAM_PORT, answers sent at
                                        RATE bytes/s (0: no limit); when the upstream does not
                                        answer the client is closed at once. FLIP=always flips
                                        the body byte at 32 + header + 100 (a payload byte) in
                                        every answer carrying it, full or Range (a tampering
                                        proxy); FLIP=once only in the first one.
  report DELTA_HEAD OUT                 a trace document (docs/protocol.md) ranking the last
                                        three payload files of DELTA_HEAD first: changes the
                                        proxy's plan (and its ETag) for that image
  summary NDJSON                        checks a /v1/pull answer ended with phase complete and
                                        prints its last line's counters as key=value
"""
import json, os, re, socket, struct, sys, threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib_py"))
from e2eproxy import listen, pump_up, send_paced, serve  # noqa: E402


def relay(port, up, rate, flip):
    ls = listen(("127.0.0.1", port))
    state = {"at": None, "flipped": False}
    lock = threading.Lock()

    def send(c, b):
        send_paced(c, b, rate)

    def handle(c):
        # a small receive buffer keeps little in flight: when the proxy dies the client sees
        # the end of the stream soon
        u = socket.socket()
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            u.settimeout(3)
            u.connect(("127.0.0.1", up))
            u.settimeout(None)
        except OSError:
            u.close()
            c.close()
            return
        threading.Thread(target=pump_up, args=(c, u), daemon=True).start()
        head = b""
        pos = None  # body offset of the next byte sent
        pend = b""  # body bytes held back until the flip offset is known
        try:
            while True:
                b = u.recv(65536)
                if not b:
                    break
                if not flip:
                    send(c, b)
                    continue
                if pos is None:
                    head += b
                    if b"\r\n\r\n" not in head:
                        continue
                    i = head.index(b"\r\n\r\n") + 4
                    hdr, b = head[:i], head[i:]
                    m = re.search(rb"(?im)^content-range:\s*bytes (\d+)-", hdr)
                    pos = int(m.group(1)) if m else 0
                    send(c, hdr)
                pend += b
                with lock:
                    if state["at"] is None and pos == 0:
                        if len(pend) < 32:
                            continue
                        state["at"] = 32 + struct.unpack(">Q", pend[16:24])[0] + 100
                    at = state["at"]
                    if (at is not None and pos <= at < pos + len(pend) and
                            not (flip == "once" and state["flipped"])):
                        ba = bytearray(pend)
                        ba[at - pos] ^= 0x5A
                        pend = bytes(ba)
                        state["flipped"] = True
                send(c, pend)
                pos += len(pend)
                pend = b""
        except OSError:
            pass
        for s_ in (c, u):  # shutdown wakes the other thread blocked in recv, close may not
            try:
                s_.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s_.close()

    serve(ls, handle)


def report(path, out):
    b = open(path, "rb").read()
    hl = struct.unpack(">Q", b[16:24])[0]
    h = json.loads(b[32:32 + hl])
    files = [(l["index"], f["path"]) for l in h["layers"] for f in l["files"]
             if f["source"] == "payload"]
    pick = files[-3:]
    doc = {"version": 1, "groups": [{
        "name": "resume-replan", "images": [h["target"]["digest"]],
        "accesses": [{"image": 0, "layer": li, "path": p, "timeNs": 1000 * (i + 1)}
                     for i, (li, p) in enumerate(pick)]}]}
    json.dump(doc, open(out, "w"))


def summary(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    last = lines[-1]
    if last.get("phase") != "complete":
        sys.exit("pull did not complete: %s" % json.dumps(last)[:400])
    for k in ("bytes", "headBytes", "payloadTotal", "payloadBytes", "resumes", "replans",
              "bytesResent", "chunksRefetched", "contentsDone", "contentsTotal"):
        print("%s=%d" % (k, last[k]))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "relay":
        relay(int(a[1]), int(a[2]), float(a[3]), a[4] if len(a) > 4 else "")
    elif a[0] == "report":
        report(a[1], a[2])
    elif a[0] == "summary":
        summary(a[1])
