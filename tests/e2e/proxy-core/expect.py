#!/usr/bin/env python3
"""Helpers for the proxy-core scenario: compute expected content sets from TOCs
(sl-format-tool toc --entries output) independently of the proxy, and check results.

  expect.py contents TOC.json...            distinct digests of non-empty regular files
  expect.py minus A.txt B.txt               lines of A not in B (sorted)
  expect.py delta-digests CHECK.json        content digests of a checked delta, in order
  expect.py trace OUT.json IMAGE PATH...    a trace document: PATHs accessed in order (layer 0)
"""
import json
import sys


def contents(files):
    out = set()
    for f in files:
        d = json.load(open(f))
        for e in d["list"]:
            if e["type"] == "reg" and e.get("size", 0) > 0:
                out.add(e["digest"])
    return out


def main():
    cmd = sys.argv[1]
    if cmd == "contents":
        for d in sorted(contents(sys.argv[2:])):
            print(d)
    elif cmd == "minus":
        a = [l.strip() for l in open(sys.argv[2]) if l.strip()]
        b = {l.strip() for l in open(sys.argv[3]) if l.strip()}
        for d in sorted(set(a) - b):
            print(d)
    elif cmd == "delta-digests":
        d = json.load(open(sys.argv[2]))
        for c in d["contents"]:
            print(c["digest"])
    elif cmd == "trace":
        out, image, paths = sys.argv[2], sys.argv[3], sys.argv[4:]
        acc = [{"image": 0, "layer": 0, "path": p, "timeNs": 1000000 * (i + 1)}
               for i, p in enumerate(paths)]
        doc = {"version": 1, "groups": [{"name": "e2e", "images": [image], "accesses": acc}]}
        json.dump(doc, open(out, "w"))
    else:
        sys.exit("unknown command " + cmd)


main()
