"""``spinal record``: capture labelled training data from the configured sensors (real bus or ``--sim``).

The sensors are the ``[[sensors]]`` of a ``spinal run`` config (driver, bus, address, options, rate and, with
``--sim``, their simulated chips). They are read together on one tick grid at their common ``rate_hz``; a
failed read or a missed tick starts a new segment (no training window straddles a gap). The file is the
dataset format of :mod:`device.recording` (CSV or NPZ by suffix), which ``spinal convert`` and the
training scripts read. Labels come from ``--label`` (the whole recording) and ``--during START-END=LABEL``
(seconds from the start, repeatable; it wins over ``--label``). A summary ends the run: samples, achieved
rate against the configured one, gaps, samples per label, and each channel's range with its unit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from device.cli.common import console, err_console, print_json, reports_errors
from device.errors import BadInput

SETUP_ATTEMPTS = 10


def parse_during(texts: list[str] | None) -> list[tuple[float, float, str]]:
    """``["0-10=walking", "10-20.5=running"]`` → ``[(0, 10, "walking"), (10, 20.5, "running")]``."""
    out = []
    for text in texts or []:
        span, eq, label = text.partition("=")
        start, dash, end = span.partition("-")
        try:
            lo, hi = float(start), float(end)
        except ValueError:
            lo = hi = math.nan
        if not eq or not dash or not label.strip() or not (0 <= lo < hi):
            raise BadInput(f"--during {text!r}: write START-END=LABEL in seconds from the start, e.g. 0-30=walking")
        out.append((lo, hi, label.strip()))
    return out


def _open_sensor(cfg: Any, sim: bool, base_dir: Path) -> Any:
    from device.sensors.base import BusError, SensorError
    from device.sensors.bus import as_bus, open_bus
    from device.sensors.registry import make_driver

    bus: Any
    if sim:
        from device.sensors.sim import sim_bus_for

        bus = sim_bus_for(cfg.driver, cfg.address, cfg.sim, cfg.rate_hz, bus_number=cfg.bus, base_dir=base_dir)
    else:
        bus = open_bus(cfg.bus)
    driver = make_driver(cfg.driver, as_bus(bus), cfg.address, cfg.options)
    for attempt in range(SETUP_ATTEMPTS):  # a glitching bus may fail a set-up the next attempt passes
        try:
            driver.setup()
            return driver
        except (SensorError, BusError):
            if attempt == SETUP_ATTEMPTS - 1:
                raise
            time.sleep(0.05)
    return driver


@reports_errors
def record(
    config: Annotated[Path, typer.Option("--config", "-c", help="The spinal.toml whose [[sensors]] to record.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="The recording: NAME.csv or NAME.npz.")],
    duration: Annotated[float, typer.Option("--duration", min=0.0, help="Seconds to record.")] = 30.0,
    sim: Annotated[bool, typer.Option("--sim", help="Simulated sensors (each sensor's [sensors.sim] table).")] = False,
    sensor: Annotated[list[str] | None, typer.Option("--sensor", help="Record only this sensor id (repeat).")] = None,
    channels: Annotated[str | None, typer.Option(help="Comma list of SENSOR.CHANNEL to keep (default: all).")] = None,
    label: Annotated[str, typer.Option(help="The label of every sample (unless --during says otherwise).")] = "",
    during: Annotated[list[str] | None, typer.Option(
        "--during", help="START-END=LABEL in seconds from the start (repeatable), e.g. 0-30=walking.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Record labelled sensor data for training and for `spinal convert --calibration/--validation`."""
    from device import recording
    from device.config import load_config

    if out.suffix not in (".csv", ".npz"):
        raise BadInput(f"--out {out}: name a .csv or an .npz file")
    if out.exists() and not force:
        raise BadInput(f"{out}: already exists; pass --force to replace it")
    if not 0 < duration <= 7 * 24 * 3600:
        raise BadInput(f"--duration {duration}: give a number of seconds > 0")
    spans = parse_during(during)
    cfg = load_config(config, sim=sim)
    chosen, rate = _chosen_sensors(cfg, sensor, config)
    base_dir = cfg.source.absolute().parent
    drivers = {s.id: _open_sensor(s, sim, base_dir) for s in chosen}
    keep, units = _channels(drivers, channels)
    ticks = round(duration * rate)
    taken = _sample(drivers, keep, rate, ticks)
    if not taken.rows:
        raise BadInput(f"no sample could be read in {duration:g} s ({taken.errors} failed reads); check the sensors "
                       "with spinal sensors read")
    rec = _recording(taken, keep, units, rate, label, spans, out,
                     {"sensors": " ".join(f"{s.id}:{s.driver}" for s in chosen), "device_id": cfg.device_id,
                      "started": datetime.now(UTC).replace(microsecond=0).isoformat(),
                      "source": "simulated" if sim else "i2c"})
    recording.write(out, rec)
    summary = _summary(rec, taken, out, rate, ticks, units)
    if json_out:
        print_json(summary)
        return
    _print_summary(summary, keep, rate, out, taken)


def _chosen_sensors(cfg: Any, sensor: list[str] | None, config: Path) -> tuple[list[Any], float]:
    """The ``[[sensors]]`` to record (``--sensor``, default all) and their common rate."""
    chosen = [s for s in cfg.sensors if not sensor or s.id in sensor]
    missing = sorted(set(sensor or []) - {s.id for s in cfg.sensors})
    if missing or not chosen:
        raise BadInput(f"--sensor {missing[0] if missing else ''}: no such sensor in {config} (sensors: "
                       f"{', '.join(s.id for s in cfg.sensors) or 'none'})")
    rates = {s.rate_hz for s in chosen}
    if len(rates) != 1:
        raise BadInput(f"sensors {', '.join(s.id for s in chosen)} have different rate_hz ({sorted(rates)}); record "
                       "them one at a time with --sensor")
    return chosen, rates.pop()


def _channels(drivers: dict[str, Any], channels: str | None) -> tuple[list[str], tuple[str, ...]]:
    """The ``SENSOR.CHANNEL`` names to keep (``--channels``, default all) and their units."""
    all_names = [f"{sid}.{c}" for sid, d in drivers.items() for c in d.channels]
    keep = [c.strip() for c in channels.split(",") if c.strip()] if channels else all_names
    unknown = [c for c in keep if c not in all_names]
    if unknown:
        raise BadInput(f"--channels: no channel {unknown[0]!r} (channels: {', '.join(all_names)})")
    return keep, tuple(drivers[c.partition(".")[0]].units.get(c.partition(".")[2], "") for c in keep)


@dataclass
class _Taken:
    """What the tick loop read: rows of the kept channels, their times and segments, and what it lost."""

    rows: list[list[float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    errors: int = 0
    missed: int = 0
    gaps: int = 0
    elapsed: float = 0.0


def _sample(drivers: dict[str, Any], keep: list[str], rate: float, ticks: int) -> _Taken:
    """Read every driver on one tick grid; a failed read or missed ticks start a new segment."""
    period = 1.0 / rate
    taken = _Taken()
    segment = 0
    gap_pending = False
    t0 = time.monotonic()
    k = 0
    while k < ticks:
        due = t0 + k * period
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        elif now - due > period:  # late by more than a tick: those samples are lost
            late = int((now - due) / period)
            taken.missed += late
            k += late
            gap_pending = True
            continue
        sample: dict[str, float] = {}
        try:
            for sid, driver in drivers.items():
                values = driver.read()
                sample.update({f"{sid}.{c}": v for c, v in values.items()})
        except Exception as exc:  # a failed read is a gap in the data, not the end of the recording
            taken.errors += 1
            gap_pending = True
            if taken.errors == 1 or taken.errors % 50 == 0:
                err_console.print(f"[yellow]read failed[/] at {k * period:.2f} s ({type(exc).__name__}: {exc})")
            k += 1
            continue
        if gap_pending and taken.rows:
            segment += 1
            taken.gaps += 1
        gap_pending = False
        taken.rows.append([sample[c] for c in keep])
        taken.times.append(k * period)
        taken.segments.append(segment)
        k += 1
    taken.elapsed = time.monotonic() - t0
    return taken


def _recording(taken: _Taken, keep: list[str], units: tuple[str, ...], rate: float, label: str,
               spans: list[tuple[float, float, str]], out: Path, meta: dict[str, str]) -> Any:
    """The :class:`device.recording.Recording` of what was read, labelled by ``--label`` and ``--during``."""
    import numpy as np

    from device import recording

    t = np.asarray(taken.times)
    labels = np.array([label] * len(taken.rows), dtype=object)
    for lo, hi, name in spans:
        labels[(t >= lo) & (t < hi)] = name
    return recording.Recording(np.asarray(taken.rows, dtype=np.float64), tuple(keep), rate, units, labels,
                               np.asarray(taken.segments, np.int64), t, str(out), meta)


def _summary(rec: Any, taken: _Taken, out: Path, rate: float, ticks: int, units: tuple[str, ...]) -> dict[str, Any]:
    """The recording's summary, the run's losses, each channel's range, and warnings."""
    import numpy as np

    summary: dict[str, Any] = rec.summary()
    data = rec.samples
    n = len(taken.rows)
    summary.update({
        "file": str(out), "configured_rate_hz": rate, "achieved_rate_hz": round(n / max(taken.elapsed, 1e-9), 3),
        "failed_reads": taken.errors, "missed_ticks": taken.missed, "gaps": taken.gaps,
        "channel_ranges": {c: {"min": float(data[:, i].min()), "mean": float(data[:, i].mean()),
                               "max": float(data[:, i].max()), "unit": units[i]} for i, c in enumerate(rec.channels)},
    })
    warnings = []
    if n < 0.95 * ticks:
        warnings.append(f"only {n} of {ticks} samples were recorded ({taken.errors} failed reads, {taken.missed} "
                        "missed ticks)")
    if summary["achieved_rate_hz"] < 0.95 * rate:
        warnings.append(f"the achieved rate {summary['achieved_rate_hz']:g} Hz is below the configured {rate:g} Hz")
    unlabelled = int(np.sum(rec.labels == ""))
    if unlabelled:
        warnings.append(f"{unlabelled} samples have no label (give --label or --during)")
    summary["warnings"] = warnings
    return summary


def _print_summary(summary: dict[str, Any], keep: list[str], rate: float, out: Path, taken: _Taken) -> None:
    console.print(f"recorded {summary['samples']} samples ({summary['seconds']:g} s) of {len(keep)} channels at "
                  f"{rate:g} Hz (achieved {summary['achieved_rate_hz']:g} Hz) into {out}")
    console.print(f"segments: {summary['segments']} ({taken.gaps} gaps; {taken.errors} failed reads, {taken.missed} "
                  "missed ticks)")
    console.print("labels: " + ", ".join(f"{k} {v} samples" for k, v in summary["labels"].items()))
    for c, r in summary["channel_ranges"].items():
        console.print(f"  {c:<24} {r['min']:>11.4g} .. {r['max']:<11.4g} mean {r['mean']:.4g} {r['unit']}")
    for w in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
