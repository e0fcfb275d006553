#!/usr/bin/env python3
"""Helpers of the gc scenario (stdlib only).

  freeable ROOT VICTIM_LAYER...   bytes a collection of these layers must free: every inode all
                                  of whose links lie in the victims' materialised trees or in
                                  contents only the victims reference; prints
                                  "bytes contents_unshared contents_shared" and writes the
                                  unshared and shared content paths to ROOT/../gc-unshared.txt
                                  and ROOT/../gc-shared.txt
  usage DIR                       allocated bytes under DIR, each inode once
  readrate PATH N                 reads PATH N times (after one warm read), prints MB/s
  tree DIR [--links]              tree hash of a mounted rootfs, not crossing mounts: per path
                                  type, mode, owner, xattrs, symlink target, device numbers,
                                  size + sha256 (+ link count with --links); prints
                                  "LINES SHA256"
"""
import hashlib
import os
import stat
import sqlite3
import sys
import time


def content_path(store, digest):
    h = digest.split(":", 1)[1]
    return os.path.join(store, "content", "sha256", h[:2], h)


def walk_files(top):
    for d, _, files in os.walk(top):
        for f in files:
            yield os.path.join(d, f)


def freeable(store, victims):
    db = sqlite3.connect(os.path.join(store, "store.db"))
    refs = {}
    for layer, content in db.execute("SELECT layer, content FROM layer_content"):
        refs.setdefault(content, set()).add(layer)
    victims = set(victims)
    unshared = sorted(c for c, ls in refs.items() if ls and ls <= victims)
    shared = sorted(c for c, ls in refs.items() if ls & victims and ls - victims)
    paths = [content_path(store, c) for c in unshared]
    for v in victims:
        paths += list(walk_files(os.path.join(store, "materialized", v.split(":", 1)[1])))
    links, blocks, nlink = {}, {}, {}
    for p in paths:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        k = (st.st_dev, st.st_ino)
        links[k] = links.get(k, 0) + 1
        blocks[k] = st.st_blocks * 512
        nlink[k] = st.st_nlink
    total = sum(blocks[k] for k in links if links[k] >= nlink[k])
    base = os.path.dirname(store)
    with open(os.path.join(base, "gc-unshared.txt"), "w") as f:
        f.writelines(content_path(store, c) + "\n" for c in unshared)
    with open(os.path.join(base, "gc-shared.txt"), "w") as f:
        f.writelines(content_path(store, c) + "\n" for c in shared)
    print(total, len(unshared), len(shared))


def usage(top):
    seen, total = set(), 0
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            st = os.lstat(os.path.join(d, n))
            k = (st.st_dev, st.st_ino)
            if k not in seen:
                seen.add(k)
                total += st.st_blocks * 512
    print(total)


def readrate(path, n):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    t = time.monotonic()
    for _ in range(n):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    dt = time.monotonic() - t
    print("%.0f" % (size * n / dt / 1e6))


def tree(top, links):
    dev = os.lstat(top).st_dev
    lines = []
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.lstat(os.path.join(d, x)).st_dev == dev]
        for n in sorted(dirs + files):
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            try:
                xs = sorted((x, os.getxattr(p, x, follow_symlinks=False).hex())
                            for x in os.listxattr(p, follow_symlinks=False))
            except OSError:
                xs = []
            line = "%s %o %d:%d %s" % (rel, st.st_mode, st.st_uid, st.st_gid, xs)
            if stat.S_ISLNK(st.st_mode):
                line += " l " + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""):
                        h.update(b)
                line += " f %d %s" % (st.st_size, h.hexdigest())
                if links:
                    line += " %d" % st.st_nlink
            elif not stat.S_ISDIR(st.st_mode):
                line += " o %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            lines.append(line)
    lines.sort()
    if os.environ.get("SL_TREE_DUMP"):
        with open(os.environ["SL_TREE_DUMP"], "w") as f:
            f.write("\n".join(lines) + "\n")
    print(len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest())


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "freeable":
        freeable(sys.argv[2], sys.argv[3:])
    elif cmd == "usage":
        usage(sys.argv[2])
    elif cmd == "tree":
        tree(sys.argv[2], "--links" in sys.argv[3:])
    elif cmd == "readrate":
        readrate(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("unknown command " + cmd)
