"""The daemon's logging: every logger of the project (``spinal.*`` and ``device.*``: the daemon, the MQTT
sink and its spool, Home Assistant discovery, paho's messages through the MQTT sink) writes one line per
message to stderr with time, level and logger name, at ``[daemon] log_level``."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOT_LOGGERS = ("spinal", "device")


def setup_logging(level: str) -> None:
    """Send the project's loggers to stderr at ``level`` (``debug``, ``info``, ``warning``, ``error``).

    Their messages do not propagate further (no second copy through the root logger's handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for name in ROOT_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
