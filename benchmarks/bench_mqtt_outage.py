"""Recovery of the MQTT sink after a broker outage, with the default reconnect settings.

    python benchmarks/bench_mqtt_outage.py [--outage 10] [--rounds 3]

A real Mosquitto on loopback (tests/sinks/mosquitto_broker.py) is killed for ``--outage`` seconds while
the sink is connected; the figure is the time from the broker's restart to the sink's reconnection
(``probe_interval_s`` 1.0, ``reconnect_min_s`` 0.5: the defaults). Prints one line per round and the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from device.sinks.mqtt import MqttOptions, MqttSink  # noqa: E402
from device.sinks.spool import SpoolOptions  # noqa: E402
from tests.sinks.mosquitto_broker import Mosquitto  # noqa: E402


def wait(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return False


def one_round(work: Path, outage_s: float) -> float:
    broker = Mosquitto(work / "broker").start()
    sink = MqttSink(MqttOptions(host="127.0.0.1", port=broker.port, device_id="bench"),
                    SpoolOptions(work / "spool.db"))
    try:
        assert wait(lambda: sink.connected, 15), "the sink did not connect"
        broker.kill()
        time.sleep(outage_s)
        broker.start()
        t0 = time.monotonic()
        assert wait(lambda: sink.connected, 120), "the sink did not reconnect"
        return time.monotonic() - t0
    finally:
        sink.close()
        broker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            times.append(one_round(Path(tmp), args.outage))
        print(f"round {i + 1}: connected again {times[-1]:.2f} s after the broker returned ({args.outage:g} s outage)")
    print(f"median {statistics.median(times):.2f} s over {len(times)} rounds")


if __name__ == "__main__":
    main()
