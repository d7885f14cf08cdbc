"""A simulated I2C bus with register-level simulated chips, replay of recordings and fault injection.

:class:`SimBus` has the methods of ``smbus2.SMBus`` (``read_byte_data``, ``read_i2c_block_data``,
``write_byte_data``, ``i2c_rdwr`` with ``smbus2.i2c_msg`` ...), so drivers, ours or anybody's,
run on it unchanged. The simulated chips (:class:`SimBME280`, :class:`SimMPU6050`, :class:`SimSHT3x`,
:class:`SimADS1115`) serve their real register maps, declared once in their drivers' modules
(:mod:`device.sensors.registers`), and report what the real parts report: the MPU-6050 adds gravity
along its mounting orientation, its zero-g and zero-rate offsets and its noise density; the others
their datasheet noise. Recordings hold the physical signal (an IMU's body motion, gravity-free).

The package: :mod:`.signals` (synthetic signals, recordings), :mod:`.chip` (what every chip shares,
faults), :mod:`.physics` (orientation, gravity), one module per chip, :mod:`.bus` (the bus, bus
faults), :mod:`.spec` (the typed description of a chip, the registry, building buses).
"""

from device.sensors.sim.ads1115 import SimADS1115
from device.sensors.sim.bme280 import DATASHEET_CALIBRATION, SimBME280
from device.sensors.sim.bus import I2C_M_RD, BusFaults, SimBus
from device.sensors.sim.chip import DeviceFaults, RegisterDevice, SimDevice, nack
from device.sensors.sim.mpu6050 import SimMPU6050
from device.sensors.sim.sht3x import SimSHT3x
from device.sensors.sim.signals import TWO_PI, Merged, Recording, Synthetic
from device.sensors.sim.spec import (
    SIM_CHIPS,
    SimChip,
    SimSpec,
    SimSpecError,
    build_sim_bus,
    check_sim_table,
    default_sim_bus,
    make_device,
    make_sim_device,
    parse_sim_spec,
    sim_bus_for,
)

__all__ = [
    "DATASHEET_CALIBRATION", "I2C_M_RD", "SIM_CHIPS", "TWO_PI", "BusFaults", "DeviceFaults", "Merged", "Recording",
    "RegisterDevice", "SimADS1115", "SimBME280", "SimBus", "SimChip", "SimDevice", "SimMPU6050", "SimSHT3x",
    "SimSpec", "SimSpecError", "Synthetic", "build_sim_bus", "check_sim_table", "default_sim_bus", "make_device",
    "make_sim_device", "nack", "parse_sim_spec", "sim_bus_for",
]
