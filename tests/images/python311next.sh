#!/usr/bin/env bash
# python311next: a minor update of python311, as a publisher's CI rebuild makes it: the same
# suite (bookworm) and package (python3 3.11), debootstrapped and installed again from scratch,
# so every layer is new (new digests) while almost every file's content is the same, plus v2
# of the application's own code (/srv/app/app.py: a /health route, a version field, hits
# counted per path). Two layers (debian-app.sh), then share.py checks against python311 that
# no layer digest is shared and most file bytes are.
# Usage: python311next.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/debian-app.sh" bookworm "$1" python3 \
    '{"Cmd":["python3","/srv/app/app.py"],
      "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "ExposedPorts":{"8000/tcp":{}},"WorkingDir":"/srv/app"}' '
mkdir -p /srv/app
cat >/srv/app/app.py <<PY
import json, sqlite3, sys
from wsgiref.simple_server import make_server

VERSION = "2"
db = sqlite3.connect(":memory:")
db.execute("create table hits (path text)")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    db.execute("insert into hits values (?)", (path,))
    n = db.execute("select count(*) from hits where path = ?", (path,)).fetchone()[0]
    body = json.dumps({"hello": "starlight-c", "version": VERSION, "path": path, "hits": n,
                       "python": sys.version.split()[0]})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode() + b"\n"]


make_server("127.0.0.1", 8000, app).serve_forever()
PY
python3 -c "import compileall, sys; sys.exit(not compileall.compile_file(\"/srv/app/app.py\", quiet=1))"
'
python3 "$here/share.py" --check --names python311 python311next \
    "$(bash "$here/build.sh" python311)" "$1" >&2
