#!/usr/bin/env python3
"""The values table of charts/starlight/README.md, from values.yaml's `# --` comments.

  values-table.py VALUES.yaml README.md [--write]

Every key whose value is a scalar, a list or an empty map needs a `# -- description` comment
(multi-line: following `#` lines); a mapping documented with `# --` is one row (e.g.
`resources`). The table sits between `<!-- values-table:start -->` and `<!-- values-table:end -->`.
Without --write: exit 1 when the README's table differs (or a key is undocumented).
"""
import json
import re
import sys

import yaml

START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"


def _is_map_path(data, keys):
    v = data
    for k in keys:
        if not isinstance(v, dict) or k not in v:
            return False
        v = v[k]
    return isinstance(v, dict)


def rows(path):
    lines = open(path).read().splitlines()
    data = yaml.safe_load(open(path))
    out, missing = [], []
    stack = []  # (indent, key)
    pending = []
    for line in lines:
        m = re.match(r"^(\s*)# -- (.*)$", line)
        if m:
            pending = [m.group(2)]
            continue
        m = re.match(r"^(\s*)#\s?(.*)$", line)
        if m:
            if pending:
                pending.append(m.group(2))
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_-]+):(.*)$", line)
        if not m:
            if not line.strip().startswith("-"):
                pending = []
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        full = ".".join(k for _, k in stack)
        val = data
        for _, k in stack:
            if not isinstance(val, dict):  # a key inside a list item: part of that value
                val = None
                break
            val = val[k]
        if val is None and not isinstance(data, dict):
            continue
        if len(stack) > 1 and not _is_map_path(data, [k for _, k in stack[:-1]]):
            stack.pop()
            pending = []
            continue
        leaf = not isinstance(val, dict) or val == {}
        if pending:
            out.append((full, val, " ".join(pending)))
        elif leaf:
            missing.append(full)
        pending = []
    # Drop rows nested under a documented mapping row.
    docd = [r[0] for r in out if isinstance(r[1], dict) and r[1]]
    out = [r for r in out if not any(r[0].startswith(d + ".") for d in docd)]
    missing = [k for k in missing if not any(k.startswith(d + ".") for d in docd)]
    return out, missing


def table(rs):
    lines = ["| key | default | description |", "|---|---|---|"]
    for k, v, d in rs:
        dv = json.dumps(v, separators=(", ", ": ")) if not isinstance(v, str) else json.dumps(v)
        dv = dv.replace("|", "\\|")
        desc = d.replace("|", "\\|")
        lines.append(f"| `{k}` | `{dv}` | {desc} |")
    return "\n".join(lines)


def main():
    values, readme = sys.argv[1], sys.argv[2]
    write = "--write" in sys.argv[3:]
    rs, missing = rows(values)
    if missing:
        print("values-table: undocumented keys (add `# -- ...`): " + ", ".join(missing),
              file=sys.stderr)
        return 1
    text = open(readme).read()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0:
        print(f"values-table: {readme} has no {START} ... {END}", file=sys.stderr)
        return 1
    new = text[:i + len(START)] + "\n" + table(rs) + "\n" + text[j:]
    if write:
        open(readme, "w").write(new)
        return 0
    if new != text:
        print(f"values-table: the table in {readme} is stale: run {sys.argv[0]} {values} "
              f"{readme} --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
