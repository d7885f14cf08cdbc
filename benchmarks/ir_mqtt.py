"""Instruction counts per message (callgrind) for plain paho vs MqttSink; used by bench_mqtt.py --callgrind.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python benchmarks/ir_mqtt.py PORT CASE N SPOOLDIR
CASE: paho | sink-<batch>. Runs N messages to the broker on PORT and exits once all are acknowledged.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as paho

from benchmarks.bench_mqtt import DEVICE, TOPIC, WINDOW, record
from device.sinks.mqtt import MqttOptions, MqttSink, encode_record
from device.sinks.spool import SpoolOptions


def main() -> int:
    port, case, n, spool_dir = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    if case == "paho":
        done = threading.Event()
        acks = [0]

        def on_publish(client, userdata, mid, reason, props):
            acks[0] += 1
            if acks[0] == n:
                done.set()

        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ir-plain", protocol=paho.MQTTv5)
        c.max_inflight_messages_set(WINDOW)
        c.on_publish = on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        for i in range(n):
            c.publish(TOPIC, encode_record(record(i)), qos=1)
        if n:
            done.wait(600)
        c.disconnect()
        c.loop_stop()
        return 0
    batch = int(case.split("-")[1])
    opts = MqttOptions(host="127.0.0.1", port=port, device_id=DEVICE, max_inflight=WINDOW, close_timeout_s=0)
    sink = MqttSink(opts, SpoolOptions(spool_dir / f"ir-{time.monotonic_ns()}.db"))
    while not sink.connected:
        time.sleep(0.01)
    for i in range(0, n, batch):
        sink.write_many([record(j) for j in range(i, min(n, i + batch))])
    while sink.acked < n or sink.spool.depth:
        time.sleep(0.01)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
