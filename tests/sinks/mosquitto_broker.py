"""A real Mosquitto on a free loopback port, and a recording subscriber (tests and benchmarks).

The broker is started from a generated config, killed by PID (SIGKILL: a crash, nothing saved) and
restarted on the same port. Persistence is on with a 1 s autosave so that the *subscriber's* session
(a persistent QoS 1 session) survives a crash: without it the subscriber would have to race the
publisher to resubscribe after a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Mosquitto:
    """One broker process. ``listeners`` are extra config blocks (TLS ones, say); a plain anonymous
    listener on ``127.0.0.1:port`` is always there."""

    def __init__(self, workdir: Path, *, listeners: tuple[str, ...] = (), extra: str = "",
                 persistence: bool = True) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.db = self.dir / "mosquitto.db"
        lines = [
            "per_listener_settings true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            *listeners,
            # A replay after an outage is a burst; the broker must queue it for a slower consumer
            # rather than drop QoS 1 messages (the default limit is 1000 per client).
            "max_queued_messages 1000000",
            "max_inflight_messages 100",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {self.dir}/", "persistence_file mosquitto.db",
                      "autosave_interval 1"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', which cannot read the test's files
        lines.append(extra)
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {self.log_tail()}")
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL by PID: a crash; the broker saves nothing."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_saved(self, after: float, timeout: float = 10.0) -> None:
        """Wait until the persistence file was written after wall-clock time ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if self.db.stat().st_mtime > after:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not autosave within {timeout} s")

    def log_tail(self, n: int = 20) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    t: float

    def json(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A paho MQTT 5 client with a persistent session (clean_start False, session never expires),
    QoS 1 subscriptions, that records everything it receives."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), client_id: str | None = None,
                 persistent: bool = True) -> None:
        self.port = port
        self.topics = topics
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        cid = client_id or f"sub-{uuid.uuid4().hex[:8]}"
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        if persistent:
            props.SessionExpiryInterval = 0xFFFFFFFF
        self.client.connect_async("127.0.0.1", port, keepalive=10, clean_start=not persistent, properties=props)

    def start(self, timeout: float = 10.0) -> Subscriber:
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            raise TimeoutError("subscriber did not subscribe")
        return self

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure and not flags.session_present:
            client.subscribe([(t, 1) for t in self.topics])
        elif not reason.is_failure:
            self.subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def snapshot(self, prefix: str = "") -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic.startswith(prefix)]

    def seqs_by_topic(self, prefix: str) -> dict[str, list[int]]:
        """Arrival order of ``seq`` per data topic (repeats included; availability left out)."""
        out: dict[str, list[int]] = defaultdict(list)
        for m in self.snapshot(prefix):
            if m.payload.startswith(b"{"):
                out[m.topic].append(m.json()["seq"])
        return dict(out)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def first_arrivals(seqs: list[int]) -> list[int]:
    """The sequence with repeats (at-least-once redeliveries) removed, first arrival kept."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
