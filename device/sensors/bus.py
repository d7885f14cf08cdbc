"""The I2C bus: the ONLY module that opens ``/dev/i2c-N`` (through smbus2).

:class:`I2CBus` wraps an smbus2-compatible object (a real ``smbus2.SMBus`` or a
:class:`device.sensors.sim.SimBus`) and adds what a sampler needs:

* a per-bus lock (one ``RLock`` per bus, shared by every ``I2CBus`` on that bus) so that several
  sampler threads never interleave their transactions; hold :meth:`I2CBus.locked` across a
  multi-step exchange (command, wait, read);
* retries with bounded exponential backoff on the transient errors EREMOTEIO (121, a NACK),
  ETIMEDOUT and EIO, then a :class:`BusError` naming the bus, the address and the errno;
* counters (:class:`BusStats`) for the metrics endpoint.
"""

from __future__ import annotations

import contextlib
import errno as errno_mod
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from device.errors import MissingDependency
from device.sensors.base import BusError, SensorError

R = TypeVar("R")

TRANSIENT_ERRNOS = frozenset({errno_mod.EREMOTEIO, errno_mod.ETIMEDOUT, errno_mod.EIO})

ENABLE_I2C_HINT = ("enable I2C on Raspberry Pi OS with `sudo raspi-config nonint do_i2c 0` (or add "
                   "`dtparam=i2c_arm=on` to /boot/firmware/config.txt) and reboot; `ls /dev/i2c-*` lists the buses")
GROUP_HINT = ("add the user to the i2c group (`sudo usermod -aG i2c $USER`, then log in again) "
              "or install firmware/99-spinal-i2c.rules")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient error is retried: ``retries`` more attempts, sleeping
    ``base_delay_s * 2**n`` (at most ``max_delay_s``) between them."""

    retries: int = 3
    base_delay_s: float = 0.0005
    max_delay_s: float = 0.008

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * (2.0 ** attempt))


@dataclass
class BusStats:
    """Counters of one bus (a snapshot from :meth:`I2CBus.stats` is a copy)."""

    transactions: int = 0      # calls made through the bus (each may take several attempts)
    errors: int = 0            # failed attempts (each OSError seen)
    retries: int = 0           # attempts made again after a transient error
    failures: int = 0          # calls that failed for good (raised BusError)
    by_errno: Counter[int] = field(default_factory=Counter)
    by_address: Counter[int] = field(default_factory=Counter)  # failed attempts per address

    def copy(self) -> BusStats:
        return BusStats(self.transactions, self.errors, self.retries, self.failures,
                        Counter(self.by_errno), Counter(self.by_address))


_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def bus_lock(key: str) -> threading.RLock:
    """The lock shared by every :class:`I2CBus` on the bus device ``key`` (a real path: a bounded set)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.RLock())


def _lock_of(raw: Any) -> threading.RLock:
    """The lock of an smbus2-like object: its own ``bus_lock`` (SimBus has one), else one attached to it."""
    lock = getattr(raw, "bus_lock", None) or getattr(raw, "_spinal_bus_lock", None)
    if lock is None:
        with _LOCKS_GUARD:
            lock = getattr(raw, "_spinal_bus_lock", None)
            if lock is None:
                lock = threading.RLock()
                # An object that takes no attributes gets a lock for this wrapper only.
                with contextlib.suppress(AttributeError):
                    raw._spinal_bus_lock = lock
    return lock


class I2CBus:
    """An smbus2-like bus with a lock, retries and counters. Drivers talk to the chips through this."""

    def __init__(self, raw: Any, *, label: str | None = None, number: int | str | None = None,
                 retry: RetryPolicy | None = None, owns: bool = False) -> None:
        self.raw = raw
        self.number = number if number is not None else getattr(raw, "bus_number", "N")
        self.label = label or getattr(raw, "label", None) or f"I2C bus {self.number}"
        self.retry = retry or RetryPolicy()
        self._stats = BusStats()
        self._lock = _lock_of(raw)
        self._owns = owns
        self._sleep = time.sleep

    # ---------------------------------------------------------------- life cycle

    def close(self) -> None:
        if self._owns:
            self.raw.close()

    def __enter__(self) -> I2CBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def locked(self) -> Iterator[I2CBus]:
        """Hold the bus for a multi-step exchange (the lock is re-entrant)."""
        with self._lock:
            yield self

    def stats(self) -> BusStats:
        with self._lock:
            return self._stats.copy()

    # ---------------------------------------------------------------- the retry loop

    def call(self, address: int, what: str, func: Callable[..., R], *args: Any, retries: int | None = None) -> R:
        """Run ``func(*args)`` under the lock, retrying transient OSErrors; raise :class:`BusError` at the end."""
        budget = self.retry.retries if retries is None else retries
        attempt = 0
        with self._lock:
            self._stats.transactions += 1
            while True:
                try:
                    return func(*args)
                except OSError as exc:
                    code = exc.errno
                    self._stats.errors += 1
                    self._stats.by_errno[code or 0] += 1
                    self._stats.by_address[address] += 1
                    if code in TRANSIENT_ERRNOS and attempt < budget:
                        self._stats.retries += 1
                        self._sleep(self.retry.delay(attempt))
                        attempt += 1
                        continue
                    self._stats.failures += 1
                    name = errno_mod.errorcode.get(code or 0, "error")
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise BusError(f"{what} at {address:#04x} on {self.label} failed{tries}: "
                                   f"[{name} {code}] {exc.strerror or exc}", errno=code) from exc

    # ---------------------------------------------------------------- SMBus-style operations

    def write_quick(self, address: int, *, retries: int | None = None) -> None:
        self.call(address, "quick write", self.raw.write_quick, address, retries=retries)

    def read_byte(self, address: int, *, retries: int | None = None) -> int:
        value: int = self.call(address, "read byte", self.raw.read_byte, address, retries=retries)
        return value

    def read_byte_data(self, address: int, register: int, *, retries: int | None = None) -> int:
        value: int = self.call(address, f"read of register {register:#04x}", self.raw.read_byte_data, address,
                               register, retries=retries)
        return value

    def write_byte_data(self, address: int, register: int, value: int, *, retries: int | None = None) -> None:
        self.call(address, f"write of register {register:#04x}", self.raw.write_byte_data, address, register,
                  value, retries=retries)

    def read_block(self, address: int, register: int, length: int, *, retries: int | None = None) -> bytes:
        """A burst read of ``length`` bytes from ``register`` on (one combined transaction)."""
        data = self.call(address, f"read of {length} bytes at register {register:#04x}",
                         self.raw.read_i2c_block_data, address, register, length, retries=retries)
        return bytes(data)

    def write_block(self, address: int, register: int, data: bytes | list[int], *,
                    retries: int | None = None) -> None:
        self.call(address, f"write of {len(data)} bytes at register {register:#04x}",
                  self.raw.write_i2c_block_data, address, register, list(data), retries=retries)

    def write_bytes(self, address: int, data: bytes, *, retries: int | None = None) -> None:
        """A plain I2C write (no register byte): for command-based chips like the SHT3x."""
        from smbus2 import i2c_msg

        def go() -> None:
            self.raw.i2c_rdwr(i2c_msg.write(address, bytes(data)))

        self.call(address, f"write of command {bytes(data).hex()}", go, retries=retries)

    def read_bytes(self, address: int, length: int, *, retries: int | None = None) -> bytes:
        """A plain I2C read of ``length`` bytes (no register byte)."""
        from smbus2 import i2c_msg

        def go() -> bytes:
            msg = i2c_msg.read(address, length)
            self.raw.i2c_rdwr(msg)
            return bytes(msg)

        return self.call(address, f"read of {length} bytes", go, retries=retries)


def as_bus(bus: Any) -> I2CBus:
    """An :class:`I2CBus` for ``bus`` (returned as is when it already is one)."""
    if isinstance(bus, I2CBus):
        return bus
    if not all(hasattr(bus, m) for m in ("read_i2c_block_data", "write_byte_data", "i2c_rdwr")):
        raise SensorError(f"{type(bus).__name__} is not an smbus2-compatible bus")
    return I2CBus(bus)


def bus_path(bus: int | str) -> str:
    """``1`` -> ``/dev/i2c-1``; a path is returned as is."""
    if isinstance(bus, int) or (isinstance(bus, str) and bus.isdigit()):
        return f"/dev/i2c-{int(bus)}"
    return str(bus)


def open_bus(bus: int | str = 1, *, retry: RetryPolicy | None = None) -> I2CBus:
    """Open ``/dev/i2c-N`` with smbus2. Errors say how to enable I2C or get the permission."""
    try:
        import smbus2
    except ImportError as exc:
        raise MissingDependency("reading sensors needs smbus2; install it with: pip install 'spinal[device]'") from exc
    path = bus_path(bus)
    try:
        raw = smbus2.SMBus(path)
    except FileNotFoundError as exc:
        raise SensorError(f"I2C bus {path} does not exist: {ENABLE_I2C_HINT}") from exc
    except PermissionError as exc:
        raise SensorError(f"no permission to open {path}: {GROUP_HINT}") from exc
    except OSError as exc:
        if exc.errno == errno_mod.ENOTTY:
            raise SensorError(f"{path} is not an I2C adapter (the I2C ioctls fail on it); `ls /dev/i2c-*` "
                              "lists the buses") from exc
        raise SensorError(f"cannot open {path}: {exc.strerror or exc}") from exc
    m = re.fullmatch(r"/dev/i2c-(\d+)", path)
    number: int | str = int(m.group(1)) if m else path
    # Every SMBus opened on the same device node shares one lock.
    raw._spinal_bus_lock = bus_lock(os.path.realpath(path))  # type: ignore[attr-defined]
    return I2CBus(raw, label=f"I2C bus {number}" if isinstance(number, int) else path, number=number,
                  retry=retry, owns=True)
