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
- :mod:`~device.daemon.logs` the loggers' set-up (time, level, ``log_level``);
- :mod:`~device.daemon.entry` ``spinal run``'s serving process (the CLI hands over to it, same PID).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.daemon.check import check_config, probe_sensors
    from device.daemon.metrics import Metrics
    from device.daemon.model import (
        ActiveModel,
        CanaryResult,
        ModelSlot,
        bundle_fingerprint,
        load_candidate,
        run_canary,
    )
    from device.daemon.router import OutItem, Output, Router, WindowJob
    from device.daemon.sampler import Sampler, SensorOpener, SensorState, describe_sensor, sensor_channels
    from device.daemon.seq import SeqCounter
    from device.daemon.service import Daemon, RunOptions
    from device.percentiles import Recent

# Imported on first use: ``device.daemon.logs`` (the CLI's first import) and ``spinal run`` without
# ``--check`` need none of the others' imports.
_WHERE = {
    "check_config": "check", "probe_sensors": "check", "Metrics": "metrics", "ActiveModel": "model",
    "CanaryResult": "model", "ModelSlot": "model", "bundle_fingerprint": "model", "load_candidate": "model",
    "run_canary": "model", "OutItem": "router", "Output": "router", "Router": "router", "WindowJob": "router",
    "Sampler": "sampler", "SensorOpener": "sampler", "SensorState": "sampler", "describe_sensor": "sampler",
    "sensor_channels": "sampler", "SeqCounter": "seq", "Daemon": "service", "RunOptions": "service",
}


def __getattr__(name: str) -> Any:
    if name == "Recent":
        from device.percentiles import Recent

        return Recent
    if name not in _WHERE:
        raise AttributeError(f"module 'device.daemon' has no attribute {name!r}")
    return getattr(importlib.import_module(f"device.daemon.{_WHERE[name]}"), name)


__all__ = [
    "ActiveModel", "CanaryResult", "Daemon", "Metrics", "ModelSlot", "OutItem", "Output", "Recent", "Router",
    "RunOptions", "Sampler", "SensorOpener", "SensorState", "SeqCounter", "WindowJob", "bundle_fingerprint",
    "check_config", "describe_sensor", "load_candidate", "probe_sensors", "run_canary", "sensor_channels",
]
