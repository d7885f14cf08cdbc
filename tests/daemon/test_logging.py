"""The daemon configures every project logger: the MQTT sink's, the spool's and Home Assistant's lines
reach stderr with time and level, and [daemon] log_level applies to them."""

from __future__ import annotations

import re

from tests.daemon.test_daemon import finish, spawn, write_config

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def run_with_mqtt(tmp_path, bundle, level: str) -> str:
    sink = ('[[sinks]]\ntype = "jsonl"\nkinds = ["status"]\n'
            f'path = "{tmp_path / "out.jsonl"}"\n'
            '[[sinks]]\ntype = "mqtt"\nhost = "127.0.0.1"\nport = 1\nclose_timeout_s = 0\n')
    cfg = write_config(tmp_path, bundle, sink=sink, extra=f'log_level = "{level}"')
    code, _, err = finish(spawn(cfg, "--duration", "1.5"))
    assert code == 0, err
    return err


def test_mqtt_and_spool_lines_have_time_and_level_and_follow_log_level(tmp_path, bundles):
    err = run_with_mqtt(tmp_path, bundles["good"], "info")
    # Before: the MQTT sink's INFO lines were lost (no handler), its warnings printed bare.
    assert re.search(rf"^{STAMP} INFO device\.sinks\.mqtt: MQTT sink: broker 127\.0\.0\.1:1", err, re.M), err
    assert re.search(rf"^{STAMP} WARNING device\.sinks\.mqtt: MQTT cannot connect to broker", err, re.M), err
    assert not [line for line in err.splitlines() if line.startswith("MQTT ")], "no line without time and level"
    (tmp_path / "quiet").mkdir()
    quiet = run_with_mqtt(tmp_path / "quiet", bundles["good"], "warning")
    assert "INFO" not in quiet and re.search(rf"^{STAMP} WARNING device\.sinks\.mqtt:", quiet, re.M), quiet
