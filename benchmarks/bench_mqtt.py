"""MQTT sink benchmark: the durable spool against plain paho, to the same local Mosquitto.

    python benchmarks/bench_mqtt.py [--messages 5000] [--repeats 3] [--latency-seconds 10]

Measures (medians over --repeats runs, printed as a Markdown table):
- messages/s end to end (first write → last PUBACK) through MqttSink with the spool at
  synchronous=FULL (the default: power-cut safe) and NORMAL (SIGKILL safe), against plain paho
  QoS 1 publishing the same payloads with the same in-flight window (no disk, nothing durable);
- spool appends/s on its own (one transaction per message, and batches of 100);
- publish latency p50/p99 at a steady 100 messages/s: hand-over → PUBACK for the sink and
  publish() → PUBACK for plain paho, plus the sink's write() → PUBACK (time in the spool included).

The broker runs on a free loopback port with persistence off; no subscriber (the broker acks).
fsync-bound numbers (FULL) depend on the disk and on other writers on the machine: an ext4 fsync
also waits for other files' dirty data, so each measurement starts after an os.sync().
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho

from device.sinks.base import Record
from device.sinks.mqtt import MqttOptions, MqttSink, encode_record
from device.sinks.spool import Spool, SpoolOptions
from tests.sinks.mosquitto_broker import Mosquitto

DEVICE = "bench-pi"
WINDOW = 32


def record(i: int) -> Record:
    return Record("reading", i, time.time(), time.monotonic_ns(), DEVICE, "bme280",
                  {"temperature_c": 21.5 + i % 10 / 10, "humidity_pct": 41.2, "pressure_hpa": 1002.7})


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def plain_paho(port: int, n: int, rate: float | None = None) -> tuple[float, list[float]]:
    """Publish n QoS 1 messages; returns (messages/s, per-message publish→PUBACK seconds)."""
    done = threading.Event()
    acks: list[tuple[int, float]] = []

    def on_publish(client, userdata, mid, reason, props):
        # Called with paho's message lock held: take no lock here (publish() holds paho's lock too).
        acks.append((mid, time.perf_counter()))
        if len(acks) == n:
            done.set()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(WINDOW)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"spinal/{DEVICE}/readings/bme280"
    order: list[tuple[int, float]] = []
    t_start = time.perf_counter()
    for i in range(n):
        payload = encode_record(record(i))
        t0 = time.perf_counter()
        info = c.publish(topic, payload, qos=1)
        order.append((info.mid, t0))
        if rate:
            time.sleep(max(0.0, t_start + (i + 1) / rate - time.perf_counter()))
    done.wait(120)
    elapsed = time.perf_counter() - t_start
    # mids are reused after 65535 messages; pair each ack with the oldest unmatched publish of that mid.
    pending: dict[int, list[float]] = {}
    for mid, t0 in order:
        pending.setdefault(mid, []).append(t0)
    lat = [t - pending[mid].pop(0) for mid, t in acks]
    c.disconnect()
    c.loop_stop()
    return n / elapsed, lat


def through_sink(port: int, n: int, sync: str, workdir: Path, rate: float | None = None) -> tuple[float, MqttSink]:
    spool_path = workdir / f"spool-{sync}-{time.monotonic_ns()}.db"
    opts = MqttOptions(host="127.0.0.1", port=port, device_id=DEVICE, max_inflight=WINDOW, close_timeout_s=0)
    sink = MqttSink(opts, SpoolOptions(spool_path, synchronous=sync))  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not sink.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    t_start = time.perf_counter()
    for i in range(n):
        sink.write(record(i))
        if rate:
            time.sleep(max(0.0, t_start + (i + 1) / rate - time.perf_counter()))
    if not sink.wait_drained(300):
        raise RuntimeError(f"spool did not drain: {sink.stats()}")
    elapsed = time.perf_counter() - t_start
    sink.close()
    return n / elapsed, sink


def spool_appends(n: int, sync: str, workdir: Path, batch: int = 1) -> float:
    path = workdir / f"append-{sync}-{batch}-{time.monotonic_ns()}.db"
    payload = encode_record(record(0))
    with Spool(SpoolOptions(path, synchronous=sync)) as sp:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                sp.append("spinal/x/readings/bme280", payload)
        else:
            for _ in range(n // batch):
                sp.append_many([("spinal/x/readings/bme280", payload, False)] * batch)
        return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", persistence=False).start()
        try:
            res: dict[str, list[float]] = {}

            def add(key: str, v: float) -> None:
                res.setdefault(key, []).append(v)
                os.sync()  # start each measurement without others' dirty pages queued ahead of our fsyncs

            for _ in range(a.repeats):
                add("paho", plain_paho(broker.port, a.messages)[0])
                add("sink_full", through_sink(broker.port, a.messages, "full", work)[0])
                add("sink_normal", through_sink(broker.port, a.messages, "normal", work)[0])
                add("append_full", spool_appends(a.messages, "full", work))
                add("append_normal", spool_appends(a.messages, "normal", work))
                add("append_full_b100", spool_appends(a.messages, "full", work, batch=100))
            n_lat = int(100 * a.latency_seconds)
            _, plain_lat = plain_paho(broker.port, n_lat, rate=100)
            _, sink = through_sink(broker.port, n_lat, "full", work, rate=100)
        finally:
            broker.kill()
    med = {k: statistics.median(v) for k, v in res.items()}
    spread = {k: (min(v), max(v)) for k, v in res.items()}
    ms = 1000.0
    print(f"\nmessages per run {a.messages}, repeats {a.repeats}, in-flight window {WINDOW}, "
          f"payload {len(encode_record(record(0)))} bytes\n")
    print("| measurement | median | min–max |")
    print("|---|---:|---:|")
    rows = [
        ("plain paho QoS 1, msgs/s (nothing durable)", "paho"),
        ("MqttSink + spool synchronous=FULL, msgs/s", "sink_full"),
        ("MqttSink + spool synchronous=NORMAL, msgs/s", "sink_normal"),
        ("spool appends/s, FULL (1 message/transaction)", "append_full"),
        ("spool appends/s, NORMAL (1 message/transaction)", "append_normal"),
        ("spool appends/s, FULL, append_many(100)", "append_full_b100"),
    ]
    for label, key in rows:
        lo, hi = spread[key]
        print(f"| {label} | {med[key]:,.0f} | {lo:,.0f}–{hi:,.0f} |")
    print(f"\nratio sink FULL / plain paho: {med['sink_full'] / med['paho']:.2f}; "
          f"sink NORMAL / plain paho: {med['sink_normal'] / med['paho']:.2f}\n")
    pub = list(sink.publish_latency._d)
    dlv = list(sink.delivery_latency._d)
    print(f"latency at 100 msgs/s for {a.latency_seconds:.0f} s ({n_lat} messages), milliseconds:\n")
    print("| path | p50 | p99 |")
    print("|---|---:|---:|")
    print(f"| plain paho publish() → PUBACK | {pct(plain_lat, .5) * ms:.2f} | {pct(plain_lat, .99) * ms:.2f} |")
    print(f"| MqttSink hand-over → PUBACK | {pct(pub, .5) * ms:.2f} | {pct(pub, .99) * ms:.2f} |")
    print(f"| MqttSink write() → PUBACK (spool FULL) | {pct(dlv, .5) * ms:.2f} | {pct(dlv, .99) * ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
