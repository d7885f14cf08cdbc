"""Instruction counts of int8-io inference: the raw LiteRT loop fed int8 against ``Model.run`` fed float.

    valgrind --tool=callgrind --callgrind-out-file=cg.MODE.N python benchmarks/ir_int8io.py MODE N

MODE is ``raw`` or ``spinal``; per call = (I(2200) - I(200)) / 2000 (imports and loading cancel out).
``TREE=/path/to/checkout`` runs another checkout's device code (the "before" column of RESULTS.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "models" / "imu-activity" / "imu-activity.spinal"
ARTIFACT = "model.int8-io.tflite"


def loop(mode: str) -> Callable[[], Any]:
    """One inference of ``mode`` (``raw`` or ``spinal``) as a function."""
    from device.bundle import open_bundle
    from device.runtime import RuntimePolicy, load_model

    bundle = open_bundle(BUNDLE)
    x = bundle.load_golden()["input/window"][0].astype(np.float32)
    if mode == "spinal":
        model = load_model(bundle, RuntimePolicy(runtime="litert", artifact=ARTIFACT, threads=1, autotune=False))
        return lambda: model.run({"window": x})
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(bundle.path_of(ARTIFACT)), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    codes = np.zeros(inp["shape"], np.int8)

    def raw() -> Any:
        interp.set_tensor(inp["index"], codes)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return raw


def main() -> None:
    sys.path.insert(0, os.environ.get("TREE", str(ROOT)))
    run = loop(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        run()


if __name__ == "__main__":
    main()
