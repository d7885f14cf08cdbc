"""``spinal run``: the on-device daemon (and ``--check`` to validate a config without running)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from device.cli.common import console, reports_errors


def _setup_logging(level: str) -> None:
    from device.daemon.logs import setup_logging

    setup_logging(level)


@reports_errors
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The TOML config (see firmware/spinal.example.toml).")],
    duration: Annotated[float | None, typer.Option("--duration", min=0.0,
                                                   help="Stop cleanly after this many seconds.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the config (and the bundle, if present) "
                                                         "and exit.")] = False,
    sim: Annotated[bool, typer.Option("--sim", help="Simulated sensors: each sensor's sim table (replay, "
                                                     "faults) on a simulated bus, not /dev/i2c-N.")] = False,
    probe: Annotated[bool, typer.Option("--probe", help="With --check: also ask each sensor's bus, read-only "
                                                         "(address acknowledge, id registers), what answers "
                                                         "there.")] = False,
) -> None:
    """Run the daemon: sample the sensors, run the model on every window, write predictions to the sinks.

    SIGTERM stops it cleanly (exit 0); SIGHUP or a new bundle file reloads the model after a canary.
    """
    if check or probe:
        from device.config import load_config
        from device.daemon import check_config, probe_sensors

        cfg = load_config(config, sim=sim)
        _setup_logging(cfg.daemon.log_level)
        lines = probe_sensors(cfg, sim=sim) if probe else []
        for line in [*check_config(cfg, sim=sim), *lines]:
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        return
    from device.daemon.entry import exec_daemon

    exec_daemon(config, duration, sim)  # the same process, without typer, click and rich: device/daemon/entry.py
