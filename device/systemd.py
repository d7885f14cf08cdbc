"""systemd integration without dependencies: the ``sd_notify`` datagram protocol and the watchdog.

With ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace); the service sends ``READY=1``, ``STATUS=...``, ``RELOADING=1``, ``STOPPING=1`` and,
with ``WatchdogSec=``, ``WATCHDOG=1`` more often than ``WATCHDOG_USEC`` (we ping at half of it).
Outside systemd every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
import threading
import time


class Notifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET`` (if set)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET") or ""
        self.address: str | bytes | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent: list[str] = []  # the last messages (for /healthz and logs); bounded
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of ``WATCHDOG_USEC``, or ``None`` without a watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; ``False`` if there is no socket or it failed."""
        if self.address is None:
            return False
        message = "\n".join(fields)
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message.encode("utf-8"), self.address)
            except OSError:
                self.errors += 1
                return False
            self.sent = [*self.sent[-15:], message]
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
