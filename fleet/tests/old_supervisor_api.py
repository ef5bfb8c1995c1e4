"""The update API of a supervisor that reads bundle formats 1 to 3 (every supervisor released
before format 4), in front of the real one of a simulated box: box_runner.py --old-api serves it
on the box's tailnet address while the real supervisor listens on loopback only.

Every request goes to the real supervisor unchanged; only what such an older supervisor does
differently is changed:
- `POST /update` of a bundle whose manifest `format` is above 3 gets that supervisor's 400, with
  its exact message, once the body is read and the token checked; nothing reaches the real
  supervisor (the older one writes nothing either). Each refusal is logged to old-api.log.
- `GET /slots` has no `bundleFormats` (mode `absent`: what such a supervisor answers), or keeps
  the real one (mode `claims-4`: a box whose /slots said it reads format 4 but that refuses it,
  the case update.yml's 400 fallback is there for).
"""

import http.client
import http.server
import json
import struct
import threading
import time

MODES = ("absent", "claims-4")
OLD_FORMATS = (1, 2, 3)
# The refusal of supervisor/src/api/update.rs for a manifest the bundle reader rejects, with the
# reader's message of a supervisor that reads formats 1 to 3 (docs/updates.md §2.1).
REFUSAL = ("bundle refused: bundle manifest is invalid: unknown format %d (this supervisor reads "
           "formats 1 to 3): update the supervisor first")
MAX_BODY = 64 << 20  # the simulated bundles are a few MiB


def manifest_format(body):
    """The `format` of a .poshub body's manifest, or None if it has none readable."""
    if len(body) < 12 or body[:8] != b"POSHUBB1":
        return None
    (length,) = struct.unpack("<I", body[8:12])
    try:
        m = json.loads(body[12:12 + length])
    except ValueError:
        return None
    return m.get("format") if isinstance(m, dict) else None


class Handler(http.server.BaseHTTPRequestHandler):
    """Set by serve(): the real supervisor's port, the mode and the log file."""
    upstream_port = 8767
    mode = "absent"
    log_path = None

    def log_message(self, fmt, *args):
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write("%.3f %s\n" % (time.time(), fmt % args))

    def forward(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=600)
        headers = {k: self.headers[k] for k in ("Authorization", "Content-Type") if self.headers.get(k)}
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.forward("GET", self.path)
        if status == 200 and self.path.split("?")[0] == "/slots" and self.mode == "absent":
            doc = json.loads(body)
            doc.pop("bundleFormats", None)
            body = json.dumps(doc).encode()
        self.reply(status, body)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.reply(413, b'{"error": "too large for the old-supervisor double"}')
            return
        body = self.rfile.read(length)
        fmt = manifest_format(body)
        if self.path.split("?")[0] == "/update" and isinstance(fmt, int) and fmt not in OLD_FORMATS:
            status, answer = self.forward("GET", "/update/status")  # the token check
            if status == 401:
                self.reply(status, answer)
                return
            self.log_message("refused a format %d bundle (%d bytes) with 400", fmt, length)
            self.reply(400, json.dumps({"error": REFUSAL % fmt}).encode())
            return
        self.reply(*self.forward("POST", self.path, body))


def serve(bind, port, mode, log_path):
    """Serves the old API on bind:port in a daemon thread (it ends with the box's runner)."""
    if mode not in MODES:
        raise ValueError("--old-api must be one of %s" % ", ".join(MODES))
    Handler.upstream_port, Handler.mode, Handler.log_path = port, mode, log_path
    server = http.server.ThreadingHTTPServer((bind, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
