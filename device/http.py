"""The daemon's HTTP endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text format).

Listens on loopback by default (``[http] host``); anything else is an explicit choice. The
server runs in its own daemon thread and never touches the sampling path: ``/healthz`` calls a
snapshot function, ``/metrics`` renders the daemon's :class:`device.metrics.Registry`.

A GET per connection, answered with HTTP/1.0 and closed: all a health check or a Prometheus scrape needs. It is
served by :mod:`socketserver`, not :mod:`http.server`, whose imports (http.client, email, ssl) cost the daemon
more memory than everything else it serves.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

from device.errors import BadInput
from device.metrics import CONTENT_TYPE, Registry

# The request line and headers of one request, at most (a GET with no body needs far less).
MAX_REQUEST_BYTES = 16384
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 501: "Not Implemented", 503: "Service Unavailable"}


class HealthServer:
    """Serves ``/healthz`` from ``health()`` and ``/metrics`` from ``registry``."""

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

        class Handler(_Handler):
            timeout = timeout_s  # the socket's timeout: a silent client is dropped (setup() applies it)
            answer = staticmethod(respond)

        try:
            self._server = _LimitedServer((host, port), Handler, max_connections)
        except OSError as exc:
            raise BadInput(f"http: cannot listen on {host}:{port} ({exc.strerror}); pick another [http] port "
                           "or set enabled = false") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever: it would hang if that never ran
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _Handler(socketserver.StreamRequestHandler):
    """One connection: read the request line and headers, answer with ``answer(method, target)``, close."""

    answer: Callable[[str, str], tuple[int, str, bytes]]

    def handle(self) -> None:
        try:
            request = self._read_head()
        except (OSError, ValueError):  # timed out, reset, or not HTTP
            return
        parts = request.split() if request is not None else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._send(400, "text/plain; charset=utf-8", b"bad request\n", head=False)
            return
        method, target, _ = parts
        code, ctype, body = self.answer(method, target)
        self._send(code, ctype, body, head=method == "HEAD")

    def _read_head(self) -> str | None:
        """The request line (``None`` if the head is not a request), after reading the headers to their end."""
        first = self.rfile.readline(MAX_REQUEST_BYTES + 1)
        seen = len(first)
        line = first
        while line not in (b"\r\n", b"\n", b""):
            if seen > MAX_REQUEST_BYTES:
                return None
            line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            seen += len(line)
        return first.decode("latin-1").strip() if seen <= MAX_REQUEST_BYTES else None

    def _send(self, code: int, ctype: str, body: bytes, head: bool) -> None:
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        header = (f"HTTP/1.0 {code} {REASONS.get(code, '')}\r\nServer: spinal\r\nDate: {date}\r\n"
                  f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                  "Connection: close\r\n\r\n")
        with contextlib.suppress(OSError):  # the client went away
            self.wfile.write(header.encode("latin-1") + (b"" if head else body))


class _LimitedServer(socketserver.ThreadingTCPServer):
    """A threading TCP server that serves at most ``limit`` connections at once and closes the rest."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)  # closed at once: no thread, no descriptor kept
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
