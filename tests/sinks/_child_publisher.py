"""Child process for test_sigkill.py: publishes through MqttSink until it is SIGKILLed.

Prints ``started`` once the sink is open, then ``<kind> <seq>`` after each ``write()`` returned
(i.e. after the record was accepted: on disk); with ``--batch N`` it writes N pairs per ``write_many()``
and prints their lines after it returned. With ``--count N --drain S`` it writes N pairs, waits
up to S seconds for the spool to empty, prints ``drained`` and closes cleanly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from device.sinks.base import Record
from device.sinks.mqtt import MqttOptions, MqttSink
from device.sinks.spool import SpoolOptions


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--spool", type=Path, required=True)
    ap.add_argument("--device", default="pi-test")
    ap.add_argument("--base", type=int, default=0)
    ap.add_argument("--count", type=int, default=-1)
    ap.add_argument("--drain", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=1, help="write_many() this many reading/prediction pairs at once")
    a = ap.parse_args()
    opts = MqttOptions(host="127.0.0.1", port=a.port, device_id=a.device, reconnect_min_s=0.1,
                       reconnect_max_s=0.5, close_timeout_s=0)
    sink = MqttSink(opts, SpoolOptions(a.spool))
    print("started", flush=True)
    i = 0
    while a.count < 0 or i < a.count:
        pairs = range(i, i + a.batch if a.count < 0 else min(a.count, i + a.batch))
        records = []
        for j in pairs:
            n = a.base + j
            records.append(Record("reading", n, time.time(), time.monotonic_ns(), a.device, "bme280",
                                  {"temperature_c": 21.5, "humidity_pct": 40.0}))
            records.append(Record("prediction", n, time.time(), time.monotonic_ns(), a.device, "activity",
                                  {"label": "walk", "score": 0.8}))
        if a.batch == 1:
            for r in records:
                sink.write(r)
                print(f"{r.kind} {r.seq}", flush=True)
        else:
            sink.write_many(records)  # one transaction: all of them accepted when it returns
            print("".join(f"{r.kind} {r.seq}\n" for r in records), end="", flush=True)
        i += len(pairs)
        time.sleep(0.002)
    if a.drain:
        print("drained" if sink.wait_drained(a.drain) else "not drained", flush=True)
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
