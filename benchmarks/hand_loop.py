"""The loop a user would write by hand for the daemon benchmark's job (the anchor of ``bench_daemon.py --hand``).

An MPU-6050 read at 100 Hz and a BME280 at 1 Hz over I2C, a 50-sample window every 25 samples run through the
LiteRT interpreter, predictions and readings appended to a JSON-lines file (flushed per record, fsync once a
second). No HTTP, no metrics, no supervision. The simulated chips stand in for the hardware, as
``spinal run --sim`` uses them; the drivers are used as a user would use a sensor library.

    python benchmarks/hand_loop.py MODEL.tflite OUT.jsonl SECONDS
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from device.sensors.bme280 import BME280
from device.sensors.mpu6050 import MPU6050
from device.sensors.sim import sim_bus_for

RATE, WINDOW, HOP = 100.0, 50, 25


def main() -> None:
    model, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    it = Interpreter(model_path=model, num_threads=1)
    it.allocate_tensors()
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    imu = MPU6050(sim_bus_for("mpu6050", rate_hz=RATE))
    env = BME280(sim_bus_for("bme280", 0x76, rate_hz=1.0), 0x76)
    imu.setup()
    env.setup()
    window: list[list[float]] = []
    fh = open(out, "a")  # noqa: SIM115
    start = time.monotonic()
    tick, last_sync = 0, start
    while time.monotonic() - start < seconds:
        tick += 1
        time.sleep(max(0.0, start + tick / RATE - time.monotonic()))
        window.append(list(imu.read().values()))
        if tick % int(RATE) == 0:
            fh.write(json.dumps({"kind": "reading", "sensor": "env", "values": env.read(), "t": time.time()}) + "\n")
            fh.flush()
        if len(window) >= WINDOW:
            x = np.resize(np.asarray(window[-WINDOW:], dtype=np.float32), inp["shape"])  # no DSP chain here
            it.set_tensor(inp["index"], x)
            it.invoke()
            scores = it.get_tensor(outp["index"])[0]
            fh.write(json.dumps({"kind": "prediction", "class": int(np.argmax(scores)), "t": time.time()}) + "\n")
            fh.flush()
            del window[:HOP]
        if time.monotonic() - last_sync >= 1.0:
            os.fsync(fh.fileno())
            last_sync = time.monotonic()
    fh.close()


if __name__ == "__main__":
    main()
