"""Wrong inputs are clear errors before the runtime sees them; corrupt model files never reach a runtime crash."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from device.errors import BadInput, ModelFileError
from device.runtime import InputError, RuntimePolicy, load_model
from tests.conftest import DATA, run_cli
from tests.runtime.bundles import C, T, samples


@pytest.fixture(scope="module")
def models(bundle_dir: Path) -> dict[str, object]:
    return {
        "litert": load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="fp32")),
        "int8io": load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="int8-io")),
        "onnx": load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime", artifact="fp32")),
    }


GOOD = samples(1, seed=0)


@pytest.mark.parametrize("which", ["litert", "int8io", "onnx"])
@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"imu": GOOD[:, :16]}, r"input 'imu': expected shape \[1, 32, 6\] float32 NTC, got \[1, 16, 6\]"),
        ({"imu": GOOD.transpose(0, 2, 1)}, r"expected shape .* got \[1, 6, 32\]"),
        ({"imu": GOOD.astype(np.int16)}, r"expected floating-point values .* got int16"),
        ({"imu": np.where(np.arange(T * C).reshape(1, T, C) == 5, np.nan, GOOD)}, r"1 of 192 values are NaN"),
        ({"imu": np.full((1, T, C), np.inf, np.float32)}, r"192 of 192 values are NaN or infinite"),
        ({}, r"missing input 'imu' \(the model takes imu \[1, 32, 6\] float32 NTC\)"),
        ({"imu": GOOD, "extra": GOOD}, r"unknown input 'extra'"),
        ({"accel": GOOD}, r"missing input 'imu'"),
        ({"imu": [["a"] * C] * T}, r"expected numbers, got str"),
        ({"imu": np.array([1, 2], dtype=object)}, r"expected numbers, got object"),
    ],
)
def test_bad_inputs_are_clear_errors(models: dict[str, object], which: str, feed: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        models[which].run(feed)


def test_acceptable_inputs(models: dict[str, object]) -> None:
    model = models["litert"]
    ref = model.run({"imu": GOOD})["logits"]
    np.testing.assert_allclose(model.run({"imu": GOOD.astype(np.float64)})["logits"], ref, rtol=1e-6)
    np.testing.assert_allclose(model.run({"imu": GOOD[0].tolist()})["logits"], ref, rtol=1e-6)  # nested lists
    np.testing.assert_allclose(model.run({"imu": np.asfortranarray(GOOD)})["logits"], ref, rtol=1e-6)
    huge = np.full((1, T, C), 3e38, np.float32)  # finite, though its sum of squares overflows
    model.run({"imu": huge})  # accepted: the overflowing quick check is confirmed element by element
    assert InputError.__mro__[1] is BadInput


def test_input_error_is_bad_input_not_a_crash(models: dict[str, object]) -> None:
    with pytest.raises(BadInput):
        models["onnx"].run("not a mapping")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Corrupt model files


@pytest.fixture
def corrupt(tmp_path: Path, plain_files: dict[str, Path]) -> dict[str, Path]:
    tfl = plain_files["fp32"].read_bytes()
    onnx = plain_files["onnx"].read_bytes()
    files = {
        "truncated.tflite": tfl[: len(tfl) // 2],
        "magic.tflite": b"\x1c\x00\x00\x00XXXX" + tfl[8:],
        "onnx_named.tflite": onnx,
        "tflite_named.onnx": tfl,
        "truncated.onnx": onnx[: len(onnx) // 2],
        "empty.onnx": b"",
        "garbage.onnx": b"\x08\x07" + bytes(range(256)) * 4,
        "model.txt": b"hello",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.tflite", r"truncated.tflite: the TFLite runtime cannot load it"),
        ("magic.tflite", r"magic.tflite: .*(neither ONNX nor TFLite|not a TFLite)"),
        ("onnx_named.tflite", r"onnx_named.tflite: .*ONNX.*rename it to onnx_named.onnx"),
        ("tflite_named.onnx", r"tflite_named.onnx: .*TFLite.*rename it to tflite_named.tflite"),
        ("truncated.onnx", r"truncated.onnx: onnxruntime cannot load it"),
        ("empty.onnx", r"file is empty"),
        ("garbage.onnx", r"garbage.onnx: onnxruntime cannot load it"),
        ("model.txt", r"unknown model type"),
    ],
)
def test_corrupt_model_files_are_refused_with_one_line(corrupt: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(corrupt[name])
    assert "\n" not in str(info.value)


def test_corrupt_file_verify_exits_2(corrupt: dict[str, Path]) -> None:
    result = run_cli("verify", corrupt["truncated.tflite"])
    assert result.exit_code == 2 and "truncated.tflite" in result.stderr


def test_truncated_tflite_in_tflite_runtime(corrupt: dict[str, Path]) -> None:
    pytest.importorskip("tflite_runtime")
    with pytest.raises(ModelFileError, match=r"truncated\.tflite"):
        load_model(corrupt["truncated.tflite"], RuntimePolicy(runtime="tflite-runtime"))


def test_wrong_runtime_for_the_format(plain_files: dict[str, Path]) -> None:
    with pytest.raises(BadInput, match="a onnx file cannot run in litert"):
        load_model(plain_files["onnx"], RuntimePolicy(runtime="litert"))


def test_policy_is_validated() -> None:
    with pytest.raises(BadInput, match="runtime 'tensorrt' is not one of"):
        RuntimePolicy(runtime="tensorrt")
    with pytest.raises(BadInput, match="threads must be"):
        RuntimePolicy(threads=0)


def test_committed_tiny_files_load() -> None:
    import importlib.util

    names = ["tiny.tflite"] + (["tiny.onnx"] if importlib.util.find_spec("onnxruntime") else [])
    for name in names:
        model = load_model(DATA / name)
        out = model.run({model.inputs[0].name: np.zeros((1, 8, 3), np.float32)})
        assert next(iter(out.values())).shape == (1, 4)


def test_an_onnx_file_with_a_string_tensor_names_the_file(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["text"], ["same"])], "strings",
                              [helper.make_tensor_value_info("text", TensorProto.STRING, [1])],
                              [helper.make_tensor_value_info("same", TensorProto.STRING, [1])])
    path = tmp_path / "strings.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    with pytest.raises(ModelFileError, match=rf"^{path}: tensor 'text' has type tensor\(string\)"):
        load_model(path, RuntimePolicy(runtime="onnxruntime"))


@pytest.fixture
def gather_onnx(tmp_path: Path) -> Path:
    """An ONNX model indexed by its int64 input: random indices fall outside its 10 values."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    data = numpy_helper.from_array(np.arange(10, dtype=np.float32), "data")
    graph = helper.make_graph([helper.make_node("Gather", ["data", "idx"], ["out"])], "gather",
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [1])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])], [data])
    path = tmp_path / "gather.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_an_onnxruntime_failure_during_run_is_a_runtime_error(gather_onnx: Path) -> None:
    # onnxruntime's InvalidArgument derives from Exception only: callers that catch the runtimes' RuntimeError
    # (open_model's delegate test inference, verify) let it escape as a traceback.
    with load_model(gather_onnx, RuntimePolicy(runtime="onnxruntime")) as model:
        assert model.run({"idx": np.array([3], np.int64)})["out"].tolist() == [3.0]
        with pytest.raises(RuntimeError, match=r"^gather\.onnx: onnxruntime failed to run it \(.*INVALID_ARGUMENT"):
            model.run({"idx": np.array([89], np.int64)})


def test_verify_of_a_file_that_fails_on_random_inputs_is_a_failed_check(gather_onnx: Path) -> None:
    result = run_cli("verify", gather_onnx, "--json")
    assert result.exit_code == 1
    import json

    (row,) = [r for r in json.loads(result.stdout)["checks"] if r["check"] == "runs on onnxruntime"]
    assert row["ok"] is False and row["detail"].startswith("one inference on random inputs failed (gather.onnx:")


def test_golden_outputs_with_too_few_samples_are_a_bundle_error(bundle_dir: Path, tmp_path: Path) -> None:
    # The golden file's inputs hold 8 samples, one artifact's outputs only 3: that was reported as a parity
    # mismatch (max |err| inf: 'outputs do not match'), or an IndexError with samples stacked on an extra axis.
    import dataclasses
    import shutil

    from device.bundle import file_digest, read_manifest, write_manifest
    from device.errors import BundleError
    from device.runtime.parity import check_golden

    root = tmp_path / "imu"
    shutil.copytree(bundle_dir, root)
    with np.load(root / "golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    key = "output/model_fp32.onnx/logits"
    arrays[key] = arrays[key][:3]
    np.savez(root / "golden.npz", **arrays)
    manifest = read_manifest(root)
    sha, size = file_digest(root / "golden.npz")
    write_manifest(root, dataclasses.replace(manifest, golden=dataclasses.replace(manifest.golden, sha256=sha,
                                                                                   bytes=size)))
    from device.bundle import open_bundle

    with open_bundle(root) as bundle:
        model = load_model(bundle, RuntimePolicy(runtime="onnxruntime", artifact="fp32"))
        with pytest.raises(BundleError, match=rf"{key} holds 3 samples, manifest.json golden.count says 8"):
            check_golden(model, bundle.manifest, bundle.load_golden(), bundle.manifest.artifact("model_fp32.onnx"))


# --------------------------------------------------------------------------------------------
# Plain files with dynamic axes (--input-shape), and crash isolation of every runtime's first contact


def _spinal(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``spinal ARGS`` in a fresh process: a crash (SIGSEGV) shows as a negative exit status, not a dead test run."""
    import os
    import sys

    root = str(Path(__file__).resolve().parents[2])
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [(env or {}).get("PYTHONPATH"), root]))
    return subprocess.run([sys.executable, "-c", "from device.cli import main; main()", *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=full)


@pytest.fixture
def dynamic_conv_onnx(tmp_path: Path) -> Path:
    """A Conv1d (kernel 5, no padding) over a dynamic batch and time axis: size 1 cannot run it."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "time"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, "out_time"])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    return path


def test_verify_and_bench_take_the_size_of_dynamic_axes(dynamic_conv_onnx: Path) -> None:
    """Size 1 on every dynamic axis reported a valid model FAILED (exit 1) with no way to say better."""
    plain = run_cli("verify", dynamic_conv_onnx, "--runtime", "onnxruntime")
    assert plain.exit_code == 1
    assert "--input-shape x=N,3,N" in plain.stdout, plain.stdout
    shaped = run_cli("verify", dynamic_conv_onnx, "--runtime", "onnxruntime", "--input-shape", "x=2,3,20")
    assert shaped.exit_code == 0, shaped.stdout + shaped.stderr
    assert "y [2, 4, 16]" in shaped.stdout
    wrong = run_cli("verify", dynamic_conv_onnx, "--input-shape", "q=1,3,20")
    assert wrong.exit_code == 2 and "has no input 'q' (inputs: x)" in wrong.stderr, wrong.stderr
    fixed = run_cli("verify", dynamic_conv_onnx, "--input-shape", "x=1,4,20")
    assert fixed.exit_code == 2 and "dim 1 of input 'x' is fixed at 3" in fixed.stderr, fixed.stderr
    bench = run_cli("bench", dynamic_conv_onnx, "--runtime", "onnxruntime", "--threads", "1", "--seconds", "0.05",
                    "--input-shape", "x=1,3,20", "--json")
    assert bench.exit_code == 0, bench.stdout + bench.stderr
    assert all("error" not in row for row in __import__("json").loads(bench.stdout)["rows"])


def write_sparse_tflite(tf: Any, path: Path, rng: np.random.Generator) -> Path:
    """A pruned Conv2D (90 % zero weights) converted with EXPERIMENTAL_SPARSITY: a TFLite file with a DENSIFY op."""
    inp = tf.keras.Input((8, 8, 16), batch_size=1)
    layer = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False)
    model = tf.keras.Model(inp, layer(inp))
    w = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    layer.set_weights([w * (rng.random(w.shape) < 0.1)])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    path.write_bytes(conv.convert())
    return path


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TFLite files TensorFlow makes here: one with a dynamic time axis (shape_signature [1, -1, 3]) and a
    sparse one (a pruned Conv2D converted with EXPERIMENTAL_SPARSITY: a DENSIFY operator)."""
    tf = pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("tf")
    rng = np.random.default_rng(0)
    inp = tf.keras.Input((None, 3), batch_size=1)
    dynamic = tf.keras.Model(inp, tf.keras.layers.Conv1D(4, 5)(inp))
    (out / "dynamic.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(dynamic).convert())
    write_sparse_tflite(tf, out / "sparse.tflite", rng)
    inp = tf.keras.Input((16,), batch_size=1)
    dense = tf.keras.Model(inp, tf.keras.layers.Dense(8)(inp))
    for precision in ("fp16", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(dense)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if precision == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        else:
            conv.representative_dataset = lambda: ([rng.standard_normal((1, 16)).astype(np.float32)] for _ in range(8))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        (out / f"{precision}.tflite").write_bytes(conv.convert())
    return {name: out / f"{name}.tflite" for name in ("dynamic", "sparse", "fp16", "int8")}


def test_inspect_tells_fp16_weights_from_int8(tf_models: dict[str, Path]) -> None:
    """An fp16-weight file (DEQUANTIZE float16 → float32) was reported `quantized: true`."""
    import json

    fp16 = json.loads(run_cli("inspect", tf_models["fp16"], "--json").stdout)
    assert "DEQUANTIZE" in fp16["ops"]
    assert (fp16["quantized"], fp16["precision"]) == (False, "fp16")
    int8 = json.loads(run_cli("inspect", tf_models["int8"], "--json").stdout)
    assert (int8["quantized"], int8["precision"]) == (True, "int8")
    fp32 = json.loads(run_cli("inspect", tf_models["dynamic"], "--json").stdout)
    assert (fp32["quantized"], fp32["precision"]) == (False, "fp32")
    assert "precision fp16" in run_cli("inspect", tf_models["fp16"]).stdout


def test_a_dynamic_tflite_file_is_resized_in_a_child_first(tf_models: dict[str, Path]) -> None:
    """A TFLite file with a dynamic shape_signature, resized to size 1, crashed LiteRT inside verify."""
    from device.modelfile import inspect_model_file

    path = tf_models["dynamic"]
    assert inspect_model_file(path).inputs[0].shape == [1, 1, 3]  # the signature says [1, -1, 3]
    plain = _spinal("verify", path, "--runtime", "litert")
    assert plain.returncode == 1, plain.stdout + plain.stderr  # a failed check, in a row: not a crash
    assert "FAIL runs on litert" in plain.stdout and "--input-shape" in plain.stdout, plain.stdout
    shaped = _spinal("verify", path, "--runtime", "litert", "--input-shape", "1,20,3")
    assert shaped.returncode == 0, shaped.stdout + shaped.stderr
    assert "[1, 16, 4]" in shaped.stdout


# What tflite-runtime 2.14 does on sparse (DENSIFY) files from some packages (issue 14): it segfaults
# reading them (get_tensor_details() there; allocating too, here, so that every way of loading the file meets
# the crash). The files TensorFlow makes here do not crash it, so a sitecustomize put in front of the real
# runtime, in every process of the command under test, makes it behave so.
CRASH_ON_DENSIFY = '''
try:
    import ctypes
    from tflite_runtime.interpreter import Interpreter

    def _crashing(real):
        def method(self, *args, **kwargs):
            if any(op["op_name"] == "DENSIFY" for op in self._get_ops_details()):
                ctypes.string_at(0)
            return real(self, *args, **kwargs)
        return method

    Interpreter.get_tensor_details = _crashing(Interpreter.get_tensor_details)
    Interpreter.allocate_tensors = _crashing(Interpreter.allocate_tensors)
except ImportError:
    pass
'''


def test_a_runtime_that_crashes_on_a_sparse_file_fails_one_row_not_verify(tf_models: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    """`spinal verify sparse.tflite` died with SIGSEGV (exit 139, nothing printed): tflite-runtime read it
    in-process after a LiteRT-only probe."""
    pytest.importorskip("tflite_runtime")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_ON_DENSIFY)
    path = tf_models["sparse"]
    env = {"PYTHONPATH": str(hook), "SPINAL_CACHE_DIR": str(tmp_path / "cache")}
    result = _spinal("verify", path, env=env)
    # LiteRT ran and checked it: tflite-runtime's crash is that runtime's gap (a skip that says so), not a
    # failed file; named with --runtime, the same crash fails verify.
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    out = " ".join(result.stdout.split())
    assert "ok runs on litert" in out, out
    assert "skip runs on tflite-runtime: tflite-runtime cannot run this file" in out and "SIGSEGV" in out, out
    assert "litert ran and checked it" in out, out
    named = _spinal("verify", path, "--runtime", "tflite-runtime", env=env)
    assert named.returncode == 1 and "FAIL runs on tflite-runtime" in named.stdout, named.stdout
    bundle_like = _spinal("inspect", path, env={"PYTHONPATH": str(hook)})
    assert bundle_like.returncode == 0, bundle_like.stderr  # LiteRT reads it; inspect is unaffected
