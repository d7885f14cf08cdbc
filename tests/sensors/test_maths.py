"""Datasheet maths against published vectors, and encode -> decode round trips (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.sensors import ads1115 as ads
from device.sensors import bme280 as bme
from device.sensors import mpu6050 as mpu
from device.sensors import sht3x as sht

# BMP280 datasheet (BST-BMP280-DS001), section 3.12, the worked example's trimming words.
DATASHEET = bme.Calibration(27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
HUMIDITY_CAL = bme.Calibration(27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                               75, 362, 0, 313, 50, 30)


# --------------------------------------------------------------------------------------------
# BME280 / BMP280


def test_bme280_temperature_worked_example() -> None:
    t, t_fine = bme.compensate_temperature_int(519888, DATASHEET)
    assert (t, t_fine) == (2508, 128422)         # 25.08 °C
    tf, t_fine_f = bme.compensate_temperature_float(519888, DATASHEET)
    assert round(tf, 2) == 25.08
    assert t_fine_f == pytest.approx(128422.2869, abs=1e-3)   # the example's float t_fine


def test_bmp280_pressure_worked_example() -> None:
    _, t_fine = bme.compensate_temperature_int(519888, DATASHEET)
    _, t_fine_f = bme.compensate_temperature_float(519888, DATASHEET)
    # double-precision formula: 100653.27 Pa, as in the datasheet's table
    assert round(bme.compensate_pressure_float(415148, t_fine_f, DATASHEET), 2) == 100653.27
    # 64-bit fixed point: Q24.8, integer part 100653 Pa
    q248 = bme.compensate_pressure_int64(415148, t_fine, DATASHEET)
    assert q248 >> 8 == 100653
    assert q248 / 256 == pytest.approx(100653.27, abs=0.05)
    # The 32-bit listing (datasheet 8.2, "accuracy typically 1 Pa") worked through by hand gives 100656.
    assert bme.compensate_pressure_int32(415148, t_fine, DATASHEET) == 100656


def test_bme280_compensate_bundles_channels() -> None:
    out = bme.compensate(415148, 519888, None, DATASHEET)
    assert set(out) == {"temperature", "pressure"}
    assert out["temperature"] == 25.08
    assert bme.compensate(None, 519888, None, DATASHEET, "float").keys() == {"temperature"}


def test_bme280_humidity_int_and_float_agree() -> None:
    _, t_fine = bme.compensate_temperature_int(519888, HUMIDITY_CAL)
    for adc_h in (20000, 26000, 30000, 36000):
        h_int = bme.compensate_humidity_int(adc_h, t_fine, HUMIDITY_CAL) / 1024
        h_float = bme.compensate_humidity_float(adc_h, t_fine, HUMIDITY_CAL)
        assert h_int == pytest.approx(h_float, abs=0.05)
    assert bme.compensate_humidity_float(0, t_fine, HUMIDITY_CAL) == 0.0      # clamped


def test_bme280_tables() -> None:
    assert [bme.oversampling_factor(c) for c in range(8)] == [0, 1, 2, 4, 8, 16, 16, 16]
    assert [bme.filter_coefficient(c) for c in range(8)] == [0, 2, 4, 8, 16, 16, 16, 16]
    assert bme.standby_ms(6, "bme280") == 10.0 and bme.standby_ms(6, "bmp280") == 2000.0
    # appendix B: 1.25 + 2.3*1 + (2.3*1 + 0.575) * 2 = 9.3 ms at x1/x1/x1
    assert bme.measurement_time_ms(1, 1, 1) == pytest.approx(9.3)
    assert bme.measurement_time_ms(16, 16, 16) == pytest.approx(112.8)


s16 = st.integers(-32768, 32767)
u16 = st.integers(1, 65535)


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(t1=u16, t2=s16, t3=s16, p1=u16, p=st.lists(s16, min_size=8, max_size=8), h1=st.integers(0, 255), h2=s16,
       h3=st.integers(0, 255), h4=st.integers(-2048, 2047), h5=st.integers(-2048, 2047), h6=st.integers(-128, 127))
def test_calibration_bytes_round_trip(t1, t2, t3, p1, p, h1, h2, h3, h4, h5, h6) -> None:
    cal = bme.Calibration(t1, t2, t3, p1, *p, h1, h2, h3, h4, h5, h6)
    assert bme.parse_calibration(*bme.encode_calibration(cal)) == cal


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(st.integers(0, (1 << 20) - 1), st.integers(0, (1 << 20) - 1), st.integers(0, 65535))
def test_data_bytes_round_trip(adc_p, adc_t, adc_h) -> None:
    assert bme.parse_data(bme.encode_data(adc_p, adc_t, adc_h)) == (adc_p, adc_t, adc_h)
    assert bme.parse_data(bme.encode_data(adc_p, adc_t)) == (adc_p, adc_t, None)


@settings(max_examples=60, deadline=None)
@given(celsius=st.floats(-40.0, 85.0), pascal=st.floats(30000.0, 110000.0), rh=st.floats(0.0, 100.0))
def test_bme280_encode_decode_round_trip(celsius, pascal, rh) -> None:
    cal = HUMIDITY_CAL
    adc_t = bme.encode_temperature(celsius, cal)
    t, t_fine = bme.compensate_temperature_int(adc_t, cal)
    assert abs(t / 100 - celsius) <= 0.01                       # the int output's resolution
    adc_p = bme.encode_pressure(pascal, t_fine, cal)
    assert abs(bme.compensate_pressure_int64(adc_p, t_fine, cal) / 256 - pascal) <= 0.2   # < 1 ADC count
    adc_h = bme.encode_humidity(rh, t_fine, cal)
    assert abs(bme.compensate_humidity_int(adc_h, t_fine, cal) / 1024 - rh) <= 0.01


# --------------------------------------------------------------------------------------------
# MPU-6050


def test_mpu6050_scale_factors() -> None:
    g = 9.80665
    assert mpu.accel_to_si(16384, 2) == pytest.approx(g)
    assert mpu.accel_to_si(8192, 4) == pytest.approx(g)
    assert mpu.accel_to_si(4096, 8) == pytest.approx(g)
    assert mpu.accel_to_si(2048, 16) == pytest.approx(g)
    assert mpu.gyro_to_si(131, 250, "deg/s") == pytest.approx(1.0)
    assert mpu.gyro_to_si(655, 500, "deg/s") == pytest.approx(10.0)
    assert mpu.gyro_to_si(328, 1000, "deg/s") == pytest.approx(10.0)
    assert mpu.gyro_to_si(164, 2000, "deg/s") == pytest.approx(10.0)
    assert mpu.gyro_to_si(131, 250) == pytest.approx(math.pi / 180)
    assert mpu.temperature_to_si(0) == pytest.approx(36.53)
    assert mpu.temperature_to_si(-340) == pytest.approx(35.53)
    assert mpu.sample_rate_hz(0, 0) == 8000 and mpu.sample_rate_hz(3, 0) == 1000 and mpu.sample_rate_hz(3, 9) == 100


def test_mpu6050_burst_is_big_endian() -> None:
    block = bytes([0x40, 0x00, 0xC0, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0x00, 0x83, 0x80, 0x00, 0x7F, 0xFF])
    assert mpu.parse_burst(block) == (16384, -16384, 1, -1, 131, -32768, 32767)
    assert mpu.encode_burst(*mpu.parse_burst(block)) == block


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(st.floats(-150.0, 150.0), st.sampled_from([2, 4, 8, 16]), st.floats(-30.0, 30.0),
       st.sampled_from([250, 500, 1000, 2000]), st.floats(-40.0, 85.0))
def test_mpu6050_round_trip(accel, range_g, gyro, range_dps, celsius) -> None:
    full_scale = range_g * 9.80665
    decoded = mpu.accel_to_si(mpu.accel_from_si(accel, range_g), range_g)
    if abs(accel) < full_scale * 0.999:
        assert abs(decoded - accel) <= 9.80665 / mpu.ACCEL_LSB_PER_G[range_g]
    else:   # saturates at the range, like the chip
        assert abs(decoded) == pytest.approx(full_scale, rel=1e-3)
    gyro_dec = mpu.gyro_to_si(mpu.gyro_from_si(gyro, range_dps), range_dps)
    if abs(math.degrees(gyro)) < range_dps * 0.99:
        assert abs(gyro_dec - gyro) <= math.radians(1 / mpu.GYRO_LSB_PER_DPS[range_dps])
    assert abs(mpu.temperature_to_si(mpu.temperature_from_si(celsius)) - celsius) <= 1 / 340


# --------------------------------------------------------------------------------------------
# SHT3x


def test_sht3x_crc_vectors() -> None:
    assert sht.crc8(b"\xbe\xef") == 0x92           # datasheet section 4.12
    assert sht.crc8(b"\x00\x00") == 0x81
    assert sht.word_with_crc(0xBEEF) == b"\xbe\xef\x92"
    assert sht.check_words(b"\xbe\xef\x92\x00\x00\x81") == [0xBEEF, 0x0000]
    with pytest.raises(ValueError, match="CRC mismatch in word 1"):
        sht.check_words(b"\xbe\xef\x92\x00\x00\x80")


def test_sht3x_conversion_formulas() -> None:
    assert sht.temperature_to_si(0) == -45.0 and sht.temperature_to_si(65535) == 130.0
    assert sht.humidity_to_si(0) == 0.0 and sht.humidity_to_si(65535) == 100.0
    assert sht.temperature_to_si(0x6666) == pytest.approx(25.0, abs=0.01)


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(st.integers(0, 65535), st.integers(0, 23))
def test_sht3x_crc_detects_every_single_bit_error(word, bit) -> None:
    data = bytearray(sht.word_with_crc(word))
    assert sht.check_words(bytes(data)) == [word]
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ValueError):
        sht.check_words(bytes(data))


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(st.floats(-45.0, 130.0), st.floats(0.0, 100.0))
def test_sht3x_round_trip(celsius, rh) -> None:
    assert abs(sht.temperature_to_si(sht.temperature_from_si(celsius)) - celsius) <= 175 / 65535
    assert abs(sht.humidity_to_si(sht.humidity_from_si(rh)) - rh) <= 100 / 65535


# --------------------------------------------------------------------------------------------
# ADS1115


def test_ads1115_pga_lsb_sizes() -> None:
    # datasheet table 3: FSR / 2^15
    expected = {6.144: 187.5e-6, 4.096: 125e-6, 2.048: 62.5e-6, 1.024: 31.25e-6, 0.512: 15.625e-6, 0.256: 7.8125e-6}
    for fsr, lsb in expected.items():
        assert ads.lsb_v(fsr) == pytest.approx(lsb, rel=1e-12)
        assert ads.code_to_volts(0x7FFF, fsr) == pytest.approx(fsr - lsb)
        assert ads.code_to_volts(ads.to_signed16(0x8000), fsr) == pytest.approx(-fsr)
    assert [ads.full_scale_v(c) for c in range(8)] == [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256]
    assert [ads.data_rate_sps(c) for c in range(8)] == [8, 16, 32, 64, 128, 250, 475, 860]


def test_ads1115_config_word() -> None:
    # the power-on default 0x8583: OS=1, AIN0-AIN1, ±2.048 V, single-shot, 128 SPS, comparator off
    assert ads.config_word(0, 2, 4, single_shot=True, start=True) == ads.CONFIG_DEFAULT
    assert ads.parse_config(0x8583) == {"os": 1, "mux": 0, "pga": 2, "mode": 1, "dr": 4, "comp_mode": 0,
                                        "comp_pol": 0, "comp_lat": 0, "comp_que": 3}
    assert ads.config_word(ads.MUX_CODES["ain3"], 0, 7, single_shot=False) == 0x7003 | 0x00E0


@settings(deadline=None)   # no wall-clock deadline on a shared CI machine
@given(st.floats(-7.0, 7.0), st.sampled_from(sorted(ads.PGA_CODES)))
def test_ads1115_round_trip(volts, fsr) -> None:
    code = ads.volts_to_code(volts, fsr)
    assert ads.to_signed16(code & 0xFFFF) == code
    if -fsr <= volts < fsr - ads.lsb_v(fsr):
        assert abs(ads.code_to_volts(code, fsr) - volts) <= ads.lsb_v(fsr) / 2 + 1e-12
    else:
        assert code in (-32768, 32767)
