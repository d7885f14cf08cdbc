"""The TensorFlow child process, seen from the converter: onnx2tf and TensorFlow's TFLite converter run there.

TensorFlow's converter can crash (SIGSEGV) or hang on some graphs: in a child, that loses one artifact instead of
the whole run, and TensorFlow is imported once per conversion and never into the converting process (it would
double the peak memory). The child's side is :mod:`toolchain.tf_child`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from device.errors import ModelFileError
from toolchain.failures import InternalFailure
from toolchain.tf_common import quiet_tf_env


class Worker:
    """A child process that runs TensorFlow jobs one at a time (job file path in, status line out).

    TensorFlow's TFLite converter can crash (SIGSEGV) on some graphs: in a child, that loses one
    artifact instead of the whole run. The child stays up between jobs so TensorFlow is imported
    once; after a crash the next job starts a fresh one.
    """

    def __init__(self, workdir: Path, command: list[str] | None = None) -> None:
        import subprocess

        quiet_tf_env()
        self.log = workdir / f"tflite-worker-{os.getpid()}-{id(self)}.log"
        self._log_fh = open(self.log, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "toolchain.tf_child"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log_fh, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            cwd=str(workdir.resolve()))

    def run(self, job_path: Path, timeout_s: float) -> str:
        """Send one job and wait for its status line: ``""`` if the child died, ``"timeout"`` if it hung
        (then it is killed)."""
        import select

        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{job_path}\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            if not ready:
                self.proc.kill()
                self.proc.wait()
                return "timeout"
            return self.proc.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


WORKERS: dict[Path, Worker] = {}


# One TFLite conversion takes seconds to a minute or two here; ten minutes means TensorFlow hangs.
JOB_TIMEOUT_S = 600.0


def close_workers() -> None:
    """Stop the TensorFlow child processes (the pipeline calls this when it ends)."""
    while WORKERS:
        _, worker = WORKERS.popitem()
        worker.close()


def submit(workdir: Path, job: dict[str, Any], what: str, tool: str = "TensorFlow's TFLite converter") -> Path:
    """Send ``job`` to the worker child of ``workdir`` (started when needed) and return the file it wrote;
    a failure, crash or hang becomes one line naming ``tool`` and ``what``."""
    import json

    out = workdir / f"tflite-job-{abs(hash(json.dumps(job, sort_keys=True)))}-{len(list(workdir.iterdir()))}"
    job_path = out.with_suffix(".json")
    job_path.write_text(json.dumps({**job, "out": str(out)}))
    worker = WORKERS.get(workdir)
    if worker is None or worker.proc.poll() is not None:
        worker = WORKERS[workdir] = Worker(workdir)
    status = worker.run(job_path, JOB_TIMEOUT_S)
    if status == "ok" and out.exists():
        return out
    if status.startswith("error: "):
        raise ModelFileError(status[len("error: "):])
    if status.startswith("internal: "):
        if tool == "onnx2tf":  # the message is already whole
            raise InternalFailure(status[len("internal: "):])
        raise InternalFailure(f"{tool} failed making {what} for a reason that is not the "
                              f"model's ({status[len('internal: '):]})")
    WORKERS.pop(workdir, None)
    if status == "timeout":
        worker.close()
        raise ModelFileError(f"{tool} did not finish making {what} in {JOB_TIMEOUT_S:.0f} s "
                             "(stopped); the other artifacts are unaffected")
    raise ModelFileError(_death_reason(worker, status, what, tool))


def _death_reason(worker: Worker, status: str, what: str, tool: str) -> str:
    """Why the worker child died mid-job: its signal, or the last error line of its log."""
    import subprocess

    if not status:  # wait for its exit status
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=60)
    code = worker.proc.poll()
    worker.close()
    if code is not None and code < 0:
        import signal

        return f"{tool} crashed ({signal.Signals(-code).name}) making {what}; the other artifacts are unaffected"
    tail = [ln for ln in worker.log.read_text(errors="replace").splitlines() if ln.strip()]
    last = next((ln for ln in reversed(tail) if "Error" in ln), tail[-1] if tail else status or "no output")
    if tool == "onnx2tf":
        return f"onnx2tf failed making {what}: {last.strip()[:300]}"
    return f"TFLite {what} conversion failed: {last.strip()[:300]}"
