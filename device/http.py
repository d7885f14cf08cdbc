"""The daemon's HTTP endpoint: ``/healthz`` (JSON) and ``/metrics`` (Prometheus text format).

Listens on loopback by default (``[http] host``); anything else is an explicit choice. The
server runs in its own daemon thread and never touches the sampling path: ``/healthz`` calls a
snapshot function, ``/metrics`` renders the daemon's private prometheus-client registry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from device.errors import BadInput


class HealthServer:
    """Serves ``/healthz`` from ``health()`` and ``/metrics`` from ``registry``."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]], registry: Any, *,
                 max_connections: int = 16, timeout_s: float = 5.0) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        def render_metrics() -> bytes:
            return generate_latest(registry)

        class Handler(BaseHTTPRequestHandler):
            server_version = "spinal"
            timeout = timeout_s  # the socket's timeout: a silent client is dropped (setup() applies it)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    data = health()
                    code = 200 if data.get("status") in ("ok", "degraded") else 503
                    self._send(code, "application/json", (json.dumps(data, default=str) + "\n").encode())
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, render_metrics())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            self._server = _LimitedServer((host, port), Handler, max_connections)
        except OSError as exc:
            raise BadInput(f"http: cannot listen on {host}:{port} ({exc.strerror}); pick another [http] port "
                           "or set enabled = false") from None
        self._server.daemon_threads = True
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


class _LimitedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``limit`` connections at once and closes the rest."""

    daemon_threads = True

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
