"""The daemon's HTTP endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text format).

Listens on loopback by default (``[http] host``); anything else is an explicit choice. The
server runs in its own daemon thread and never touches the sampling path: ``/healthz`` calls a
snapshot function, ``/metrics`` renders the daemon's :class:`device.metrics.Registry`.

A GET per connection, answered with HTTP/1.0 and closed: all a health check or a Prometheus scrape needs. One
thread accepts, one thread a connection serves it; on a plain socket, not :mod:`http.server` (whose imports,
http.client, email and ssl, cost the daemon more memory than everything else it serves) nor :mod:`socketserver`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from device.errors import BadInput
from device.metrics import CONTENT_TYPE, Registry

# The request line and headers of one request, at most (a GET with no body needs far less).
MAX_REQUEST_BYTES = 16384
# How often the accepting thread looks whether close() was asked.
POLL_S = 0.5
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 501: "Not Implemented", 503: "Service Unavailable"}


Answer = Callable[[str, str], tuple[int, str, bytes]]


class HealthServer:
    """Serves ``/healthz`` from ``health()`` and ``/metrics`` from ``registry``: at most ``max_connections``
    connections at once (more are closed at once), each dropped after ``timeout_s`` of silence."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]], registry: Registry, *,
                 max_connections: int = 16, timeout_s: float = 5.0) -> None:
        def respond(method: str, target: str) -> tuple[int, str, bytes]:
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                return 501, "text/plain; charset=utf-8", b"only GET: try /healthz or /metrics\n"
            if path == "/healthz":
                data = health()
                code = 200 if data.get("status") in ("ok", "degraded") else 503
                return code, "application/json", (json.dumps(data, default=str) + "\n").encode()
            if path == "/metrics":
                return 200, CONTENT_TYPE, registry.render()
            return 404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n"

        try:
            self._sock = socket.create_server((host, port))
        except OSError as exc:
            raise BadInput(f"http: cannot listen on {host}:{port} ({exc.strerror}); pick another [http] port "
                           "or set enabled = false") from None
        self._sock.settimeout(POLL_S)
        self._answer: Answer = respond
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # TimeoutError: look at _stop again; others (a reset before accept): go on
                continue
            if not self._slots.acquire(blocking=False):
                self.refused += 1
                conn.close()  # closed at once: no thread, no descriptor kept
                continue
            try:
                threading.Thread(target=self._handle, args=(conn,), name="http-conn", daemon=True).start()
            except BaseException:
                self._slots.release()
                conn.close()
                raise

    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as rfile:
                conn.settimeout(self._timeout_s)  # a silent client is dropped
                _exchange(conn, rfile, self._answer)
        except OSError:  # timed out, reset: nothing to answer
            pass
        finally:
            self._slots.release()


def _exchange(conn: socket.socket, rfile: BinaryIO, answer: Answer) -> None:
    """Read one request's head from ``rfile`` and send ``answer(method, target)`` (400 if it is not HTTP)."""
    request = _read_head(rfile)
    parts = request.split() if request is not None else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        _send(conn, 400, "text/plain; charset=utf-8", b"bad request\n")
        return
    method, target, _ = parts
    code, ctype, body = answer(method, target)
    _send(conn, code, ctype, b"" if method == "HEAD" else body, length=len(body))


def _read_head(rfile: BinaryIO) -> str | None:
    """The request line (``None`` if the head is not a request), after reading the headers to their end."""
    first = rfile.readline(MAX_REQUEST_BYTES + 1)
    seen = len(first)
    line = first
    while line not in (b"\r\n", b"\n", b""):
        if seen > MAX_REQUEST_BYTES:
            return None
        line = rfile.readline(MAX_REQUEST_BYTES + 1)
        seen += len(line)
    return first.decode("latin-1").strip() if seen <= MAX_REQUEST_BYTES else None


def _send(conn: socket.socket, code: int, ctype: str, body: bytes, length: int | None = None) -> None:
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    header = (f"HTTP/1.0 {code} {REASONS.get(code, '')}\r\nServer: spinal\r\nDate: {date}\r\n"
              f"Content-Type: {ctype}\r\nContent-Length: {len(body) if length is None else length}\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    with contextlib.suppress(OSError):  # the client went away
        conn.sendall(header.encode("latin-1") + body)
