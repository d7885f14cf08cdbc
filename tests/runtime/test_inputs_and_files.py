"""Wrong inputs are clear errors before the runtime sees them; corrupt model files never reach a runtime crash."""

from __future__ import annotations

from pathlib import Path

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
