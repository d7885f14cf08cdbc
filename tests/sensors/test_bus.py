"""The bus: helpful open errors, retries with bounded backoff, counters, the per-bus lock."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

from device.sensors.base import BusError, SensorError
from device.sensors.bus import I2CBus, RetryPolicy, as_bus, open_bus


class Flaky:
    """An smbus2-like object whose read fails with ``codes`` (one per call) before it succeeds."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.calls = 0

    def read_byte_data(self, addr: int, reg: int) -> int:
        self.calls += 1
        if self.codes:
            code = self.codes.pop(0)
            raise OSError(code, "injected")
        return 0x42

    read_i2c_block_data = write_byte_data = i2c_rdwr = read_byte_data


def _bus(raw: object, **kw) -> tuple[I2CBus, list[float]]:
    bus = I2CBus(raw, label="test bus", **kw)
    sleeps: list[float] = []
    bus._sleep = sleeps.append
    return bus, sleeps


def test_no_such_bus_says_how_to_enable_i2c() -> None:
    assert not Path("/dev/i2c-97").exists()
    with pytest.raises(SensorError) as err:
        open_bus(97)
    msg = str(err.value)
    assert "/dev/i2c-97 does not exist" in msg and "raspi-config" in msg and "dtparam=i2c_arm=on" in msg
    assert "\n" not in msg


def test_permission_denied_names_the_i2c_group(monkeypatch: pytest.MonkeyPatch) -> None:
    import smbus2

    def denied(path: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(smbus2, "SMBus", denied)
    with pytest.raises(SensorError, match=r"no permission to open /dev/i2c-1: add the user to the i2c group"):
        open_bus(1)


def test_real_smbus2_on_a_file_that_is_no_i2c_adapter(tmp_path: Path) -> None:
    # The real smbus2 opens the file, then its I2C_FUNCS ioctl fails with ENOTTY.
    fake = tmp_path / "i2c-fake"
    fake.write_bytes(b"")
    with pytest.raises(SensorError, match=r"i2c-fake is not an I2C adapter"):
        open_bus(str(fake))


def test_transient_errors_are_retried_and_counted() -> None:
    raw = Flaky([errno.EREMOTEIO, errno.ETIMEDOUT, errno.EIO])
    bus, sleeps = _bus(raw)
    assert bus.read_byte_data(0x68, 0x75) == 0x42
    s = bus.stats()
    assert (s.transactions, s.errors, s.retries, s.failures) == (1, 3, 3, 0)
    assert s.by_errno == {errno.EREMOTEIO: 1, errno.ETIMEDOUT: 1, errno.EIO: 1}
    assert s.by_address == {0x68: 3}
    assert sleeps == [0.0005, 0.001, 0.002]                 # exponential


def test_backoff_is_bounded_and_gives_up_with_a_named_error() -> None:
    raw = Flaky([errno.EREMOTEIO] * 10)
    bus, sleeps = _bus(raw, retry=RetryPolicy(retries=6, base_delay_s=0.001, max_delay_s=0.004))
    with pytest.raises(BusError) as err:
        bus.read_byte_data(0x76, 0xD0)
    assert err.value.errno == errno.EREMOTEIO
    assert "0x76" in str(err.value) and "test bus" in str(err.value) and "after 7 attempts" in str(err.value)
    assert sleeps == [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]
    assert raw.calls == 7 and bus.stats().failures == 1


def test_other_errors_are_not_retried() -> None:
    raw = Flaky([errno.EINVAL])
    bus, sleeps = _bus(raw)
    with pytest.raises(BusError, match="EINVAL"):
        bus.read_byte_data(0x10, 0)
    assert raw.calls == 1 and sleeps == []


def test_per_call_retry_override() -> None:
    raw = Flaky([errno.EREMOTEIO, errno.EREMOTEIO])
    bus, _ = _bus(raw)
    with pytest.raises(BusError):
        bus.read_byte_data(0x44, 0, retries=0)
    assert raw.calls == 1


def test_as_bus_refuses_a_non_bus() -> None:
    with pytest.raises(SensorError, match="not an smbus2-compatible bus"):
        as_bus(object())


class Recorder:
    """Counts how many transactions overlap."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.guard = threading.Lock()

    def read_byte_data(self, addr: int, reg: int) -> int:
        with self.guard:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.0002)
        with self.guard:
            self.active -= 1
        return 0

    read_i2c_block_data = write_byte_data = i2c_rdwr = read_byte_data


def test_one_lock_per_bus_serializes_threads() -> None:
    raw = Recorder()
    # Two wrappers (two drivers' buses) on the same bus share one lock.
    buses = [I2CBus(raw), I2CBus(raw)]
    assert buses[0]._lock is buses[1]._lock

    def hammer(bus: I2CBus) -> None:
        for _ in range(100):
            bus.read_byte_data(0x68, 0)

    threads = [threading.Thread(target=hammer, args=(buses[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert raw.max_active == 1


def test_locked_holds_the_bus_across_calls() -> None:
    raw = Recorder()
    bus = I2CBus(raw)
    other = I2CBus(raw)
    order: list[str] = []
    with bus.locked():
        t = threading.Thread(target=lambda: (other.read_byte_data(1, 0), order.append("other")))
        t.start()
        time.sleep(0.02)
        order.append("mine")
        bus.read_byte_data(1, 0)
    t.join()
    assert order == ["mine", "other"]


def test_buses_opened_on_one_device_node_share_a_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    import smbus2

    class FakeSMBus:
        def __init__(self, path: str) -> None:
            self.path = path

        def close(self) -> None:
            pass

    monkeypatch.setattr(smbus2, "SMBus", FakeSMBus)
    a, b, c = open_bus(1), open_bus("/dev/i2c-1"), open_bus(2)
    assert a._lock is b._lock and a._lock is not c._lock
    assert a.label == "I2C bus 1" and b.label == "I2C bus 1" and c.number == 2
    assert I2CBus(a.raw)._lock is a._lock            # a wrapper made later shares it too
