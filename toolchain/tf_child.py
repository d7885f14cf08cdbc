"""The TensorFlow child process's side: one job file path per stdin line, one status line per job on stdout
(``ok``, ``error: ...`` for the model's reason, ``internal: ...`` for ours). Started by :mod:`toolchain.tf_worker`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import SpinalError
from toolchain.calibration import DataSet
from toolchain.failures import InternalFailure, describe, is_internal
from toolchain.saved_model import saved_model_here, spec_tuple
from toolchain.tf_common import SavedModel
from toolchain.tflite import TfliteOptions, convert_here, sensitive_here


def _serve() -> int:
    """The child's loop: one job file path per stdin line; ``ok`` or ``error: ...`` per stdout line."""
    import json

    for line in sys.stdin:
        try:
            _worker_job(json.loads(Path(line.strip()).read_text()))
            reply = "ok"
        except InternalFailure as exc:
            reply = f"internal: {' '.join(str(exc).split())}"  # the reply is one line
        except SpinalError as exc:
            reply = f"error: {' '.join(str(exc).split())}"
        except Exception as exc:
            kind = "internal" if is_internal(exc) else "error"
            reply = f"{kind}: {' '.join(describe(exc).split())}"
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    return 0


def _worker_job(job: dict[str, Any]) -> int:
    import json

    if job["kind"] == "saved_model":
        made = saved_model_here(Path(job["onnx"]), Path(job["out"]).parent, spec_tuple(job["inputs"]),
                                 spec_tuple(job["outputs"]))
        Path(job["out"]).write_text(json.dumps({"path": str(made.path), "input_keys": made.input_keys,
                                                "output_keys": made.output_keys, "producer": made.producer}))
        return 0
    sm = SavedModel(path=Path(job["saved_model"]), input_keys=job["input_keys"], output_keys=job["output_keys"],
                    producer=job["producer"])
    inputs = spec_tuple(job["inputs"])
    with np.load(job["data"]) as data:
        calib = DataSet(arrays={s.name: data[f"in{i}"] for i, s in enumerate(inputs)}, source=job["data"])
    if job["kind"] == "convert":
        options = TfliteOptions(per_channel=job["per_channel"], denylist=tuple(job["denylist"]))
        content = convert_here(sm, job["precision"], inputs, calib, options)
        Path(job["out"]).write_bytes(content)
    else:
        names = sensitive_here(sm, inputs, calib, job["limit"])
        Path(job["out"]).write_text(json.dumps(names))
    return 0


if __name__ == "__main__":
    code = _serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # TensorFlow's interpreter teardown takes most of a second and does nothing useful here
