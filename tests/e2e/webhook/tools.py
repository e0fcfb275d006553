#!/usr/bin/env python3
"""Helpers of the webhook scenario: build AdmissionReviews, check answers, apply JSONPatches.

  tools.py review NS OP POD.json [UID]      → AdmissionReview v1 (stdout)
  tools.py pod NAME ANNOTATION IMAGE...    → a Pod (ANNOTATION: true|false|none)
  tools.py patched REVIEW.json ANSWER.json → the Pod with the answer's patch applied (exit 3
                                              when the answer has no patch)
  tools.py initargs POD.json               → starlight-init's args, one per line
A small RFC 6902 "add" implementation, independent of the C one.
"""
import base64, json, sys


def ptr(tokens):
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens.split("/")[1:]]


def add(doc, path, value):
    toks = ptr(path)
    cur = doc
    for t in toks[:-1]:
        cur = cur[int(t)] if isinstance(cur, list) else cur[t]
    last = toks[-1]
    if isinstance(cur, list):
        if last == "-":
            cur.append(value)
        else:
            cur.insert(int(last), value)
    else:
        cur[last] = value


def main():
    cmd = sys.argv[1]
    if cmd == "pod":
        name, ann, images = sys.argv[2], sys.argv[3], sys.argv[4:]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c%d" % i, "image": im} for i, im in enumerate(images)]}}
        if ann != "none":
            pod["metadata"]["annotations"] = {"starlight-c.dev/provision": ann}
        json.dump(pod, sys.stdout)
    elif cmd == "review":
        ns, op, pod = sys.argv[2], sys.argv[3], json.load(open(sys.argv[4]))
        uid = sys.argv[5] if len(sys.argv) > 5 else "e2e-uid-1"
        rv = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                          "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                          "name": pod["metadata"].get("name", ""), "namespace": ns,
                          "operation": op, "userInfo": {"username": "e2e"}, "object": pod,
                          "oldObject": None, "dryRun": False,
                          "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}
        json.dump(rv, sys.stdout)
    elif cmd == "patched":
        rv, ans = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
        assert ans["apiVersion"] == "admission.k8s.io/v1" and ans["kind"] == "AdmissionReview", ans
        r = ans["response"]
        assert r["uid"] == rv["request"]["uid"] and r["allowed"] is True, r
        if "patch" not in r:
            sys.exit(3)
        assert r["patchType"] == "JSONPatch", r
        pod = rv["request"]["object"]
        for op in json.loads(base64.b64decode(r["patch"])):
            assert op["op"] == "add", op
            add(pod, op["path"], op["value"])
        json.dump(pod, sys.stdout)
    elif cmd == "initargs":
        pod = json.load(open(sys.argv[2]))
        ic = pod["spec"]["initContainers"][0]
        assert ic["name"] == "starlight-init", ic
        for a in ic["args"]:
            print(a)
    else:
        sys.exit("unknown command " + cmd)


main()
