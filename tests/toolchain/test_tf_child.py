"""onnx2tf and the TFLite converter run in one TensorFlow child: the converting process never imports TensorFlow
(it would double the peak memory and import it twice), and a model onnx2tf refuses still fails in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

SCRIPT = """
import json, sys
from pathlib import Path
from device.errors import ModelFileError
from toolchain.calibration import InputSpec
from toolchain.tflite import close_workers, onnx_to_saved_model
work = Path(sys.argv[2])
result = {}
try:
    sm = onnx_to_saved_model(Path(sys.argv[1]), work, (InputSpec("x", (1, 4)),), (InputSpec("y", (1, 3)),))
    result["saved_model"] = (sm.path / "saved_model.pb").exists()
    result["input_keys"] = sm.input_keys
except ModelFileError as exc:
    result["error"] = str(exc)
finally:
    close_workers()
result["tensorflow_here"] = "tensorflow" in sys.modules or "onnx2tf" in sys.modules
print(json.dumps(result))
"""


def _matmul(path: Path, op: str = "MatMul") -> Path:
    w = helper.make_tensor("w", TensorProto.FLOAT, (4, 3), np.arange(12, dtype=np.float32).tolist())
    node = helper.make_node(op, ["x", "w"], ["y"], name="the_node", **({"domain": "custom.ops"} if op != "MatMul"
                                                                       else {}))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))], [w])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("custom.ops", 1)] if op != "MatMul" else [])
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


def _run(model: Path, work: Path) -> dict:
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model), str(work)], capture_output=True, text=True,
                         timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_saved_model_is_made_in_the_child_and_tensorflow_stays_out_of_this_process(tmp_path):
    result = _run(_matmul(tmp_path / "m.onnx"), tmp_path / "work")
    assert result == {"saved_model": True, "input_keys": {"x": result["input_keys"]["x"]}, "tensorflow_here": False}


def test_a_model_onnx2tf_refuses_fails_in_one_line_naming_the_file(tmp_path):
    result = _run(_matmul(tmp_path / "odd name.onnx", op="Frobnicate"), tmp_path / "work")
    assert result["tensorflow_here"] is False
    assert "odd name.onnx" in result["error"] and "\n" not in result["error"]



DEBUG_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from toolchain.calibration import DataSet, InputSpec
from toolchain.tflite import TfliteOptions, close_workers, convert_saved_model, onnx_to_saved_model
from toolchain.tflite import sensitive_tf_nodes
work = Path(sys.argv[2])
inputs = (InputSpec("x", (1, 4)), InputSpec("a", (1, 3)))
try:
    sm = onnx_to_saved_model(Path(sys.argv[1]), work, inputs, (InputSpec("y", (1, 3)),))
    rng = np.random.default_rng(0)
    calib = DataSet({"x": rng.standard_normal((8, 4)).astype(np.float32),
                     "a": rng.standard_normal((8, 3)).astype(np.float32)}, "cal")
    ranked = sensitive_tf_nodes(sm, inputs, calib)
    kept = convert_saved_model(sm, "int8", inputs, calib, TfliteOptions(denylist=(ranked[0].tensor,)))
    io = convert_saved_model(sm, "int8-io", inputs, calib, TfliteOptions(denylist=(ranked[0].tensor,)))
    from device.modelfile import tflite_interpreter_class
    interp = tflite_interpreter_class()[0](model_content=io)
    io_dtypes = sorted({np.dtype(d["dtype"]).name for d in interp.get_input_details() + interp.get_output_details()})
    print(json.dumps({"ranked": [[r.tensor, r.rmse_per_step] for r in ranked], "bytes": len(kept),
                      "io_dtypes": io_dtypes}))
finally:
    close_workers()
"""


def _two_inputs(path: Path) -> Path:
    """y = x·w + a: inputs x then a, which TensorFlow's signature sorts as a, x."""
    w = helper.make_tensor("w", TensorProto.FLOAT, (4, 3), np.arange(12, dtype=np.float32).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "a"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4)),
                                           helper.make_tensor_value_info("a", TensorProto.FLOAT, (1, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 3))], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_the_quantization_debugger_feeds_inputs_in_its_interpreters_order(tmp_path):
    """TensorFlow sorts a signature's inputs by name; the debugger sets them by position. silero VAD (inputs
    input, sr, h, c) got its state where its audio belonged and the TFLite int8 search lost its sensitive-node
    remedies. Fed in the interpreter's order, the debugger ranks nodes and a denylisted int8 file is made; its int8-io
    twin keeps int8 input and output."""
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run([sys.executable, "-c", DEBUG_SCRIPT, str(_two_inputs(tmp_path / "m.onnx")), str(work)],
                         capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ranked = result["ranked"]
    assert ranked and all(isinstance(name, str) and name and value >= 0 for name, value in ranked)
    assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)  # noisiest first
    assert result["bytes"] > 0
    # int8-io with nodes kept float still has int8 input and output (the debugger's own call gave float32 I/O)
    assert result["io_dtypes"] == ["int8"], result["io_dtypes"]
