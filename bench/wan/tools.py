#!/usr/bin/env python3
"""Helpers of the WAN benchmark (bench/wan.sh).

  tools.py traced-prefix DELTA      bytes of a delta body (GET /starlight/delta) up to the end
                                    of its last traced content: prelude + header + the traced
                                    contents (docs/protocol.md section 3). Fails when nothing
                                    is traced or the traced contents are not first.
  tools.py headline CSV RTT         the README's compact table: each app's deploy and update
                                    medians at RTT, Starlight-C traced against the others.
  tools.py report CSV OUT_DIR       medians per RTT, app, system and phase -> OUT_DIR/wan.md
                                    (markdown: medians and ratios, goals at 150 ms) and
                                    OUT_DIR/wan-deploy.png, wan-update.png (updates across
                                    Debian releases), wan-update-minor.png (the *-minor
                                    apps' minor updates), when they have rows (gnuplot, time
                                    against RTT per system, the median over apps).
"""
import csv
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys

SYSTEMS = ["containerd", "estargz", "starlight", "starlight-traced", "bound"]
LABEL = {
    "containerd": "containerd (overlayfs)",
    "estargz": "eStargz",
    "starlight": "Starlight-C, untraced",
    "starlight-traced": "Starlight-C, traced",
    "bound": "bound (curl + local start)",
}


def traced_prefix(path):
    with open(path, "rb") as f:
        prelude = f.read(32)
        if len(prelude) < 32 or prelude[:8] != b"SLDELTA\n":
            sys.exit("traced-prefix: %s is not a delta body" % path)
        version = struct.unpack(">I", prelude[8:12])[0]
        hl = struct.unpack(">Q", prelude[16:24])[0]
        raw = f.read(hl)
        # version 2: the header is one gzip member (docs/protocol.md §3)
        h = json.loads(gzip.decompress(raw) if version == 2 else raw)
    traced = [c for c in h["contents"] if c["traced"]]
    if not traced:
        sys.exit("traced-prefix: no traced contents")
    if [c["index"] for c in traced] != list(range(len(traced))):
        sys.exit("traced-prefix: the traced contents are not first")
    print(32 + hl + sum(c["payloadLength"] for c in traced))


def load(path):
    """rows -> {(rtt, app, system, phase): [ms...]} plus bytes and notes"""
    ms, rx_ready, rx_total, notes, loads = {}, {}, {}, {}, []
    extra = {}  # (k, key) -> [values] from key=value notes (pull_ready_ms, bytes, ...)
    with open(path) as f:
        for r in csv.DictReader(f):
            k = (int(r["rtt_ms"]), r["app"], r["system"], r["phase"])
            if r["note"]:
                notes[k] = r["note"]
                for kv in r["note"].split(";"):
                    key, eq, val = kv.partition("=")
                    if eq and val.isdigit():
                        extra.setdefault((k, key), []).append(int(val))
            loads.append(float(r["load1"]))
            if r["ms"] == "NA":
                continue
            ms.setdefault(k, []).append(int(r["ms"]))
            rx_ready.setdefault(k, []).append(int(r["rx_ready"]))
            rx_total.setdefault(k, []).append(int(r["rx_total"]))
    return ms, rx_ready, rx_total, notes, loads, extra


def medians(ms):
    med = {k: statistics.median(v) for k, v in ms.items()}
    # the bound: the transfer's median plus the app's median local start
    for (rtt, app, system, phase), v in list(med.items()):
        if system == "bound-transfer" and (rtt, app, "local-start", phase) in med:
            med[(rtt, app, "bound", phase)] = v + med[(rtt, app, "local-start", phase)]
    return med


def minor(app):
    """a minor-update pair (bench/wan/apps.sh): the old image rebuilt, the app's file changed"""
    return app.endswith("-minor")


def sections(apps):
    """(phase, apps, title) of the tables: deploys of every app; updates across Debian
    releases; minor updates"""
    major = [a for a in apps if not minor(a)]
    small = [a for a in apps if minor(a)]
    out = [("deploy", major + small, "Fresh deploy (old image, empty node)")]
    if major:
        out.append(("update", major, "Update across Debian releases, bullseye → bookworm "
                    "(old image held, new image)"))
    if small:
        out.append(("update", small, "Minor update: the same image rebuilt from scratch "
                    "(every layer digest new), the app's own file changed (old image held)"))
    return out


def ratio(a, b):
    return "%.1f×" % (a / b) if a is not None and b else "–"


def report(path, out):
    ms, rx_ready, rx_total, notes, loads, extra = load(path)
    med = medians(ms)

    def xmed(k, key):
        v = extra.get((k, key))
        return statistics.median(v) if v else None
    rtts = sorted({k[0] for k in med})
    apps = []
    for k in med:
        if k[1] not in apps:
            apps.append(k[1])
    apps = [a for a in apps if not minor(a)] + [a for a in apps if minor(a)]
    lines = []
    w = lines.append
    w("Medians in seconds (runs per cell: %s); bytes = what the edge end of the link received "
      "until the app was ready (MB, 10^6). Ratios: the other system's time over Starlight-C "
      "traced's (> 1 = Starlight faster); vs bound: Starlight-C traced over the bound (goal "
      "≤ 1.2). 1-minute load average during the rows: %.1f–%.1f (2 CPUs)." % (
          "/".join(sorted({str(len(v)) for v in ms.values()})), min(loads), max(loads)))
    w("")
    for phase, group, title in sections(apps):
        w("### %s" % title)
        w("")
        w("| RTT ms | app | containerd s | eStargz s | Starlight untraced s | Starlight traced s "
          "| bound s | MB containerd / eStargz / Starlight traced | vs containerd | vs eStargz "
          "| vs bound |")
        w("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for rtt in rtts:
            for app in group:
                g = {s: med.get((rtt, app, s, phase)) for s in SYSTEMS}
                if all(v is None for v in g.values()):
                    continue

                def cell(s):
                    if g[s] is None:
                        return "n/a" if (rtt, app, s, phase) in notes else "–"
                    return "%.2f" % (g[s] / 1000)

                def mb(s):
                    v = rx_ready.get((rtt, app, s, phase))
                    return "%.1f" % (statistics.median(v) / 1e6) if v else "–"

                sl = g["starlight-traced"]
                w("| %d | %s | %s | %s | %s | **%s** | %s | %s / %s / %s | %s | %s | %s |" % (
                    rtt, app, cell("containerd"), cell("estargz"), cell("starlight"),
                    cell("starlight-traced"), cell("bound"), mb("containerd"), mb("estargz"),
                    mb("starlight-traced"), ratio(g["containerd"], sl), ratio(g["estargz"], sl),
                    "%.2f" % (sl / g["bound"]) if sl and g["bound"] else "–"))
        w("")
        if phase == "deploy" and any(minor(a) for a in group):
            w("(%s: the fresh deploy of the minor pair's old image, a bookworm one.)" % ", ".join(
                a for a in group if minor(a)))
            w("")
    for k, v in sorted(set((k[2], v) for k, v in notes.items() if k[2] == "estargz")):
        w("eStargz: %s" % v)
        w("")
    # goals at 150 ms
    if 150 in rtts:
        w("### Goals at RTT 150 ms, 100 Mbit/s (targets, not assertions)")
        w("")
        w("| app | deploy vs containerd (≥ 4×) | deploy vs eStargz (≥ 2×) | deploy vs bound (≤ 1.2) "
          "| update s (< 1 s) | update vs containerd (≥ 8×) |")
        w("|---|---:|---:|---:|---:|---:|")
        for app in [a for a in apps if not minor(a)] + [a for a in apps if minor(a)]:
            d = {s: med.get((150, app, s, "deploy")) for s in SYSTEMS}
            u = {s: med.get((150, app, s, "update")) for s in SYSTEMS}
            sl, su = d["starlight-traced"], u["starlight-traced"]
            if sl is None:
                continue

            def mark(ok):
                return "" if ok is None else (" met" if ok else " **missed**")

            w("| %s | %s%s | %s%s | %s%s | %s%s | %s%s |" % (
                app + (" (minor update)" if minor(app) else ""),
                ratio(d["containerd"], sl), mark(d["containerd"] and d["containerd"] / sl >= 4),
                ratio(d["estargz"], sl), mark(d["estargz"] and d["estargz"] / sl >= 2),
                "%.2f" % (sl / d["bound"]) if d["bound"] else "–",
                mark(d["bound"] and sl / d["bound"] <= 1.2),
                "%.2f" % (su / 1000) if su else "–", mark(su is not None and su < 1000),
                ratio(u["containerd"], su), mark(u["containerd"] and su and u["containerd"] / su >= 8)))
        w("")
        w("The update goals are about minor updates (the paper's redis 6.2.1 → 6.2.2): the "
          "*-minor rows. The other rows' updates cross a Debian release, and their new image "
          "shares almost no file with the old one.")
        w("")
    # where Starlight-C's time goes (traced): the daemon's ready and complete times, the bytes
    w("### Where Starlight-C traced spends its time (medians)")
    w("")
    w("| RTT ms | app | phase | image ready (daemon) s | app ready s | pull complete s "
      "| MB until app ready | bound MB | bound transfer s | local start s |")
    w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rtt in rtts:
        for app in apps:
            for phase in ("deploy", "update"):
                k = (rtt, app, "starlight-traced", phase)
                if k not in med:
                    continue
                kb = (rtt, app, "bound-transfer", phase)
                kl = (rtt, app, "local-start", phase)
                pr, pc, bb = xmed(k, "pull_ready_ms"), xmed(k, "pull_complete_ms"), xmed(kb, "bytes")

                def sec(v):
                    return "%.2f" % (v / 1000) if v is not None else "–"

                w("| %d | %s | %s | %s | %s | %s | %.1f | %s | %s | %s |" % (
                    rtt, app, phase, sec(pr), sec(med[k]), sec(pc),
                    statistics.median(rx_ready[k]) / 1e6,
                    "%.1f" % (bb / 1e6) if bb else "–", sec(med.get(kb)), sec(med.get(kl))))
    w("")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "wan.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    plots(med, rtts, apps, out)


def plots(med, rtts, apps, out):
    """time against RTT per system, the median over the apps: fresh deploys (every app),
    updates across Debian releases and minor updates, one PNG each"""
    if not rtts:
        return
    for phase, group, title in sections(apps):
        name = "wan-%s%s" % (phase, "-minor" if phase == "update" and minor(group[0]) else "")
        title = {"wan-deploy": "Fresh deploy",
                 "wan-update": "Update across Debian releases",
                 "wan-update-minor": "Minor update (image rebuilt, app file changed)"}[name]
        dat = os.path.join(out, name + ".dat")
        with open(dat, "w") as f:
            f.write("# rtt_ms " + " ".join(SYSTEMS) + " (seconds, median over: %s)\n" % " ".join(group))
            for rtt in rtts:
                vals = []
                for s in SYSTEMS:
                    v = [med[(rtt, a, s, phase)] for a in group if (rtt, a, s, phase) in med]
                    vals.append("%.3f" % (statistics.median(v) / 1000) if v else "NaN")
                f.write("%d %s\n" % (rtt, " ".join(vals)))
        png = os.path.join(out, name + ".png")
        script = [
            "set terminal pngcairo size 900,560 noenhanced" if gnuplot_has("pngcairo")
            else "set terminal png size 900,560",
            "set output '%s'" % png,
            "set title \"%s: pull start to app ready, 100 Mbit/s\\n(median over %s)\"" % (
                title, ", ".join(group)),
            "set xlabel 'RTT (ms)'", "set ylabel 'seconds'", "set key top left",
            "set grid", "set yrange [0:*]", "set xtics (%s)" % ", ".join(str(r) for r in rtts),
            "plot " + ", ".join("'%s' using 1:%d with linespoints lw 2 title '%s'" % (
                dat, i + 2, LABEL[s]) for i, s in enumerate(SYSTEMS)),
        ]
        subprocess.run(["gnuplot"], input="\n".join(script).encode(), check=True,
                       stderr=subprocess.DEVNULL)


def gnuplot_has(term):
    try:
        r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, timeout=10)
        return term.encode() in r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired):
        return False


def headline(path, rtt):
    ms = load(path)[0]
    med = medians(ms)
    apps = []
    for k in med:
        if k[0] == rtt and k[1] not in apps:
            apps.append(k[1])
    print("| app | phase | containerd s | eStargz s | Starlight-C s | bound s | vs containerd "
          "| vs eStargz |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for app in apps:
        for phase in ("deploy", "update"):
            g = {s: med.get((rtt, app, s, phase)) for s in SYSTEMS}
            sl = g["starlight-traced"]

            def c(s):
                return "%.1f" % (g[s] / 1000) if g[s] is not None else "–"

            print("| %s | %s | %s | %s | **%s** | %s | %s | %s |" % (
                app, "minor update" if phase == "update" and minor(app) else phase, c("containerd"), c("estargz"), c("starlight-traced"), c("bound"),
                ratio(g["containerd"], sl), ratio(g["estargz"], sl)))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "traced-prefix":
        traced_prefix(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "headline":
        headline(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
