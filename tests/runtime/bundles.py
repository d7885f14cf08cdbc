"""Test (and benchmark) bundles made here, with TensorFlow, onnx and onnxruntime.quantization.

One small 1-D CNN over an IMU window (logical input ``imu``: [1, 32, 6], layout NTC) is built
once in Keras and once, with the same weights, directly as an ONNX graph that takes the
channels-first layout NCT (so the runner's layout adapter is exercised). Artifacts: TFLite
fp32, fp16, int8 (float I/O), int8-io (int8 I/O) and ONNX fp32, ONNX int8 (static QDQ). Golden
outputs come from the raw runtimes, not from Spinal's runner, so the tests compare two
independent paths.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from device.bundle import file_digest, write_manifest
from device.manifest import (
    FORMAT_VERSION,
    Artifact,
    ArtifactTensor,
    Golden,
    Manifest,
    Quantization,
    Task,
    TensorSpec,
    Tolerance,
)

T, C, K, F, CLASSES = 32, 6, 3, 8, 4
GOLDEN_COUNT = 8
LABELS = ("idle", "walk", "run", "fall")


def weights(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv_w": (rng.standard_normal((K, C, F)) * 0.4).astype(np.float32),  # Keras Conv1D: (k, in, out)
        "conv_b": (rng.standard_normal(F) * 0.1).astype(np.float32),
        "dense_w": (rng.standard_normal((F, CLASSES)) * 0.5).astype(np.float32),
        "dense_b": (rng.standard_normal(CLASSES) * 0.1).astype(np.float32),
    }


def samples(count: int, seed: int) -> np.ndarray:
    """IMU-like windows: a few sines with noise, shape (count, T, C)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float32)[None, :, None]
    freq = rng.uniform(0.05, 0.4, (count, 1, C)).astype(np.float32)
    amp = rng.uniform(0.5, 2.0, (count, 1, C)).astype(np.float32)
    return (amp * np.sin(2 * np.pi * freq * t) + 0.1 * rng.standard_normal((count, T, C))).astype(np.float32)


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_model(w: dict[str, np.ndarray], time_steps: int | None = T):
    _quiet_tf()
    import tensorflow as tf

    inp = tf.keras.Input((time_steps, C), batch_size=1 if time_steps else None, name="imu")
    conv = tf.keras.layers.Conv1D(F, K, activation="relu")
    x = conv(inp)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    dense = tf.keras.layers.Dense(CLASSES)
    out = dense(x)
    model = tf.keras.Model(inp, out)
    conv.set_weights([w["conv_w"], w["conv_b"]])
    dense.set_weights([w["dense_w"], w["dense_b"]])
    return model


def tflite_bytes(model, precision: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert a Keras model: fp32, fp16, int8 (float I/O), int8-io, or dynamic (dynamic-range)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if precision in ("int8", "int8-io"):
        assert calibration is not None

        def representative():
            for x in calibration:
                yield [x[None]]

        conv.representative_dataset = representative
    if precision == "int8-io":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


def onnx_fp32(w: dict[str, np.ndarray], path: Path) -> None:
    """The same network as an ONNX graph taking NCT input ``x`` [1, C, T]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.ascontiguousarray(w["conv_w"].transpose(2, 1, 0)), "conv_w"),  # (out, in, k)
        numpy_helper.from_array(w["conv_b"], "conv_b"),
        numpy_helper.from_array(w["dense_w"], "dense_w"),
        numpy_helper.from_array(w["dense_b"], "dense_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], kernel_shape=[K]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("ReduceMean", ["relu"], ["pool"], axes=[2], keepdims=0),
        helper.make_node("Gemm", ["pool", "dense_w", "dense_b"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "imu_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, T])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="spinal-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_int8(src: Path, dst: Path, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": np.ascontiguousarray(x.T[None])} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=False, reduce_range=True)  # as toolchain/quantize.py


def _tflite_tensors(path: Path) -> tuple[tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))

    def tensor(d, layout):
        scales = d["quantization_parameters"]["scales"]
        q = None
        if np.dtype(d["dtype"]).name in ("int8", "uint8") and len(scales):
            zero = int(d["quantization_parameters"]["zero_points"][0])
            q = Quantization(scale=(float(scales[0]),), zero_point=(zero,))
        return ArtifactTensor(name=d["name"], shape=tuple(int(x) for x in d["shape"]),
                              dtype=np.dtype(d["dtype"]).name, layout=layout, quantization=q)

    return (tuple(tensor(d, "NTC") for d in it.get_input_details()),
            tuple(tensor(d, None) for d in it.get_output_details()))


def raw_tflite(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a .tflite file on logical NTC windows with the raw LiteRT API (quantizing by hand)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for window in x:
        feed = window[None]
        if ind["dtype"] == np.int8:
            s, z = ind["quantization"]
            feed = np.clip(np.round(feed / s + z), -128, 127).astype(np.int8)
        it.set_tensor(ind["index"], feed)
        it.invoke()
        y = it.get_tensor(outd["index"])
        if outd["dtype"] == np.int8:
            s, z = outd["quantization"]
            y = (y.astype(np.float32) - z) * s
        outs.append(y[0])
    return np.stack(outs).astype(np.float32)


def raw_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.stack([sess.run(["logits"], {"x": np.ascontiguousarray(w.T[None])})[0][0] for w in x]).astype(np.float32)


ALL_ARTIFACTS = ("model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite", "model_int8io.tflite",
                 "model_fp32.onnx", "model_int8.onnx")
PRECISION = {"model_fp32.tflite": "fp32", "model_fp16.tflite": "fp16", "model_int8.tflite": "int8",
             "model_int8io.tflite": "int8-io", "model_fp32.onnx": "fp32", "model_int8.onnx": "int8"}


def build_bundle(root: Path, artifacts: tuple[str, ...] = ALL_ARTIFACTS, corrupt_golden: str | None = None) -> Path:
    """Write a complete bundle directory at ``root``; ``corrupt_golden`` names an artifact whose golden is wrong."""
    root.mkdir(parents=True, exist_ok=True)
    w = weights()
    calibration = samples(64, seed=1)
    golden_x = samples(GOLDEN_COUNT, seed=2)
    need_keras = any(a.endswith(".tflite") for a in artifacts)
    keras = keras_model(w) if need_keras else None
    arts, tolerances, golden = [], {}, {"input/imu": golden_x}
    for name in artifacts:
        path = root / name
        precision = PRECISION[name]
        if name.endswith(".tflite"):
            path.write_bytes(tflite_bytes(keras, precision, calibration))
            inputs, outputs = _tflite_tensors(path)
            expected = raw_tflite(path, golden_x)
            fmt = "tflite"
        else:
            fp32 = root / "model_fp32.onnx"
            if not fp32.exists():
                onnx_fp32(w, fp32)
            if name == "model_int8.onnx":
                onnx_int8(fp32, path, calibration)
            inputs = (ArtifactTensor("x", (1, C, T), "float32", layout="NCT"),)
            outputs = (ArtifactTensor("logits", (1, CLASSES), "float32"),)
            expected = raw_onnx(path, golden_x)
            fmt = "onnx"
        golden[f"output/{name}/logits"] = expected
        sha, size = file_digest(path)
        arts.append(Artifact(path=name, format=fmt, precision=precision, sha256=sha, bytes=size,
                             inputs=inputs, outputs=outputs))
        tolerances[name] = Tolerance(atol=1.0)  # replaced by the derived bound below
    manifest = _write(root, tuple(arts), golden, tolerances)
    tolerances = derived_tolerances(root, manifest)
    if corrupt_golden is not None:
        golden[f"output/{corrupt_golden}/logits"] = golden[f"output/{corrupt_golden}/logits"] + 0.5
    _write(root, tuple(arts), golden, tolerances)
    return root


def derived_tolerances(root: Path, manifest: Manifest) -> dict[str, Tolerance]:
    """Each artifact's parity bound as the converter derives it (toolchain.bounds), from the true golden."""
    from device.bundle import open_bundle
    from device.runtime import RuntimePolicy, load_model  # type: ignore[attr-defined]
    from device.runtime.parity import golden_feeds
    from toolchain.bounds import derive_tolerance, measure_spread, rounding_movement

    tolerances: dict[str, Tolerance] = {}
    with open_bundle(root) as bundle:
        golden = bundle.load_golden()

        def model_of(art: Artifact):  # type: ignore[no-untyped-def]
            runtime = "onnxruntime" if art.format == "onnx" else "litert"
            return load_model(bundle, RuntimePolicy(runtime=runtime, artifact=art.path, threads=1, autotune=False))

        qdq = next((a for a in manifest.artifacts if a.path == "model_int8.onnx"), None)
        rounding: dict[str, float] = {}
        for art in manifest.artifacts:
            with model_of(art) as model:
                feeds = golden_feeds(golden, manifest, model.inputs, GOLDEN_COUNT)
                outs = [{"logits": golden[f"output/{art.path}/logits"][i]} for i in range(GOLDEN_COUNT)]
                spread, _ = measure_spread(bundle.path_of(art.path), art.format, model, feeds, outs)
                if art.precision.startswith("int8") and qdq is not None and not rounding:
                    with model_of(qdq) as qmodel:
                        rounding = rounding_movement(bundle.path_of(qdq.path), qmodel, feeds)[0]
                tolerances[art.path] = derive_tolerance(art.precision, outs, spread,
                                                        rounding if art.precision.startswith("int8") else {},
                                                        model.output_steps())
    return tolerances


def _write(root: Path, arts: tuple[Artifact, ...], golden: dict[str, np.ndarray],
           tolerances: dict[str, Tolerance]) -> Manifest:
    with open(root / "golden.npz", "wb") as fh:
        np.savez(fh, **golden)
    gsha, gsize = file_digest(root / "golden.npz")
    manifest = Manifest(
        format_version=FORMAT_VERSION, name="imu-cnn-test",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 (3.11 has UTC; keep clear)
        inputs=(TensorSpec("imu", (1, T, C), "float32", layout="NTC",
                           channels=tuple(f"imu.{a}" for a in ("accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y",
                                                                "gyro_z")), sample_rate_hz=50.0, window=T, hop=16),),
        outputs=(TensorSpec("logits", (1, CLASSES), "float32"),),
        task=Task(kind="classification", output="logits", labels=LABELS, activation="logits"),
        artifacts=arts,
        golden=Golden(path="golden.npz", sha256=gsha, bytes=gsize, count=GOLDEN_COUNT, tolerances=tolerances),
    )
    write_manifest(root, manifest)
    return manifest


def mlp_dynamic_range(path: Path, seed: int = 3) -> Path:
    """A dense model big enough for dynamic-range quantization (TF >= 2.19 writes FULLY_CONNECTED v12)."""
    _quiet_tf()
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    inp = tf.keras.Input((64,), batch_size=1, name="features")
    hidden = tf.keras.layers.Dense(64, activation="relu")
    head = tf.keras.layers.Dense(CLASSES)
    model = tf.keras.Model(inp, head(hidden(inp)))
    hidden.set_weights([(rng.standard_normal((64, 64)) * 0.2).astype(np.float32), np.zeros(64, np.float32)])
    head.set_weights([(rng.standard_normal((64, CLASSES)) * 0.2).astype(np.float32), np.zeros(CLASSES, np.float32)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    path.write_bytes(conv.convert())
    return path
