"""/healthz and /metrics under idle connections: a bounded number of descriptors, and they time out."""

from __future__ import annotations

import os
import socket
import time
import urllib.request

from device.http import HealthServer
from device.metrics import Registry


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_cannot_use_up_file_descriptors_and_time_out():
    server = HealthServer("127.0.0.1", 0, lambda: {"status": "ok"}, Registry(), max_connections=4,
                          timeout_s=0.5)
    server.start()
    host, port = server.address
    idle: list[socket.socket] = []
    try:
        time.sleep(0.1)
        before = open_fds()
        for _ in range(60):
            idle.append(socket.create_connection((host, port)))
        time.sleep(0.3)
        # Our own 60 client sockets, plus at most 4 held by the server (before: one per idle client, 60).
        held = open_fds() - before - len(idle)
        assert held <= 4, f"the server holds {held} descriptors for idle clients"
        time.sleep(0.8)  # past timeout_s: the idle ones were dropped, a real request is served
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
        assert open_fds() - before - len(idle) <= 1
    finally:
        for s in idle:
            s.close()
        server.close()
