"""Describing simulated chips: the typed :class:`SimSpec` (a sensor's ``[sensors.sim]`` table, or one entry of
a ``--sim-config`` description), checked at load with errors that name the key; the registry of simulated chips;
building a :class:`SimBus` from a description.

Every chip answers at its driver's default address unless the spec names another one (the address lives
on the driver class, nowhere else).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.schema import KeyPath, SchemaError, build, path_text
from device.sensors import ads1115 as ads
from device.sensors import bme280 as bme
from device.sensors import mpu6050 as mpu
from device.sensors import sht3x as sht
from device.sensors.base import Sensor
from device.sensors.sim.ads1115 import SimADS1115
from device.sensors.sim.bme280 import SimBME280
from device.sensors.sim.bus import BusFaults, SimBus
from device.sensors.sim.chip import SimDevice
from device.sensors.sim.mpu6050 import SimMPU6050
from device.sensors.sim.physics import FACES
from device.sensors.sim.sht3x import SimSHT3x
from device.sensors.sim.signals import Recording


class SimSpecError(SchemaError):
    """A simulated chip's description is wrong: ``path`` is the offending key's path within the table
    checked; the message names the table (``sim: unknown key 'x'``)."""

    def __init__(self, where: str, path: KeyPath, message: str) -> None:
        super().__init__(path, message, message)
        self.where = where

    @property
    def key(self) -> str:
        """The dotted key, table included (``sim.seed``)."""
        return f"{self.where}.{path_text(self.path)}" if self.path else self.where


# --------------------------------------------------------------------------------------------
# The registry: one record per simulated chip


@dataclass(frozen=True)
class SimChip:
    """A simulated chip: its name, how to make one, the driver of the real chip (whose ``default_address``
    is where it answers) and the spec keys only it understands."""

    name: str
    factory: Callable[..., SimDevice]
    driver: type[Sensor]
    keys: frozenset[str] = frozenset()

    @property
    def default_address(self) -> int:
        return self.driver.default_address

    def __call__(self, **kwargs: Any) -> SimDevice:
        return self.factory(**kwargs)


_TIMED = frozenset({"enforce_timing"})
_IMU = frozenset({"orientation", "gravity", "offsets"})

SIM_CHIPS: dict[str, SimChip] = {
    "bme280": SimChip("bme280", lambda **kw: SimBME280(chip="bme280", **kw), bme.BME280, _TIMED),
    "bmp280": SimChip("bmp280", lambda **kw: SimBME280(chip="bmp280", **kw), bme.BMP280, _TIMED),
    "mpu6050": SimChip("mpu6050", SimMPU6050, mpu.MPU6050, _IMU),
    "sht3x": SimChip("sht3x", SimSHT3x, sht.SHT3x, _TIMED),
    "ads1115": SimChip("ads1115", SimADS1115, ads.ADS1115, _TIMED),
}


# --------------------------------------------------------------------------------------------
# The spec


Orientation = tuple[float, float, float] | str


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Field parsers (device.schema "parse" metadata): the raw TOML/JSON value -> the typed one, or a ValueError
# saying what is wrong with it.

def _flag(value: Any) -> bool:
    """A true/false setting: TOML/JSON booleans only (``bool("no")`` is True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _probability(value: Any) -> float:
    """A probability 0..1 (a number, not a string or a bool)."""
    if not _number(value):
        raise ValueError(f"{value!r} is not a probability (0..1)")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{float(value)} is not a probability (0..1)")
    return float(value)


def _address(value: Any) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        address = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an I2C address (write it like 0x68)") from None
    if not 0x03 <= address <= 0x77:
        raise ValueError(f"{address:#04x} is outside 0x03..0x77")
    return address


def _integer(value: Any) -> int:
    if not _number(value) or not float(value).is_integer():
        raise ValueError(f"{value!r} is not a valid int")
    return int(value)


def _positive(value: Any) -> float:
    if not _number(value):
        raise ValueError(f"{value!r} is not a number")
    if value <= 0:
        raise ValueError(f"{value!r} is not a valid positive float")
    return float(value)


def _noise(value: Any) -> float:
    if isinstance(value, bool):
        value = float(value)
    if not _number(value) or value < 0:
        raise ValueError(f"{value!r} is not a valid float (a scale: 0 = none, 1 = the datasheet's)")
    return float(value)


def _advance(value: Any) -> str:
    if value not in ("per_read", "time"):
        raise ValueError(f"advance must be 'per_read' or 'time' (got {value!r})")
    return str(value)


def _file_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a file name")
    return value


def _orientation(value: Any) -> Orientation:
    if isinstance(value, str):
        if value == "random" or value in FACES:
            return value
        raise ValueError(f"{value!r} is not 'random' or one of {', '.join(FACES)} (or give roll, pitch, yaw in "
                         "degrees)")
    if isinstance(value, list | tuple) and len(value) == 3 and all(_number(v) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise ValueError(f"{value!r} is not roll, pitch, yaw in degrees (e.g. [0, 90, 0]), 'random' or one of "
                     f"{', '.join(FACES)}")


@dataclass(frozen=True)
class SimSpec:
    """How one simulated chip behaves. Defaults are a realistic chip on a synthetic signal.

    ``kind``: the chip (in a ``--sim-config`` description, when the entry's name is not one); ``address``:
    where it answers (default: the driver's default address); ``replay``: a CSV/NPZ recording in SI units
    (an IMU's body motion, without gravity), ``sample_rate_hz`` overriding the file's; ``advance``:
    "per_read" or "time"; ``rate_hz``: the time base of a synthetic signal; ``noise``: scale of the
    datasheet's noise (0 = none, true/false = 1/0); ``seed``: of the noise, the offsets and a random
    orientation; ``enforce_timing`` (bme280/bmp280, sht3x, ads1115): results take their conversion time;
    ``frozen``, ``corrupt_crc``: faults. MPU-6050 only: ``orientation`` (roll, pitch, yaw in degrees, a face
    such as "z_up", or "random"), ``gravity`` and ``offsets`` (true: add 1 g along the orientation and
    the part's zero-g/zero-rate offsets). With :func:`sim_bus_for` also the bus's ``nack_probability``
    and ``fault_seed``.
    """

    kind: str | None = None
    address: int | None = field(default=None, metadata={"parse": _address})
    replay: str | None = field(default=None, metadata={"parse": _file_name})
    sample_rate_hz: float | None = field(default=None, metadata={"parse": _positive})
    advance: str = field(default="per_read", metadata={"parse": _advance})
    rate_hz: float | None = field(default=None, metadata={"parse": _positive})
    noise: float = field(default=1.0, metadata={"parse": _noise})
    seed: int = field(default=0, metadata={"parse": _integer})
    enforce_timing: bool | None = field(default=None, metadata={"parse": _flag})
    frozen: bool = field(default=False, metadata={"parse": _flag})
    corrupt_crc: float = field(default=0.0, metadata={"parse": _probability})
    orientation: Orientation = field(default="z_up", metadata={"parse": _orientation})
    gravity: bool = field(default=True, metadata={"parse": _flag})
    offsets: bool = field(default=True, metadata={"parse": _flag})
    nack_probability: float = field(default=0.0, metadata={"parse": _probability})
    fault_seed: int = field(default=0, metadata={"parse": _integer})


CHIP_KEYS = ("kind", "address", "replay", "sample_rate_hz", "advance", "rate_hz", "noise", "seed", "enforce_timing",
             "frozen", "corrupt_crc", "orientation", "gravity", "offsets")
BUS_KEYS = ("nack_probability", "fault_seed")


def _err(where: str, key: str, message: str) -> SimSpecError:
    return SimSpecError(where, (key,), f"{where}.{key}: {message}")


def _value(parse: Callable[[Any], Any], value: Any, where: str, key: str) -> Any:
    """One setting outside a :class:`SimSpec` (the ``faults`` table of a description)."""
    try:
        return parse(value)
    except ValueError as exc:
        raise _err(where, key, str(exc)) from None


def parse_sim_spec(chip: str, table: dict[str, Any] | None, *, where: str = "sim",
                   bus_keys: bool = False) -> SimSpec:
    """Check a description of the simulated ``chip`` (a driver name) and type it (:mod:`device.schema`, by the
    parsers of :class:`SimSpec`'s fields); no I/O (a replay file is read when the chip is made). Raises
    :class:`SimSpecError` naming the key."""
    if table is not None and not isinstance(table, dict):
        raise SimSpecError(where, (), f"{where}: expected a table of settings, got {table!r}")
    table = dict(table or {})
    known = CHIP_KEYS + (BUS_KEYS if bus_keys else ())
    for key in table:
        if key not in known:
            raise SimSpecError(where, (key,), f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
    kind = str(table.get("kind", chip)).lower()
    if kind not in SIM_CHIPS:
        raise SimSpecError(where, ("kind",) if "kind" in table else (),
                           f"{where}: no simulated chip {kind!r}; simulated chips: {', '.join(SIM_CHIPS)}")
    record = SIM_CHIPS[kind]
    for key in table:
        if key in _TIMED | _IMU and key not in record.keys:
            what = "has no conversion time" if key in _TIMED else f"has no {key} (only the mpu6050 simulation has)"
            raise _err(where, key, f"the {kind} simulation {what}")
    try:
        return build(SimSpec, {**table, "kind": kind})
    except SchemaError as exc:
        raise SimSpecError(where, exc.path, f"{where}.{path_text(exc.path)}: {exc.detail}") from None


def check_sim_table(driver: str, table: dict[str, Any] | None, where: str = "sim") -> SimSpec:
    """A sensor's ``[sensors.sim]`` table, checked as ``spinal run --sim`` will use it (for a config loader:
    a typo is an error at load, naming the key, not a sensor that never answers)."""
    if table and "kind" in table:
        raise _err(where, "kind", f"the simulated chip is the sensor's driver ({driver}); remove 'kind'")
    return parse_sim_spec(driver, table, where=where, bus_keys=True)


# --------------------------------------------------------------------------------------------
# Making chips and buses


def make_device(spec: SimSpec, *, base_dir: str | Path | None = None, rate_hz: float | None = None) -> SimDevice:
    """The simulated chip a :class:`SimSpec` describes (reads its replay file, relative to ``base_dir``)."""
    assert spec.kind is not None
    record = SIM_CHIPS[spec.kind]
    kwargs: dict[str, Any] = {"advance": spec.advance, "noise": spec.noise, "seed": spec.seed}
    if spec.replay is not None:
        path = Path(spec.replay)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        kwargs["source"] = Recording.load(path, spec.sample_rate_hz)
    if spec.rate_hz or rate_hz:
        kwargs["rate_hz"] = spec.rate_hz or rate_hz
    if spec.enforce_timing is not None:
        kwargs["enforce_timing"] = spec.enforce_timing
    if "orientation" in record.keys:
        kwargs.update(orientation=spec.orientation, gravity=spec.gravity, offsets=spec.offsets)
    device = record(**kwargs)
    device.faults.frozen = spec.frozen
    device.faults.corrupt_crc = spec.corrupt_crc
    return device


def make_sim_device(kind: str, spec: dict[str, Any] | None = None, *, where: str | None = None,
                    base_dir: str | Path | None = None) -> tuple[int, SimDevice]:
    """(address, device) for one entry of a description (see :func:`build_sim_bus`)."""
    typed = parse_sim_spec(kind, spec, where=where or f"sim.{kind}")
    assert typed.kind is not None
    address = typed.address if typed.address is not None else SIM_CHIPS[typed.kind].default_address
    return address, make_device(typed, base_dir=base_dir)


def build_sim_bus(description: dict[str, Any] | None = None, *, bus: int = 1,
                  base_dir: str | Path | None = None) -> SimBus:
    """A :class:`SimBus` from a small description, e.g.::

        {"mpu6050": {"address": 0x68, "replay": "walk.csv", "orientation": "random", "seed": 3},
         "room": {"kind": "bme280", "address": "0x77"},
         "faults": {"nack_probability": 0.01, "seed": 1}}

    A key names a simulated chip (``bme280``, ``bmp280``, ``mpu6050``, ``sht3x``, ``ads1115``) or is
    any name with a ``kind``; its settings are those of :class:`SimSpec` (relative replay paths against
    ``base_dir``). ``None``: :func:`default_sim_bus`.
    """
    if description is None:
        return default_sim_bus(bus=bus)
    devices: dict[int, SimDevice] = {}
    faults = BusFaults()
    for name, spec in description.items():
        if name == "faults":
            if not isinstance(spec, dict):
                raise SimSpecError("sim", ("faults",),
                                   f"sim.faults: expected a table (nack_probability, seed), got {spec!r}")
            for key in spec:
                if key not in ("nack_probability", "seed"):
                    raise SimSpecError("sim", ("faults", key),
                                       f"sim.faults: unknown key {key!r}; known keys: nack_probability, seed")
            p = _value(_probability, spec.get("nack_probability", 0.0), "sim.faults", "nack_probability")
            faults = BusFaults(p, _value(_integer, spec.get("seed", 0), "sim.faults", "seed"))
            continue
        if not isinstance(spec, dict):
            raise SimSpecError("sim", (name,), f"sim.{name}: expected a table of settings, got {spec!r}")
        address, device = make_sim_device(name, spec, where=f"sim.{name}", base_dir=base_dir)
        if address in devices:
            raise _err(f"sim.{name}", "address", f"{address:#04x} is already taken by another simulated chip")
        devices[address] = device
    return SimBus(devices, faults, bus=bus)


def default_sim_bus(*, bus: int = 1, seed: int = 0) -> SimBus:
    """One of each simulated chip at its driver's default address, or the driver's next address where that
    is taken: bme280 0x76, bmp280 0x77 (its default 0x76 holds the bme280), mpu6050 0x68, sht3x 0x44,
    ads1115 0x48."""
    devices: dict[int, SimDevice] = {}
    for record in SIM_CHIPS.values():
        free = [a for a in (record.default_address, *record.driver.addresses) if a not in devices]
        devices[free[0]] = record(seed=seed)
    return SimBus(devices, bus=bus)


def sim_bus_for(driver: str, address: int | None = None, sim: SimSpec | dict[str, Any] | None = None,
                rate_hz: float | None = None, *, bus_number: int = 1, base_dir: str | Path | None = None) -> SimBus:
    """A :class:`SimBus` holding the one simulated chip a configured sensor needs (``spinal run --sim``).

    ``sim`` is the sensor's ``[sensors.sim]`` spec (a loaded config's, typed) or table (see :class:`SimSpec`),
    ``address`` the sensor's (``None``: the driver's default address, where the simulated chip then answers
    too). ``rate_hz`` (the sampler's rate) is the time base of a synthetic signal unless ``sim`` sets it.
    """
    spec = sim if isinstance(sim, SimSpec) else check_sim_table(driver, sim)
    assert spec.kind is not None
    addr = spec.address if spec.address is not None else address
    if addr is None:
        addr = SIM_CHIPS[spec.kind].default_address
    device = make_device(spec, base_dir=base_dir, rate_hz=rate_hz)
    return SimBus({addr: device}, BusFaults(spec.nack_probability, spec.fault_seed), bus=bus_number)
