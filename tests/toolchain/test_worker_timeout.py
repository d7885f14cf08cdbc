"""A TensorFlow worker that hangs (rather than crashes) is stopped, and the artifact fails in one line."""

from __future__ import annotations

import sys

from toolchain.tf_worker import Worker as _Worker


def test_a_hung_worker_is_killed_after_the_timeout(tmp_path):
    hang = [sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(120)"]
    worker = _Worker(tmp_path, command=hang)
    try:
        assert worker.run(tmp_path / "job.json", timeout_s=0.5) == "timeout"
        assert worker.proc.poll() is not None, "the hung child was killed"
    finally:
        worker.close()


def test_a_worker_that_answers_in_time_is_read(tmp_path):
    echo = [sys.executable, "-c", "import sys; sys.stdin.readline(); print('ok', flush=True); sys.stdin.readline()"]
    worker = _Worker(tmp_path, command=echo)
    try:
        assert worker.run(tmp_path / "job.json", timeout_s=30) == "ok"
    finally:
        worker.close()
