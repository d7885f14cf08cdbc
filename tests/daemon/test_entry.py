"""``spinal run`` hands over to a lean serving process (device/daemon/entry.py): the same PID (systemd's
Type=notify and watchdog need it), without the CLI framework in memory, errors reported as before."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.daemon.test_daemon import finish, spawn, wait_for, write_config

# Loaded by every interpreter started with this directory first on PYTHONPATH: the one that exits (the serving
# process; the CLI's own interpreter is replaced by exec and never exits) writes its PID and modules.
SITECUSTOMIZE = """
import atexit, json, os, sys
def _dump():
    with open(os.environ["SPINAL_TEST_MODULES"], "w") as fh:
        json.dump({"pid": os.getpid(), "modules": sorted(sys.modules)}, fh)
atexit.register(_dump)
"""


def test_the_serving_process_is_the_same_pid_without_typer_click_or_rich(tmp_path, bundles):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    dump = tmp_path / "modules.json"
    cfg = write_config(tmp_path, bundles["good"])
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
           "SPINAL_TEST_MODULES": str(dump)}
    proc = spawn(cfg, env=env)
    wait_for(lambda: (tmp_path / "out.jsonl").exists() and '"prediction"' in (tmp_path / "out.jsonl").read_text(),
             what="a prediction")
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
    at = cmdline.index(b"-c")
    assert b"device.daemon.entry" in cmdline[at + 1], cmdline
    assert cmdline[at + 3:at + 6] == [b"spinal", b"run", b"--config"], cmdline  # what `pgrep -f "spinal run"` matches
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 0, err
    seen = json.loads(dump.read_text())
    assert seen["pid"] == proc.pid
    assert "device.daemon.service" in seen["modules"]
    framework = [m for m in seen["modules"] if m.split(".")[0] in ("typer", "click", "rich") or
                 m.startswith("device.cli")]
    assert not framework, framework


def test_errors_after_the_hand_over_are_reported_in_one_line_with_their_code(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"])
    model = tmp_path / "model.spinal"
    model.unlink()
    code, out, err = finish(spawn(cfg))
    assert (code, out) == (2, "") and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"error: {model}: no such bundle (expected a directory with manifest.json "
                                            "or a .spinal file)")
    cfg.write_text(cfg.read_text().replace("watch_interval_s", "watch_intervl_s"))
    code, out, err = finish(spawn(cfg))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [f"error: {cfg}:8: model.watch_intervl_s: unknown key; did you mean "
                                        "'watch_interval_s'? (allowed: artifact, bundle, canary, delegate, "
                                        "fail_closed, input, latency_budget_ms, require_signature, runtime, threads, "
                                        "trusted_keys, watch, watch_interval_s)"]


def test_optimized_bytecode_only_where_it_can_be_kept(tmp_path, monkeypatch):
    """-OO (docstrings and asserts stripped) when each marker's opt-2 cache exists or can be written; a
    read-only install without it would recompile every module on every start, so there it is plain."""
    import importlib.util
    import sys

    from device.daemon.entry import optimize_flags

    src = tmp_path / "pkg" / "mod.py"
    src.parent.mkdir()
    src.write_text("x = 1\n")
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert optimize_flags((str(src),)) == ["-OO"]  # writable: the first start writes the cache
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert optimize_flags((str(src),)) == []  # nothing written, nothing there: plain
    cache = Path(importlib.util.cache_from_source(str(src), optimization=2))
    cache.parent.mkdir()
    cache.write_bytes(b"")
    assert optimize_flags((str(src),)) == ["-OO"]  # compiled beforehand (e.g. compileall -o 2)
    if os.geteuid() != 0:  # root writes anywhere
        cache.unlink()
        cache.parent.chmod(0o555)
        src.parent.chmod(0o555)
        monkeypatch.setattr(sys, "dont_write_bytecode", False)
        assert optimize_flags((str(src),)) == []
