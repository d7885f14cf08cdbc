"""Model files of the kinds third-party models come in, made here: sparse and fp16 TFLite, int8 with resource
variables (CALL_ONCE), dynamic input shapes, ONNX with LSTM and If. Each comes with a numpy/TF reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def sparse_tflite(path: Path, seed: int = 0) -> tuple[Path, object]:
    """A dense network with 90% zero weights, converted with EXPERIMENTAL_SPARSITY (sparse tensors + DENSIFY)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    inp = tf.keras.Input((32,), batch_size=1)
    layer = tf.keras.layers.Dense(64, activation="relu")
    head = tf.keras.layers.Dense(4)
    model = tf.keras.Model(inp, head(layer(inp)))
    w = rng.standard_normal((32, 64)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0.0
    layer.set_weights([w, np.zeros(64, np.float32)])
    head.set_weights([rng.standard_normal((64, 4)).astype(np.float32) * 0.3, np.zeros(4, np.float32)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    path.write_bytes(conv.convert())
    return path, model


def dynamic_tflite(path: Path, seed: int = 1) -> tuple[Path, object]:
    """A 1-D CNN with dynamic batch and time axes: [-1, -1, 6] (needs a resize before allocation)."""
    import tensorflow as tf

    tf.random.set_seed(seed)
    inp = tf.keras.Input((None, 6))
    x = tf.keras.layers.Conv1D(8, 3, activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3)(x))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path, model


def stateful_int8_tflite(path: Path) -> Path:
    """An int8 model with a resource variable (an exponential moving average of its input): VAR_HANDLE,
    READ_VARIABLE, ASSIGN_VARIABLE and the CALL_ONCE that initialises them."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    weight = tf.constant(rng.standard_normal((8, 4)).astype(np.float32))

    class Smoother(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.state = tf.Variable(tf.zeros([1, 8]))

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
        def __call__(self, x):
            self.state.assign(0.5 * self.state + 0.5 * x)
            return {"y": tf.matmul(self.state, weight)}

    module = Smoother()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    conv.experimental_enable_resource_variables = True
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for _ in range(32):
            yield [rng.standard_normal((1, 8)).astype(np.float32)]

    conv.representative_dataset = representative
    path.write_bytes(conv.convert())
    return path


def lstm_if_onnx(path: Path, seed: int = 3) -> tuple[Path, dict[str, np.ndarray]]:
    """ONNX: an LSTM over x [T=10, 1, 4] then an If on sign(sum(x)) choosing h or -h; output [1, 5]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    hidden, features = 5, 4
    w = {
        "W": (rng.standard_normal((1, 4 * hidden, features)) * 0.5).astype(np.float32),
        "R": (rng.standard_normal((1, 4 * hidden, hidden)) * 0.5).astype(np.float32),
        "B": (rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32),
    }
    then_graph = helper.make_graph([helper.make_node("Identity", ["h"], ["then_out"])], "then", [],
                                   [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [1, hidden])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["h"], ["else_out"])], "else", [],
                                   [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [1, hidden])])
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "h3"], hidden_size=hidden),
        helper.make_node("Squeeze", ["h3", "axis0"], ["h"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_graph, else_branch=else_graph),
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()] + [
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    graph = helper.make_graph(nodes, "lstm_if", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, 1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, w


def lstm_if_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """ONNX LSTM (gates i, o, f, c; sigmoid/tanh) then the If, in numpy."""
    hidden = w["R"].shape[2]
    W, R = w["W"][0], w["R"][0]
    b = w["B"][0][:4 * hidden] + w["B"][0][4 * hidden:]
    h = np.zeros((1, hidden), np.float64)
    c = np.zeros((1, hidden), np.float64)

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    for t in range(x.shape[0]):
        gates = x[t] @ W.T + h @ R.T + b
        i, o, f, g = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    return (h if x.sum() > 0 else -h).astype(np.float32)
