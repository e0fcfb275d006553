#!/usr/bin/env bash
# A small Python web application (WSGI, standard library only: wsgiref, json, sqlite3) on
# Debian SUITE's python3 (debian-app.sh); it answers HTTP on 127.0.0.1:8000 once it has opened
# its database. Usage: debian-python.sh SUITE OUTDIR
set -euo pipefail
exec bash "$(dirname "$0")/debian-app.sh" "$1" "$2" python3 \
    '{"Cmd":["python3","/srv/app/app.py"],
      "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "ExposedPorts":{"8000/tcp":{}},"WorkingDir":"/srv/app"}' '
mkdir -p /srv/app
cat >/srv/app/app.py <<PY
import json, sqlite3, sys
from wsgiref.simple_server import make_server

db = sqlite3.connect(":memory:")
db.execute("create table hits (path text)")


def app(environ, start_response):
    db.execute("insert into hits values (?)", (environ.get("PATH_INFO", "/"),))
    n = db.execute("select count(*) from hits").fetchone()[0]
    body = json.dumps({"hello": "starlight-c", "hits": n, "python": sys.version.split()[0]})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode() + b"\n"]


make_server("127.0.0.1", 8000, app).serve_forever()
PY
python3 -c "import compileall, sys; sys.exit(not compileall.compile_file(\"/srv/app/app.py\", quiet=1))"
'
