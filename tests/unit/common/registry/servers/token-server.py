#!/usr/bin/env python3
"""Bearer token server for the real distribution registry (auth: token), for tests.

Usage: token-server.py PORT_FILE KEY.pem CERT.pem ISSUER USER PASSWORD
Issues RS256 JWTs (signed with the `openssl` CLI, x5c header holding the certificate that
the registry's rootcertbundle trusts) granting whatever repository scopes are asked, but
only to USER:PASSWORD sent as Basic credentials (anonymous gets 401). GET /count?scope=S
answers how many tokens were issued for that exact scope list (scopes joined by " ").
"""
import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

port_file, key, cert, issuer, user, password = sys.argv[1:7]
want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
counts = {}
lock = threading.Lock()

with open(cert) as f:
    der_b64 = "".join(l.strip() for l in f if "CERTIFICATE" not in l)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign(claims):
    header = {"typ": "JWT", "alg": "RS256", "x5c": [der_b64]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                         capture_output=True, check=True).stdout
    return signing_input + "." + b64url(sig)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path == "/count":
            with lock:
                return self.send(200, str(counts.get(q.get("scope", [""])[0], 0)).encode())
        if u.path != "/token":
            return self.send(404, b"{}")
        if self.headers.get("Authorization") != want:
            return self.send(401, b'{"details":"bad credentials"}')
        scopes = q.get("scope", [])
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) >= 3 and parts[0] == "repository":
                access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                               "actions": parts[-1].split(",")})
        now = int(time.time())
        claims = {"iss": issuer, "sub": user, "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": str(uuid.uuid4()),
                  "access": access}
        tok = sign(claims)
        with lock:
            k = " ".join(scopes)
            counts[k] = counts.get(k, 0) + 1
        # Alternate the two field names registries use.
        field = "token" if len(tok) % 2 else "access_token"
        self.send(200, json.dumps({field: tok, "expires_in": 300}).encode())


srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
