"""The simulated I2C bus: an ``smbus2.SMBus`` look-alike that turns every SMBus call into what goes over
the wire (write segments and read segments to one address, then a STOP) and serves simulated chips.

Bus faults: NACK with probability ``p`` (``OSError(121)``), a stuck bus (``OSError(110)`` until it frees),
a device unplugged and plugged back in with its registers at power-on values.
"""

from __future__ import annotations

import ctypes
import errno
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from device.sensors.sim.chip import SimDevice, nack

I2C_M_RD = 0x0001


@dataclass
class BusFaults:
    """Bus-wide faults: every transaction is NACKed (OSError 121) with probability ``nack_probability``."""

    nack_probability: float = 0.0
    seed: int | None = 0


class SimBus:
    """An smbus2.SMBus look-alike serving simulated chips. ``devices``: {address: SimDevice}."""

    def __init__(self, devices: dict[int, SimDevice] | None = None, faults: BusFaults | None = None, *,
                 bus: int = 1) -> None:
        self.devices: dict[int, SimDevice] = dict(devices or {})
        self.faults = faults or BusFaults()
        self._rng = random.Random(self.faults.seed)
        self._gone: set[int] = set()
        self._stuck_until = 0.0
        self._wire = threading.Lock()
        self.bus_number = bus
        self.label = f"simulated I2C bus {bus}"
        self.bus_lock = threading.RLock()   # shared by every I2CBus wrapping this SimBus
        self.fd: int | None = None
        self.address: int | None = None
        self.force = False
        self.pec = 0
        self.writes: deque[tuple[int, bytes]] = deque(maxlen=10000)   # every data byte written, per address
        self.transactions = 0
        self.nacks_injected = 0
        self.funcs: int
        try:
            from smbus2 import I2cFunc

            self.funcs = I2cFunc(0x0EFF0009)  # I2C, SMBus quick/byte/byte-data/word/block/i2c-block, like i2c-bcm2835
        except ImportError:  # pragma: no cover
            self.funcs = 0x0EFF0009

    # smbus2 life cycle ------------------------------------------------------------------------
    def open(self, bus: int | str) -> None:
        self.bus_number = bus if isinstance(bus, int) else self.bus_number

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SimBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enable_pec(self, enable: bool = True) -> None:
        self.pec = int(enable)

    # fault control ------------------------------------------------------------------------
    def unplug(self, address: int) -> None:
        """The device stops answering (its address is NACKed) until :meth:`replug`."""
        self._gone.add(address)

    def replug(self, address: int, *, power_cycle: bool = True) -> None:
        """The device is back; with ``power_cycle`` its registers are at power-on values (it needs set-up)."""
        self._gone.discard(address)
        if power_cycle and address in self.devices:
            self.devices[address].power_on_reset()

    def stick(self, seconds: float) -> None:
        """The bus hangs (SDA held low) for ``seconds``: every transaction times out meanwhile."""
        self._stuck_until = time.monotonic() + seconds

    def set_nack_probability(self, p: float) -> None:
        self.faults.nack_probability = p

    # the wire -----------------------------------------------------------------------------
    def _address_phase(self, address: int) -> SimDevice:
        if time.monotonic() < self._stuck_until:
            raise OSError(errno.ETIMEDOUT, "Connection timed out (bus stuck)")
        if self.faults.nack_probability and self._rng.random() < self.faults.nack_probability:
            self.nacks_injected += 1
            raise nack("injected")
        device = self.devices.get(address)
        if device is None or address in self._gone:
            raise nack(f"no device at {address:#04x}")
        return device

    @contextmanager
    def _transaction(self, address: int) -> Iterator[SimDevice]:
        with self._wire:
            self.transactions += 1
            device = self._address_phase(address)
            try:
                yield device
            finally:
                device.on_stop()

    def _write(self, device: SimDevice, address: int, data: bytes | list[int]) -> None:
        data = bytes(data)
        self.writes.append((address, data))
        device.on_write(data)

    def _wr(self, address: int, write: bytes | list[int], nread: int) -> bytes:
        with self._transaction(address) as dev:
            self._write(dev, address, write)
            return dev.on_read(nread) if nread else b""

    # SMBus transactions -------------------------------------------------------------------
    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        with self._transaction(i2c_addr) as dev:
            dev.quick()

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        with self._transaction(i2c_addr) as dev:
            return dev.on_read(1)[0]

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [value & 0xFF])

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._wr(i2c_addr, [register & 0xFF], 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._wr(i2c_addr, [register & 0xFF, value & 0xFF], 0)

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        lo, hi = self._wr(i2c_addr, [register & 0xFF], 2)
        return lo | (hi << 8)     # SMBus words are little-endian on the wire

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._wr(i2c_addr, [register & 0xFF, value & 0xFF, (value >> 8) & 0xFF], 0)

    def process_call(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> int:
        lo, hi = self._wr(i2c_addr, [register & 0xFF, value & 0xFF, (value >> 8) & 0xFF], 2)
        return lo | (hi << 8)

    def read_block_data(self, i2c_addr: int, register: int, force: bool | None = None) -> list[int]:
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [register & 0xFF])
            count = min(dev.on_read(1)[0], 32)
            return list(dev.on_read(count)) if count else []

    def write_block_data(self, i2c_addr: int, register: int, data: list[int], force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._wr(i2c_addr, [register & 0xFF, len(data), *data], 0)

    def block_process_call(self, i2c_addr: int, register: int, data: list[int],
                           force: bool | None = None) -> list[int]:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        with self._transaction(i2c_addr) as dev:
            self._write(dev, i2c_addr, [register & 0xFF, len(data), *data])
            count = min(dev.on_read(1)[0], 32)
            return list(dev.on_read(count)) if count else []

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force: bool | None = None) -> list[int]:
        if length > 32:
            raise ValueError("Desired block length over 32 bytes")
        return list(self._wr(i2c_addr, [register & 0xFF], length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int],
                             force: bool | None = None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._wr(i2c_addr, [register & 0xFF, *data], 0)

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transaction of ``smbus2.i2c_msg`` messages (repeated starts, one STOP at the end)."""
        with self._wire:
            self.transactions += 1
            touched: list[SimDevice] = []
            try:
                for msg in i2c_msgs:
                    device = self._address_phase(msg.addr)
                    if device not in touched:
                        touched.append(device)
                    if msg.flags & I2C_M_RD:
                        data = device.on_read(msg.len)
                        ctypes.memmove(msg.buf, data, msg.len)
                    else:
                        self._write(device, msg.addr, ctypes.string_at(msg.buf, msg.len))
            finally:
                for device in touched:
                    device.on_stop()
