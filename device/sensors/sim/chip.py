"""What every simulated chip shares: the signal it serves, how that signal advances, its noise and its faults.

How a chip's signal advances (``advance``):

* ``"per_read"`` (default, deterministic): every new result the chip produces (a forced or
  single-shot measurement, an ADC conversion round, a burst read of the data registers in
  continuous modes) takes the next sample of the recording; a sampler reading at the recording's
  rate walks through it at that rate. Synthetic signals are evaluated at ``k / rate``.
* ``"time"``: the sample index follows ``time.monotonic()`` since the chip was created, at the
  recording's sample rate (or the chip's configured output rate for synthetic signals).

Recordings loop at their end. The signal is the physical quantity; each chip adds the noise its
datasheet gives for its configuration (``noise`` scales it: 0 = none, 1 = the datasheet's).
"""

from __future__ import annotations

import errno
import random
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from device.errors import BadInput
from device.sensors.base import Sensor
from device.sensors.registers import RegisterMap
from device.sensors.sim.signals import Merged, Recording, Signal, Synthetic


def nack(what: str = "") -> OSError:
    """What smbus2 raises when the address or a byte is not acknowledged."""
    return OSError(errno.EREMOTEIO, "Remote I/O error" + (f" ({what})" if what else ""))


@dataclass
class DeviceFaults:
    """Per-chip faults: ``frozen`` data (the chip repeats its last result), ``corrupt_crc`` probability
    (SHT3x: a CRC byte of a measurement is flipped)."""

    frozen: bool = False
    corrupt_crc: float = 0.0


class SimDevice:
    """A chip on the simulated bus: it sees write segments, read segments and the STOP.

    ``driver`` is the driver class of the real chip: its ``default_address`` is where the simulated
    chip answers unless told otherwise (one place for the address, the driver's)."""

    kind = "device"
    driver: ClassVar[type[Sensor] | None] = None
    channels: tuple[str, ...] = ()

    def __init__(self, *, source: Recording | Synthetic | None = None, advance: str = "per_read",
                 rate_hz: float | None = None, noise: float = 1.0, seed: int = 0) -> None:
        if advance not in ("per_read", "time"):
            raise BadInput(f"simulated {self.kind}: advance must be 'per_read' or 'time' (got {advance!r})")
        synthetic = self.default_signal()
        signal: Signal = synthetic
        if isinstance(source, Recording):
            unknown = [c for c in source.channels if c not in self.channels]
            if unknown:
                raise BadInput(f"recording {source.source}: channel {unknown[0]!r} is not one of the {self.kind}'s "
                               f"channels ({', '.join(self.channels)})")
            signal = Merged(source, synthetic)
        elif source is not None:
            signal = source
        self.source: Signal = signal
        self.advance = advance
        self.rate_hz = rate_hz
        self.noise_scale = noise
        self.seed = seed
        self.faults = DeviceFaults()
        self._rng = np.random.default_rng(seed)
        self._fault_rng = random.Random(seed + 1)
        self._t0 = time.monotonic()
        self._k = -1
        self._last: dict[str, float] | None = None
        self.samples_taken = 0
        self.power_on_reset()

    @property
    def default_address(self) -> int:
        return self.driver.default_address if self.driver is not None else 0x00

    # subclasses ---------------------------------------------------------------------------
    def default_signal(self) -> Synthetic:
        return Synthetic({})

    def power_on_reset(self) -> None:
        """Everything as after power-up."""

    def output_rate_hz(self) -> float:
        """The chip's configured output data rate (for time-based advance of synthetic signals)."""
        return self.rate_hz or 1.0

    def quick(self) -> None:
        """Answer an SMBus quick command (an address-only transaction): an ACK."""

    def on_write(self, data: bytes) -> None:
        raise NotImplementedError

    def on_read(self, n: int) -> bytes:
        raise NotImplementedError

    def on_stop(self) -> None:
        """The STOP condition ends a transaction."""

    # the signal ---------------------------------------------------------------------------
    def next_values(self) -> dict[str, float]:
        """The physical signal for the chip's next result, without noise (the chip adds its own)."""
        if self.faults.frozen and self._last is not None:
            return self._last
        rate = self.source.rate_hz or self.rate_hz or self.output_rate_hz()
        if self.advance == "per_read":
            self._k += 1
            k, t = self._k, self._k / rate
        else:
            t = time.monotonic() - self._t0
            k = int(t * rate)
        self._last = dict(self.source.values(k, t))
        self.samples_taken += 1
        return self._last

    def noisy(self, values: dict[str, float], sigma: dict[str, float]) -> dict[str, float]:
        """``values`` plus white Gaussian noise of ``sigma[channel]`` (1 σ, SI) times the noise scale."""
        out = dict(values)
        if self.noise_scale == 0:
            return out
        names = [c for c in sigma if c in out]
        for c, z in zip(names, self._rng.standard_normal(len(names)).tolist(), strict=True):
            out[c] += z * sigma[c] * self.noise_scale
        return out


class RegisterDevice(SimDevice):
    """A chip with an 8-bit register pointer: a write sets the pointer and writes on from there,
    a read reads on from the pointer (auto-increment). ``regmap`` (the driver's declaration)
    gives the power-on values."""

    regmap: ClassVar[RegisterMap | None] = None

    def power_on_reset(self) -> None:
        self.regs = bytearray(256)
        self.pointer = 0
        if self.regmap is not None:
            for reg in self.regmap:
                if reg.reset:
                    self.regs[reg.address:reg.address + reg.width] = reg.to_bytes(reg.reset)

    def on_write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0]
        for value in data[1:]:
            self.write_reg(self.pointer, value)
            self.pointer = (self.pointer + 1) & 0xFF

    def on_read(self, n: int) -> bytes:
        self.before_read(self.pointer, n)
        out = bytearray()
        for _ in range(n):
            out.append(self.read_reg(self.pointer))
            self.pointer = (self.pointer + 1) & 0xFF
        return bytes(out)

    def write_reg(self, reg: int, value: int) -> None:
        self.regs[reg] = value & 0xFF

    def read_reg(self, reg: int) -> int:
        return self.regs[reg]

    def before_read(self, pointer: int, n: int) -> None:
        """Hook: latch new data before a burst read."""

    def field(self, register: str, name: str) -> Any:
        """A field's value as the chip holds it now (decoded by the driver's register declaration)."""
        assert self.regmap is not None
        reg = self.regmap[register]
        return reg.get(reg.from_bytes(self.regs[reg.address:reg.address + reg.width]), name)
