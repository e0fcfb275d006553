#!/usr/bin/env python3
"""A small Kubernetes API server for tests (Python 3 standard library only).

It keeps objects in memory with one global resourceVersion counter and serves what kubectl 1.32
and the Starlight components use: discovery, a minimal /openapi/v3, get/list (labelSelector,
fieldSelector, limit/continue), create, update (409 on a stale resourceVersion), merge / JSON /
strategic-merge / apply patches, delete, and watch (resourceVersion replay, bookmarks,
timeoutSeconds held open, 410 for a compacted version as an HTTP status or as an ERROR event
inside a 200 stream).

Test hooks under /_test/ (POST unless noted):
  compact                      forget history: watches from older versions get 410
  force-410?form=http|event&n=N   the next N watch requests get a 410 (default: 1, form http);
                               &active=1 also ends open watches with an ERROR 410 event
  too-old-form?form=http|event how a watch from a compacted version is answered (default http)
  cut-watches?mid_event=1      cut open watch streams (at their next event, halfway through it,
                               when mid_event=1; else at once)
  fail-next?status=429&retry_after=1&n=1   answer the next N API requests with that status
  freeze?on=1|0                open watches deliver no events or bookmarks while on (so a
                               client misses changes until it relists)
  bookmark-interval?ms=N       bookmark period for allowWatchBookmarks watches (default 1000)
  token?value=T[&user=U]       accept bearer token T (for user U); tokens seen before keep working
                               unless &only=1
  raw-event?resource=R[&gv=v1][&type=ADDED]   body: an object delivered as is to the open and
                               next watches of R in any namespace (never stored, not validated:
                               for objects a real API server would not hold, e.g. no namespace)
  GET log                      the request log as a JSON list (also appended to --log-file as
                               JSON lines): method, path, query, user, status, contentType
  reset-log                    empty the in-memory request log
  GET state                    counters (rv, compacted, watches open/served)

A wrong bearer token always gets 401; no credentials are "system:anonymous" unless
--require-auth (kubectl sends no token over plain http).

Usage: apiserver.py [--port N] [--port-file F] [--tls --cert-dir D] [--token T[=USER]]...
                    [--log-file F] [--bookmark-ms N]
Binds 127.0.0.1 only. Prints "listening URL" on stdout once ready.
"""

import argparse
import base64
import copy
import datetime
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# resource -> (groupVersion, kind, namespaced, shortNames, verbs)
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
RESOURCES = {
    "v1": {
        "pods": ("Pod", True, ["po"]),
        "nodes": ("Node", False, ["no"]),
        "namespaces": ("Namespace", False, ["ns"]),
        "events": ("Event", True, ["ev"]),
        "configmaps": ("ConfigMap", True, ["cm"]),
        "serviceaccounts": ("ServiceAccount", True, ["sa"]),
        "secrets": ("Secret", True, []),
        "services": ("Service", True, ["svc"]),
    },
    "batch/v1": {"jobs": ("Job", True, [])},
    "coordination.k8s.io/v1": {"leases": ("Lease", True, [])},
    "apps/v1": {
        "deployments": ("Deployment", True, ["deploy"]),
        "statefulsets": ("StatefulSet", True, ["sts"]),
        "daemonsets": ("DaemonSet", True, ["ds"]),
        "replicasets": ("ReplicaSet", True, ["rs"]),
    },
    "events.k8s.io/v1": {"events": ("Event", True, ["ev"])},
    "admissionregistration.k8s.io/v1": {
        "mutatingwebhookconfigurations": ("MutatingWebhookConfiguration", False, []),
    },
    "rbac.authorization.k8s.io/v1": {
        "clusterroles": ("ClusterRole", False, []),
        "clusterrolebindings": ("ClusterRoleBinding", False, []),
        "roles": ("Role", True, []),
        "rolebindings": ("RoleBinding", True, []),
    },
}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_obj(code, reason, message, details=None):
    o = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details:
        o["details"] = details
    return o


class ApiError(Exception):
    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


# ---- patches -----------------------------------------------------------------------------------

def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge(target, patch):
    """Merge patch plus: lists of objects with a `name` key merge by name ($patch: delete
    removes one); `$retainKeys`/`$setElementOrder` directives are ignored."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            key = k.split("/", 1)[1]
            out[key] = [x for x in out.get(key, []) if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and v and all(isinstance(x, dict) and "name" in x for x in v) \
                and isinstance(out.get(k), list):
            cur = [copy.deepcopy(x) for x in out[k]]
            for item in v:
                idx = next((i for i, x in enumerate(cur)
                            if isinstance(x, dict) and x.get("name") == item["name"]), None)
                if item.get("$patch") == "delete":
                    if idx is not None:
                        cur.pop(idx)
                elif idx is None:
                    cur.append({a: b for a, b in item.items() if not a.startswith("$")})
                else:
                    cur[idx] = strategic_merge(cur[idx], item)
            out[k] = cur
        else:
            out[k] = strategic_merge(out.get(k), v)
    return out


def _ptr(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", "json patch: path must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict):
            cur = cur[p]
        else:
            raise KeyError(p)
    return cur


def json_patch(doc, ops):
    """RFC 6902."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch: expected a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        try:
            kind, parts = op["op"], _ptr(op["path"])
            if kind in ("add", "replace", "test"):
                value = copy.deepcopy(op["value"])
            if kind in ("move", "copy"):
                value = copy.deepcopy(_walk(doc, _ptr(op["from"])))
                if kind == "move":
                    fp = _ptr(op["from"])
                    parent = _walk(doc, fp[:-1])
                    if isinstance(parent, list):
                        parent.pop(int(fp[-1]))
                    else:
                        del parent[fp[-1]]
                kind = "add"
            if kind == "test":
                if _walk(doc, parts) != value:
                    raise ApiError(422, "Invalid", "json patch: test failed at %s" % op["path"])
                continue
            if not parts:
                if kind in ("add", "replace"):
                    doc = value
                    continue
                raise ApiError(422, "Invalid", "json patch: cannot remove the root")
            parent = _walk(doc, parts[:-1])
            last = parts[-1]
            if isinstance(parent, list):
                if kind == "add":
                    parent.insert(len(parent) if last == "-" else int(last), value)
                elif kind == "replace":
                    parent[int(last)] = value
                elif kind == "remove":
                    parent.pop(int(last))
            elif isinstance(parent, dict):
                if kind in ("replace", "remove") and last not in parent:
                    raise KeyError(last)
                if kind == "remove":
                    del parent[last]
                else:
                    parent[last] = value
            else:
                raise KeyError(last)
        except ApiError:
            raise
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(422, "Invalid", "json patch: %s %s: %s" % (
                op.get("op") if isinstance(op, dict) else "?",
                op.get("path") if isinstance(op, dict) else "?", e))
    return doc


# ---- selectors ---------------------------------------------------------------------------------

def parse_label_selector(s):
    """Returns a predicate over a labels dict: =, ==, !=, in, notin, key, !key."""
    if not s:
        return lambda labels: True
    reqs = []
    for part in re.split(r",(?![^()]*\))", s):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((m.group(1), m.group(2), vals))
            continue
        m = re.match(r"^([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)$", part)
        if m:
            reqs.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
            continue
        m = re.match(r"^(!?)([\w./-]+)$", part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", None))
            continue
        raise ApiError(400, "BadRequest", "unable to parse requirement: %r" % part)

    def pred(labels):
        labels = labels or {}
        for key, op, val in reqs:
            have = key in labels
            v = labels.get(key)
            if op == "=" and v != val:
                return False
            if op == "!=" and v == val:
                return False
            if op == "in" and v not in val:
                return False
            if op == "notin" and have and v in val:
                return False
            if op == "exists" and not have:
                return False
            if op == "!exists" and have:
                return False
        return True
    return pred


FIELDS = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
    "spec.unschedulable": lambda o: str((o.get("spec") or {}).get("unschedulable", False)).lower(),
    "involvedObject.name": lambda o: (o.get("involvedObject") or {}).get("name", ""),
    "involvedObject.uid": lambda o: (o.get("involvedObject") or {}).get("uid", ""),
}


def parse_field_selector(s):
    if not s:
        return lambda o: True
    reqs = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([\w.]+)\s*(==|!=|=)\s*(.*)$", part)
        if not m or m.group(1) not in FIELDS:
            raise ApiError(400, "BadRequest",
                           "field label not supported: %s" % (m.group(1) if m else part))
        reqs.append((FIELDS[m.group(1)], m.group(2) == "!=", m.group(3)))

    def pred(o):
        for get, neg, val in reqs:
            if (get(o) == val) == neg:
                return False
        return True
    return pred


# ---- the store ---------------------------------------------------------------------------------

class Store:
    def __init__(self):
        self.lock = threading.Condition()
        self.rv = 1
        self.objects = {}   # (gv, resource, ns, name) -> obj
        self.history = []   # (rv, type, gv, resource, ns, obj, old)
        self.compacted = 0  # versions <= this are gone from history
        with self.lock:
            for ns in ("default", "kube-system"):
                self._put("v1", "namespaces", "", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns}, "spec": {},
                                                  "status": {"phase": "Active"}}, "ADDED", None)

    def _put(self, gv, res, ns, obj, typ, old):
        self.rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        key = (gv, res, ns, obj["metadata"]["name"])
        if typ == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.history.append((self.rv, typ, gv, res, ns, copy.deepcopy(obj),
                             copy.deepcopy(old) if old else None))
        self.lock.notify_all()
        return obj


# ---- the server --------------------------------------------------------------------------------

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, opts):
        super().__init__(addr, Handler)
        self.opts = opts
        self.store = Store()
        self.log = []
        self.log_lock = threading.Lock()
        self.log_file = open(opts.log_file, "a", buffering=1) if opts.log_file else None
        self.tokens = {}
        for t in opts.token or []:
            tok, _, user = t.partition("=")
            self.tokens[tok] = user or "token-user"
        self.force_410 = []       # queue of forms for the next watch requests
        self.too_old_form = "http"
        self.cut_gen = 0
        self.cut_mid_event = False
        self.kill_gen = 0         # active watches end with an ERROR 410
        self.fail_next = []       # (status, retry_after)
        self.bookmark_ms = opts.bookmark_ms
        self.frozen = False       # open watches deliver nothing while set
        self.watches_open = 0
        self.watches_served = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sl-test-apiserver/1"

    def log_message(self, fmt, *args):
        pass

    # -- plumbing --
    def _send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = code

    def _error(self, e):
        self._send_json(e.code, status_obj(e.code, e.reason, e.message))

    def _record(self, user):
        entry = {"ts": time.time(), "method": self.command, "path": self._path,
                 "query": self._query_raw, "user": user, "status": getattr(self, "_status", 0),
                 "contentType": self.headers.get("Content-Type", "")}
        srv = self.server
        with srv.log_lock:
            srv.log.append(entry)
            if srv.log_file:
                srv.log_file.write(json.dumps(entry) + "\n")

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 16 << 20:
            raise ApiError(413, "RequestEntityTooLarge", "body too large")
        data = self.rfile.read(n) if n else b""
        ct = self.headers.get("Content-Type", "")
        if data.startswith(b"k8s\x00") or "protobuf" in ct:
            raise ApiError(415, "UnsupportedMediaType",
                           "the test API server speaks JSON only (got %s)" % ct)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as e:
            raise ApiError(400, "BadRequest", "invalid JSON body: %s" % e)

    def _user(self):
        srv = self.server
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            tok = auth[7:].strip()
            if tok in srv.tokens:
                return srv.tokens[tok]
            if srv.tokens:
                return None
            return "bearer"
        # client certificate (TLS): the CN is the user
        try:
            cert = self.connection.getpeercert()
            for rdn in (cert or {}).get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        return v
        except (AttributeError, ValueError):
            pass
        # kubectl sends no credentials over plain http: anonymous unless --require-auth
        return None if srv.opts.require_auth else "system:anonymous"

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self):
        u = urllib.parse.urlsplit(self.path)
        self._path, self._query_raw = u.path, u.query
        self._recorded = False
        self.q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        user = "test-hook"
        try:
            if self._path.startswith("/_test/"):
                # read the body (raw-event uses it; the other hooks ignore it)
                n = int(self.headers.get("Content-Length") or 0)
                if n > 1 << 20:
                    raise ApiError(413, "RequestEntityTooLarge", "body too large")
                self._test_body = self.rfile.read(n) if n else b""
                return self._test_hook()
            user = self._user()
            self._user_name = user
            if user is None:
                self._body_drain()
                raise ApiError(401, "Unauthorized", "Unauthorized")
            srv = self.server
            with srv.store.lock:
                fail = srv.fail_next.pop(0) if srv.fail_next else None
            if fail:
                self._body_drain()
                st, ra = fail
                hdr = {"Retry-After": str(ra)} if ra is not None else {}
                return self._send_json(st, status_obj(st, "TooManyRequests" if st == 429
                                                      else "InternalError", "injected failure"), hdr)
            self._api()
        except ApiError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the test server must answer, not die
            import traceback
            traceback.print_exc()
            self._error(ApiError(500, "InternalError", "test apiserver: %r" % e))
        finally:
            if not self._path.startswith("/_test/") and not getattr(self, "_recorded", False):
                self._record(user)

    def _body_drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    # -- test hooks --
    def _test_hook(self):
        srv, st, q = self.server, self.server.store, self.q
        name = self._path[len("/_test/"):]
        with st.lock:
            if name == "raw-event":
                try:
                    obj = json.loads(self._test_body)
                except ValueError as e:
                    raise ApiError(400, "BadRequest", "raw-event: invalid JSON body: %s" % e)
                if not isinstance(obj, dict) or "resource" not in q:
                    raise ApiError(400, "BadRequest", "raw-event: an object body and resource=")
                st.rv += 1
                obj.setdefault("metadata", {})["resourceVersion"] = str(st.rv)
                st.history.append((st.rv, q.get("type", "ADDED"), q.get("gv", "v1"),
                                   q["resource"], "", obj, None))
                st.lock.notify_all()
                return self._send_json(200, {"rv": st.rv})
            if name == "compact":
                st.compacted = st.rv
                return self._send_json(200, {"compacted": st.compacted})
            if name == "force-410":
                form = q.get("form", "http")
                srv.force_410 = [form] * int(q.get("n", "1"))
                if q.get("active") == "1":
                    srv.kill_gen += 1
                    st.lock.notify_all()
                return self._send_json(200, {"force": srv.force_410})
            if name == "too-old-form":
                srv.too_old_form = q.get("form", "http")
                return self._send_json(200, {"form": srv.too_old_form})
            if name == "cut-watches":
                srv.cut_mid_event = q.get("mid_event") == "1"
                srv.cut_gen += 1
                st.lock.notify_all()
                return self._send_json(200, {"cut": srv.cut_gen, "mid_event": srv.cut_mid_event})
            if name == "fail-next":
                ra = q.get("retry_after")
                srv.fail_next = [(int(q.get("status", "429")), int(ra) if ra else None)] * int(
                    q.get("n", "1"))
                return self._send_json(200, {"n": len(srv.fail_next)})
            if name == "freeze":
                srv.frozen = q.get("on", "1") == "1"
                st.lock.notify_all()
                return self._send_json(200, {"frozen": srv.frozen})
            if name == "bookmark-interval":
                srv.bookmark_ms = int(q.get("ms", "1000"))
                return self._send_json(200, {"ms": srv.bookmark_ms})
            if name == "token":
                if q.get("only") == "1":
                    srv.tokens = {}
                srv.tokens[q["value"]] = q.get("user", "token-user")
                return self._send_json(200, {"tokens": len(srv.tokens)})
            if name == "state":
                return self._send_json(200, {"rv": st.rv, "compacted": st.compacted,
                                             "watchesOpen": srv.watches_open,
                                             "watchesServed": srv.watches_served,
                                             "objects": len(st.objects)})
        if name == "log":
            with srv.log_lock:
                return self._send_json(200, list(srv.log))
        if name == "reset-log":
            with srv.log_lock:
                srv.log.clear()
            return self._send_json(200, {})
        raise ApiError(404, "NotFound", "no test hook %s" % name)

    # -- API --
    def _api(self):
        p = self._path.rstrip("/") or "/"
        if p == "/version":
            return self._send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0",
                                         "platform": "linux/amd64", "goVersion": "go1.23"})
        if p in ("/healthz", "/readyz", "/livez"):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)
            self._status = 200
            return
        if p == "/api":
            host, port = self.server.server_address[:2]
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                         "serverAddressByClientCIDRs": [
                                             {"clientCIDR": "0.0.0.0/0",
                                              "serverAddress": "%s:%d" % (host, port)}]})
        if p == "/apis":
            groups = []
            for gv in RESOURCES:
                if "/" not in gv:
                    continue
                g, v = gv.split("/")
                groups.append({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                               "preferredVersion": {"groupVersion": gv, "version": v}})
            return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                         "groups": groups})
        if p.startswith("/openapi/v3"):
            return self._openapi(p)
        if p == "/openapi/v2":
            raise ApiError(404, "NotFound", "openapi v2 is not served")
        parts = p.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            gv, rest = parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        elif parts[0] == "apis" and len(parts) == 2:
            for gv in RESOURCES:
                if gv.startswith(parts[1] + "/"):
                    v = gv.split("/")[1]
                    return self._send_json(200, {
                        "kind": "APIGroup", "apiVersion": "v1", "name": parts[1],
                        "versions": [{"groupVersion": gv, "version": v}],
                        "preferredVersion": {"groupVersion": gv, "version": v}})
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if gv not in RESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self._send_json(200, self._resource_list(gv))
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res not in RESOURCES[gv]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind, namespaced, _ = RESOURCES[gv][res]
        if namespaced is False:
            ns = ""
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "subresource %s is not served" % sub)
        m = self.command
        if m == "GET" and name is None:
            if self.q.get("watch") in ("true", "1"):
                return self._watch(gv, res, ns, kind)
            return self._list(gv, res, ns, kind)
        if m == "GET":
            return self._get(gv, res, ns, name)
        if m == "POST" and name is None:
            return self._create(gv, res, ns, kind, namespaced)
        if m == "PUT" and name:
            return self._update(gv, res, ns, name)
        if m == "PATCH" and name:
            return self._patch(gv, res, ns, kind, name, namespaced)
        if m == "DELETE" and name:
            return self._delete(gv, res, ns, name)
        raise ApiError(405, "MethodNotAllowed", "%s is not allowed here" % m)

    def _resource_list(self, gv):
        out = []
        for res, (kind, namespaced, short) in RESOURCES[gv].items():
            singular = kind.lower()
            out.append({"name": res, "singularName": singular, "namespaced": namespaced,
                        "kind": kind, "verbs": ALL_VERBS, "shortNames": short})
            if res in ("pods", "nodes", "jobs", "deployments", "statefulsets", "daemonsets"):
                out.append({"name": res + "/status", "singularName": "", "namespaced": namespaced,
                            "kind": kind, "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": out}

    def _openapi(self, p):
        if p == "/openapi/v3":
            paths = {}
            for gv in RESOURCES:
                key = "api/" + gv if "/" not in gv else "apis/" + gv
                paths[key] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (
                    key, gv.replace("/", "-").replace(".", "-"))}
            return self._send_json(200, {"paths": paths})
        key = p[len("/openapi/v3/"):]
        gv = key[4:] if key.startswith("api/") else key[5:]
        if gv not in RESOURCES:
            raise ApiError(404, "NotFound", "no openapi for %s" % key)
        group, _, version = gv.rpartition("/")
        prefix = "/" + key
        param = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string",
                                                                     "uniqueItems": True}}]
        paths = {}
        for res, (kind, namespaced, _) in RESOURCES[gv].items():
            gvk = {"group": group, "version": version, "kind": kind}
            coll = prefix + ("/namespaces/{namespace}/" if namespaced else "/") + res
            paths[coll] = {"post": {"x-kubernetes-group-version-kind": gvk, "parameters": param,
                                    "x-kubernetes-action": "post"}}
            paths[coll + "/{name}"] = {"patch": {"x-kubernetes-group-version-kind": gvk,
                                                 "parameters": param,
                                                 "x-kubernetes-action": "patch"},
                                       "put": {"x-kubernetes-group-version-kind": gvk,
                                               "parameters": param,
                                               "x-kubernetes-action": "put"}}
        return self._send_json(200, {"openapi": "3.0.0",
                                     "info": {"title": "Kubernetes", "version": "v1.32.0"},
                                     "paths": paths, "components": {"schemas": {}}})

    def _get(self, gv, res, ns, name):
        st = self.server.store
        with st.lock:
            o = st.objects.get((gv, res, ns, name))
            if o is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (res, name))
            return self._send_json(200, o)

    def _matching(self, gv, res, ns):
        lp = parse_label_selector(self.q.get("labelSelector", ""))
        fp = parse_field_selector(self.q.get("fieldSelector", ""))

        def match(o):
            return o is not None and lp(o.get("metadata", {}).get("labels")) and fp(o)
        return match

    def _list(self, gv, res, ns, kind):
        st = self.server.store
        match = self._matching(gv, res, ns)
        limit = int(self.q.get("limit") or 0)
        start = 0
        cont = self.q.get("continue")
        with st.lock:
            rv = st.rv
            if cont:
                try:
                    c = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    start, rv_c = int(c["start"]), int(c["rv"])
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "invalid continue token")
                if rv_c <= st.compacted:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old")
            items = sorted((o for (g, r, n, _), o in st.objects.items()
                            if g == gv and r == res and (not ns or n == ns) and match(o)),
                           key=lambda o: (o["metadata"].get("namespace", ""),
                                          o["metadata"]["name"]))
            page = items[start:start + limit] if limit else items[start:]
            meta = {"resourceVersion": str(rv)}
            if limit and start + limit < len(items):
                meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    {"start": start + limit, "rv": rv}).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            body = {"kind": kind + "List", "apiVersion": gv, "metadata": meta,
                    "items": copy.deepcopy(page)}
            return self._send_json(200, body)

    def _new_meta(self, obj, gv, kind, ns, namespaced):
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            gn = md.get("generateName")
            if not gn:
                raise ApiError(422, "Invalid", "metadata.name: Required value: name or "
                               "generateName is required")
            md["name"] = gn + uuid.uuid4().hex[:5]
        if namespaced:
            if md.get("namespace") and ns and md["namespace"] != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            md["namespace"] = ns or md.get("namespace") or "default"
        else:
            md.pop("namespace", None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        md["generation"] = 1
        obj["apiVersion"], obj["kind"] = gv, kind
        if kind == "Job":
            spec = obj.setdefault("spec", {})
            tl = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault(
                "labels", {})
            for k in ("batch.kubernetes.io/controller-uid", "controller-uid"):
                tl[k] = md["uid"]
            for k in ("batch.kubernetes.io/job-name", "job-name"):
                tl[k] = md["name"]
            spec.setdefault("selector", {"matchLabels": {
                "batch.kubernetes.io/controller-uid": md["uid"]}})
            spec.setdefault("backoffLimit", 6)
        if kind == "Pod":
            obj.setdefault("status", {}).setdefault("phase", "Pending")

    def _create(self, gv, res, ns, kind, namespaced):
        obj = self._body()
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "expected an object")
        st = self.server.store
        with st.lock:
            self._new_meta(obj, gv, kind, ns, namespaced)
            key = (gv, res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if key in st.objects:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (
                    res, obj["metadata"]["name"]))
            if self.q.get("dryRun") == "All":
                obj["metadata"]["resourceVersion"] = ""
                return self._send_json(201, obj)
            st._put(gv, res, key[2], obj, "ADDED", None)
            return self._send_json(201, obj)

    def _store_update(self, gv, res, ns, name, new, old):
        st = self.server.store
        md = new.setdefault("metadata", {})
        for k in ("uid", "creationTimestamp", "namespace", "name"):
            if k in old["metadata"]:
                md[k] = old["metadata"][k]
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        if new.get("spec") != old.get("spec"):
            md["generation"] = old["metadata"].get("generation", 1) + 1
        a = {k: v for k, v in new.items() if k != "metadata"}
        b = {k: v for k, v in old.items() if k != "metadata"}
        ma = {k: v for k, v in md.items() if k not in ("resourceVersion", "managedFields")}
        mb = {k: v for k, v in old["metadata"].items()
              if k not in ("resourceVersion", "managedFields")}
        if a == b and ma == mb:
            md["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new  # a no-op write does not bump the version
        return st._put(gv, res, ns, new, "MODIFIED", old)

    def _update(self, gv, res, ns, name):
        obj = self._body()
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "expected an object")
        st = self.server.store
        with st.lock:
            old = st.objects.get((gv, res, ns, name))
            if old is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (res, name))
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the '
                               'object has been modified; please apply your changes to the '
                               'latest version and try again' % (res, name))
            return self._send_json(200, self._store_update(gv, res, ns, name, obj, old))

    def _patch(self, gv, res, ns, kind, name, namespaced):
        ct = self.headers.get("Content-Type", "").split(";")[0].strip()
        patch = self._body()
        st = self.server.store
        with st.lock:
            old = st.objects.get((gv, res, ns, name))
            if old is None:
                if ct == "application/apply-patch+yaml":
                    patch.setdefault("metadata", {})["name"] = name
                    self._new_meta(patch, gv, kind, ns, namespaced)
                    st._put(gv, res, ns, patch, "ADDED", None)
                    return self._send_json(201, patch)
                raise ApiError(404, "NotFound", '%s "%s" not found' % (res, name))
            if ct == "application/merge-patch+json":
                new = merge_patch(old, patch)
            elif ct == "application/json-patch+json":
                new = json_patch(old, patch)
            elif ct == "application/strategic-merge-patch+json":
                new = strategic_merge(old, patch)
            elif ct == "application/apply-patch+yaml":
                new = merge_patch(old, patch)
            else:
                raise ApiError(415, "UnsupportedMediaType", "unsupported patch type %s" % ct)
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "patch result is not an object")
            want_rv = (patch.get("metadata") or {}).get("resourceVersion") \
                if isinstance(patch, dict) else None
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the '
                               'object has been modified' % (res, name))
            return self._send_json(200, self._store_update(gv, res, ns, name, new, old))

    def _delete(self, gv, res, ns, name):
        self._body()
        st = self.server.store
        with st.lock:
            old = st.objects.get((gv, res, ns, name))
            if old is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (res, name))
            gone = copy.deepcopy(old)
            gone["metadata"]["deletionTimestamp"] = now_rfc3339()
            st._put(gv, res, ns, gone, "DELETED", old)
            return self._send_json(200, gone)

    # -- watch --
    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, gv, res, ns, kind):
        srv, st = self.server, self.server.store
        match = self._matching(gv, res, ns)
        bookmarks = self.q.get("allowWatchBookmarks") == "true"
        timeout = int(self.q.get("timeoutSeconds") or 1800)
        rv_s = self.q.get("resourceVersion", "")
        with st.lock:
            forced = srv.force_410.pop(0) if srv.force_410 else None
            try:
                rv = int(rv_s) if rv_s else 0
            except ValueError:
                raise ApiError(400, "BadRequest", "invalid resourceVersion %r" % rv_s)
            too_old = rv_s not in ("", "0") and rv < st.compacted
            form = forced or (srv.too_old_form if too_old else None)
            if (forced or too_old) and form == "http":
                raise ApiError(410, "Expired", "too old resource version: %s (%d)" % (
                    rv_s, st.compacted))
            initial = []
            if not forced and rv_s in ("", "0"):
                for (g, r, n, _), o in sorted(st.objects.items()):
                    if g == gv and r == res and (not ns or n == ns) and match(o):
                        initial.append(("ADDED", copy.deepcopy(o)))
                pos = st.rv
            else:
                pos = rv
            cut_gen, kill_gen = srv.cut_gen, srv.kill_gen
            srv.watches_open += 1
            srv.watches_served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._status = 200
        self.close_connection = True
        self._record(self._user_name)  # now: the stream may stay open for a long time
        self._recorded = True
        try:
            if forced or too_old:
                ev = {"type": "ERROR", "object": status_obj(
                    410, "Expired", "too old resource version: %s (%d)" % (rv_s, st.compacted))}
                self._chunk(json.dumps(ev).encode() + b"\n")
                return self._end_stream()
            for typ, o in initial:
                self._chunk(json.dumps({"type": typ, "object": o}).encode() + b"\n")
            deadline = time.monotonic() + timeout
            next_bm = time.monotonic() + srv.bookmark_ms / 1000.0
            while True:
                out = []
                with st.lock:
                    while True:
                        now = time.monotonic()
                        if srv.kill_gen != kill_gen:
                            out = "kill"
                            break
                        if srv.cut_gen != cut_gen and not srv.cut_mid_event:
                            out = "cut"
                            break
                        if srv.frozen:
                            # hold every event (and bookmark) back: the client misses them
                            st.lock.wait(max(0.01, deadline - now))
                            if time.monotonic() >= deadline:
                                break
                            continue
                        if st.rv > pos or now >= deadline or (bookmarks and now >= next_bm):
                            break
                        st.lock.wait(min(deadline, next_bm if bookmarks else deadline) - now)
                    if out == "kill":
                        ev = {"type": "ERROR", "object": status_obj(
                            410, "Expired", "too old resource version: %d (%d)" % (
                                pos, st.rv))}
                        self._chunk(json.dumps(ev).encode() + b"\n")
                        return self._end_stream()
                    if out == "cut":
                        return self._abort()
                    events = []
                    frozen = srv.frozen
                    for (erv, typ, g, r, n, o, old) in ([] if frozen else st.history):
                        if erv <= pos:
                            continue
                        if g != gv or r != res or (ns and n != ns):
                            continue
                        now_m, old_m = match(o), match(old)
                        if typ == "MODIFIED" and now_m and not old_m:
                            typ = "ADDED"
                        elif typ == "MODIFIED" and old_m and not now_m:
                            typ = "DELETED"
                        elif not (now_m or (typ == "DELETED" and old_m)):
                            continue
                        events.append({"type": typ, "object": o})
                    if not frozen:
                        pos = st.rv
                    cut_mid = srv.cut_gen != cut_gen and srv.cut_mid_event
                    cur_rv = st.rv
                for ev in events:
                    data = json.dumps(ev).encode() + b"\n"
                    if cut_mid:
                        self._chunk(data[:len(data) // 2])
                        return self._abort()
                    self._chunk(data)
                now = time.monotonic()
                if bookmarks and now >= next_bm and not frozen:
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": gv,
                        "metadata": {"resourceVersion": str(cur_rv)}}}).encode() + b"\n")
                    next_bm = now + srv.bookmark_ms / 1000.0
                if now >= deadline:
                    return self._end_stream()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        finally:
            with st.lock:
                srv.watches_open -= 1

    def _end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _abort(self):
        """Drops the connection without ending the chunked body (a cut stream)."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def make_cert(d):
    os.makedirs(d, exist_ok=True)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = os.path.join(d, "server.key"), os.path.join(d, "server.csr"), \
        os.path.join(d, "server.crt")
    ext = os.path.join(d, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    q = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    ca_key, "-out", ca_crt, "-days", "2", "-subj", "/CN=sl-test-ca"], **q)
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                    csr, "-subj", "/CN=127.0.0.1"], **q)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                    "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext], **q)
    return ca_crt, crt, key


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = free one)")
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    ap.add_argument("--tls", action="store_true", help="serve HTTPS with a generated cert")
    ap.add_argument("--cert-dir", help="where --tls writes ca.crt/server.crt (default: temp)")
    ap.add_argument("--token", action="append",
                    help="accepted bearer token TOKEN[=USER] (repeatable; enables auth)")
    ap.add_argument("--require-auth", action="store_true",
                    help="401 for requests without a known token or client certificate")
    ap.add_argument("--log-file", help="append the request log here (JSON lines)")
    ap.add_argument("--bookmark-ms", type=int, default=1000, help="bookmark period")
    opts = ap.parse_args()
    srv = Server(("127.0.0.1", opts.port), opts)
    scheme = "http"
    if opts.tls:
        import tempfile
        d = opts.cert_dir or tempfile.mkdtemp(prefix="sl-apiserver-")
        ca, crt, key = make_cert(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    port = srv.server_address[1]
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, opts.port_file)
    print("listening %s://127.0.0.1:%d" % (scheme, port), flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
