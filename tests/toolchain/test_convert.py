"""End-to-end conversions, checked by loading every artifact in LiteRT / onnxruntime.

The artifact runner here is written independently of toolchain.validate: it uses only what the
manifest records (tensor names, shapes, dtypes, layouts, int8 scale/zero point), which is what a
device has.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import toolchain_models as tm
import torch
from ai_edge_litert.interpreter import Interpreter

from device.bundle import open_bundle
from device.manifest import Artifact, Manifest
from tests.conftest import run_cli
from toolchain.convert import ConvertOptions, convert

pytestmark = [pytest.mark.host, pytest.mark.slow]


def run_artifact(root: Path, manifest: Manifest, art: Artifact, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One sample through one artifact, using only the manifest's records."""
    logical_layout = {s.name: s.layout for s in manifest.inputs + manifest.outputs}
    prepared = []
    for spec, t in zip(manifest.inputs, art.inputs, strict=True):
        x = feeds[spec.name]
        if t.layout and logical_layout[spec.name] and t.layout != logical_layout[spec.name]:
            x = x.transpose([logical_layout[spec.name].index(c) for c in t.layout])
        if t.quantization:
            x = np.clip(np.round(x / t.quantization.scale[0]) + t.quantization.zero_point[0], -128, 127)
        prepared.append(np.ascontiguousarray(x.reshape(t.shape).astype(t.dtype)))
    if art.format == "onnx":
        sess = ort.InferenceSession(str(root / art.path), providers=["CPUExecutionProvider"])
        raw = sess.run([t.name for t in art.outputs], {t.name: v for t, v in zip(art.inputs, prepared, strict=True)})
    else:
        it = Interpreter(model_path=str(root / art.path))
        it.allocate_tensors()
        index = {d["name"]: d["index"] for d in it.get_input_details() + it.get_output_details()}
        for t, v in zip(art.inputs, prepared, strict=True):
            it.set_tensor(index[t.name], v)
        it.invoke()
        raw = [it.get_tensor(index[t.name]) for t in art.outputs]
    out = {}
    for spec, t, y in zip(manifest.outputs, art.outputs, raw, strict=True):
        if t.quantization:
            y = (y.astype(np.float32) - t.quantization.zero_point[0]) * t.quantization.scale[0]
        if t.layout and logical_layout[spec.name] and t.layout != logical_layout[spec.name]:
            y = y.transpose([t.layout.index(c) for c in logical_layout[spec.name]])
        out[spec.name] = y.reshape(spec.shape)
    return out


def check_against_source(bundle_path: Path, source: object, atol: dict[str, float]) -> dict[str, float]:
    """Every artifact on every golden input vs the source model; also the golden outputs themselves.

    ``atol`` per precision is relative to the largest source output (at least 1).
    """
    worst: dict[str, float] = {}
    with open_bundle(bundle_path) as b:
        m = b.manifest
        golden = b.load_golden()
        for art in m.artifacts:
            tol = m.golden.tolerances[art.path]
            err, peak = 0.0, 1.0
            for i in range(m.golden.count):
                feeds = {s.name: golden[f"input/{s.name}"][i] for s in m.inputs}
                got = run_artifact(b.root, m, art, feeds)
                want = source(feeds)  # type: ignore[operator]
                for name, value in got.items():
                    if name in want:
                        err = max(err, float(np.max(np.abs(value - want[name]))))
                        peak = max(peak, float(np.max(np.abs(want[name]))))
                    gold = golden[f"output/{art.path}/{name}"][i]
                    assert np.allclose(value, gold, atol=tol.atol, rtol=tol.rtol), (art.path, name)
            worst[art.path] = err / peak
            assert err / peak <= atol[art.precision], f"{art.path}: max |artifact - source| = {err} (peak {peak})"
    return worst


def torch_source(module: torch.nn.Module, names: list[str]) -> object:
    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in feeds])
        outs = out if isinstance(out, tuple) else (out,)
        return {n: o.numpy() for n, o in zip(names, outs, strict=True)}
    return run


ALL = ("model.fp32.onnx", "model.int8.onnx", "model.fp32.tflite", "model.fp16.tflite", "model.int8.tflite",
       "model.int8-io.tflite")


def test_cnn_every_artifact_matches_torch(cnn_bundle) -> None:
    path = cnn_bundle.out
    assert path.suffix == ".spinal" and path.is_file()
    m = cnn_bundle.manifest
    assert [a.path for a in m.artifacts] == list(ALL)
    worst = check_against_source(path, torch_source(tm.digits_cnn(), ["output"]),
                                 {"fp32": 1e-5, "fp16": 0.01, "int8": 0.2, "int8-io": 0.2})
    assert worst["model.fp32.tflite"] < 1e-5


def test_cnn_accuracy_gate_and_report(cnn_bundle) -> None:
    report = cnn_bundle.report
    arts = report["artifacts"]
    fp32 = arts["model.fp32.onnx"]["accuracy"]
    assert fp32 > 90.0
    for path in ALL:
        entry = arts[path]
        assert entry["bytes"] > 0 and entry["latency_us"] > 0
        assert fp32 - entry["accuracy"] <= 1.0, path
        assert entry["drop"] == pytest.approx(fp32 - entry["accuracy"])
    assert report["calibration"]["samples"] == 200 and len(report["calibration"]["sha256"]) == 64
    assert report["validation"]["samples"] == 397
    m = cnn_bundle.manifest
    assert m.task.kind == "classification" and m.task.labels[3] == "three" and m.task.activation == "logits"
    assert m.inputs[0].layout == "NCHW" and m.inputs[0].shape == (1, 1, 8, 8)


def test_int8_records_quantization(cnn_bundle) -> None:
    m = cnn_bundle.manifest
    io = m.artifact("model.int8-io.tflite")
    assert io.inputs[0].dtype == "int8" and io.outputs[0].dtype == "int8"
    assert io.inputs[0].quantization is not None and io.outputs[0].quantization is not None
    assert io.inputs[0].shape == (1, 1, 8, 8)  # logical NCHW kept: no channels-last leak
    float_io = m.artifact("model.int8.tflite")
    assert float_io.inputs[0].dtype == "float32" and float_io.inputs[0].quantization is None


def test_verify_cli_accepts_bundle(cnn_bundle) -> None:
    result = run_cli("verify", cnn_bundle.out)
    assert result.exit_code == 0, result.stdout + result.stderr


def test_bundle_carries_reports(cnn_bundle) -> None:
    with open_bundle(cnn_bundle.out) as b:
        md = (b.root / "report.md").read_text()
        data = json.loads((b.root / "report.json").read_text())
    assert "model.int8-io.tflite" in md and "top-1" in md
    assert data["artifacts"].keys() == cnn_bundle.report["artifacts"].keys()


def test_gru_bundle(gru_bundle) -> None:
    m = gru_bundle.manifest
    assert {a.path for a in m.artifacts} == set(ALL)
    spec = m.inputs[0]
    assert spec.layout == "NTC" and spec.channels[2] == "imu.accel_z" and spec.window == tm.GRU_T
    assert spec.sample_rate_hz == 50.0 and spec.hop == tm.GRU_T // 2
    assert spec.normalization is not None and spec.normalization.mean[2] == pytest.approx(9.81)
    check_against_source(gru_bundle.out, torch_source(tm.gru_model(), ["output"]),
                         {"fp32": 1e-4, "fp16": 0.02, "int8": 0.3, "int8-io": 0.3})
    assert any("GRU" in n for n in m.notes)  # ORT keeps the GRU in float, and says so


def test_keras_bundle(keras_bundle) -> None:
    import keras

    m = keras_bundle.manifest
    assert {a.path for a in m.artifacts} == set(ALL)
    assert m.inputs[0].name == "imu" and m.inputs[0].shape == (1, 16, 3)
    assert m.task.activation == "probabilities"
    model = keras.models.load_model(keras_bundle.report["source"]["model"], compile=False)

    def source(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m.outputs[0].name: np.asarray(model(feeds["imu"]))}

    check_against_source(keras_bundle.out, source, {"fp32": 1e-5, "fp16": 0.01, "int8": 0.05, "int8-io": 0.05})


def test_sklearn_bundle_is_onnx_only_and_says_why(sklearn_bundle) -> None:
    m = sklearn_bundle.manifest
    assert [a.path for a in m.artifacts] == ["model.fp32.onnx"]
    assert any("TFLite" in n and "TreeEnsembleClassifier" in n for n in m.notes)
    assert any("model.int8.onnx" in n and "quantize" in n for n in m.notes)
    assert sklearn_bundle.report["artifacts"]["model.fp32.onnx"]["accuracy"] >= 95.0
    assert m.task.output == "probabilities"
    import joblib

    est = joblib.load(sklearn_bundle.report["source"]["model"])
    check_against_source(sklearn_bundle.out,
                         lambda f: {"probabilities": est.predict_proba(f["input"]).astype(np.float32),
                                    "label": est.predict(f["input"])}, {"fp32": 1e-5})


def test_two_inputs_two_outputs_and_layout(workdir: Path) -> None:
    """Multi-input/-output, a kept NCW input and a 4-D output, in one conversion each."""
    res = convert(ConvertOptions.build(model="toolchain_models:two_heads", out=workdir / "two",
                                       input_shapes={"x": (1, 6), "z": (1, 4)}, input_names=("x", "z"),
                                       output_names=("cls", "reg"), task_output="cls",
                                       formats=("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8-io"),
                                       latency_runs=5))
    m = res.manifest
    assert [s.name for s in m.inputs] == ["x", "z"] and [s.name for s in m.outputs] == ["cls", "reg"]
    check_against_source(res.out, torch_source(tm.two_heads(), ["cls", "reg"]),
                         {"fp32": 1e-5, "int8": 0.2, "int8-io": 0.2})


def test_ncw_input_and_nchw_output_layouts(workdir: Path) -> None:
    res = convert(ConvertOptions.build(model="toolchain_models:segnet", out=workdir / "seg",
                                       input_shapes={"": (1, 2, 6, 5)},
                                       layout="NCHW", task="regression",
                                       formats=("onnx-fp32", "tflite-fp32", "tflite-int8"),
                                       latency_runs=5))
    tfl = res.manifest.artifact("model.fp32.tflite")
    assert tfl.inputs[0].shape == (1, 2, 6, 5)
    check_against_source(res.out, torch_source(tm.segnet(), ["output"]), {"fp32": 1e-5, "int8": 0.1})


def test_per_channel_remedy_wins(workdir: Path) -> None:
    """One outlier weight: per-tensor int8 fails the gate, the per-channel remedy passes (ONNX and TFLite)."""
    np.save(workdir / "outlier.npy", tm.outlier_windows(64))
    res = convert(ConvertOptions.build(model="toolchain_models:outlier", out=workdir / "outlier",
                                       input_shapes={"": (1, 4, 20)}, calibration=workdir / "outlier.npy",
                                       per_channel=False,
                                       max_drop=1.0, formats=("onnx-fp32", "onnx-int8", "tflite-int8"), latency_runs=5))
    for path in ("model.int8.onnx", "model.int8.tflite"):
        entry = res.report["artifacts"][path]
        attempts = entry["attempts"]
        assert attempts[0]["config"].startswith("per-tensor") and attempts[0]["drop"] > 1.0, attempts
        chosen = [a for a in attempts if a["chosen"]]
        assert chosen[0]["config"].startswith("per-channel") and chosen[0]["drop"] <= 1.0, attempts
        assert entry["quantization"].startswith("per-channel")


def test_gate_rejects_and_tries_every_remedy(workdir: Path) -> None:
    """An impossible gate: int8 is not shipped, each remedy is tried and reported, fp32 still ships."""
    x = tm.imu_windows(32, t=20).transpose(0, 2, 1).copy()
    np.save(workdir / "c1.npy", x)
    res = convert(ConvertOptions.build(model="toolchain_models:conv1d", out=workdir / "strict",
                                       input_shapes={"": (1, 3, 20)}, calibration=workdir / "c1.npy", max_drop=1e-9,
                                       formats=("onnx-fp32", "onnx-int8", "tflite-int8"), latency_runs=5))
    assert [a.path for a in res.manifest.artifacts] == ["model.fp32.onnx"]
    rejected = res.report["rejected"]["model.int8.onnx"]
    configs = [a["config"] for a in rejected["attempts"]]
    assert configs[0] == "per-channel, minmax"
    assert "per-tensor, minmax" in configs
    assert "per-channel, entropy" in configs and "per-channel, percentile" in configs
    assert any("kept in float" in c for c in configs)
    assert "drop" in rejected["reason"]
    tfl = [a["config"] for a in res.report["rejected"]["model.int8.tflite"]["attempts"]]
    assert tfl[:2] == ["per-channel", "per-tensor"] and any("kept in float" in c for c in tfl), tfl


def test_gate_rejecting_everything_exits_1_and_writes_nothing(workdir: Path) -> None:
    out = workdir / "nothing.spinal"
    result = run_cli("convert", "toolchain_models:conv1d", "-o", out, "--input-shape", "1,3,20",
                     "--formats", "onnx-int8", "--max-drop", "0", "--no-remedies")
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "no artifact passed" in result.stderr
    assert not out.exists()
    assert not list(workdir.glob(".spinal-convert-*"))


def test_golden_outputs_are_what_the_device_runtime_computes(cnn_bundle, gru_bundle) -> None:
    """The converter's runner IS the device runtime's Model: loading each artifact with load_model and
    running the golden inputs gives the golden outputs bit for bit on the machine that converted."""
    from device.runtime import RuntimePolicy, load_model

    for result in (cnn_bundle, gru_bundle):
        with open_bundle(result.out) as b:
            m = b.manifest
            golden = b.load_golden()
            for art in m.artifacts:
                runtime = "onnxruntime" if art.format == "onnx" else "litert"
                policy = RuntimePolicy(runtime=runtime, artifact=art.path, threads=1, autotune=False)
                with load_model(b, policy) as model:
                    for i in range(m.golden.count):
                        outs = model.run({s.name: golden[f"input/{s.name}"][i] for s in m.inputs})
                        for name, value in outs.items():
                            np.testing.assert_array_equal(value.reshape(-1),
                                                          golden[f"output/{art.path}/{name}"][i].reshape(-1),
                                                          err_msg=f"{art.path} {name} sample {i}")
