"""HTTP client for the poshub supervisor's update API and the hub's /health.

Plain http.client (no third-party dependency on the controller): the API runs inside the
tailnet, bundles are signed, so no TLS. Uploads are streamed from the file in 64 KiB blocks,
never read into memory. Every call has a socket timeout, so a box that stops answering fails
the call instead of hanging the run.
"""

import http.client
import json
import os
import socket
import time
from urllib.parse import urlencode, urlsplit

CHUNK = 64 * 1024


class Unreachable(Exception):
    """The box did not answer: refused, reset, timed out, no route."""


class Reply:
    """Status code, parsed JSON body (or None), raw text, bytes sent."""

    def __init__(self, status, body, sent):
        self.status = status
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None
        self.sent = sent

    def error(self):
        """The `error` field of a JSON error body, else the text."""
        if isinstance(self.json, dict) and self.json.get("error"):
            return str(self.json["error"])
        return self.text.strip()[:500]


def _connection(base, timeout):
    parts = urlsplit(base)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("url must be http://HOST:PORT, got %r" % base)
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)


def request(base, path, token=None, method="GET", src=None, query=None, timeout=10):
    """One request. Raises Unreachable on any network failure."""
    if query:
        path = "%s?%s" % (path, urlencode(query))
    conn = _connection(base, timeout)
    sent = 0
    try:
        conn.putrequest(method, path)
        if token:
            conn.putheader("Authorization", "Bearer " + token)
        size = os.path.getsize(src) if src else 0
        if method == "POST":
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Length", str(size))
        conn.endheaders()
        if src:
            sent = _stream(conn, src)
        resp = conn.getresponse()
        return Reply(resp.status, resp.read(), sent)
    except (OSError, socket.timeout, http.client.HTTPException) as e:
        raise Unreachable("%s%s: %s" % (base, path, e or type(e).__name__)) from e
    finally:
        conn.close()


def _stream(conn, src):
    sent = 0
    with open(src, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return sent
            try:
                conn.send(block)
            except (BrokenPipeError, ConnectionResetError):
                # The box answered before reading the whole body (409, 413): its reply
                # says why, and getresponse() reads it.
                return sent
            sent += len(block)


def poll(fn, timeout, interval=1.0):
    """Calls fn() until it returns something other than None or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while True:
        r = fn()
        if r is not None:
            return r
        if time.monotonic() >= end:
            return None
        time.sleep(interval)
