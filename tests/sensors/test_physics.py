"""The simulated chips report what the real parts report (their datasheets): gravity along a mounting
orientation, offsets and noise densities; register-level datasheet facts; the typed [sensors.sim] spec."""

from __future__ import annotations

import math

import numpy as np
import pytest

from device.sensors import make_driver
from device.sensors.ads1115 import ADS1115
from device.sensors.bme280 import BME280, BMP280
from device.sensors.mpu6050 import DLPF_BANDWIDTH_HZ, MPU6050
from device.sensors.sht3x import STATUS, SHT3x
from device.sensors.sim import (
    Recording,
    SimADS1115,
    SimBME280,
    SimBus,
    SimMPU6050,
    SimSHT3x,
    SimSpecError,
    check_sim_table,
    default_sim_bus,
    parse_sim_spec,
    sim_bus_for,
)
from device.sensors.sim import mpu6050 as simmpu
from device.sensors.sim.physics import gravity_in_sensor_frame, orientation_matrix

G = 9.80665
IMU = ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z")
# The datasheet's typical zero-g offsets (X, Y, Z) as one bound on the length of the offset vector.
ZERO_G_BOUND = math.hypot(0.050, 0.050, 0.080) * G


def at_rest(n: int = 1) -> Recording:
    """An IMU that does not move: body motion zero on every axis (the chip adds gravity)."""
    return Recording.from_arrays({c: np.zeros(n) for c in IMU} | {"temperature": np.full(n, 25.0)}, 100.0)


def imu(sim: SimMPU6050, **options) -> MPU6050:
    drv = MPU6050(SimBus({0x68: sim}), 0x68, options)
    drv.setup()
    return drv


def accel(v: dict[str, float]) -> np.ndarray:
    return np.array([v["accel_x"], v["accel_y"], v["accel_z"]])


def gyro(v: dict[str, float]) -> np.ndarray:
    return np.array([v["gyro_x"], v["gyro_y"], v["gyro_z"]])


# --------------------------------------------------------------------------------------------
# MPU-6050: gravity, offsets, noise


@pytest.mark.parametrize("seed", range(8))
def test_mpu6050_at_rest_reads_one_g_in_a_random_orientation(seed: int) -> None:
    sim = SimMPU6050(source=at_rest(), orientation="random", seed=seed)
    drv = imu(sim)
    reads = np.array([accel(drv.read()) for _ in range(200)])
    sigma = simmpu.accel_noise_ms2(DLPF_BANDWIDTH_HZ[3][0])       # the driver's default DLPF: 44 Hz
    # every reading: |a| = 1 g within the datasheet's zero-g offset and 5 σ of noise on each axis
    norms = np.linalg.norm(reads, axis=1)
    assert np.all(np.abs(norms - G) <= ZERO_G_BOUND + 5 * sigma * math.sqrt(3)), (norms.min(), norms.max())
    # the mean points along the mounting orientation: gravity plus this part's offsets
    expected = gravity_in_sensor_frame(sim.rotation) + sim.accel_offset
    np.testing.assert_allclose(reads.mean(axis=0), expected, atol=5 * sigma / math.sqrt(len(reads)) + G / 16384)
    # and the offsets are inside the datasheet's typical tolerance
    assert np.all(np.abs(sim.accel_offset) <= np.array([0.050, 0.050, 0.080]) * G)
    assert np.all(np.abs(np.degrees(sim.gyro_offset)) <= 20.0)


def test_random_orientations_are_random_and_seeded() -> None:
    ups = [gravity_in_sensor_frame(orientation_matrix("random", np.random.default_rng([s, 1]))) for s in range(200)]
    ups = np.array(ups) / G
    assert np.allclose(np.linalg.norm(ups, axis=1), 1.0)
    assert np.all(np.abs(ups.mean(axis=0)) < 0.15)                  # no preferred direction
    assert (ups[:, 2] < 0).sum() > 50 and (np.abs(ups[:, 0]) > 0.7).sum() > 20   # upside down, on a side
    same = [SimMPU6050(orientation="random", seed=4).rotation for _ in range(2)]
    np.testing.assert_array_equal(same[0], same[1])


@pytest.mark.parametrize(("orientation", "up"), [
    ("z_up", (0, 0, 1)), ("z_down", (0, 0, -1)), ("x_up", (1, 0, 0)), ("x_down", (-1, 0, 0)),
    ("y_up", (0, 1, 0)), ("y_down", (0, -1, 0)), ((0.0, 90.0, 0.0), (-1, 0, 0)), ((30.0, 0.0, 77.0), (0, 0.5, 0.866)),
])
def test_mounting_orientation_puts_gravity_on_the_axis_that_points_up(orientation, up) -> None:
    drv = imu(SimMPU6050(source=at_rest(), orientation=orientation, offsets=False, noise=0.0), accel_range_g=2)
    np.testing.assert_allclose(accel(drv.read()), np.array(up) * G, atol=2 * G / 16384 + 1e-3)


def test_replays_hold_body_motion_and_the_chip_adds_the_physics(imu_recording) -> None:
    path, rows = imu_recording
    sim = SimMPU6050(source=Recording.load(path), orientation="random", seed=3, noise=0.0)
    drv = imu(sim, accel_range_g=8, gyro_range_dps=2000)
    for i in range(10):
        v = drv.read()
        np.testing.assert_allclose(accel(v), rows[i, :3] + gravity_in_sensor_frame(sim.rotation) + sim.accel_offset,
                                   atol=G / 4096)
        np.testing.assert_allclose(gyro(v), rows[i, 3:6] + sim.gyro_offset, atol=math.radians(1 / 16.4))


@pytest.mark.parametrize("dlpf", [0, 3, 6])
def test_mpu6050_noise_follows_the_datasheet_density(dlpf: int) -> None:
    """std over many samples ≈ 400 µg/√Hz × √bandwidth (accel), 0.005 °/s/√Hz × √bandwidth (gyro)."""
    drv = imu(SimMPU6050(source=at_rest(), seed=11), dlpf=dlpf, accel_range_g=2, gyro_range_dps=250)
    reads = [drv.read() for _ in range(2000)]
    bw_accel, bw_gyro = DLPF_BANDWIDTH_HZ[dlpf]
    accel_std = np.std([accel(v) for v in reads], axis=0)
    gyro_std = np.std([np.degrees(gyro(v)) for v in reads], axis=0)
    expected_accel = 400e-6 * G * math.sqrt(bw_accel)
    expected_gyro = 0.005 * math.sqrt(bw_gyro)
    quant_accel, quant_gyro = G / 16384 / math.sqrt(12), (1 / 131) / math.sqrt(12)   # one LSB, uniform
    for s in accel_std:
        assert 0.85 < s / math.hypot(expected_accel, quant_accel) < 1.15, (dlpf, accel_std, expected_accel)
    for s in gyro_std:
        assert 0.8 < s / math.hypot(expected_gyro, quant_gyro) < 1.25, (dlpf, gyro_std, expected_gyro)


def test_each_physical_term_can_be_switched_off() -> None:
    bare = imu(SimMPU6050(source=at_rest(), gravity=False, offsets=False, noise=0.0))
    assert all(abs(x) < 1e-3 for x in bare.read().values() if x < 20)      # all axes zero (temperature aside)
    flat = imu(SimMPU6050(source=at_rest(), offsets=False, noise=0.0))
    np.testing.assert_allclose(accel(flat.read()), [0, 0, G], atol=1e-3)
    biased = SimMPU6050(source=at_rest(), gravity=False, noise=0.0, seed=2)
    v = imu(biased, gyro_range_dps=2000).read()
    np.testing.assert_allclose(gyro(v), biased.gyro_offset, atol=math.radians(1 / 16.4))
    assert np.linalg.norm(np.degrees(biased.gyro_offset)) > 1.0             # a real part's zero-rate offset


# --------------------------------------------------------------------------------------------
# MPU-6050 registers against the register map


def test_signal_path_reset_keeps_the_data_registers() -> None:
    """RM-MPU-6000A 4.26: SIGNAL_PATH_RESET resets the signal paths' ADCs and filters and "does not clear the
    sensor registers"."""
    sim = SimMPU6050()
    bus = SimBus({0x68: sim})
    drv = imu(sim)
    drv.read()
    before = bus.read_i2c_block_data(0x68, 0x3A, 15)[1:]     # from INT_STATUS: no new sample is latched
    assert any(before)
    bus.write_byte_data(0x68, 0x68, 0x07)                   # gyro, accel and temperature signal path reset
    assert bus.read_i2c_block_data(0x68, 0x3A, 15)[1:] == before
    assert sim.signal_path_resets == 2                      # the driver's setup() and this one
    assert drv.read()["accel_z"] == pytest.approx(G, abs=1.5)   # no "all zeros: the chip was reset"


def test_device_reset_restores_the_register_maps_power_on_values() -> None:
    sim = SimMPU6050()
    imu(sim)
    assert not sim.asleep
    SimBus({0x68: sim}).write_byte_data(0x68, 0x6B, 0x80)
    assert sim.asleep and sim.regs[0x75] == 0x68 and sim.regs[0x6B] == 0x40 and sim.config() == (0, 0, 2, 250)


# --------------------------------------------------------------------------------------------
# The other chips' noise


def test_bme280_pressure_noise_per_oversampling() -> None:
    """BME280 3.5: 3.3 Pa RMS at x1 and 1.3 Pa at x16 with the filter off (plus the output's quantization)."""
    def pressure_std(osrs: int) -> float:
        still = Recording.from_arrays({"temperature": [21.0], "pressure": [100000.0], "humidity": [45.0]}, 1.0)
        drv = BME280(SimBus({0x76: SimBME280(source=still, seed=5, enforce_timing=False)}), 0x76,
                     {"pressure_oversampling": osrs, "mode": "normal"})
        drv.setup()
        return float(np.std([drv.read()["pressure"] for _ in range(1500)]))

    assert 0.85 < pressure_std(1) / math.hypot(3.3, 2.62 / math.sqrt(12)) < 1.15
    assert 0.85 < pressure_std(16) / 1.3 < 1.15


def test_sht3x_noise_is_a_third_of_the_repeatability() -> None:
    """SHT3x-DIS: repeatability is 3 σ; high: 0.04 °C, 0.08 %RH; low: 0.15 °C, 0.21 %RH."""
    still = Recording.from_arrays({"temperature": [22.0], "humidity": [40.0]}, 1.0)
    for rep, t_rep, rh_rep in (("high", 0.04, 0.08), ("low", 0.15, 0.21)):
        drv = SHT3x(SimBus({0x44: SimSHT3x(source=still, enforce_timing=False, seed=1)}), 0x44,
                    {"repeatability": rep, "mode": "periodic", "periodic_mps": 10})   # no waits per read
        drv.setup()
        reads = [drv.read() for _ in range(1500)]
        t_lsb, rh_lsb = 175 / 65535 / math.sqrt(12), 100 / 65535 / math.sqrt(12)
        assert 0.85 < np.std([r["temperature"] for r in reads]) / math.hypot(t_rep / 3, t_lsb) < 1.15
        assert 0.85 < np.std([r["humidity"] for r in reads]) / math.hypot(rh_rep / 3, rh_lsb) < 1.15


def test_ads1115_noise_grows_with_the_data_rate() -> None:
    still = Recording.from_arrays({"ain0": [0.1], "ain1": [0.0], "ain2": [0.0], "ain3": [0.0]}, 1.0)

    def std(rate: int) -> float:
        drv = ADS1115(SimBus({0x48: SimADS1115(source=still, enforce_timing=False, seed=2)}), 0x48,
                      {"full_scale_v": 0.256, "data_rate": rate, "mode": "continuous"})   # no waits per read
        drv.setup()
        return float(np.std([drv.read()["ain0"] for _ in range(1500)]))

    lsb = 0.256 / 32768
    assert 0.85 < std(860) / math.hypot(30e-6, lsb / math.sqrt(12)) < 1.15
    assert std(8) < lsb                          # at 8 SPS the noise stays below one LSB


# --------------------------------------------------------------------------------------------
# SHT3x status register, BMP280 address


def test_sht3x_status_after_reset_is_0x8010() -> None:
    sim = SimSHT3x(enforce_timing=False)
    drv = SHT3x(SimBus({0x44: sim}), 0x44)
    assert drv.read_status() == 0x8010 == STATUS.reset           # power-on: alert pending, reset detected
    drv.setup()                                                   # soft reset, then clear status
    assert drv.status()["reset_detected"] is False and drv.status()["alert_pending"] is False
    drv.command(0x30A2)                                           # soft reset
    assert drv.read_status() == 0x8010
    assert STATUS.decode(0x8010) == {"alert_pending": 1, "heater_on": 0, "rh_alert": 0, "t_alert": 0,
                                     "reset_detected": 1, "command_failed": 0, "write_crc_failed": 0}


@pytest.mark.parametrize("driver", ["bme280", "bmp280", "mpu6050", "sht3x", "ads1115"])
def test_a_simulated_chip_answers_at_its_drivers_default_address(driver: str) -> None:
    bus = sim_bus_for(driver, None, {}, 10.0)
    drv = make_driver(driver, bus, None, {})
    assert list(bus.devices) == [drv.address] == [type(drv).default_address]
    drv.setup()
    assert drv.read()


def test_bmp280_without_an_address_answers_at_0x76() -> None:
    bus = sim_bus_for("bmp280")
    drv = BMP280(bus)              # the driver's default address
    drv.setup()
    assert drv.address == 0x76 and 90000 < drv.read()["pressure"] < 110000
    # on the one-of-each bus the BME280 holds 0x76, so the BMP280 takes the driver's other address
    assert {a: d.kind for a, d in default_sim_bus().devices.items()}[0x77] == "bmp280"


# --------------------------------------------------------------------------------------------
# The typed spec


def test_spec_defaults_are_a_realistic_chip() -> None:
    spec = parse_sim_spec("mpu6050", {})
    assert (spec.gravity, spec.offsets, spec.noise, spec.orientation) == (True, True, 1.0, "z_up")
    spec = check_sim_table("mpu6050", {"orientation": [10, 20, 30], "gravity": False, "noise": False, "seed": 4,
                                       "nack_probability": 0.1})
    assert spec.orientation == (10.0, 20.0, 30.0) and not spec.gravity and spec.noise == 0.0
    bus = sim_bus_for("mpu6050", None, {"orientation": "random", "seed": 9})
    assert not np.allclose(bus.devices[0x68].rotation, np.eye(3))


@pytest.mark.parametrize(("table", "key", "message"), [
    ({"gravty": True}, "sim.gravty", "sim: unknown key 'gravty'; known keys:"),
    ({"orientation": "sideways"}, "sim.orientation", "'sideways' is not 'random' or one of z_up"),
    ({"orientation": [1, 2]}, "sim.orientation", "is not roll, pitch, yaw in degrees"),
    ({"gravity": "yes"}, "sim.gravity", "'yes' is not true or false"),
    ({"offsets": 1}, "sim.offsets", "1 is not true or false"),
    ({"seed": 1.5}, "sim.seed", "1.5 is not a valid int"),
    ({"noise": -1}, "sim.noise", "-1 is not a valid float"),
    ({"kind": "bme280"}, "sim.kind", "the simulated chip is the sensor's driver"),
])
def test_spec_errors_name_the_key(table, key, message) -> None:
    with pytest.raises(SimSpecError) as err:
        check_sim_table("mpu6050", table)
    assert err.value.key == key and message in str(err.value)


def test_imu_keys_belong_to_the_imu() -> None:
    with pytest.raises(SimSpecError, match=r"sim\.gravity: the bme280 simulation has no gravity") as err:
        check_sim_table("bme280", {"gravity": False})
    assert err.value.key == "sim.gravity"
