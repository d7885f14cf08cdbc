"""``spinal sensors``: find I2C devices (``scan``) and read a sensor (``read``), on a real or a simulated bus."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from device.cli.common import console, print_json, reports_errors, rich_console
from device.errors import BadInput

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(name="sensors", help="Find and read I2C sensors (real bus or --sim).", no_args_is_help=True,
                  add_completion=False,
                  rich_markup_mode=None)

BusOpt = Annotated[int, typer.Option("--bus", "-b", min=0, help="I2C bus number (/dev/i2c-N).")]
SimOpt = Annotated[bool, typer.Option("--sim", help="Use a simulated bus instead of /dev/i2c-N.")]
SimConfigOpt = Annotated[Path | None, typer.Option(
    "--sim-config", help="JSON or TOML description of the simulated bus (implies --sim; see docs/sensors.md).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (JSON; JSON lines for read).")]


def _sim_description(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a table of simulated chips")
    return data


def _open(bus: int, sim: bool, sim_config: Path | None, replay: Path | None = None,
          spec: tuple[str, int] | None = None) -> Any:
    from device.sensors.bus import open_bus

    if replay is not None and not (sim or sim_config):
        raise BadInput("--replay needs --sim: a recording can only be replayed on the simulated bus")
    if not (sim or sim_config):
        return open_bus(bus)
    from device.sensors import sim as simmod
    from device.sensors.bus import I2CBus

    if sim_config is not None:
        raw = simmod.build_sim_bus(_sim_description(sim_config), bus=bus, base_dir=sim_config.parent)
    else:
        raw = simmod.default_sim_bus(bus=bus)
    if replay is not None and spec is not None:
        kind, address = spec
        addr, device = simmod.make_sim_device(kind, {"address": address, "replay": str(replay)}, where="--replay")
        raw.devices[addr] = device
    return I2CBus(raw)


def _grid(addresses: set[int], first: int, last: int) -> str:
    lines = ["     " + " ".join(f"{c:2x}" for c in range(16))]
    for row in range(0, 0x80, 0x10):
        cells = []
        for col in range(16):
            a = row + col
            cells.append("  " if not first <= a <= last else f"{a:02x}" if a in addresses else "--")
        lines.append(f"{row:02x}:  " + " ".join(cells))
    return "\n".join(lines)


@app.command("scan")
@reports_errors
def scan_cmd(
    bus: BusOpt = 1,
    sim: SimOpt = False,
    sim_config: SimConfigOpt = None,
    first: Annotated[str, typer.Option("--first", help="First address probed.")] = "0x03",
    last: Annotated[str, typer.Option("--last", help="Last address probed.")] = "0x77",
    json_out: JsonOpt = False,
) -> None:
    """List the devices that answer on a bus, like i2cdetect, and name the known chips by their id registers.

    Probing never writes a data byte (quick write, or a read byte at EEPROM addresses); identification
    only reads id registers. Exit 0 even when nothing answers.
    """
    from device.sensors.registry import parse_address, scan

    lo, hi = parse_address(first), parse_address(last)
    if lo > hi:
        raise BadInput(f"--first {first} is above --last {last}")
    with _open(bus, sim, sim_config) as i2c:
        found = scan(i2c, lo, hi)
        label = i2c.label
    if json_out:
        print_json({"bus": label, "devices": [f.to_dict() for f in found]})
        return
    console.print(f"[bold]{label}[/]: {len(found)} device(s)")
    console.print(_grid({f.address for f in found}, lo, hi), markup=False)
    if found:
        from rich.table import Table

        table = Table(title_justify="left")
        for col in ("address", "chip", "how"):
            table.add_column(col)
        for f in found:
            table.add_row(f"{f.address:#04x}", f.chip or "?", f.detail)
        console.print(table)


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BadInput(f"--option {text!r}: write it as KEY=VALUE, e.g. -o accel_range_g=4")
    return key.strip(), value.strip()


def _table(spec: str, reading: Any, n: int, retries: int, rate: float) -> Table:
    from rich.table import Table

    table = Table(title=f"{spec}  ·  {n} reads at {rate:.1f} Hz, {retries} bus retries", title_justify="left")
    for col in ("channel", "value", "unit"):
        table.add_column(col)
    if reading is not None:
        for ch, v in reading.values.items():
            table.add_row(ch, f"{v:.6g}", reading.units.get(ch, ""))
    return table


@app.command("read")
@reports_errors
def read_cmd(
    spec: Annotated[str, typer.Argument(help="DRIVER[@ADDRESS], e.g. bme280@0x76, mpu6050, ads1115@0x49.")],
    bus: BusOpt = 1,
    sim: SimOpt = False,
    sim_config: SimConfigOpt = None,
    replay: Annotated[Path | None, typer.Option(
        "--replay", help="With --sim: the simulated chip replays this recording (CSV/NPZ in SI units).")] = None,
    rate: Annotated[float, typer.Option("--rate", "-r", min=0.001, max=10000.0, help="Reads per second.")] = 1.0,
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="Stop after N reads (0: until Ctrl-C).")] = 0,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Driver option KEY=VALUE (repeatable), e.g. -o accel_range_g=4.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set a sensor up and read it at --rate: a live table, or JSON lines with --json.

    Exit 0 when done, 1 when the bus fails for good, 2 for a bad spec, option or missing device.
    """
    from rich.live import Live

    from device.sensors.pacing import Pacer
    from device.sensors.registry import make_driver, parse_spec

    kind, address = parse_spec(spec)
    options = dict(_parse_option(o) for o in option or [])
    name = f"{kind}@{address:#04x}"
    with _open(bus, sim, sim_config, replay, (kind, address)) as i2c:
        driver = make_driver(kind, i2c, address, options)
        driver.setup()
        pacer = Pacer(rate)  # the daemon sampler's schedule
        n = 0
        t0 = time.monotonic()
        try:
            if json_out:
                while count == 0 or n < count:
                    pacer.wait()
                    reading = driver.reading(name)
                    n += 1
                    sys.stdout.write(json.dumps(reading.to_dict(), ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                    pacer.advance()
                return
            with Live(_table(name, None, 0, 0, 0.0), console=rich_console(), refresh_per_second=10,
                      transient=False) as live:
                last_draw = 0.0
                while count == 0 or n < count:
                    pacer.wait()
                    reading = driver.reading(name)
                    n += 1
                    now = time.monotonic()
                    if now - last_draw >= 0.1 or n == count:
                        achieved = n / (now - t0) if now > t0 else 0.0
                        live.update(_table(name, reading, n, i2c.stats().retries, achieved))
                        last_draw = now
                    pacer.advance()
        except KeyboardInterrupt:
            pass
