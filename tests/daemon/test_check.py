"""`spinal run --check` says what `run` will meet: [sensors.sim] typos, impossible addresses, a missing
bundle, channel units, and every error names the file and the key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from device.config import load_config
from device.daemon import Daemon, RunOptions, check_config
from device.errors import BadInput
from device.units import normalize_unit, same_unit
from tests.daemon.test_config import BASE, ROOT, error_of, write
from tests.daemon.test_daemon import write_config


def test_a_typo_in_the_sim_table_fails_at_load_naming_file_line_and_key(tmp_path):
    # Before: accepted by load_config and --check (without --sim); `run --sim` then retried the sensor forever.
    assert error_of(tmp_path, BASE + "[sensors.sim]\nnack_probabilty = 0.1\n").startswith(
        "FILE:12: sensors[0].sim: unknown key 'nack_probabilty'; known keys: ")
    assert error_of(tmp_path, BASE + "[sensors.sim]\nnack_probability = 2\n") == (
        "FILE:12: sensors[0].sim.nack_probability: 2.0 is not a probability (0..1)")
    assert error_of(tmp_path, BASE + '[sensors.sim]\nadvance = "sometimes"\n').startswith(
        "FILE:12: sensors[0].sim.advance: advance must be 'per_read' or 'time'")
    path = write(tmp_path, BASE + "[sensors.sim]\nfrozn = true\n")
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(path),
                           "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "spinal.toml:12: sensors[0].sim: unknown key 'frozn'" in proc.stderr, proc.stderr


def test_a_sim_table_the_simulator_refuses_stops_run_sim_at_once(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"], sim='[sensors.sim]\nreplay = "no-such-recording.csv"\n')
    daemon = Daemon(load_config(path), RunOptions(sim=True))
    t = time.monotonic()
    with pytest.raises(BadInput, match=r"spinal\.toml:\d+: sensors\[0\]\.sim: .*no-such-recording\.csv"):
        daemon.run()
    assert time.monotonic() - t < 10


def test_an_address_the_chip_cannot_have_fails_at_load(tmp_path):
    text = BASE.replace('driver = "mpu6050"\naddress = 0x68', 'driver = "sht3x"\naddress = 0x40')
    # Before: accepted; the sensor was then retried forever ("no sht3x answers").
    assert error_of(tmp_path, text) == ("FILE:9: sensors[0].address: 0x40 is not an address a sht3x can have "
                                        "(it answers at 0x44 or 0x45)")
    assert load_config(write(tmp_path, text.replace("0x40", "0x45"))).sensors[0].address == 0x45


def with_units(tmp_path, bundles, units):
    """The good bundle as a directory whose input declares ``units``."""
    bundle = tmp_path / f"bundle-{len(list(tmp_path.glob('bundle-*')))}"
    shutil.copytree(bundles["dir"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["inputs"][0]["units"] = list(units)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    path = write_config(tmp_path, bundles["good"])
    path.write_text(path.read_text().replace(f'bundle = "{tmp_path / "model.spinal"}"', f'bundle = "{bundle}"'))
    return load_config(path)


def test_channel_units_are_compared_after_normalization(tmp_path, bundles):
    assert normalize_unit("C") == normalize_unit(" degC ") == "°C" and same_unit("m/s^2", "m/s²")
    assert not same_unit("hPa", "Pa") and not same_unit("K", "°C")
    ok = with_units(tmp_path, bundles, ["m/s^2"] * 3 + ["rad/s"] * 3)
    assert any(line.startswith("canary:") for line in check_config(ok, sim=True))
    wrong = with_units(tmp_path, bundles, ["m/s^2"] * 3 + ["deg/s"] * 3)
    # Before: never compared; a model trained on deg/s ran on rad/s.
    with pytest.raises(BadInput, match=r"spinal\.toml:\d+: model\.bundle: model 'tiny-imu' expects channel "
                                       r"'imu\.gyro_x' in 'deg/s', but sensor 'imu' delivers gyro_x in 'rad/s'"):
        check_config(wrong, sim=True)


@pytest.mark.parametrize(("extra", "message"), [
    ('[binding]\n"imu.accel__x" = "imu.accel_x"\n',
     r"spinal\.toml:\d+: binding\.imu\.accel__x: the model has no input channel 'imu\.accel__x'"),
    ("", r"spinal\.toml:\d+: model\.artifact: 'x\.tflite' is neither an artifact"),
])
def test_check_errors_name_the_file_and_the_key(tmp_path, bundles, extra, message):
    path = write_config(tmp_path, bundles["good"])
    text = path.read_text() + "\n" + extra
    if not extra:
        text = text.replace("watch = false", 'watch = false\nartifact = "x.tflite"')
    path.write_text(text)
    # Before: "binding.imu.accel__x: ..." and "artifact 'x.tflite' is not in the bundle ...": no file, no line.
    with pytest.raises(BadInput, match=message):
        check_config(load_config(path), sim=True)


def test_a_missing_bundle_fails_check(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"])
    (tmp_path / "model.spinal").unlink()
    # Before: a "note:" and exit 0.
    with pytest.raises(BadInput, match=r"spinal\.toml:\d+: model\.bundle: .*model\.spinal does not exist"):
        check_config(load_config(path))


def test_probe_reads_id_registers_only_and_names_a_wrong_chip_or_an_empty_address(tmp_path, bundles):
    from device.daemon import probe_sensors

    path = write_config(tmp_path, bundles["good"])
    lines = probe_sensors(load_config(path), sim=True)
    assert lines == ["probe imu: mpu6050 answers at 0x68 on simulated I2C bus 1 (WHO_AM_I 0x68)"]
    # The simulated MPU-6050 answers where the config says; a config expecting it at 0x69 finds nothing.
    path = write_config(tmp_path, bundles["good"], sim="[sensors.sim]\naddress = 0x68\n")
    path.write_text(path.read_text().replace("address = 0x68\nrate_hz", "address = 0x69\nrate_hz"))
    with pytest.raises(BadInput, match=r"spinal\.toml:\d+: sensors\[0\]\.address: nothing answers at 0x69"):
        probe_sensors(load_config(path), sim=True)
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(path),
                           "--sim", "--probe"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "nothing answers at 0x69" in proc.stderr, proc.stderr
