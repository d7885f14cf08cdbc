"""MQTT sink benchmark: the durable spool against plain paho, to the same local Mosquitto, in one run.

    python benchmarks/bench_mqtt.py [--messages 5000] [--repeats 5] [--latency-seconds 5]

Each round runs every case once, in turn (interleaved rounds), and the table shows the median over the
rounds with the min–max beside it, and each Spinal case's ratio to plain paho of the same round kind:

- saturation: N messages as fast as they can go, first write()/publish() to the last PUBACK.
  Plain paho QoS 1 (nothing durable: paho keeps unacknowledged messages in memory) publishes one at a
  time; MqttSink with its spool at synchronous=FULL (power-cut safe: the WAL is fsynced before
  write() returns) gets the records one write() each, or write_many() batches of 10 and 100 (the
  daemon's router hands the sink what has accumulated); NORMAL (SIGKILL safe) one write() each.
  Both encode the same records with the same encoder, with the same in-flight window.
- write → PUBACK latency, p50 and p99: from the start of write()/publish() to the PUBACK callback, at
  saturation (queueing included) and at a steady 100 messages/s.

The broker runs on a free loopback port with persistence off; no subscriber (the broker acks).
Each measurement starts after an os.sync() (an ext4 fsync also waits for other files' dirty data).
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

from device.percentiles import Recent, quantile
from device.sinks.base import Record
from device.sinks.mqtt import MqttOptions, MqttSink, encode_record
from device.sinks.spool import SpoolOptions
from tests.sinks.mosquitto_broker import Mosquitto

DEVICE = "bench-pi"
WINDOW = 32
TOPIC = f"spinal/{DEVICE}/readings/bme280"


def record(i: int) -> Record:
    return Record("reading", i, time.time(), time.monotonic_ns(), DEVICE, "bme280",
                  {"temperature_c": 21.5 + i % 10 / 10, "humidity_pct": 41.2, "pressure_hpa": 1002.7})


def plain_paho(port: int, n: int, rate: float | None = None) -> tuple[float, list[float]]:
    """Publish n QoS 1 messages; returns (messages/s, per-message publish() → PUBACK seconds)."""
    done = threading.Event()
    acks: list[tuple[int, float]] = []

    def on_publish(client, userdata, mid, reason, props):
        # Called with paho's message lock held: take no lock here (publish() holds paho's lock too).
        acks.append((mid, time.monotonic()))
        if len(acks) == n:
            done.set()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-plain", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(WINDOW)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.2)
    order: list[tuple[int, float]] = []
    t_start = time.monotonic()
    for i in range(n):
        t0 = time.monotonic()
        payload = encode_record(record(i))
        info = c.publish(TOPIC, payload, qos=1)
        order.append((info.mid, t0))
        if rate:
            time.sleep(max(0.0, t_start + (i + 1) / rate - time.monotonic()))
    done.wait(120)
    elapsed = time.monotonic() - t_start
    # mids are reused after 65535 messages; pair each ack with the oldest unmatched publish of that mid.
    pending: dict[int, list[float]] = {}
    for mid, t0 in order:
        pending.setdefault(mid, []).append(t0)
    lat = [t - pending[mid].pop(0) for mid, t in acks]
    c.disconnect()
    c.loop_stop()
    return n / elapsed, lat


def through_sink(port: int, n: int, sync: str, workdir: Path, batch: int = 1,
                 rate: float | None = None, direct: bool = True) -> tuple[float, list[float]]:
    """Write n records through MqttSink; returns (messages/s, per-message write() → PUBACK seconds).
    ``direct=False``: every packet goes through paho's network thread (the sink before DirectWrite)."""
    spool_path = workdir / f"spool-{sync}-{time.monotonic_ns()}.db"
    opts = MqttOptions(host="127.0.0.1", port=port, device_id=DEVICE, max_inflight=WINDOW, close_timeout_s=0)
    sink = MqttSink(opts, SpoolOptions(spool_path, synchronous=sync))  # type: ignore[arg-type]
    sink.publisher.delivery_latency = Recent(n)
    if not direct and sink.publisher.direct is not None:
        sink.publisher.direct.enabled = False
    deadline = time.monotonic() + 10
    while not sink.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # The end is the last PUBACK's callback, as for plain paho (not when the sender takes it, up to a
    # tick later): count the callbacks paho makes into the sink, in paho's thread.
    done, acks = threading.Event(), [0]
    inner = sink._client.on_publish

    def on_publish(client, userdata, mid, reason, props):
        inner(client, userdata, mid, reason, props)
        acks[0] += 1
        if acks[0] == n:
            done.set()

    sink._client.on_publish = on_publish
    t_start = time.monotonic()
    if batch == 1:
        for i in range(n):
            sink.write(record(i))
            if rate:
                time.sleep(max(0.0, t_start + (i + 1) / rate - time.monotonic()))
    else:
        for i in range(0, n, batch):
            sink.write_many([record(j) for j in range(i, min(n, i + batch))])
    done.wait(300)
    elapsed = time.monotonic() - t_start
    deadline = time.monotonic() + 10
    while sink.acked < n and time.monotonic() < deadline:  # the sender has taken every PUBACK
        time.sleep(0.01)
    if sink.acked < n:
        raise RuntimeError(f"not all acknowledged: {sink.stats()}")
    lat = sink.delivery_latency.values()
    sink.close()
    return n / elapsed, lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latency-seconds", type=float, default=5.0)
    ap.add_argument("--cases", default="", help="comma-separated subset of the cases (default: all)")
    a = ap.parse_args()
    n, n_lat = a.messages, int(100 * a.latency_seconds)
    cases = {
        "paho": lambda p, w: plain_paho(p, n),
        "full_b1": lambda p, w: through_sink(p, n, "full", w),
        "full_b10": lambda p, w: through_sink(p, n, "full", w, batch=10),
        "full_b100": lambda p, w: through_sink(p, n, "full", w, batch=100),
        "normal_b1": lambda p, w: through_sink(p, n, "normal", w),
        "paho_100hz": lambda p, w: plain_paho(p, n_lat, rate=100),
        "full_100hz": lambda p, w: through_sink(p, n_lat, "full", w, rate=100),
        "normal_100hz": lambda p, w: through_sink(p, n_lat, "normal", w, rate=100),
        "threaded_100hz": lambda p, w: through_sink(p, n_lat, "full", w, rate=100, direct=False),
        "threaded_b100": lambda p, w: through_sink(p, n, "full", w, batch=100, direct=False),
    }
    if a.cases:
        cases = {k: v for k, v in cases.items() if k in a.cases.split(",")}
    rate: dict[str, list[float]] = {k: [] for k in cases}
    p50: dict[str, list[float]] = {k: [] for k in cases}
    p99: dict[str, list[float]] = {k: [] for k in cases}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", persistence=False).start()
        try:
            for _ in range(a.repeats):
                for key, fn in cases.items():
                    os.sync()
                    r, lat = fn(broker.port, work)
                    rate[key].append(r)
                    p50[key].append(quantile(sorted(lat), 0.5))
                    p99[key].append(quantile(sorted(lat), 0.99))
        finally:
            broker.kill()
    med = {k: statistics.median(v) for k, v in rate.items()}
    m50 = {k: statistics.median(v) for k, v in p50.items()}
    m99 = {k: statistics.median(v) for k, v in p99.items()}
    print(f"\n{n} messages per saturation run, {n_lat} at 100 msgs/s, {a.repeats} interleaved rounds, in-flight "
          f"window {WINDOW}, payload {len(encode_record(record(0)))} bytes, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| case | msgs/s median (min–max) | ratio to paho | write→PUBACK p50 ms | ratio to paho | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {
        "paho": ("plain paho QoS 1, publish() each (nothing durable)", "paho"),
        "full_b1": ("MqttSink FULL, write() each", "paho"),
        "full_b10": ("MqttSink FULL, write_many(10)", "paho"),
        "full_b100": ("MqttSink FULL, write_many(100)", "paho"),
        "normal_b1": ("MqttSink NORMAL, write() each", "paho"),
        "paho_100hz": ("plain paho at 100 msgs/s", "paho_100hz"),
        "full_100hz": ("MqttSink FULL, write() each at 100 msgs/s", "paho_100hz"),
        "normal_100hz": ("MqttSink NORMAL, write() each at 100 msgs/s", "paho_100hz"),
        "threaded_100hz": ("MqttSink FULL at 100 msgs/s, paho's thread writes", "paho_100hz"),
        "threaded_b100": ("MqttSink FULL, write_many(100), paho's thread writes", "paho"),
    }
    for key, (label, ref) in labels.items():
        if key not in cases or ref not in cases:
            continue
        lo, hi = min(rate[key]), max(rate[key])
        print(f"| {label} | {med[key]:,.0f} ({lo:,.0f}–{hi:,.0f}) | {med[key] / med[ref]:.2f} | "
              f"{m50[key] * 1e3:.3f} | {m50[key] / m50[ref]:.2f} | {m99[key] * 1e3:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
