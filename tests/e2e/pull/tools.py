#!/usr/bin/env python3
"""Helpers of the pull scenario. An ADDR is [HOST:]PORT (HOST defaults to 127.0.0.1).
  relay ADDR UPSTREAM RATE [FLIP]  TCP relay from ADDR to UPSTREAM (an ADDR); answers are sent
                                   at RATE bytes/s; FLIP=1 flips one payload byte of a full
                                   (200) delta answer (offset 32 + header + 100 of the
                                   body); Range answers pass unchanged
  fake ADDR DELTA MODE             HTTP server answering /starlight/delta with DELTA whose
                                   header is made hostile (MODE: traversal|absolute|size|chunk|
                                   tail), /health-check with 200 and {"fake":PID} (tells it
                                   from another server)
  tree DIR [--src] [--nlink]       tree hash (paths, types, modes, owners, sizes, link targets,
                                   device numbers, xattrs, content sha256); --src: DIR is an
                                   extracted layer tar (whiteout files → 0:0 char devices,
                                   opaque markers → trusted.overlay.opaque=y); --nlink: also
                                   the link count of regular files (hardlinks)
"""
import hashlib, os, socket, stat, struct, sys, threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib_py"))
from e2eproxy import (delta_join, delta_split, listen, pump_up, send_paced, serve,  # noqa: E402
                      serve_delta)


def addr(s):
    host, _, port = s.rpartition(":")
    return (host or "127.0.0.1", int(port))


def relay(at, up, rate, flip):
    ls = listen(at)

    def handle(c):
        u = socket.create_connection(up)
        threading.Thread(target=pump_up, args=(c, u), daemon=True).start()
        do_flip = flip
        buf = b""
        body_at = None
        flip_at = None
        try:
            while True:
                b = u.recv(16384)
                if not b:
                    break
                if do_flip:
                    buf += b
                    if body_at is None and b"\r\n\r\n" in buf:
                        body_at = buf.index(b"\r\n\r\n") + 4
                        if not buf.startswith(b"HTTP/1.1 200"):  # a Range answer: no prelude
                            do_flip = False
                            b, buf = buf, b""
                    if do_flip and flip_at is None and body_at is not None and len(buf) >= body_at + 32:
                        hl = struct.unpack(">Q", buf[body_at + 16:body_at + 24])[0]
                        flip_at = body_at + 32 + hl + 100
                    if do_flip and (flip_at is None or len(buf) <= flip_at):
                        continue
                    if do_flip:
                        ba = bytearray(buf)
                        ba[flip_at] ^= 0x5A
                        b = bytes(ba)
                        do_flip = False
                send_paced(c, b, rate)
        except OSError:
            pass
        c.close()
        u.close()

    serve(ls, handle)


def hostile(delta, mode):
    h, pl, payload = delta_split(delta)
    layer = next(l for l in h["layers"] if not l["held"] and l["files"])
    if mode == "traversal":
        layer["files"][0]["path"] = "../../../evil-traversal"
    elif mode == "absolute":
        layer["files"][0]["path"] = "/tmp/evil-absolute"
    elif mode == "size":  # a file and its content claim more bytes than the TOC says
        f = next(f for f in layer["files"] if f["source"] == "payload")
        f["size"] += 4096
        h["contents"][f["content"]]["size"] += 4096
        h["contents"][f["content"]]["chunks"][-1]["size"] += 4096
    elif mode == "chunk":  # a chunk pointing outside the payload
        c = h["contents"][0]["chunks"][0]
        c["payloadOffset"] = h["payloadLength"] + 10
    elif mode == "tail":  # a TOC tail that does not hash to tocDigest
        import base64
        t = bytearray(base64.b64decode(layer["tocTail"]))
        t[len(t) // 2] ^= 1
        layer["tocTail"] = base64.b64encode(bytes(t)).decode()
    return delta_join(delta, h, pl, payload)


def fake(at, path, mode):
    body = hostile(open(path, "rb").read(), mode)
    # whose port it is: tells it from another server
    serve_delta(at, body, ('{"status":"OK","fake":%d}' % os.getpid()).encode())


SKIP = {"stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"}


def tree(root, src, nlink):
    ents = {}
    opaque = set()
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if src and rel in SKIP:
                continue
            st = os.lstat(p)
            if src and n == ".wh..wh..opq":
                opaque.add(os.path.relpath(d, root))
                continue
            if src and n.startswith(".wh."):
                ents[os.path.join(os.path.relpath(d, root), n[4:]).lstrip("./")] = "c 0:0 0"
                continue
            m = st.st_mode
            xs = []
            try:
                for x in sorted(os.listxattr(p, follow_symlinks=False)):
                    if x.startswith("trusted.overlay."):
                        if x == "trusted.overlay.opaque" and stat.S_ISDIR(m):
                            opaque.add(rel)
                        continue
                    xs.append(x + "=" + os.getxattr(p, x, follow_symlinks=False).hex())
            except OSError:
                pass
            desc = "%o %d:%d" % (m, st.st_uid, st.st_gid)
            if stat.S_ISREG(m):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""):
                        h.update(b)
                desc += " %d %s" % (st.st_size, h.hexdigest())
                if nlink:
                    desc += " n%d" % st.st_nlink
            elif stat.S_ISLNK(m):
                desc += " -> " + os.readlink(p)
            elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
                desc += " dev %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            if stat.S_ISCHR(m) and st.st_rdev == 0:
                desc = "c 0:0 0"
            ents[rel] = desc + (" " + ",".join(xs) if xs else "")
    for o in opaque:
        if o in ents:
            ents[o] += " opaque"
    h = hashlib.sha256()
    for k in sorted(ents):
        line = "%s %s\n" % (k, ents[k])
        h.update(line.encode())
        if os.environ.get("TREE_VERBOSE"):
            sys.stderr.write(line)
    print(h.hexdigest(), len(ents))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "relay":
        relay(addr(a[1]), addr(a[2]), float(a[3]), len(a) > 4 and a[4] == "1")
    elif a[0] == "fake":
        fake(addr(a[1]), a[2], a[3])
    elif a[0] == "tree":
        tree(a[1], "--src" in a, "--nlink" in a)
