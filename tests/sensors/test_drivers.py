"""Each driver against its simulated chip: identification, every option, replay accuracy, faults."""

from __future__ import annotations

import errno
import math
import threading
import time
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from device.sensors import DataError, Reading, make_driver
from device.sensors.ads1115 import ADS1115
from device.sensors.base import BusError, SensorError
from device.sensors.bme280 import BME280, BMP280
from device.sensors.bus import I2CBus
from device.sensors.mpu6050 import MPU6050
from device.sensors.sht3x import SHT3x
from device.sensors.sim import (
    BusFaults,
    Recording,
    SimADS1115,
    SimBME280,
    SimBus,
    SimMPU6050,
    SimSHT3x,
)

from .conftest import write_csv


def one(address: int, device, faults: BusFaults | None = None) -> SimBus:
    return SimBus({address: device}, faults)


# --------------------------------------------------------------------------------------------
# common behaviour


def test_reading_carries_monotonic_time_and_units(sim_bus: SimBus) -> None:
    imu = make_driver("mpu6050", sim_bus, None, {})
    imu.setup()
    a, b = imu.reading("imu"), imu.reading("imu")
    assert isinstance(a, Reading) and a.sensor == "imu"
    assert a.timestamp_ns < b.timestamp_ns <= time.monotonic_ns()
    assert set(a.values) == set(imu.channels) and a.units["accel_x"] == "m/s²" and a.units["gyro_z"] == "rad/s"
    with pytest.raises(FrozenInstanceError):
        a.sensor = "x"  # type: ignore[misc]
    assert a.to_dict()["values"] == a.values


@pytest.mark.parametrize(("kind", "options", "message"), [
    ("bme280", {"oversampling": 2}, "bme280 option 'oversampling' is unknown; known options: temperature_oversampling"),
    ("bme280", {"pressure_oversampling": 3}, "bme280 option 'pressure_oversampling': must be one of 0, 1, 2, 4, 8, 16"),
    ("bme280", {"temperature_oversampling": 0}, "option 'temperature_oversampling': must not be 0"),
    ("bmp280", {"standby_ms": 10}, "bmp280 option 'standby_ms': must be one of 0.5, 62.5"),
    ("mpu6050", {"accel_range_g": 3}, "mpu6050 option 'accel_range_g': must be one of 2, 4, 8, 16 (got 3)"),
    ("mpu6050", {"accel_range_g": "big"}, "mpu6050 option 'accel_range_g': expected an integer, got a string 'big'"),
    ("mpu6050", {"sample_rate_div": 300}, "option 'sample_rate_div': must be 0..255"),
    ("sht3x", {"repeatability": "best"}, "sht3x option 'repeatability': must be one of high, medium, low"),
    ("sht3x", {"heater": "maybe"}, "sht3x option 'heater': expected true or false"),
    ("ads1115", {"channels": ["ain4"]}, "ads1115 option 'channels': must be one of ain0_ain1"),
    ("ads1115", {"channels": ["ain0", "ain1"], "mode": "continuous"}, "continuous mode converts one channel"),
    ("ads1115", {"full_scale_v": 5}, "ads1115 option 'full_scale_v': must be one of 6.144"),
])
def test_option_errors_name_the_key(kind, options, message) -> None:
    with pytest.raises(SensorError) as err:
        make_driver(kind, SimBus(), None, options)
    assert message in str(err.value)


def test_options_from_strings_and_defaults() -> None:
    d = make_driver("ads1115", SimBus(), 0x49, {"channels": "ain0, ain2_ain3", "full_scale_v": "2.048",
                                                "data_rate": "860"})
    assert d.address == 0x49 and d.channels == ("ain0", "ain2_ain3") and d.options.full_scale_v == 2.048
    assert make_driver("bme280", SimBus(), None, {}).address == 0x76
    with pytest.raises(SensorError, match="unknown sensor driver 'bme680'"):
        make_driver("bme680", SimBus(), None, {})


@pytest.mark.parametrize(("kind", "address"), [("bme280", 0x76), ("mpu6050", 0x68), ("sht3x", 0x44),
                                                ("ads1115", 0x48)])
def test_missing_device_names_bus_and_address(kind, address) -> None:
    d = make_driver(kind, SimBus(), address, {})
    with pytest.raises(SensorError) as err:
        d.setup()
    assert f"no {kind} answers on simulated I2C bus 1 at {address:#04x}" in str(err.value)
    assert "spinal sensors scan" in str(err.value)


def test_read_before_setup_is_an_error(sim_bus: SimBus) -> None:
    for kind in ("bme280", "mpu6050", "sht3x", "ads1115"):
        with pytest.raises(SensorError, match="read\\(\\) before setup\\(\\)"):
            make_driver(kind, sim_bus, None, {}).read()


# --------------------------------------------------------------------------------------------
# BME280 / BMP280


def test_bme280_wrong_chip_id_is_named() -> None:
    bus = one(0x76, SimBME280(chip="bmp280"))
    with pytest.raises(SensorError, match=r"bme280 on simulated I2C bus 1 at 0x76: chip id 0x58 is a BMP280, "
                                          r"expected 0x60"):
        BME280(bus, 0x76).setup()
    bus = one(0x76, SimMPU6050())
    with pytest.raises(SensorError, match="chip id 0x00 is not a Bosch sensor"):
        BME280(bus, 0x76).setup()


def _bme_recording(rows: list[tuple[float, float, float]], rate: float = 50.0) -> Recording:
    data = np.array(rows, dtype=float)
    return Recording.from_arrays({"temperature": data[:, 0], "pressure": data[:, 1], "humidity": data[:, 2]}, rate)


@pytest.mark.parametrize("compensation", ["int", "float"])
@pytest.mark.parametrize("mode", ["forced", "normal"])
def test_bme280_replays_a_recording(mode, compensation) -> None:
    rows = [(20.0 + i * 0.37, 95000.0 + 150.0 * i, 30.0 + 2.5 * i) for i in range(12)]
    sim = SimBME280(source=_bme_recording(rows), noise=0.0)
    drv = BME280(one(0x76, sim), 0x76, {"temperature_oversampling": 16, "pressure_oversampling": 16,
                                        "humidity_oversampling": 16, "mode": mode, "compensation": compensation,
                                        "standby_ms": 0.5})
    drv.setup()
    for i in range(len(rows) + 3):       # loops at the end
        v = drv.read()
        t, p, h = rows[i % len(rows)]
        assert v["temperature"] == pytest.approx(t, abs=0.011)
        assert v["pressure"] == pytest.approx(p, abs=0.5)
        assert v["humidity"] == pytest.approx(h, abs=0.02)
    assert sim.regs[0xF4] & 3 == (3 if mode == "normal" else 0)   # forced mode returns to sleep


class FakeClock:
    """Stands in for the ``time`` module inside the simulator: its monotonic clock moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


def test_bme280_forced_measurement_takes_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from device.sensors.sim import bme280 as simmod  # the simulated chip's clock

    sim = SimBME280()
    bus = SimBus({0x76: sim})
    drv = BME280(bus, 0x76, {"temperature_oversampling": 16, "pressure_oversampling": 16})
    drv.setup()
    first = drv.read()
    clock = FakeClock()
    monkeypatch.setattr(simmod, "time", clock)
    before = bus.read_i2c_block_data(0x76, 0xF7, 8)
    bus.write_byte_data(0x76, 0xF4, bus.read_byte_data(0x76, 0xF4) | 0x01)    # trigger by hand
    clock.now += 0.060                                                          # typical is 68 ms here
    assert bus.read_byte_data(0x76, 0xF3) & 0x08                               # status: measuring
    assert bus.read_byte_data(0x76, 0xF4) & 0x03 == 0x01
    assert bus.read_i2c_block_data(0x76, 0xF7, 8) == before                    # still the previous result
    clock.now += 0.010
    assert not bus.read_byte_data(0x76, 0xF3) & 0x08 and bus.read_byte_data(0x76, 0xF4) & 0x03 == 0
    assert bus.read_i2c_block_data(0x76, 0xF7, 8) != before                    # now the new one
    monkeypatch.undo()
    assert drv.read() != first          # the driver waits the maximum time, then polls 'measuring'


def test_bme280_configuration_reaches_the_chip() -> None:
    sim = SimBME280()
    drv = BME280(one(0x77, sim), 0x77, {"temperature_oversampling": 2, "pressure_oversampling": 8,
                                        "humidity_oversampling": 4, "iir_filter": 4, "standby_ms": 125,
                                        "mode": "normal"})
    drv.setup()
    assert sim.regs[0xF4] == (2 << 5) | (4 << 2) | 3       # osrs_t x2, osrs_p x8, normal mode
    assert sim.regs[0xF2] == 3                              # osrs_h x4
    assert sim.regs[0xF5] == (2 << 5) | (2 << 2)            # t_sb 125 ms, filter 4
    assert sim._osrs() == (2, 8, 4)


def test_bme280_skipped_channels_are_left_out() -> None:
    drv = BME280(one(0x76, SimBME280()), 0x76, {"pressure_oversampling": 0, "humidity_oversampling": 0})
    drv.setup()
    assert drv.channels == ("temperature",)
    assert set(drv.read()) == {"temperature"}


def test_bme280_oversampling_lowers_the_noise() -> None:
    def spread(osrs: int) -> float:
        drv = BME280(one(0x76, SimBME280(seed=3)), 0x76, {"pressure_oversampling": osrs, "mode": "normal"})
        drv.setup()
        return float(np.std([drv.read()["pressure"] for _ in range(200)]))

    assert spread(16) < spread(1) / 2


def test_bme280_iir_filter_smooths_a_step() -> None:
    rows = [(20.0, 100000.0, 40.0)] * 3 + [(30.0, 100000.0, 40.0)] * 3

    def after_step(coef: int) -> float:
        sim = SimBME280(source=_bme_recording(rows), noise=0.0)
        drv = BME280(one(0x76, sim), 0x76, {"iir_filter": coef, "temperature_oversampling": 16})
        drv.setup()
        return [drv.read()["temperature"] for _ in range(4)][-1]

    assert after_step(0) == pytest.approx(30.0, abs=0.02)
    assert after_step(16) == pytest.approx(20.0 + 10.0 / 16, abs=0.05)   # one step through a coefficient-16 IIR


def test_bmp280_has_no_humidity() -> None:
    drv = BMP280(one(0x77, SimBME280(chip="bmp280")), 0x77, {"standby_ms": 4000, "mode": "normal"})
    drv.setup()
    assert drv.channels == ("temperature", "pressure")
    v = drv.read()
    assert set(v) == {"temperature", "pressure"} and 15 < v["temperature"] < 30 and 99000 < v["pressure"] < 104000


def test_bme280_detects_a_power_cycled_chip() -> None:
    bus = one(0x76, SimBME280())
    drv = BME280(bus, 0x76)
    drv.setup()
    drv.read()
    bus.unplug(0x76)
    with pytest.raises(BusError) as err:
        drv.read()
    assert err.value.errno == errno.EREMOTEIO
    bus.replug(0x76)                      # back, with its registers at power-on values
    drv.setup()
    assert 15 < drv.read()["temperature"] < 30


def test_bme280_normal_mode_after_reset_reports_it() -> None:
    bus = one(0x76, SimBME280())
    drv = BME280(bus, 0x76, {"mode": "normal"})
    drv.setup()
    drv.read()
    bus.replug(0x76)                      # power cycle: sleep mode, data registers hold the 0x80000 pattern
    with pytest.raises(BusError, match="'no measurement' pattern"):
        drv.read()


# --------------------------------------------------------------------------------------------
# MPU-6050


def test_mpu6050_wrong_who_am_i() -> None:
    sim = SimMPU6050()
    sim.regs[0x75] = 0x70
    sim.power_on_reset = lambda: None       # keep the fake id through the reset
    with pytest.raises(SensorError, match=r"WHO_AM_I reads 0x70 \(an MPU-6500\), expected 0x68"):
        MPU6050(one(0x68, sim), 0x68).setup()


def test_mpu6050_replays_a_recording(imu_recording) -> None:
    path, rows = imu_recording
    sim = SimMPU6050(source=Recording.load(path), noise=0.0, gravity=False, offsets=False)
    drv = MPU6050(one(0x68, sim), 0x68, {"accel_range_g": 4, "gyro_range_dps": 500})
    drv.setup()
    cols = ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z", "temperature"]
    tol = {"accel": 9.80665 / 8192, "gyro": math.radians(1 / 65.5), "temperature": 1 / 340}
    for i in range(len(rows) + 5):
        v = drv.read()
        for j, c in enumerate(cols):
            assert v[c] == pytest.approx(rows[i % len(rows), j], abs=tol[c.split("_")[0]])


def test_mpu6050_configuration_and_ranges(tmp_path: Path) -> None:
    # 3 g and 300 °/s: beyond ±2 g and ±250 °/s, inside ±4 g and ±500 °/s.
    rows = np.array([[3 * 9.80665, 0, 0, math.radians(300), 0, 0, 25.0]])
    path = write_csv(tmp_path / "big.csv", ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z",
                                            "temperature"], rows)
    small = MPU6050(one(0x68, SimMPU6050(source=Recording.load(path), noise=0, offsets=False)), 0x68,
                    {"accel_range_g": 2, "gyro_range_dps": 250, "gyro_unit": "deg/s"})
    small.setup()
    v = small.read()
    assert v["accel_x"] == pytest.approx(2 * 9.80665, rel=1e-3) and v["gyro_x"] == pytest.approx(250, rel=1e-2)
    assert small.units["gyro_x"] == "°/s"
    sim = SimMPU6050(source=Recording.load(path), noise=0, offsets=False)
    big = MPU6050(one(0x68, sim), 0x68, {"accel_range_g": 16, "gyro_range_dps": 2000, "dlpf": 6,
                                         "sample_rate_div": 9})
    big.setup()
    v = big.read()
    assert v["accel_x"] == pytest.approx(3 * 9.80665, abs=0.005) and v["gyro_x"] == pytest.approx(math.radians(300),
                                                                                                     abs=0.002)
    assert sim.config() == (6, 9, 16, 2000)
    assert big.sample_rate_hz == 100.0 and sim.output_rate_hz() == 100.0
    assert not sim.asleep


def test_mpu6050_dlpf_lowers_the_noise() -> None:
    def spread(dlpf: int) -> float:
        drv = MPU6050(one(0x68, SimMPU6050(seed=5)), 0x68, {"dlpf": dlpf})
        drv.setup()
        return float(np.std([drv.read()["gyro_z"] for _ in range(400)]))

    assert spread(6) < spread(0) / 3       # 5 Hz vs 260 Hz bandwidth: sqrt(52) ≈ 7x less noise


def test_mpu6050_asleep_or_reset_chip_is_detected() -> None:
    bus = one(0x68, SimMPU6050())
    drv = MPU6050(bus, 0x68)
    drv.setup()
    drv.read()
    bus.unplug(0x68)
    with pytest.raises(BusError):
        drv.read()
    bus.replug(0x68)                       # back, asleep, data registers zero
    with pytest.raises(BusError, match="all zeros"):
        drv.read()
    drv.setup()
    assert drv.read()["accel_z"] == pytest.approx(9.8, abs=1.0)


# --------------------------------------------------------------------------------------------
# SHT3x


def test_sht3x_single_shot_all_repeatabilities() -> None:
    sim = SimSHT3x(enforce_timing=True)
    for rep, cmd in (("high", 0x2400), ("medium", 0x240B), ("low", 0x2416)):
        drv = SHT3x(one(0x44, sim), 0x44, {"repeatability": rep})
        drv.setup()
        v = drv.read()
        assert 20 < v["temperature"] < 24 and 35 < v["humidity"] < 45
        assert sim.commands[-1] == cmd


def test_sht3x_read_too_early_is_nacked(monkeypatch: pytest.MonkeyPatch) -> None:
    from device.sensors.sim import sht3x as simmod  # the simulated chip's clock

    sim = SimSHT3x(enforce_timing=True)
    bus = I2CBus(one(0x44, sim))
    drv = SHT3x(bus, 0x44)
    drv.setup()
    clock = FakeClock()
    monkeypatch.setattr(simmod, "time", clock)
    drv.command(0x2400)
    clock.now += 0.010                       # high repeatability takes 12.5 ms typical
    with pytest.raises(BusError) as err:
        drv._read_words(2, retries=0)       # before the measurement is done: NACK
    assert err.value.errno == errno.EREMOTEIO
    clock.now += 0.005
    t_raw, rh_raw = drv._read_words(2, retries=0)
    assert 0 < t_raw < 65535 and 0 < rh_raw < 65535


def test_sht3x_clock_stretching() -> None:
    sim = SimSHT3x(enforce_timing=True)
    drv = SHT3x(one(0x44, sim), 0x44, {"clock_stretching": True, "repeatability": "low"})
    drv.setup()
    assert 20 < drv.read()["temperature"] < 24
    assert sim.commands[-1] == 0x2C10


def test_sht3x_periodic_mode_and_stale_reads() -> None:
    sim = SimSHT3x(enforce_timing=True)
    drv = SHT3x(one(0x44, sim), 0x44, {"mode": "periodic", "periodic_mps": 10, "repeatability": "medium"})
    drv.setup()
    assert sim.periodic == (10.0, "medium") and 0x2721 in sim.commands
    reads = [drv.read() for _ in range(6)]   # much faster than 10 a second: mostly no new data
    assert drv.stale_reads >= 1 and sim.samples_taken == 6 - drv.stale_reads
    assert len({tuple(r.values()) for r in reads}) == sim.samples_taken   # a stale read repeats the last result
    time.sleep(0.11)
    drv.read()
    assert sim.samples_taken >= 2


def test_sht3x_heater_status_and_serial() -> None:
    sim = SimSHT3x(enforce_timing=False, noise=0.0)
    cold = SHT3x(one(0x44, sim), 0x44)
    cold.setup()
    t_cold = cold.read()["temperature"]
    assert cold.status()["heater_on"] is False
    assert cold.read_serial() == 0x1A2B3C4D
    hot = SHT3x(one(0x44, sim), 0x44, {"heater": True})
    hot.setup()
    assert hot.status()["heater_on"] is True
    v = hot.read()
    assert v["temperature"] > t_cold + 2.5 and v["humidity"] < 40.0


def test_sht3x_corrupted_crc_is_retried_then_reported() -> None:
    sim = SimSHT3x(enforce_timing=False, seed=11)
    drv = SHT3x(one(0x44, sim), 0x44, {"crc_retries": 3})
    drv.setup()
    sim.faults.corrupt_crc = 0.3
    for _ in range(30):
        v = drv.read()
        assert 20 < v["temperature"] < 24
    assert drv.crc_errors > 0
    sim.faults.corrupt_crc = 1.0
    with pytest.raises(DataError, match="CRC mismatch"):
        drv.read()


def test_sht3x_identity_check_fails_on_a_register_chip() -> None:
    # A register-pointer chip (here an MPU-6050) at 0x44 ACKs the writes but its "status" has no valid CRC.
    with pytest.raises(SensorError, match="sht3x on simulated I2C bus 1 at 0x44"):
        SHT3x(one(0x44, SimMPU6050()), 0x44).setup()


# --------------------------------------------------------------------------------------------
# ADS1115


def test_ads1115_channels_differential_and_pga(tmp_path: Path) -> None:
    rec = Recording.from_arrays({"ain0": [1.2, 1.3], "ain1": [0.2, 0.1], "ain2": [3.0, 3.0], "ain3": [0.5, 0.7]}, 10)
    sim = SimADS1115(source=rec, noise=0.0, enforce_timing=True)
    drv = ADS1115(one(0x48, sim), 0x48, {"channels": ["ain0", "ain1", "ain0_ain1", "ain2_ain3", "ain3"],
                                         "full_scale_v": 4.096, "data_rate": 860})
    drv.setup()
    lsb = 4.096 / 32768
    for i in range(4):
        v = drv.read()
        a0, a1, a2, a3 = (rec.data[i % 2, j] for j in range(4))
        assert v == pytest.approx({"ain0": a0, "ain1": a1, "ain0_ain1": a0 - a1, "ain2_ain3": a2 - a3,
                                   "ain3": a3}, abs=lsb)
    assert sim.conversions == 20
    # ±0.256 V: 1.2 V clips at full scale
    small = ADS1115(one(0x48, SimADS1115(source=rec, noise=0.0, enforce_timing=False)), 0x48,
                    {"channels": ["ain0"], "full_scale_v": 0.256})
    small.setup()
    assert small.read()["ain0"] == pytest.approx(0.256 - 0.256 / 32768)


def test_ads1115_config_and_data_rate_reach_the_chip() -> None:
    sim = SimADS1115(enforce_timing=False)
    drv = ADS1115(one(0x48, sim), 0x48, {"channels": ["ain2"], "full_scale_v": 6.144, "data_rate": 8})
    drv.setup()
    drv.read()
    cfg = sim.regs[1]
    assert (cfg >> 12) & 7 == 6 and (cfg >> 9) & 7 == 0 and (cfg >> 5) & 7 == 0 and cfg & 0x100
    assert drv.conversion_time_s == 1 / 8


def test_ads1115_continuous_mode() -> None:
    sim = SimADS1115(noise=0.0)
    drv = ADS1115(one(0x48, sim), 0x48, {"channels": ["ain2"], "mode": "continuous", "data_rate": 860})
    drv.setup()
    assert not sim.regs[1] & 0x100
    assert drv.read() == pytest.approx({"ain2": 2.5}, abs=1e-3)


def test_ads1115_identity_check() -> None:
    with pytest.raises(SensorError, match=r"does not behave like|reads back .* not an ADS1115"):
        ADS1115(one(0x48, SimBME280()), 0x48).setup()


# --------------------------------------------------------------------------------------------
# fault injection on the bus


def test_nacks_are_absorbed_by_the_retries() -> None:
    faults = BusFaults(nack_probability=0.2, seed=4)
    bus = I2CBus(SimBus({0x68: SimMPU6050(), 0x76: SimBME280()}, faults))
    imu, env = MPU6050(bus, 0x68), BME280(bus, 0x76)
    imu.setup()
    env.setup()
    for _ in range(100):
        assert imu.read()["accel_z"] == pytest.approx(9.8, abs=1.5)
    env.read()
    s = bus.stats()
    assert s.retries > 10 and s.failures == 0 and s.by_errno[errno.EREMOTEIO] == s.errors
    assert bus.raw.nacks_injected == s.errors


def test_a_dead_bus_fails_with_the_errno() -> None:
    sim = SimBus({0x68: SimMPU6050()})
    bus = I2CBus(sim)
    drv = MPU6050(bus, 0x68)
    drv.setup()
    sim.set_nack_probability(1.0)
    with pytest.raises(BusError) as err:
        drv.read()
    assert err.value.errno == errno.EREMOTEIO and "after 4 attempts" in str(err.value)


def test_a_stuck_bus_times_out_then_recovers() -> None:
    sim = SimBus({0x68: SimMPU6050()})
    drv = MPU6050(sim, 0x68)
    drv.setup()
    sim.stick(0.5)
    with pytest.raises(BusError) as err:
        drv.read()
    assert err.value.errno == errno.ETIMEDOUT
    time.sleep(0.51)
    assert drv.read()["accel_z"] == pytest.approx(9.8, abs=1.5)


def test_frozen_data() -> None:
    for device, kind, address in ((SimMPU6050(), "mpu6050", 0x68), (SimBME280(), "bme280", 0x76),
                                  (SimSHT3x(enforce_timing=False), "sht3x", 0x44),
                                  (SimADS1115(enforce_timing=False), "ads1115", 0x48)):
        drv = make_driver(kind, one(address, device), address, {})
        drv.setup()
        a, b = drv.read(), drv.read()
        assert a != b, kind              # noise: live data differs
        device.faults.frozen = True
        c, d = drv.read(), drv.read()
        assert c == d, kind
        device.faults.frozen = False
        assert drv.read() != d, kind


def test_concurrent_samplers_on_one_bus() -> None:
    sim = SimBus({0x68: SimMPU6050(), 0x76: SimBME280(), 0x48: SimADS1115(enforce_timing=False)},
                 BusFaults(nack_probability=0.05, seed=9))
    drivers = [make_driver(k, sim, None, {}) for k in ("mpu6050", "bme280", "ads1115")]
    for d in drivers:
        d.setup()
    errors: list[BaseException] = []

    def loop(d) -> None:
        try:
            for _ in range(40):
                d.read()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --------------------------------------------------------------------------------------------
# every value of every option reaches the chip and decodes right


@pytest.mark.parametrize(("accel_g", "gyro_dps"), [(2, 250), (4, 500), (8, 1000), (16, 2000)])
@pytest.mark.parametrize("dlpf", range(7))
def test_mpu6050_every_range_and_dlpf(tmp_path: Path, accel_g: int, gyro_dps: int, dlpf: int) -> None:
    value_g, value_dps = accel_g * 0.7, gyro_dps * 0.7        # inside every range
    rows = np.array([[value_g * 9.80665, -value_g * 9.80665, 0.5, math.radians(value_dps), 0, 0, 21.0]])
    path = write_csv(tmp_path / "x.csv", ["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z",
                                          "temperature"], rows)
    sim = SimMPU6050(source=Recording.load(path), noise=0.0, offsets=False)
    drv = MPU6050(one(0x68, sim), 0x68, {"accel_range_g": accel_g, "gyro_range_dps": gyro_dps, "dlpf": dlpf,
                                         "sample_rate_div": dlpf * 10})
    drv.setup()
    v = drv.read()
    assert sim.config() == (dlpf, dlpf * 10, accel_g, gyro_dps)
    assert v["accel_x"] == pytest.approx(value_g * 9.80665, abs=9.80665 * accel_g / 32768 + 1e-9)
    assert v["accel_y"] == pytest.approx(-value_g * 9.80665, abs=9.80665 * accel_g / 32768 + 1e-9)
    assert v["gyro_x"] == pytest.approx(math.radians(value_dps), abs=math.radians(gyro_dps / 32768 * 1.01))
    assert drv.sample_rate_hz == (8000 if dlpf == 0 else 1000) / (1 + dlpf * 10)


@pytest.mark.parametrize("mps", [0.5, 1, 2, 4, 10])
@pytest.mark.parametrize("rep", ["high", "medium", "low"])
def test_sht3x_every_periodic_command(mps, rep) -> None:
    from device.sensors.sht3x import CMD_PERIODIC

    sim = SimSHT3x(enforce_timing=False)
    drv = SHT3x(one(0x44, sim), 0x44, {"mode": "periodic", "periodic_mps": mps, "repeatability": rep})
    drv.setup()
    assert sim.commands[-1] == CMD_PERIODIC[float(mps)][rep] and sim.periodic == (float(mps), rep)
    assert 20 < drv.read()["temperature"] < 24
    assert sim.commands[-1] == 0xE000                         # fetch


@pytest.mark.parametrize("fsr", [6.144, 4.096, 2.048, 1.024, 0.512, 0.256])
def test_ads1115_every_pga(fsr) -> None:
    volts = fsr * 0.6
    rec = Recording.from_arrays({"ain0": [volts], "ain1": [0.0], "ain2": [0.0], "ain3": [0.0]}, 10)
    drv = ADS1115(one(0x48, SimADS1115(source=rec, noise=0.0, enforce_timing=False)), 0x48,
                  {"full_scale_v": fsr, "channels": ["ain0", "ain0_ain1"]})
    drv.setup()
    v = drv.read()
    assert v == pytest.approx({"ain0": volts, "ain0_ain1": volts}, abs=fsr / 32768)


@pytest.mark.parametrize("rate", [8, 16, 32, 64, 128, 250, 475, 860])
def test_ads1115_every_data_rate(rate) -> None:
    from device.sensors.ads1115 import DATA_RATE_CODES

    sim = SimADS1115(enforce_timing=rate >= 128)   # the slow rates without real waits on the simulated chip
    drv = ADS1115(one(0x48, sim), 0x48, {"data_rate": rate, "channels": ["ain2"]})
    drv.setup()
    assert drv.read()["ain2"] == pytest.approx(2.5, abs=0.001)
    assert (sim.regs[1] >> 5) & 7 == DATA_RATE_CODES[rate] and sim.output_rate_hz() == rate


@pytest.mark.parametrize("standby", [0.5, 62.5, 125, 250, 500, 1000, 10, 20])
def test_bme280_every_standby_time(standby) -> None:
    from device.sensors.bme280 import STANDBY_CODES_BME280

    sim = SimBME280()
    drv = BME280(one(0x76, sim), 0x76, {"mode": "normal", "standby_ms": standby})
    drv.setup()
    assert sim.regs[0xF5] >> 5 == STANDBY_CODES_BME280[float(standby)]
    assert 15 < drv.read()["temperature"] < 30


def test_options_made_by_hand_are_checked_by_the_fields_choices() -> None:
    from device.sensors.mpu6050 import MPU6050Options

    with pytest.raises(SensorError, match=r"mpu6050 option 'accel_range_g': must be one of 2, 4, 8, 16 \(got 3\)"):
        make_driver("mpu6050", SimBus(), None, MPU6050Options(accel_range_g=3))
