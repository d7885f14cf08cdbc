"""Config errors: every one names the file, the line, the key and what is expected (exact messages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from device.config import ConfigError, load_config
from device.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
device_id = "pi-test"

[model]
bundle = "model.spinal"

[[sensors]]
id = "imu"
driver = "mpu6050"
address = 0x68
rate_hz = 50
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spinal.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value).replace(str(path), "FILE")


def test_minimal_config_gets_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.device_id == "pi-test"
    assert cfg.model.bundle == tmp_path / "model.spinal"  # relative to the config file
    assert cfg.model.runtime == "auto" and cfg.model.threads == 1 and cfg.model.watch
    (imu,) = cfg.sensors
    assert (imu.driver, imu.bus, imu.address, imu.rate_hz) == ("mpu6050", 1, 0x68, 50.0)
    assert [(s.type, s.kinds) for s in cfg.sinks] == [("jsonl", ("prediction", "status"))]
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == 9108
    assert cfg.postprocess.emit == "every"


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace("address = 0x68", "adress = 0x68"),
     "FILE:9: sensors[0].adress: unknown key; did you mean 'address'? (allowed: address, bus, driver, id, options, "
     "probe_interval_s, rate_hz, readings, retry_initial_s, retry_max_s, sim, stale_after)"),
    (BASE.replace('driver = "mpu6050"', 'driver = "mpu6500"'),
     "FILE:8: sensors[0].driver: unknown driver 'mpu6500'; did you mean 'mpu6050'? (known: ads1115, bme280, "
     "bmp280, mpu6050, sht3x)"),
    (BASE.replace("address = 0x68", "address = 0x80"),
     "FILE:9: sensors[0].address: 0x80 (128) is not a 7-bit I2C device address; expected 0x03..0x77, e.g. 0x68"),
    (BASE.replace("rate_hz = 50", 'rate_hz = "50"'),
     "FILE:10: sensors[0].rate_hz: expected a number, got a string '50'"),
    (BASE.replace("rate_hz = 50", "rate_hz = 0"), "FILE:10: sensors[0].rate_hz: must be > 0, got 0"),
    (BASE + "[postprocess]\nemit = \"chnage\"\n",
     "FILE:12: postprocess.emit: expected one of 'every', 'change', got 'chnage'; did you mean 'change'?"),
    (BASE + "[postprocess]\nsmoothing = 2.5\n",
     "FILE:12: postprocess.smoothing: expected an integer, got a number 2.5"),
    (BASE.replace("[model]", "[modle]"),
     "FILE:3: modle: unknown key; did you mean 'model'? (allowed: device_id, state_dir, model, sensors, binding, "
     "postprocess, sinks, http, daemon)"),
    (BASE.replace('bundle = "model.spinal"', "threads = 2"),
     "FILE:3: model: missing required key 'bundle' (a path (string))"),
    (BASE.replace('device_id = "pi-test"', 'device_id = "pi test"'),
     "FILE:1: device_id: 'pi test' must start with a letter and hold up to 64 letters, digits, '_' or '-'"),
    (BASE + "[[sinks]]\ntype = \"jsnol\"\n",
     "FILE:12: sinks[0].type: unknown sink type 'jsnol'; did you mean 'jsonl'? (known: jsonl, mqtt)"),
    (BASE + "[[sinks]]\ntype = \"jsonl\"\nfsync = \"sometimes\"\n",
     "FILE:13: sinks[0].fsync: expected one of 'always', 'flush', 'never', got 'sometimes'"),
    (BASE + "[[sinks]]\ntype = \"jsonl\"\nkinds = [\"predictions\"]\n",
     "FILE:13: sinks[0].kinds[0]: 'predictions' is not a record kind; did you mean 'prediction'? (kinds: "
     "prediction, reading, status)"),
    (BASE + "[binding]\n\"imu.accel_x\" = \"imu2.accel_x\"\n",
     "FILE:12: binding.\"imu.accel_x\": no sensor with id 'imu2'; did you mean 'imu'? (sensors: imu)"),
    (BASE + "[sensors.options]\naccel_range_g = 3\n",
     "FILE:12: sensors[0].options.accel_range_g: mpu6050 option 'accel_range_g': must be one of 2, 4, 8, 16 (got 3)"),
    (BASE + "[http]\nport = 70000\n", "FILE:12: http.port: must be <= 65535, got 70000"),
    (BASE + "[[sinks]]\ntype = [\"mqtt\"]\n",  # was a TypeError traceback (unhashable list)
     "FILE:12: sinks[0].type: unknown sink type ['mqtt'] (known: jsonl, mqtt)"),
    (BASE + "[[sensors]]\nid = \"imu\"\ndriver = \"bme280\"\n",
     "FILE:12: sensors[1].id: 'imu' is already the id of another sensor; ids must be unique"),
    (BASE.replace("rate_hz = 50", "rate_hz = 50\nrate_hz = 60"),
     "FILE:11: invalid TOML: Cannot overwrite a value (column 13)"),
    ("device_id = \"x\"\n", "FILE: <top>: missing required table [model] (with at least bundle = "
                            "\"/path/to/model.spinal\")"),
])
def test_config_errors_name_file_line_key_and_expectation(tmp_path, text, message):
    assert error_of(tmp_path, text) == message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: no such config file \(see firmware/spinal\.example\.toml\)"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text \(byte 0\)"):
        load_config(tmp_path / "bin.toml")


def test_the_example_config_passes_check_but_for_the_bundle_not_installed_yet():
    """firmware/spinal.example.toml documents every key; `spinal run --check` accepts all of it, and fails only
    because its bundle is not installed on this machine (a missing bundle fails --check: `run` would)."""
    from device.daemon import check_config

    example = ROOT / "firmware/spinal.example.toml"
    config = load_config(example)
    assert (config.device_id, len(config.sensors), len(config.sinks)) == ("pi-workshop", 2, 2)
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config",
                           str(example), "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {example}:18: model.bundle: /var/lib/spinal/model.spinal does not exist; install a bundle there "
        "(made by spinal convert) before starting the service"]
    with pytest.raises(BadInput, match=r"model\.bundle: .* does not exist"):
        check_config(config)


def test_cli_reports_a_config_error_in_one_line_with_exit_2(tmp_path):
    path = write(tmp_path, BASE.replace("address = 0x68", "adress = 0x68"))
    proc = subprocess.run([sys.executable, "-c", "from device.cli import main; main()", "run", "--config",
                           str(path), "--check"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sensors[0].adress: unknown key; did you mean 'address'?" in lines[0]
    assert "Traceback" not in proc.stderr


def test_two_mqtt_sinks_need_their_own_spool_and_distinct_metric_names(tmp_path):
    """Before: --check accepted both; `spinal run` then died on the shared spool's lock ("in use by another
    process", misleading) or with a prometheus DuplicateTimeseries traceback (names a-b and a_b)."""
    mqtt = '[[sinks]]\ntype = "mqtt"\nname = "{name}"\nhost = "127.0.0.1"\n{spool}'
    state = f'state_dir = "{tmp_path / "state"}"\n'
    two = state + BASE + mqtt.format(name="one", spool="") + "\n" + mqtt.format(name="two", spool="")
    assert error_of(tmp_path, two) == (f"FILE:17: sinks[1].spool.path: {tmp_path / 'state' / 'mqtt-spool.sqlite'} is "
                                       "already the spool of sinks[0]; give each MQTT sink its own spool.path")
    clash = (state + BASE + mqtt.format(name="a-b", spool='spool.path = "s1.sqlite"\n') + "\n"
             + mqtt.format(name="a_b", spool='spool.path = "s2.sqlite"\n'))
    assert error_of(tmp_path, clash) == ("FILE:20: sinks[1].name: 'a_b' and 'a-b' (sinks[0]) give the same metric "
                                         "names (spinal_mqtt_a_b_...); rename one")
    ok = (state + BASE + mqtt.format(name="a-b", spool='spool.path = "s1.sqlite"\n') + "\n"
          + mqtt.format(name="other", spool='spool.path = "s2.sqlite"\n'))
    assert [s.name for s in load_config(write(tmp_path, ok)).sinks] == ["a-b", "other"]


def test_stall_after_s_below_the_loops_heartbeat_is_refused(tmp_path):
    # The sampler/inference/output loops beat every 0.2-0.25 s while idle: with stall_after_s = 0.1 a healthy
    # daemon looked stalled, stopped its watchdog pings and got killed by systemd.
    assert error_of(tmp_path, BASE + "[daemon]\nstall_after_s = 0.1\n") == \
        "FILE:12: daemon.stall_after_s: must be >= 0.5, got 0.1"
    assert load_config(write(tmp_path, BASE + "[daemon]\nstall_after_s = 0.6\n")).daemon.stall_after_s == 0.6


def test_check_reads_the_mqtt_secrets_and_tls_files_the_sink_reads_at_start(tmp_path):
    """Before: --check said ok, then `spinal run` failed on a missing secrets file or CA file."""
    from device.daemon import check_config
    from device.errors import BadInput

    sink = (f'state_dir = "{tmp_path / "state"}"\n' + BASE + '[[sinks]]\ntype = "mqtt"\nhost = "127.0.0.1"\n'
            'secrets_file = "secrets.toml"\ntls = true\n')
    cfg = load_config(write(tmp_path, sink))
    with pytest.raises(BadInput, match=r"cannot read the MQTT secrets file .*secrets\.toml: No such file"):
        check_config(cfg)
    (tmp_path / "secrets.toml").write_text('username = "pi"\npassword = "pw"\n')
    (tmp_path / "secrets.toml").chmod(0o644)
    with pytest.raises(BadInput, match=r"accessible to other users \(mode 644\); run: chmod 600"):
        check_config(cfg)
    (tmp_path / "secrets.toml").chmod(0o600)
    cfg = load_config(write(tmp_path, sink + 'ca_file = "ca.pem"\n'))
    with pytest.raises(BadInput, match=r"cannot load mqtt\.ca_file .*ca\.pem"):
        check_config(cfg)
    cfg = load_config(write(tmp_path, sink))  # the system's CA store, a readable private secrets file
    # The sink passes; what is left is the bundle, which this test does not install.
    with pytest.raises(BadInput, match=r"model\.bundle: .*model\.spinal does not exist"):
        check_config(cfg)


def test_driver_options_and_the_sim_table_are_typed_once_at_load(tmp_path):
    from device.sensors.mpu6050 import MPU6050Options
    from device.sensors.sim import SimSpec

    cfg = load_config(write(tmp_path, BASE + "[sensors.options]\naccel_range_g = 4\n[sensors.sim]\nseed = 3\n"))
    (imu,) = cfg.sensors
    assert imu.options == MPU6050Options(accel_range_g=4)
    assert isinstance(imu.sim, SimSpec) and (imu.sim.kind, imu.sim.seed) == ("mpu6050", 3)


def test_a_config_error_carries_its_key_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + "[sensors.options]\ngyro_range_dps = 300\n"))
    assert info.value.path == ("sensors", 0, "options", "gyro_range_dps")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + "[sensors.sim]\nfrozn = true\n"))
    assert info.value.path == ("sensors", 0, "sim", "frozn")
