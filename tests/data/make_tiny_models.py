"""Rebuild the tiny test models in this folder (run with the host extra installed).

``tiny.onnx`` and ``tiny.tflite`` compute the same function, ``logits = flatten(x) @ W + b``
for an input ``x`` of shape [1, 8, 3] (NTC) and 4 outputs, with the weights stored in
``tiny_weights.npz``. They are small (KBs) and let the device-only test run (no onnx, no
TensorFlow) inspect and verify real model files of both formats.

    python tests/data/make_tiny_models.py
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
T, C, K = 8, 3, 4


def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261123)
    return rng.normal(size=(T * C, K)).astype(np.float32), rng.normal(size=(K,)).astype(np.float32)


def make_onnx(w: np.ndarray, b: np.ndarray) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "flat_shape"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], name="dense"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, C])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, K])],
        initializer=[
            numpy_helper.from_array(np.array([1, T * C], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "b"),
        ],
    )
    model = helper.make_model(graph, producer_name="spinal-tests", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, HERE / "tiny.onnx")


def make_tflite(w: np.ndarray, b: np.ndarray) -> None:
    import tensorflow as tf

    inp = tf.keras.Input(shape=(T, C), batch_size=1, name="x")
    dense = tf.keras.layers.Dense(K, name="logits")
    model = tf.keras.Model(inp, dense(tf.keras.layers.Flatten()(inp)))
    dense.set_weights([w, b])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (HERE / "tiny.tflite").write_bytes(converter.convert())


if __name__ == "__main__":
    w, b = weights()
    np.savez(HERE / "tiny_weights.npz", W=w, b=b)
    make_onnx(w, b)
    make_tflite(w, b)
    print("wrote", *(p.name for p in sorted(HERE.glob("tiny*"))))
