"""One TFLite quantization decoder (device.modelfile.tflite_quantization): inspection and LiteRT agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.manifest import Quantization
from device.modelfile import inspect_model_file, tflite_quantization
from device.runtime.litert import _quantization

INT8IO = Path(__file__).parent / "data" / "imu" / "model_int8io.tflite"


def detail(scales: list[float], zero_points: list[int] | None = None, dim: int = 0) -> dict[str, object]:
    params: dict[str, object] = {"scales": np.asarray(scales, np.float32), "quantized_dimension": dim}
    if zero_points is not None:
        params["zero_points"] = np.asarray(zero_points, np.int32)
    return {"quantization_parameters": params}


def test_per_tensor_per_channel_and_absent() -> None:
    assert tflite_quantization(detail([0.5], [-3], dim=2)) == Quantization(scale=(0.5,), zero_point=(-3,), axis=None)
    assert tflite_quantization(detail([0.5, 0.25], [0, 1], dim=3)) == Quantization((0.5, 0.25), (0, 1), 3)
    assert tflite_quantization(detail([0.5, 0.25])) == Quantization((0.5, 0.25), (0, 0), 0)
    assert tflite_quantization(detail([])) is None
    assert tflite_quantization({"name": "x"}) is None


def test_the_runtime_ignores_a_zero_scale() -> None:
    assert _quantization(detail([0.0], [0])) is None
    assert _quantization(detail([0.5], [1])) == Quantization((0.5,), (1,), None)


def test_inspection_reports_what_the_decoder_reads() -> None:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(INT8IO)).get_input_details()
    decoded = tflite_quantization(details[0])
    assert decoded is not None and decoded.scale[0] > 0
    info = inspect_model_file(INT8IO, isolate=False)
    assert info.inputs[0].quantization == {"scale": list(decoded.scale), "zero_point": list(decoded.zero_point),
                                           "axis": decoded.axis}
