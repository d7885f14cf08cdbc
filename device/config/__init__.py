"""The daemon's configuration: one TOML file (stdlib ``tomllib``) → typed, validated dataclasses.

Every error is one line that names the file, the line (where it can be found), the key and what
is expected, e.g. ``spinal.toml:14: sensors[0].adress: unknown key; did you mean 'address'?``.
Unknown keys are errors, so a typo never silently falls back to a default. Relative paths are
taken relative to the config file. ``firmware/spinal.example.toml`` documents every key.

Sections: ``device_id`` and ``state_dir`` at the top; ``[model]``, ``[[sensors]]``,
``[binding]``, ``[postprocess]``, ``[[sinks]]``, ``[http]``, ``[daemon]``.

Modules: :mod:`~device.config.models` (the records), :mod:`~device.config.load` (the file),
:mod:`~device.config.sensors` and :mod:`~device.config.sinks` (their sections),
:mod:`~device.config.toml_lines` (keys -> lines). The typing itself is :mod:`device.schema`'s.
"""

from device.config.load import load_config, parse_config
from device.config.models import (
    MAX_I2C_ADDRESS,
    MIN_I2C_ADDRESS,
    Config,
    ConfigError,
    DaemonConfig,
    HttpConfig,
    ModelConfig,
    SensorConfig,
    SinkConfig,
)
from device.config.sensors import NoBus, known_drivers
from device.config.toml_lines import KeyLocator, locate
from device.pipeline import PostprocessConfig
from device.schema import did_you_mean
from device.sinks.base import RECORD_KINDS

__all__ = [
    "MAX_I2C_ADDRESS", "MIN_I2C_ADDRESS", "RECORD_KINDS", "Config", "ConfigError", "DaemonConfig", "HttpConfig",
    "KeyLocator", "ModelConfig", "NoBus", "PostprocessConfig", "SensorConfig", "SinkConfig", "did_you_mean",
    "known_drivers", "load_config", "locate", "parse_config",
]
