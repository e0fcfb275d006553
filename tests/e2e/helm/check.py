#!/usr/bin/env python3
"""Checks rendered Helm manifests of charts/starlight against the project's real binaries.

  check.py --bin BUILD/bin --version V --namespace NS --release R [--calls FILE]...
           [--expect KEY=VALUE]... VARIANT=RENDERED.yaml...

For each rendered variant:
  * every object parses, carries the standard labels, and namespaced objects sit in NS;
  * every binary the chart runs (container command, exec probes, lifecycle hooks, `sh -c`
    strings, scripts in ConfigMaps) exists in BIN, and every --flag given to it (or to a
    `ctr-starlight COMMAND`) appears in that binary's `--help`; the proxy's config file keys
    are long flags of `starlight-proxy --help`, and STARLIGHT_* variables are ones its --help lists;
  * the images of Starlight containers are the ones images/build.sh makes for those binaries;
  * the node DaemonSet: privileged daemon container first, /dev/fuse, NODE_NAME from the
    downward API, and mounts that match the daemon's default paths from `starlight-daemon
    --help` (root and the socket directories Bidirectional from the same host paths, the
    containerd socket directory mounted where the daemon looks for it);
  * the webhook: failurePolicy Ignore, sideEffects None, kube-system and NS excluded,
    namespaceSelector / matchConditions consistent with docs/kubernetes.md;
  * pods: resources.requests and a securityContext on every container, PDBs for the proxy
    and the controller when they run more than one replica;
  * RBAC: each API call in the --calls files (lines `COMPONENT METHOD PATH?QUERY`, e.g. a test
    API server's request log) is allowed by the Roles/ClusterRoles bound to that component's
    ServiceAccount. Permissions no call uses are listed (least-privilege review).
--expect: variant-specific facts, e.g. `k3s:containerd-run=/run/k3s/containerd`.
Exit status 0 when everything holds; each failure is printed.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import urllib.parse

import yaml

OUR_BINARIES = ["starlight-proxy", "starlight-daemon", "ctr-starlight", "starlight-controller",
                "starlight-init"]
NAMESPACED = {"ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "DaemonSet",
              "StatefulSet", "Pod", "Job", "PodDisruptionBudget", "Role", "RoleBinding",
              "Ingress", "PersistentVolumeClaim", "Issuer", "Certificate"}
STD_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance",
              "app.kubernetes.io/managed-by", "helm.sh/chart", "app.kubernetes.io/component"]

failures = []


def fail(variant, msg):
    failures.append(f"{variant}: {msg}")


# ---------------------------------------------------------------- --help parsing

_help_cache = {}


def run_help(bin_dir, binary, sub=None):
    key = (binary, sub)
    if key not in _help_cache:
        argv = [os.path.join(bin_dir, binary)] + ([sub] if sub else []) + ["--help"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        _help_cache[key] = p.stdout + p.stderr
    return _help_cache[key]


FLAG_RE = re.compile(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: (\S+))?(?:\s{2,}(.*))?$")


def parse_help(text):
    """{flag: {"arg": ARG or None, "default": str or None, "env": str or None}}"""
    flags = {}
    for line in text.splitlines():
        m = FLAG_RE.match(line)
        if not m:
            continue
        desc = m.group(3) or ""
        d = re.search(r"\[default: ([^\]]*)\]", desc)
        e = re.search(r"\[env: ([^\]]*)\]", desc)
        flags[m.group(1)] = {"arg": m.group(2), "default": d.group(1) if d else None,
                             "env": e.group(1) if e else None}
    return flags


def flag_known(help_text, flag):
    """flag ('--x' or '--x=v') is documented in help_text (parsed table or literal mention)."""
    name = flag[2:].split("=", 1)[0]
    if name in parse_help(help_text):
        return True
    return re.search(r"(^|[\s\[/`(])--" + re.escape(name) + r"($|[\s\]=,`)/|])", help_text,
                     re.M) is not None


def subcommands(bin_dir):
    text = run_help(bin_dir, "ctr-starlight")
    subs = set()
    in_cmds = False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            in_cmds = True
            continue
        if in_cmds:
            m = re.match(r"^\s{2}([a-z][a-z-]*)\s", line)
            if m:
                subs.add(m.group(1))
            elif line.strip() == "":
                if subs:
                    in_cmds = False
    return subs


# ---------------------------------------------------------------- command extraction


def split_commands(tokens):
    """Split a token list on shell separators."""
    cur = []
    for t in tokens:
        if t in ("&&", "||", ";", "|", "&", "then", "do", "else", "if", "while", "!"):
            if cur:
                yield cur
            cur = []
        else:
            cur.append(t)
    if cur:
        yield cur


def shell_invocations(script):
    """(binary, argv) for each invocation of one of our binaries in a shell script."""
    text = re.sub(r"\\\n", " ", script)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        for cmd in split_commands(tokens):
            for i, t in enumerate(cmd):
                b = os.path.basename(t)
                if b in OUR_BINARIES and (i == 0 or cmd[i - 1] in ("exec", "--", "command")):
                    out.append((b, cmd[i + 1:]))
                    break
    return out


def check_invocation(variant, bin_dir, where, binary, argv, subs):
    if not os.access(os.path.join(bin_dir, binary), os.X_OK):
        fail(variant, f"{where}: runs {binary}, which is not built in {bin_dir}")
        return
    sub = None
    if binary == "ctr-starlight":
        if not argv or argv[0] not in subs:
            fail(variant, f"{where}: ctr-starlight without a known command: {argv[:1]}")
            return
        sub, argv = argv[0], argv[1:]
    text = run_help(bin_dir, binary, sub)
    for a in argv:
        if a.startswith("--") and len(a) > 2:
            if not flag_known(text, a):
                fail(variant, f"{where}: {binary}{' ' + sub if sub else ''} has no flag {a}")


def container_invocations(c):
    """(where, binary, argv) for the container's command/args and its exec hooks/probes."""
    res = []
    name = c.get("name")
    argv = list(c.get("command") or []) + list(c.get("args") or [])
    res += argv_invocations(f"container {name}", argv)
    for pk in ("livenessProbe", "readinessProbe", "startupProbe"):
        ex = (c.get(pk) or {}).get("exec")
        if ex:
            res += argv_invocations(f"container {name} {pk}", ex.get("command") or [])
    for hk in ("postStart", "preStop"):
        ex = ((c.get("lifecycle") or {}).get(hk) or {}).get("exec")
        if ex:
            res += argv_invocations(f"container {name} {hk}", ex.get("command") or [])
    return res


def argv_invocations(where, argv):
    if not argv:
        return []
    b = os.path.basename(str(argv[0]))
    if b in OUR_BINARIES:
        return [(where, b, [str(a) for a in argv[1:]])]
    if b in ("sh", "bash", "ash") and len(argv) >= 2:
        # `sh -c SCRIPT [$0 ARGS...]` or `sh FILE [ARGS...]`: a wrapper given our binary and its
        # arguments as positional parameters runs them ("$@" / "$0" "$@").
        res, rest = [], argv[2:]
        if argv[1] == "-c" and len(argv) >= 3:
            res = [(where, x, y) for x, y in shell_invocations(str(argv[2]))]
            rest = argv[3:]
        if rest and os.path.basename(str(rest[0])) in OUR_BINARIES:
            res.append((where, os.path.basename(str(rest[0])), [str(a) for a in rest[1:]]))
        return res
    return []


def main_binary(c):
    """The binary the container runs (directly or through a wrapper), or None."""
    argv = [str(a) for a in list(c.get("command") or []) + list(c.get("args") or [])]
    inv = argv_invocations("", argv)
    return inv[-1][1] if inv else None


# ---------------------------------------------------------------- objects


def pod_spec(obj):
    k = obj.get("kind")
    if k == "Pod":
        return obj.get("spec") or {}
    if k in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def load(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    return docs


def check_variant(a, variant, docs, calls, expects):
    ns, release = a.namespace, a.release
    subs = subcommands(a.bin)
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
        md = d.get("metadata") or {}
        name = f"{d.get('kind')}/{md.get('name')}"
        labels = md.get("labels") or {}
        for lab in STD_LABELS:
            if lab not in labels:
                fail(variant, f"{name}: label {lab} missing")
        if labels.get("app.kubernetes.io/instance") not in (None, release):
            fail(variant, f"{name}: instance label {labels.get('app.kubernetes.io/instance')}")
        if d.get("kind") in NAMESPACED and md.get("namespace") != ns:
            fail(variant, f"{name}: namespace {md.get('namespace')!r}, want {ns!r}")
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", md.get("name") or "") or \
                len(md.get("name") or "") > 63:
            fail(variant, f"{name}: not a DNS-1123 name of at most 63 characters")

    # Binaries and flags everywhere.
    for d in docs:
        name = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
        spec = pod_spec(d)
        if spec is not None:
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                for where, b, argv in container_invocations(c):
                    check_invocation(variant, a.bin, f"{name} {where}", b, argv, subs)
                check_container_basics(variant, name, c, d)
                check_image(variant, name, c, a.version)
                check_env(variant, name, c, a.bin)
        if d.get("kind") == "ConfigMap":
            for key, val in (d.get("data") or {}).items():
                if key.endswith(".sh"):
                    for b, argv in shell_invocations(val):
                        check_invocation(variant, a.bin, f"{name} {key}", b, argv, subs)
                if key == "proxy.yaml":
                    cfg = yaml.safe_load(val) or {}
                    known = parse_help(run_help(a.bin, "starlight-proxy"))
                    for k in cfg:
                        if k not in known:
                            fail(variant, f"{name} proxy.yaml: starlight-proxy has no option {k}")
                        elif k == "config":
                            fail(variant, f"{name} proxy.yaml: `config` inside a config file")

    check_daemonset(variant, a, by_kind, expects)
    check_webhook(variant, ns, by_kind, a.bin)
    check_pdbs(variant, by_kind)
    check_rbac(variant, a, by_kind, calls)


def check_container_basics(variant, name, c, obj):
    cn = f"{name} container {c.get('name')}"
    if not (c.get("resources") or {}).get("requests"):
        fail(variant, f"{cn}: no resources.requests")
    if not c.get("securityContext"):
        fail(variant, f"{cn}: no securityContext")
    sc = c.get("securityContext") or {}
    if sc.get("privileged") and obj.get("kind") != "DaemonSet":
        fail(variant, f"{cn}: privileged outside the node DaemonSet")


IMAGE_OF = {"starlight-proxy": {"starlight-proxy"},
            "starlight-daemon": {"starlight-daemon"},
            "ctr-starlight": {"starlight-daemon", "starlight-init"},
            "starlight-controller": {"starlight-controller"},
            "starlight-init": {"starlight-init"}}


def image_binaries(src):
    """{image name: set(binaries)} from images/build.sh's binaries() table."""
    text = open(os.path.join(src, "images", "build.sh")).read()
    m = re.search(r"binaries\(\) \{\n\s*case \"\$1\" in\n(.*?)\n\s*\*\)", text, re.S)
    table = {}
    for line in m.group(1).splitlines():
        mm = re.match(r"\s*([a-z]+)\) echo (.*) ;;", line)
        if mm:
            table["starlight-" + mm.group(1)] = set(mm.group(2).split())
    return table


def check_image(variant, name, c, version):
    uses = set()
    for where, b, _ in container_invocations(c):
        uses.add(b)
    if not uses:
        return
    img = c.get("image") or ""
    m = re.match(r"^(?:(.+)/)?starlight-c/(starlight-[a-z]+):(.+)$", img)
    if not m:
        fail(variant, f"{name} container {c.get('name')}: image {img} is not a starlight-c image")
        return
    repo, tag = m.group(2), m.group(3)
    have = IMAGE_BINARIES.get(repo)
    if have is None:
        fail(variant, f"{name}: image {repo} is not built by images/build.sh")
        return
    for b in uses:
        if b not in have:
            fail(variant, f"{name} container {c.get('name')}: runs {b}, not in image {repo}")
    if tag != version:
        fail(variant, f"{name}: image tag {tag}, project version {version}")


def check_env(variant, name, c, bin_dir):
    """STARLIGHT_* variables given to one of our binaries must be ones its --help lists."""
    b = main_binary(c)
    if b is None:
        return
    if not os.access(os.path.join(bin_dir, b), os.X_OK):
        return  # reported by check_invocation
    envs = {f["env"] for f in parse_help(run_help(bin_dir, b)).values() if f["env"]}
    for e in c.get("env") or []:
        n = e.get("name", "")
        if n.startswith("STARLIGHT_") and n not in envs:
            fail(variant, f"{name} container {c.get('name')}: {b} reads no {n}")


def mounts_of(spec, c):
    vols = {v["name"]: v for v in spec.get("volumes") or []}
    res = {}
    for m in c.get("volumeMounts") or []:
        v = vols.get(m["name"])
        if v is None:
            continue
        res[m["mountPath"]] = (v, m)
    return res


def check_daemonset(variant, a, by_kind, expects):
    dss = by_kind.get("DaemonSet") or []
    if expects.get("node") == "off":
        if dss:
            fail(variant, "a DaemonSet is rendered with node.enabled=false")
        return
    if len(dss) != 1:
        fail(variant, f"{len(dss)} DaemonSets, want 1")
        return
    ds = dss[0]
    spec = pod_spec(ds)
    cs = spec.get("containers") or []
    if not cs or main_binary(cs[0]) != "starlight-daemon":
        fail(variant, "DaemonSet: the first container must run starlight-daemon")
        return
    c = cs[0]
    if not (c.get("securityContext") or {}).get("privileged"):
        fail(variant, "DaemonSet: the daemon container is not privileged")
    env = {e["name"]: e for e in c.get("env") or []}
    fr = ((env.get("NODE_NAME") or {}).get("valueFrom") or {}).get("fieldRef") or {}
    if fr.get("fieldPath") != "spec.nodeName":
        fail(variant, "DaemonSet: NODE_NAME is not spec.nodeName from the downward API")
    help_flags = parse_help(run_help(a.bin, "starlight-daemon"))
    args = [str(x) for x in c.get("args") or []]

    def value(flag):  # the value the daemon runs with: last --flag V in args, else its default
        v = help_flags[flag]["default"]
        for i, x in enumerate(args):
            if x == "--" + flag and i + 1 < len(args):
                v = args[i + 1]
            elif x.startswith("--" + flag + "="):
                v = x.split("=", 1)[1]
        return v

    mounts = mounts_of(spec, c)

    def need_mount(path, what, bidirectional, host=None):
        vm = mounts.get(path)
        if vm is None:
            fail(variant, f"DaemonSet: no mount at {path} ({what}); mounts: {sorted(mounts)}")
            return
        v, m = vm
        hp = (v.get("hostPath") or {}).get("path")
        if hp is None:
            fail(variant, f"DaemonSet: {path} is not a hostPath")
            return
        want = host if host is not None else path
        if hp != want:
            fail(variant, f"DaemonSet: {path} comes from host {hp}, want {want}")
        if bidirectional and m.get("mountPropagation") != "Bidirectional":
            fail(variant, f"DaemonSet: {path} is not mountPropagation Bidirectional")

    for flag in ("root", "snapshotter-socket", "control-socket", "containerd-socket"):
        if flag not in help_flags or help_flags[flag]["default"] is None:
            fail(variant, f"starlight-daemon --help has no default for --{flag}")
            return
    need_mount(value("root"), "--root", True)
    need_mount(os.path.dirname(value("snapshotter-socket")), "--snapshotter-socket", True)
    need_mount(os.path.dirname(value("control-socket")), "--control-socket", True)
    need_mount(os.path.dirname(value("containerd-socket")), "--containerd-socket", False,
               host=expects.get("containerd-run", os.path.dirname(value("containerd-socket"))))
    fuse = mounts.get("/dev/fuse")
    if not fuse or (fuse[0].get("hostPath") or {}).get("type") != "CharDevice":
        fail(variant, "DaemonSet: /dev/fuse is not mounted as a CharDevice hostPath")
    # The containerd config container: edits the host file through a hostPath and restarts
    # containerd through the host's PID 1 (hostPID).
    cfgc = [x for x in cs[1:] if x.get("name") == "containerd-config"]
    if expects.get("containerd-config") == "off":
        if cfgc:
            fail(variant, "DaemonSet: containerd-config container with configure=false")
        return
    if not cfgc:
        fail(variant, "DaemonSet: no containerd-config container")
        return
    cm = mounts_of(spec, cfgc[0])
    vm = cm.get("/host/containerd-config")
    if not vm or (vm[0].get("hostPath") or {}).get("path") != expects.get(
            "containerd-config-dir", "/etc/containerd"):
        fail(variant, f"DaemonSet: containerd config dir {vm and vm[0].get('hostPath')}")
    cenv = {e["name"]: e.get("value") for e in cfgc[0].get("env") or []}
    for k, v in expects.items():
        if k.startswith("env:"):
            if cenv.get(k[4:]) != v:
                fail(variant, f"DaemonSet: containerd-config {k[4:]}={cenv.get(k[4:])!r}, want {v!r}")
    if cenv.get("STARLIGHT_RESTART") == "true" and not spec.get("hostPID"):
        fail(variant, "DaemonSet: restarts containerd without hostPID")
    if (spec.get("nodeSelector") or {}) == {} and not spec.get("affinity"):
        fail(variant, "DaemonSet: no nodeSelector or affinity (would run on every node)")


def check_webhook(variant, ns, by_kind, bin_dir):
    mwcs = by_kind.get("MutatingWebhookConfiguration") or []
    deps = [d for d in by_kind.get("Deployment") or []
            if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "controller"]
    if not deps:
        if mwcs:
            fail(variant, "MutatingWebhookConfiguration without a controller")
        return
    dep = deps[0]
    if dep["spec"].get("replicas", 1) < 2:
        fail(variant, "controller: fewer than 2 replicas")
    args = [str(x) for x in pod_spec(dep)["containers"][0].get("args") or []]
    if "--leader-elect" not in args:
        fail(variant, "controller: no --leader-elect")
    if len(mwcs) != 1:
        fail(variant, f"{len(mwcs)} MutatingWebhookConfigurations, want 1")
        return
    annotated = False
    labelled = False
    for w in mwcs[0].get("webhooks") or []:
        n = w.get("name")
        if w.get("failurePolicy") != "Ignore":
            fail(variant, f"webhook {n}: failurePolicy {w.get('failurePolicy')}")
        if w.get("sideEffects") != "None":
            fail(variant, f"webhook {n}: sideEffects {w.get('sideEffects')}")
        if "v1" not in (w.get("admissionReviewVersions") or []):
            fail(variant, f"webhook {n}: admissionReviewVersions lacks v1")
        sel = w.get("namespaceSelector") or {}
        excluded = set()
        for e in sel.get("matchExpressions") or []:
            if e.get("key") == "kubernetes.io/metadata.name" and e.get("operator") == "NotIn":
                excluded |= set(e.get("values") or [])
        for must in ("kube-system", ns):
            if must not in excluded:
                fail(variant, f"webhook {n}: namespace {must} not excluded")
        rules = w.get("rules") or []
        if not any("pods" in r.get("resources", []) and "CREATE" in r.get("operations", [])
                   for r in rules):
            fail(variant, f"webhook {n}: no CREATE pods rule")
        svc = ((w.get("clientConfig") or {}).get("service") or {})
        if svc.get("namespace") != ns or svc.get("port") != 443:
            fail(variant, f"webhook {n}: service {svc}")
        if (sel.get("matchLabels") or {}).get("starlight-c.dev/provision") == "enabled":
            labelled = True
        conds = " ".join(c.get("expression", "") for c in w.get("matchConditions") or [])
        if not w.get("matchConditions") or ("'starlight-c.dev/provision'" in conds and "'true'" in conds):
            annotated = True
        if w.get("objectSelector"):
            fail(variant, f"webhook {n}: objectSelector (pods opt in by annotation, docs §1)")
    if not annotated:
        fail(variant, "no webhook takes pods annotated starlight-c.dev/provision=true")
    if not labelled:
        fail(variant, "no webhook takes pods of namespaces labelled starlight-c.dev/provision=enabled")
    paths = {(w.get("clientConfig") or {}).get("service", {}).get("path")
             for w in mwcs[0].get("webhooks") or []}
    help_text = run_help(bin_dir, "starlight-controller") if os.access(
        os.path.join(bin_dir, "starlight-controller"), os.X_OK) else ""
    for p in paths:
        # The controller's --help names the paths it serves (POST /mutate, /mutate-namespace).
        if help_text and not re.search(re.escape(p) + r"\b(?!-)", help_text):
            fail(variant, f"webhook path {p} is not one starlight-controller serves")


def check_pdbs(variant, by_kind):
    pdbs = {(p["spec"]["selector"]["matchLabels"] or {}).get("app.kubernetes.io/component")
            for p in by_kind.get("PodDisruptionBudget") or []}
    for d in by_kind.get("Deployment") or []:
        comp = (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        if comp in ("proxy", "controller") and d["spec"].get("replicas", 1) > 1 and comp not in pdbs:
            fail(variant, f"no PodDisruptionBudget for the {comp}")


# ---------------------------------------------------------------- RBAC


def parse_call(method, url):
    """(verb, group, resource, namespace, name) of one API request."""
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(u.query)
    parts = [p for p in u.path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    ns = None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        ns, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    watch = q.get("watch", ["false"])[0] in ("true", "1")
    verb = {"GET": "get" if name else ("watch" if watch else "list"), "POST": "create",
            "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}.get(method.upper())
    return verb, group, resource, ns, name


def rule_allows(rule, verb, group, resource, name):
    if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
        return False
    if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
        return False
    if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
        return False
    rn = rule.get("resourceNames")
    if rn and (name is None or name not in rn):
        return False
    return True


def check_rbac(variant, a, by_kind, calls):
    sas = {}
    for d in by_kind.get("ServiceAccount") or []:
        comp = (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
        sas[comp] = d["metadata"]["name"]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in (by_kind.get("ClusterRole") or []) + (by_kind.get("Role") or [])}
    grants = {}  # sa -> [(rule, namespace or None, rule id)]
    for b in (by_kind.get("ClusterRoleBinding") or []) + (by_kind.get("RoleBinding") or []):
        ref = b["roleRef"]
        bns = b["metadata"].get("namespace") if b["kind"] == "RoleBinding" else None
        role = roles.get((ref["kind"], bns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            fail(variant, f"{b['kind']}/{b['metadata']['name']}: role {ref['name']} not rendered")
            continue
        for s in b.get("subjects") or []:
            if s.get("kind") == "ServiceAccount" and s.get("namespace") == a.namespace:
                for i, r in enumerate(role.get("rules") or []):
                    grants.setdefault(s["name"], []).append((r, bns, (role["metadata"]["name"], i)))
    used = set()
    present = {c for c in ("node", "controller") if c in sas}
    features = controller_features(by_kind)
    for comp, method, url in calls:
        comp, _, feature = comp.partition("+")
        if comp not in present or (feature and feature not in features):
            continue
        pc = parse_call(method, url)
        if pc is None:
            continue  # discovery (/version, /api) needs no RBAC
        verb, group, resource, ns, name = pc
        ok = False
        for rule, bns, rid in grants.get(sas[comp], []):
            if bns is not None and bns != ns:
                continue
            if rule_allows(rule, verb, group, resource, name):
                ok = True
                used.add((rid, verb, resource))
        if not ok:
            fail(variant, f"RBAC: {comp} ({sas[comp]}) may not {verb} {group or 'core'}/{resource}"
                          f"{' in ' + ns if ns else ''}{' ' + name if name else ''} ({method} {url})")
    if calls and a.report_unused and variant == "default":
        for sa_comp in sorted(present):
            for rule, bns, rid in grants.get(sas[sa_comp], []):
                for res in rule.get("resources", []):
                    for v in rule.get("verbs", []):
                        if not any(u[0] == rid and u[1] == v and u[2] == res for u in used):
                            print(f"{variant}: rbac note: {sa_comp} may {v} {res} "
                                  f"({rid[0]} rule {rid[1]}) but no recorded call does")


def controller_features(by_kind):
    """Boolean flags the rendered controller runs with turned on (e.g. {"prewarm"})."""
    on = set()
    for d in by_kind.get("Deployment") or []:
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") != "controller":
            continue
        for a in pod_spec(d)["containers"][0].get("args") or []:
            m = re.match(r"^--([a-z-]+)(?:=(true|false))?$", str(a))
            if m and m.group(2) != "false":
                on.add(m.group(1))
    return on


def load_calls(paths):
    calls = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) < 3:
                    raise SystemExit(f"{p}: bad line {line!r} (want COMPONENT METHOD PATH)")
                calls.append((parts[0], parts[1], parts[2]))
    return calls


IMAGE_BINARIES = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True, help="source tree (for images/build.sh)")
    ap.add_argument("--version", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--calls", action="append", default=[])
    ap.add_argument("--expect", action="append", default=[],
                    help="VARIANT:KEY=VALUE facts for one variant")
    ap.add_argument("--report-unused", action="store_true")
    ap.add_argument("renders", nargs="+", help="VARIANT=FILE")
    a = ap.parse_args()
    IMAGE_BINARIES.update(image_binaries(a.src))
    calls = load_calls(a.calls)
    expects = {}
    for e in a.expect:
        v, kv = e.split(":", 1)
        k, val = kv.split("=", 1)
        expects.setdefault(v, {})[k] = val
    for r in a.renders:
        variant, path = r.split("=", 1)
        docs = load(path)
        if not docs:
            fail(variant, "nothing rendered")
            continue
        check_variant(a, variant, docs, calls, expects.get(variant, {}))
        print(f"check: {variant}: {len(docs)} objects checked")
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
