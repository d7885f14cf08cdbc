"""The daemon configuration's typed records (built by :mod:`device.config.load` through :mod:`device.schema`).

Field metadata: "min"/"max" (inclusive), "gt" (exclusive), "choices", "check" (see :mod:`device.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from device.errors import BadInput
from device.pipeline import PostprocessConfig

MIN_I2C_ADDRESS = 0x03
MAX_I2C_ADDRESS = 0x77


class ConfigError(BadInput):
    """The configuration file is unreadable or invalid (exit code 2). ``path``: the key path, where one is
    concerned (``("sensors", 0, "address")``)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: which bundle to run and how."""

    bundle: Path
    runtime: Literal["auto", "litert", "tflite-runtime", "onnxruntime"] = "auto"
    artifact: str = "auto"
    threads: int = field(default=1, metadata={"min": 1, "max": 64})
    delegate: str = "auto"
    fail_closed: bool = False
    trusted_keys: tuple[Path, ...] = ()
    require_signature: bool = False
    input: str | None = None
    latency_budget_ms: float = field(default=100.0, metadata={"gt": 0})
    canary: bool = True
    watch: bool = True
    watch_interval_s: float = field(default=2.0, metadata={"gt": 0})


@dataclass(frozen=True)
class SensorConfig:
    """``[[sensors]]``: one I2C device, sampled by its own thread at ``rate_hz``."""

    id: str
    driver: str
    bus: int = field(default=1, metadata={"min": 0, "max": 255})
    address: int | None = None
    rate_hz: float = field(default=1.0, metadata={"gt": 0, "max": 10000})
    # The driver's options dataclass once loaded (e.g. MPU6050Options): parsed once, by the config.
    options: Any = field(default_factory=dict)
    # The typed [sensors.sim] spec once loaded (a device.sensors.sim.SimSpec), checked at load.
    sim: Any = field(default_factory=dict)
    readings: bool = False
    retry_initial_s: float = field(default=0.5, metadata={"gt": 0})
    retry_max_s: float = field(default=30.0, metadata={"gt": 0})
    # A failed sensor is probed (does it acknowledge its address?) this often; set up again once it does.
    probe_interval_s: float = field(default=0.2, metadata={"min": 0.01, "max": 60})
    # Readings whose raw values repeat exactly this many reads in a row are stale (a frozen chip); 0: off.
    stale_after: int = field(default=50, metadata={"min": 0, "max": 1_000_000})


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: /healthz and /metrics; loopback only unless told otherwise."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9108, metadata={"min": 0, "max": 65535})
    max_connections: int = field(default=16, metadata={"min": 1, "max": 1024})
    timeout_s: float = field(default=5.0, metadata={"gt": 0, "max": 300})


@dataclass(frozen=True)
class DaemonConfig:
    """``[daemon]``: queues, watchdog and status cadence."""

    queue_windows: int = field(default=4, metadata={"min": 1, "max": 1024})
    queue_records: int = field(default=10000, metadata={"min": 1})
    status_interval_s: float = field(default=10.0, metadata={"gt": 0})
    # The daemon's loops beat every 0.2-0.25 s when idle: a shorter limit would call healthy threads stalled.
    stall_after_s: float = field(default=5.0, metadata={"min": 0.5})
    # While sensors are merely starting (no sample yet) within this long after the start, /healthz is not degraded.
    startup_grace_s: float = field(default=5.0, metadata={"min": 0, "max": 600})
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class SinkConfig:
    """``[[sinks]]``: ``type`` picks the sink; its other keys are that type's options."""

    type: str
    name: str
    kinds: tuple[str, ...]
    options: Any


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path
    device_id: str
    model: ModelConfig
    sensors: tuple[SensorConfig, ...]
    binding: dict[str, str]
    postprocess: PostprocessConfig
    sinks: tuple[SinkConfig, ...]
    http: HttpConfig
    daemon: DaemonConfig
    state_dir: Path | None = None

    def sensor(self, sensor_id: str) -> SensorConfig:
        for s in self.sensors:
            if s.id == sensor_id:
                return s
        raise KeyError(sensor_id)
