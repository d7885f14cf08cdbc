"""``spinal run``: the daemon that ties sensors, the model and the sinks together.

One module per responsibility:

- :mod:`~device.daemon.service` the :class:`Daemon` (threads, reload, supervise, shutdown);
- :mod:`~device.daemon.sampler` one thread per sensor, degrade and recover;
- :mod:`~device.daemon.router` samples -> windows, and records -> sinks in batches;
- :mod:`~device.daemon.model` the model's life cycle (load, verify, canary, swap);
- :mod:`~device.daemon.health` the watchdog condition, /healthz, rate-limited error logs;
- :mod:`~device.daemon.metrics` the Prometheus metrics;
- :mod:`~device.daemon.seq` sequence numbers that survive restarts;
- :mod:`~device.daemon.check` ``spinal run --check`` and ``--probe``;
- :mod:`~device.daemon.logs` the loggers' set-up (time, level, ``log_level``).
"""

from __future__ import annotations

from device.daemon.check import check_config, probe_sensors
from device.daemon.metrics import Metrics
from device.daemon.model import ActiveModel, CanaryResult, ModelSlot, bundle_fingerprint, load_candidate, run_canary
from device.daemon.router import OutItem, Output, Router, WindowJob
from device.daemon.sampler import Sampler, SensorOpener, SensorState, describe_sensor, sensor_channels
from device.daemon.seq import SeqCounter
from device.daemon.service import Daemon, RunOptions
from device.percentiles import Recent

__all__ = [
    "ActiveModel", "CanaryResult", "Daemon", "Metrics", "ModelSlot", "OutItem", "Output", "Recent", "Router",
    "RunOptions", "Sampler", "SensorOpener", "SensorState", "SeqCounter", "WindowJob", "bundle_fingerprint",
    "check_config", "describe_sensor", "load_candidate", "probe_sensors", "run_canary", "sensor_channels",
]
