"""The daemon end to end: real bundles, real onnxruntime, the simulated MPU-6050 on a SimBus.

Subprocess tests run ``spinal run`` as systemd would (signals, NOTIFY_SOCKET); in-process tests
drive the simulated bus's fault injection and fetch /healthz and /metrics over loopback.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from device.config import load_config
from device.daemon import Daemon, RunOptions, check_config
from device.errors import BadInput, CheckFailed

ROOT = Path(__file__).resolve().parents[2]
LABELS = {"still", "walk", "run", "shake"}


def write_config(tmp: Path, bundle: Path, *, extra: str = "", sink: str | None = None, watch: bool = False,
                 http: bool = False, readings: bool = False, sim: str = "") -> Path:
    model = tmp / "model.spinal"
    if not model.exists():
        shutil.copy(bundle, model)
    sink = sink if sink is not None else (
        f'[[sinks]]\ntype = "jsonl"\npath = "{tmp / "out.jsonl"}"\nfsync = "flush"\n'
        'kinds = ["prediction", "status"]\n')
    text = f"""
device_id = "test-pi"
state_dir = "{tmp}"

[model]
bundle = "{model}"
watch = {str(watch).lower()}
watch_interval_s = 0.2

[[sensors]]
id = "imu"
driver = "mpu6050"
address = 0x68
rate_hz = 50
readings = {str(readings).lower()}
retry_initial_s = 0.1
retry_max_s = 0.2
{sim}

{sink}

[http]
enabled = {str(http).lower()}
port = 0

[daemon]
status_interval_s = 0.5
stall_after_s = 0.6
{extra}
"""
    path = tmp / "spinal.toml"
    path.write_text(text)
    return path


def spawn(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from device.cli import main; main()", "run", "--config", str(config), "--sim", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events(recs: list[dict], name: str) -> list[dict]:
    return [r for r in recs if r["kind"] == "status" and r["data"].get("event") == name]


def predictions(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["kind"] == "prediction"]


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# --------------------------------------------------------------------------------------------


def test_run_for_a_duration_writes_json_lines_and_exits_0(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"], sink='[[sinks]]\ntype = "jsonl"\nkinds = ["prediction", "status"]\n')
    code, out, err = finish(spawn(cfg, "--duration", "2.5"))
    assert code == 0, err
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[0]["data"]["event"] == "model_loaded" and recs[-1]["data"]["event"] == "stopped"
    preds = predictions(recs)
    # 50 Hz, window 20, hop 10: a window every 0.2 s once the first 0.4 s are in -> about 11 in 2.5 s
    # (fewer only if the machine stalled the process long enough to leave a gap: those are counted).
    stopped = recs[-1]["data"]
    assert 6 <= len(preds) + stopped["windows"]["skipped_gap"] <= 13, len(preds)
    assert [p["seq"] for p in preds] == list(range(len(preds)))
    firsts = [p["data"]["window"]["first_seq"] for p in preds]
    assert firsts == sorted(set(firsts)) and all(f % 10 == 0 for f in firsts), "windows on the hop grid"
    for p in preds:
        d = p["data"]
        assert d["window"]["last_seq"] == d["window"]["first_seq"] + 19
        assert d["label"] in LABELS and 0.25 <= d["score"] <= 1.0
        assert abs(sum(d["values"].values()) - 1.0) < 1e-6
        assert d["model"] == "tiny-imu" and p["device"] == "test-pi"
        # the window spans 19 sampling periods of 20 ms
        assert 0.3 < (d["window"]["end_ns"] - d["window"]["start_ns"]) / 1e9 < 0.5
    assert stopped["inferences"] == len(preds) and stopped["windows"]["dropped_behind"] == 0
    assert "http" not in err or "serving" not in err


def test_sigterm_stops_sampling_flushes_the_sinks_and_exits_0(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"])
    out = tmp_path / "out.jsonl"
    proc = spawn(cfg)
    wait_for(lambda: len(predictions(records(out))) >= 3, what="three predictions")
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 0, err
    recs = records(out)
    assert recs[-1]["data"]["event"] == "stopped", "the last record (written at shutdown) is on disk"
    assert recs[-1]["data"]["inferences"] == len(predictions(recs)), "every prediction reached the file"
    assert "stopping: SIGTERM" in err


def test_sighup_with_a_good_bundle_swaps_and_with_bad_ones_keeps_the_running_model(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"])
    out, model = tmp_path / "out.jsonl", tmp_path / "model.spinal"
    proc = spawn(cfg)
    try:
        wait_for(lambda: predictions(records(out)), what="a first prediction")

        def deploy(name: str) -> None:  # how an operator deploys: write next to it, rename over it
            tmp = model.with_suffix(".new")
            shutil.copy(bundles[name], tmp)
            os.replace(tmp, model)
            proc.send_signal(signal.SIGHUP)

        deploy("good2")
        loaded = wait_for(lambda: [e for e in events(records(out), "model_loaded") if e["data"]["generation"] == 2],
                          what="generation 2")
        assert loaded[0]["data"]["name"] == "tiny-imu-v2"
        wait_for(lambda: any(p["data"]["model"] == "tiny-imu-v2" for p in predictions(records(out))),
                 what="predictions by the new model")

        for bad, why in (("corrupt", "sha256 mismatch"), ("canary_fail", "canary failed")):
            before = len(events(records(out), "reload_failed"))
            deploy(bad)
            failed = wait_for(lambda b=before: events(records(out), "reload_failed")[b:], what=f"{bad} refused")
            assert why in failed[0]["data"]["error"]
            assert failed[0]["data"]["kept"]["name"] == "tiny-imu-v2"
            n = len(predictions(records(out)))
            wait_for(lambda n=n: len(predictions(records(out))) > n + 2, what="predictions go on")
            assert predictions(records(out))[-1]["data"]["model"] == "tiny-imu-v2"
    finally:
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc)
    assert code == 0, err
    assert "reload failed" in err and "keeping tiny-imu-v2 (generation 2)" in err


def test_a_new_bundle_file_is_picked_up_without_a_signal(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"], watch=True)
    out, model = tmp_path / "out.jsonl", tmp_path / "model.spinal"
    proc = spawn(cfg)
    try:
        wait_for(lambda: predictions(records(out)), what="a first prediction")
        tmp = model.with_suffix(".new")
        shutil.copy(bundles["good2"], tmp)
        os.replace(tmp, model)
        wait_for(lambda: [e for e in events(records(out), "model_loaded") if e["data"]["name"] == "tiny-imu-v2"],
                 what="the new file loaded")
    finally:
        proc.send_signal(signal.SIGTERM)
        code, _, err = finish(proc)
    assert code == 0, err


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self, key: str) -> list[tuple[float, str]]:
        return [(t, line) for t, m in list(self.messages) for line in m.splitlines() if line.startswith(key)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_sd_notify_ready_watchdog_pacing_and_pings_stop_when_the_loop_hangs(tmp_path, bundles):
    """READY=1 after the canary; WATCHDOG=1 every WATCHDOG_USEC/2 while healthy; none once a thread hangs.

    The hang is real: the only sink writes to a FIFO whose reader stops reading, so the output
    thread blocks in write() once the pipe buffer is full (as with a wedged stdout).
    """
    fifo = tmp_path / "records.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, 1031, 4096)  # F_SETPIPE_SZ: a small pipe fills quickly
    draining = threading.Event()
    draining.set()

    def drain() -> None:
        while draining.is_set():
            with contextlib.suppress(BlockingIOError):
                os.read(reader, 65536)
            time.sleep(0.01)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    sink = (f'[[sinks]]\ntype = "jsonl"\npath = "{fifo}"\nfsync = "never"\nrotate_bytes = 0\n'
            'kinds = ["prediction", "reading", "status"]\n')
    cfg = write_config(tmp_path, bundles["good"], sink=sink, readings=True)
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = spawn(cfg, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    try:
        try:
            ready = wait_for(lambda: notify.lines("READY=1") or proc.poll() is not None, what="READY=1")
        except AssertionError:
            proc.kill()
            raise
        assert proc.poll() is None, proc.communicate()[1]
        status = notify.lines("STATUS=")
        assert status and status[0][0] <= ready[0][0], "a STATUS line precedes READY"
        time.sleep(1.5)
        pings = [t for t, _ in notify.lines("WATCHDOG=1") if t >= ready[0][0]]
        assert len(pings) >= 6, f"expected a ping every 0.1 s, got {len(pings)} in 1.5 s"
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert sorted(gaps)[len(gaps) // 2] < 0.2, "median ping interval is about WATCHDOG_USEC/2"
        t_stop = time.monotonic()
        draining.clear()  # the reader stops: the pipe fills, the output thread blocks, the loop is unhealthy

        def unhealthy_since_stop():
            return [t for t, line in notify.lines("STATUS=unhealthy") if t > t_stop and "output (sinks)" in line]

        t_unhealthy = wait_for(unhealthy_since_stop, timeout=15, what="STATUS=unhealthy")[0]
        time.sleep(1.0)
        late = [t for t, _ in notify.lines("WATCHDOG=1") if t > t_unhealthy + 0.05]
        assert late == [], "no WATCHDOG=1 once the loop is unhealthy"
        assert proc.poll() is None, "the daemon itself is still there (systemd would kill and restart it)"
    finally:
        proc.kill()
        proc.communicate(timeout=30)
        draining.clear()
        os.close(reader)
        notify.close()


def test_check_runs_the_canary_and_refuses_a_latency_budget_it_cannot_meet(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"])
    lines = check_config(load_config(path), sim=True)
    assert any(line.startswith("canary: 4 golden vectors ok") for line in lines)
    assert any("window 20, hop 10, channels imu.accel_x" in line for line in lines)
    text = path.read_text().replace("watch_interval_s = 0.2", "watch_interval_s = 0.2\nlatency_budget_ms = 1e-9")
    path.write_text(text)
    with pytest.raises(CheckFailed, match=r"canary failed: median latency .* exceeds \[model\] latency_budget_ms"):
        check_config(load_config(path), sim=True)


def test_a_model_trained_at_another_rate_is_refused(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"])
    path.write_text(path.read_text().replace("rate_hz = 50", "rate_hz = 100"))
    with pytest.raises(BadInput, match=r"sensors\[0\]\.rate_hz: sensor 'imu' samples at 100 Hz but model "
                                        r"'tiny-imu' expects 50 Hz; set rate_hz = 50"):
        check_config(load_config(path), sim=True)


# --------------------------------------------------------------------------------------------
# In process: fault injection on the simulated bus, /healthz and /metrics over loopback


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_sensor_fault_degrades_then_recovers_and_health_and_metrics_say_so(tmp_path, bundles):
    path = write_config(tmp_path, bundles["good"], http=True)
    # Backoff longer than stall_after_s: a sensor that is retried is degraded, not a stalled loop.
    path.write_text(path.read_text().replace("retry_initial_s = 0.1", "retry_initial_s = 0.7")
                    .replace("retry_max_s = 0.2", "retry_max_s = 1.0"))
    cfg = load_config(path)
    daemon = Daemon(cfg, RunOptions(sim=True))
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.setdefault("code", daemon.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: daemon.phase == "running" and daemon.inferences >= 2, what="running")
        base = "http://{}:{}".format(*daemon.http.address)
        code, body = get(base + "/healthz")
        health = json.loads(body)
        assert code == 200 and health["status"] == "ok" and health["sensors"]["imu"]["state"] == "ok"
        assert health["model"]["name"] == "tiny-imu" and health["runtime"] == "onnxruntime"
        assert health["last_inference_age_s"] is not None and health["last_inference_age_s"] < 1.0

        simbus = daemon.samplers[0].open_driver.bus.raw
        simbus.set_nack_probability(0.3)  # a noisy bus: transient NACKs, retried by the bus layer
        time.sleep(0.6)
        simbus.set_nack_probability(0.0)
        simbus.unplug(0x68)  # the MPU-6050 stops answering (NACK)
        wait_for(lambda: daemon.sensor_states["imu"].state == "degraded", what="degraded")
        code, body = get(base + "/healthz")
        health = json.loads(body)
        assert code == 200 and health["status"] == "degraded"
        assert health["sensors"]["imu"]["state"] == "degraded" and health["sensors"]["imu"]["last_error"]
        for _ in range(15):  # retries with backoff while it is gone; the loop stays healthy (watchdog pings go on)
            time.sleep(0.1)
            assert daemon.healthy() == (True, "ok")
        assert runner.is_alive(), "the daemon keeps running"
        before = daemon.inferences
        simbus.replug(0x68)  # back, with its registers at power-on values: needs set-up again
        wait_for(lambda: daemon.sensor_states["imu"].state == "ok", what="recovered")
        wait_for(lambda: daemon.inferences > before + 2, what="inference resumes")
        st = daemon.sensor_states["imu"]
        assert st.recoveries >= 1 and st.errors >= 2
        assert daemon.router.stats()["gaps"] >= 1

        code, body = get(base + "/metrics")
        text = body.decode()
        assert code == 200
        metric = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line and not line.startswith("#")}
        assert metric['spinal_sensor_read_errors_total{sensor="imu"}'] >= 2
        assert metric['spinal_sensor_retries_total{sensor="imu"}'] >= 1
        assert metric['spinal_bus_retries_total{sensor="imu"}'] >= 1
        assert metric['spinal_samples_total{sensor="imu"}'] > 20
        assert metric["spinal_inferences_total"] == pytest.approx(daemon.inferences, abs=3)
        assert metric['spinal_sensor_up{sensor="imu"}'] == 1
        assert metric["spinal_inference_seconds_count"] >= 3
        assert metric["spinal_window_to_sink_seconds_count"] >= 3
        assert any(k.startswith("spinal_model_info{") and 'runtime="onnxruntime"' in k for k in metric)
        assert "spinal_windows_dropped_total" in text
        assert get(base + "/nope")[0] == 404
    finally:
        daemon.request_stop("test over")
        runner.join(timeout=30)
    assert result.get("code") == 0
    recs = records(tmp_path / "out.jsonl")
    assert events(recs, "sensor_degraded") and events(recs, "sensor_recovered")


def test_sequence_numbers_survive_a_restart(tmp_path, bundles):
    cfg = write_config(tmp_path, bundles["good"])
    for _ in range(2):
        code, _, err = finish(spawn(cfg, "--duration", "0.8"))
        assert code == 0, err
    seqs = [r["seq"] for r in records(tmp_path / "out.jsonl") if r["kind"] == "status"]
    assert len(seqs) == len(set(seqs)), "no status sequence number is used twice across runs"
    # A clean restart continues at the next number (before: at the next multiple of 1000).
    assert seqs == list(range(len(seqs))), seqs
    saved = json.loads((tmp_path / "seq.json").read_text())
    assert saved["next"]["status"] == len(seqs) and saved["reserved"]["status"] >= len(seqs)


@pytest.mark.parametrize(("bundle", "code", "message"), [
    ("corrupt", 2, "sha256 mismatch"),
    ("canary_fail", 1, "canary failed on model.onnx (onnxruntime)"),
])
def test_a_bundle_that_fails_at_start_stops_the_daemon_with_one_line(tmp_path, bundles, bundle, code, message):
    proc = spawn(write_config(tmp_path, bundles[bundle]), "--duration", "5")
    rc, out, err = finish(proc)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == code and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and out == ""
