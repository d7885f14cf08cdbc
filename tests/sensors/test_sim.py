"""SimBus as an smbus2 stand-in: plain smbus2 code and a third-party driver run on it unchanged;
recordings; descriptions; the scan."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import numpy as np
import pytest
from smbus2 import i2c_msg

from device.errors import BadInput
from device.sensors import scan
from device.sensors.bme280 import BME280 as OurBME280
from device.sensors.sim import (
    Recording,
    RegisterDevice,
    SimBME280,
    SimBus,
    SimMPU6050,
    SimSHT3x,
    build_sim_bus,
    default_sim_bus,
    sim_bus_for,
)

from .conftest import write_csv

# --------------------------------------------------------------------------------------------
# smbus2 calls, as third-party code writes them


def test_plain_smbus2_snippet_runs_unchanged(sim_bus: SimBus) -> None:
    bus = sim_bus   # a third-party snippet would have: bus = smbus2.SMBus(1)

    # MPU-6050, the way countless tutorials do it
    assert bus.read_byte_data(0x68, 0x75) == 0x68
    bus.write_byte_data(0x68, 0x6B, 0x00)                  # wake up
    raw = bus.read_i2c_block_data(0x68, 0x3B, 14)
    az = int.from_bytes(bytes(raw[4:6]), "big", signed=True) / 16384.0
    assert az == pytest.approx(1.0, abs=0.15)              # 1 g at ±2 g

    # SHT3x with i2c_rdwr: write the command, wait, read 6 bytes
    bus.i2c_rdwr(i2c_msg.write(0x44, [0x24, 0x00]))
    time.sleep(0.016)
    msg = i2c_msg.read(0x44, 6)
    bus.i2c_rdwr(msg)
    data = list(msg)
    t = -45 + 175 * (data[0] << 8 | data[1]) / 65535
    assert 20 < t < 24 and len(bytes(msg)) == 6

    # ADS1115: SMBus words are little-endian, the chip big-endian: the classic swap
    word = bus.read_word_data(0x48, 0x01)
    assert word == 0x8385 and ((word & 0xFF) << 8 | word >> 8) == 0x8583
    bus.write_i2c_block_data(0x48, 0x02, [0x12, 0x34])
    assert bus.read_i2c_block_data(0x48, 0x02, 2) == [0x12, 0x34]

    # nothing at 0x20: the address is NACKed, as smbus2 reports it
    with pytest.raises(OSError) as err:
        bus.write_quick(0x20)
    assert err.value.errno == errno.EREMOTEIO
    with pytest.raises(ValueError):
        bus.read_i2c_block_data(0x68, 0x3B, 33)


def test_combined_write_read_with_repeated_start(sim_bus: SimBus) -> None:
    w, r = i2c_msg.write(0x76, [0xD0]), i2c_msg.read(0x76, 1)
    sim_bus.i2c_rdwr(w, r)
    assert list(r) == [0x60]
    calib = i2c_msg.read(0x76, 26)
    sim_bus.i2c_rdwr(i2c_msg.write(0x76, [0x88]), calib)
    assert bytes(calib)[:2] == (27504).to_bytes(2, "little")


def test_other_smbus_transactions(sim_bus: SimBus) -> None:
    assert sim_bus.read_byte(0x76) in range(256)
    sim_bus.write_byte(0x76, 0xD0)                  # sets the register pointer
    assert sim_bus.read_byte(0x76) == 0x60          # ... which a plain read then follows
    sim_bus.write_word_data(0x48, 0x03, 0x3412)     # little-endian on the wire: 0x12 then 0x34
    assert sim_bus.read_i2c_block_data(0x48, 0x03, 2) == [0x12, 0x34]
    with SimBus({0x10: _Echo()}) as bus:
        bus.write_block_data(0x10, 0x05, [1, 2, 3])
        assert bus.read_block_data(0x10, 0x05) == [1, 2, 3]
        assert bus.process_call(0x10, 0x00, 0xBEEF) == 0xBEEF
        assert bus.block_process_call(0x10, 0x00, [9, 8]) == [9, 8]


class _Echo(RegisterDevice):
    """Answers a read with what the last write with data sent after its register byte."""

    kind = "echo"

    last = b""

    def on_write(self, data: bytes) -> None:
        if len(data) > 1:                # a bare register byte only rewinds
            self.last = bytes(data[1:])
        self.pos = 0

    def on_read(self, n: int) -> bytes:
        out = self.last[self.pos:self.pos + n]
        self.pos += n
        return out


def test_rpi_bme280_third_party_driver_gets_our_numbers(tmp_path: Path) -> None:
    """RPi.bme280 (a published smbus2 driver) on SimBus: the same calibration, the same sample, our numbers."""
    bme280_lib = pytest.importorskip("bme280", reason="RPi.bme280 (dev extra) is not installed")
    rows = np.array([[23.4, 98765.4, 55.5], [-5.2, 101000.0, 12.0], [31.0, 90000.0, 88.0]])
    path = write_csv(tmp_path / "env.csv", ["temperature", "pressure", "humidity"], rows, rate_hz=1.0)
    theirs_bus = SimBus({0x76: SimBME280(source=Recording.load(path), noise=0.0)})
    ours_bus = SimBus({0x76: SimBME280(source=Recording.load(path), noise=0.0)})
    ours = OurBME280(ours_bus, 0x76, {"compensation": "float"})
    ours.setup()
    params = bme280_lib.load_calibration_params(theirs_bus, 0x76)
    assert (params.dig_T1, params.dig_P9, params.dig_H4, params.dig_H5) == (27504, 6000, 313, 50)
    for i in range(len(rows)):
        theirs = bme280_lib.sample(theirs_bus, 0x76, params)
        mine = ours.read()
        assert theirs.temperature == pytest.approx(mine["temperature"], abs=1e-9)
        assert theirs.pressure * 100 == pytest.approx(mine["pressure"], abs=1e-6)
        assert theirs.humidity == pytest.approx(mine["humidity"], abs=1e-9)
        # and both agree with the recording to the chip's resolution at x1 oversampling (16 bit)
        assert mine["temperature"] == pytest.approx(rows[i, 0], abs=0.05)
        assert mine["pressure"] == pytest.approx(rows[i, 1], abs=3.0)
        assert mine["humidity"] == pytest.approx(rows[i, 2], abs=0.02)


# --------------------------------------------------------------------------------------------
# recordings


def test_recording_csv_with_time_column(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("time_s,ain0\n0.0,1.0\n0.004,1.5\n0.008,2.0\n")
    rec = Recording.load(p)
    assert rec.channels == ("ain0",) and rec.rate_hz == pytest.approx(250.0) and len(rec) == 3
    assert rec.values(4, 0.0) == {"ain0": 1.5}     # loops


def test_recording_npz(tmp_path: Path) -> None:
    p = tmp_path / "r.npz"
    np.savez(p, temperature=np.array([20.0, 21.0]), humidity=np.array([40.0, 41.0]), sample_rate_hz=np.array(2.0))
    rec = Recording.load(p)
    assert rec.rate_hz == 2.0 and set(rec.channels) == {"temperature", "humidity"}


@pytest.mark.parametrize(("text", "message"), [
    ("ain0\n1.0\n", "no sample rate; add a '# sample_rate_hz=100' line"),
    ("# sample_rate_hz=ten\nain0\n1\n", "t.csv:1: sample rate 'ten' is not a number"),
    ("# sample_rate_hz=10\nain0,ain1\n1,2\n3\n", "t.csv:4: 1 values, the header has 2 columns"),
    ("# sample_rate_hz=10\nain0\nabc\n", "could not convert string to float"),
    ("# sample_rate_hz=10\nain0\nnan\n", "sample 0 holds a non-finite value"),
    ("# sample_rate_hz=10\n", "has no header line"),
])
def test_recording_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(BadInput) as err:
        Recording.load(p)
    assert message in str(err.value)


def test_recording_channel_must_belong_to_the_chip(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "x.csv", ["accel_x", "pressure"], np.zeros((2, 2)))
    with pytest.raises(BadInput, match=r"channel 'pressure' is not one of the mpu6050's channels"):
        SimMPU6050(source=Recording.load(p))
    with pytest.raises(BadInput, match="does not exist"):
        Recording.load(tmp_path / "missing.csv")


def test_partial_recording_is_completed_by_the_synthetic_signal(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "ax.csv", ["accel_x"], np.array([[1.0], [2.0]]))
    sim = SimMPU6050(source=Recording.load(p), noise=0.0, offsets=False)
    from device.sensors.mpu6050 import MPU6050

    drv = MPU6050(SimBus({0x68: sim}), 0x68)
    drv.setup()
    v = drv.read()
    assert v["accel_x"] == pytest.approx(1.0, abs=1e-3) and v["accel_z"] == pytest.approx(9.8, abs=0.6)


def test_time_advance_follows_the_clock(tmp_path: Path) -> None:
    n = 5000   # 5 s at 1 kHz before the recording loops
    p = write_csv(tmp_path / "ramp.csv", ["temperature", "humidity"],
                  np.stack([np.arange(n) * 0.01, np.full(n, 50.0)], axis=1), rate_hz=1000.0)
    sim = SimSHT3x(source=Recording.load(p), advance="time", enforce_timing=False, noise=0.0)
    from device.sensors.sht3x import SHT3x

    drv = SHT3x(SimBus({0x44: sim}), 0x44)
    drv.setup()
    first = drv.read()["temperature"]
    time.sleep(0.05)
    later = drv.read()["temperature"]
    assert later - first >= 0.2          # at least 20 samples (50 ms at 1 kHz, minus slack) went by


# --------------------------------------------------------------------------------------------
# descriptions


def test_build_sim_bus_from_a_description(imu_recording) -> None:
    path, rows = imu_recording
    bus = build_sim_bus({"mpu6050": {"address": 0x69, "replay": path.name, "noise": 0, "offsets": False},
                         "room": {"kind": "bme280", "address": "0x77"},
                         "faults": {"nack_probability": 0.0, "seed": 2}}, base_dir=path.parent)
    assert sorted(bus.devices) == [0x69, 0x77]
    from device.sensors.mpu6050 import MPU6050

    drv = MPU6050(bus, 0x69)
    drv.setup()
    assert drv.read()["accel_x"] == pytest.approx(rows[0, 0], abs=1e-3)


@pytest.mark.parametrize(("desc", "message"), [
    ({"mpu6050": {"adress": 0x68}}, "sim.mpu6050: unknown key 'adress'"),
    ({"x": {"kind": "bme680"}}, "sim.x: no simulated chip 'bme680'"),
    ({"mpu6050": {"address": 0x90}}, "sim.mpu6050.address: 0x90 is outside 0x03..0x77"),
    ({"mpu6050": {}, "imu2": {"kind": "mpu6050"}}, "sim.imu2.address: 0x68 is already taken"),
    ({"faults": {"nack_probability": 2}}, "sim.faults.nack_probability: 2.0 is not a probability"),
    ({"mpu6050": {"advance": "sometimes"}}, "advance must be 'per_read' or 'time'"),
    ({"mpu6050": {"noise": "loud"}}, "sim.mpu6050.noise: 'loud' is not a valid float"),
    ({"mpu6050": {"enforce_timing": False}}, "the mpu6050 simulation has no conversion time"),
    # These were tracebacks (TypeError/ValueError) or silently wrong (bool("no") is True, 104.7 -> 0x68):
    ({"mpu6050": {"replay": 5}}, "sim.mpu6050.replay: 5 is not a file name"),
    ({"mpu6050": {"replay": "x.csv", "sample_rate_hz": "fast"}}, "sim.mpu6050.sample_rate_hz: 'fast' is not a number"),
    ({"mpu6050": {"frozen": "no"}}, "sim.mpu6050.frozen: 'no' is not true or false"),
    ({"sht3x": {"enforce_timing": "false"}}, "sim.sht3x.enforce_timing: 'false' is not true or false"),
    ({"sht3x": {"corrupt_crc": "x"}}, "sim.sht3x.corrupt_crc: 'x' is not a probability"),
    ({"sht3x": {"corrupt_crc": 2}}, "sim.sht3x.corrupt_crc: 2.0 is not a probability"),
    ({"faults": 3}, "sim.faults: expected a table"),
    ({"faults": {"nack_probability": "x"}}, "sim.faults.nack_probability: 'x' is not a probability"),
    ({"mpu6050": {"address": 104.7}}, "sim.mpu6050.address: 104.7 is not an I2C address"),
])
def test_description_errors(desc, message) -> None:
    with pytest.raises(BadInput) as err:
        build_sim_bus(desc)
    assert message in str(err.value)


def test_sim_bus_for_a_configured_sensor(imu_recording) -> None:
    path, _rows = imu_recording
    bus = sim_bus_for("mpu6050", 0x69, {"replay": str(path), "noise": 0, "nack_probability": 0.1}, 100.0,
                      bus_number=3)
    assert list(bus.devices) == [0x69] and bus.faults.nack_probability == 0.1 and bus.label.endswith("bus 3")
    syn = sim_bus_for("bme280", None, {}, 50.0)
    assert syn.devices[0x76].rate_hz == 50.0
    with pytest.raises(BadInput, match=r"sim\.kind"):
        sim_bus_for("bme280", None, {"kind": "mpu6050"})


# --------------------------------------------------------------------------------------------
# scan


class _Watch(RegisterDevice):
    """An unknown chip that records what it is sent."""

    kind = "unknown"

    def power_on_reset(self) -> None:
        super().power_on_reset()
        self.quicks = 0

    def quick(self) -> None:
        self.quicks += 1


def test_scan_finds_and_identifies_without_writing_to_unknown_chips() -> None:
    bus = default_sim_bus()
    unknown, eeprom, rtc = _Watch(), _Watch(), _Watch()
    bus.devices.update({0x20: unknown, 0x50: eeprom, 0x69: rtc})
    found = {f.address: f for f in scan(bus)}
    assert sorted(found) == [0x20, 0x44, 0x48, 0x50, 0x68, 0x69, 0x76, 0x77]
    assert {a: f.chip for a, f in found.items() if f.chip} == {0x48: "ads1115", 0x68: "mpu6050", 0x76: "bme280",
                                                                0x77: "bmp280"}
    assert "not probed" in found[0x44].detail and "WHO_AM_I reads 0x00" in found[0x69].detail
    # probes: a quick write, except a read byte in the EEPROM range; no data byte to the unknown chips
    assert unknown.quicks == 1 and eeprom.quicks == 0
    written = {}
    for addr, data in bus.writes:
        written.setdefault(addr, []).append(data)
    assert 0x20 not in written and 0x50 not in written and 0x44 not in written
    assert all(len(d) == 1 for datas in written.values() for d in datas)   # register pointers only
    assert written[0x69] == [b"\x75"]


def test_scan_of_an_empty_bus_and_a_range() -> None:
    assert scan(SimBus()) == []
    assert [f.address for f in scan(default_sim_bus(), 0x70, 0x77)] == [0x76, 0x77]


def test_binary_csv_and_bad_npz_recordings_are_one_line_errors(tmp_path: Path) -> None:
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"ain0\n\xd0\xff\xfe\x00\n")
    with pytest.raises(BadInput, match=r"b\.csv: not a readable UTF-8 CSV file"):  # was a UnicodeDecodeError
        Recording.load(binary)
    two_rates = tmp_path / "r.npz"
    np.savez(two_rates, ain0=np.array([1.0, 2.0]), sample_rate_hz=np.array([1.0, 2.0]))
    with pytest.raises(BadInput, match=r"r\.npz: 'sample_rate_hz' must be one number"):  # was a TypeError
        Recording.load(two_rates)
    bad_rate = tmp_path / "neg.npz"
    np.savez(bad_rate, ain0=np.array([1.0, 2.0]), sample_rate_hz=np.array(-5.0))
    with pytest.raises(BadInput, match=r"neg\.npz: sample rate -5\.0"):  # named the file '<arrays>'
        Recording.load(bad_rate)
    text = tmp_path / "s.npz"
    np.savez(text, ain0=np.array(["a", "b"]), sample_rate_hz=np.array(5.0))
    with pytest.raises(BadInput, match=r"s\.npz: channels must be arrays of numbers"):
        Recording.load(text)
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeff# sample_rate_hz=10\nain0\n1\n".encode())
    assert Recording.load(bom).channels == ("ain0",)
