"""Register layouts declared once as data: the engine, and the drivers and simulated chips sharing one declaration."""

from __future__ import annotations

import pytest

from device.sensors import ads1115 as ads
from device.sensors import bme280 as bme
from device.sensors import mpu6050 as mpu
from device.sensors import sht3x as sht
from device.sensors.registers import Field, Register, RegisterMap
from device.sensors.sim import SIM_CHIPS, SimADS1115, SimBME280, SimBus, SimMPU6050

MAPS = [mpu.REGISTERS, bme.REGISTERS_BME280, bme.REGISTERS_BMP280, ads.REGISTERS]


def test_field_encode_decode_and_lookup() -> None:
    osrs = Field("osrs_t", 0xE0, {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}, also={6: 16, 7: 16})
    assert osrs.shift == 5 and osrs.bits == 7
    assert osrs.encode(16) == 5 << 5 and osrs.decode(0xA0) == 16 and osrs.decode(0xE0) == 16
    flag = Field("sleep", 0x40)
    assert flag.encode(1) == 0x40 and flag.decode(0xFF) == 1
    with pytest.raises(ValueError, match="3 is not one of"):
        osrs.encode(3)
    with pytest.raises(ValueError, match="does not fit"):
        flag.encode(2)
    with pytest.raises(ValueError, match="not contiguous"):
        Field("bad", 0b101)


def test_register_encode_keeps_other_fields_and_checks_its_declaration() -> None:
    ctrl = bme.REGISTERS_BME280.CTRL_MEAS
    value = ctrl.encode(osrs_t=2, osrs_p=16, mode="normal")
    assert value == (2 << 5) | (5 << 2) | 3
    assert ctrl.encode(value, mode="forced") == (2 << 5) | (5 << 2) | 1
    assert ctrl.decode(value) == {"osrs_t": 2, "osrs_p": 16, "mode": "normal"}
    with pytest.raises(KeyError, match="no field 'mood'"):
        ctrl.encode(mood="normal")
    with pytest.raises(ValueError, match="overlaps"):
        Register("R", 0x10, (Field("a", 0x0F), Field("b", 0x18)))
    with pytest.raises(ValueError, match="share address 0x10"):
        RegisterMap("chip", Register("A", 0x10), Register("B", 0x10))


@pytest.mark.parametrize("regmap", MAPS, ids=lambda m: m.chip)
def test_every_declared_value_round_trips(regmap: RegisterMap) -> None:
    for reg in regmap:
        for f in reg.fields:
            for value in (f.values or {v: v for v in range(f.bits + 1)}):
                assert reg.decode(reg.encode(**{f.name: value}))[f.name] == value, (reg.name, f.name, value)


def test_the_simulated_chips_serve_their_drivers_declaration() -> None:
    assert SimMPU6050.regmap is mpu.REGISTERS
    assert SimBME280(chip="bmp280").regmap is bme.REGISTERS_BMP280 and SimBME280().regmap is bme.REGISTERS_BME280
    # power-on values come from the declaration
    chip = SimMPU6050()
    assert chip.regs[mpu.REGISTERS.PWR_MGMT_1.address] == mpu.REGISTERS.PWR_MGMT_1.reset == 0x40
    assert SimBME280(chip="bmp280").regs[bme.REG_CHIP_ID] == 0x58
    bus = SimBus({0x48: SimADS1115()})
    for reg in ads.REGISTERS:
        if reg.reset:
            assert bus.read_i2c_block_data(0x48, reg.address, 2) == list(reg.to_bytes(reg.reset)), reg.name
    assert sht.STATUS.reset == 0x8010


def test_default_addresses_live_on_the_drivers() -> None:
    for name, chip in SIM_CHIPS.items():
        assert chip.default_address == chip.driver.default_address, name
        assert chip().default_address == chip.driver.default_address, name


def test_the_drivers_constants_are_the_declarations() -> None:
    assert (mpu.REG_PWR_MGMT_1, mpu.REG_ACCEL_XOUT_H, mpu.PWR_RESET, mpu.PWR_SLEEP) == (0x6B, 0x3B, 0x80, 0x40)
    assert (bme.REG_CTRL_MEAS, bme.REG_DATA, bme.STATUS_MEASURING, bme.STATUS_IM_UPDATE) == (0xF4, 0xF7, 0x08, 0x01)
    assert (ads.CONFIG_DEFAULT, ads.OS_BIT, ads.MODE_SINGLE_BIT) == (0x8583, 0x8000, 0x0100)
    assert ads.config_word(4, 1, 7, start=True) == 0xC3E3
    assert ads.parse_config(0x8583)["dr"] == 4 and ads.CONFIG_MEANING.decode(0x8583)["full_scale_v"] == 2.048
    assert sht.STATUS_HEATER == 1 << 13 and sht.STATUS_CLEARED_BY_CLEAR == 0x8C10
