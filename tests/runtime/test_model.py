"""Every backend present, every artifact kind: parity, logical I/O, int8 quantization, layout adaptation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from device.bundle import open_bundle
from device.runtime import Model, RuntimePolicy, load_model
from device.runtime.parity import check_golden, golden_inputs
from tests.runtime.bundles import ALL_ARTIFACTS, CLASSES, PRECISION, C, T, raw_onnx, raw_tflite, samples

RUNTIMES = {"litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime", "onnxruntime": "onnxruntime"}
PAIRS = [(rt, art) for art in ALL_ARTIFACTS for rt in RUNTIMES
         if (art.endswith(".onnx")) == (rt == "onnxruntime")]


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(RUNTIMES[runtime]) is not None


@pytest.mark.parametrize(("runtime", "artifact"), PAIRS, ids=[f"{r}-{a}" for r, a in PAIRS])
def test_every_artifact_matches_its_golden_vectors(bundle_dir: Path, runtime: str, artifact: str) -> None:
    if not installed(runtime):
        pytest.skip(f"{runtime} not installed")
    with open_bundle(bundle_dir) as bundle:
        model = load_model(bundle, RuntimePolicy(runtime=runtime, artifact=artifact, threads=1))
        with model:
            art = bundle.manifest.artifact(artifact)
            result = check_golden(model, bundle.manifest, bundle.load_golden(), art)
            assert result.ok, result.detail
            assert result.count == 8
            info = model.info
            assert (info.runtime, info.artifact, info.precision, info.threads) == (runtime, artifact,
                                                                                  PRECISION[artifact], 1)
            assert info.version and info.fallback_reason is None
            out = model.run({"imu": samples(1, seed=5)[0][None]})
            assert list(out) == ["logits"]
            assert out["logits"].shape == (1, CLASSES) and out["logits"].dtype == np.float32


def test_int8_io_quantizes_inputs_and_dequantizes_outputs(bundle_dir: Path) -> None:
    """The int8-io file takes int8 and returns int8; the caller still feeds and gets floats."""
    model = load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="int8-io"))
    raw_in, raw_out = model.session.inputs[0], model.session.outputs[0]
    assert raw_in.dtype == np.int8 and raw_out.dtype == np.int8
    assert raw_in.quantization is not None and raw_out.quantization is not None
    x = samples(4, seed=9)
    got = np.stack([model.run({"imu": w[None]})["logits"][0] for w in x])
    np.testing.assert_allclose(got, raw_tflite(bundle_dir / "model_int8io.tflite", x), atol=1e-6)
    # And the quantized path agrees with the float model to within a few output steps.
    fp32 = raw_tflite(bundle_dir / "model_fp32.tflite", x)
    assert np.abs(got - fp32).max() < 10 * raw_out.quantization.scale[0]
    # The adapter clips out-of-range values instead of wrapping them around.
    big = np.full((1, T, C), 1e6, np.float32)
    adapter = model._in[0]
    q = adapter.to_artifact(big)
    assert q.dtype == np.int8 and q.max() == 127


def test_the_preallocated_quantizer_gives_the_codes_to_artifact_gives(bundle_dir: Path) -> None:
    """The per-call fast path of an int8-io input (buffers allocated once) is bit for bit the general path:
    rounding ties, clipping at both ends, and repeated calls that reuse the buffers."""
    model = load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="int8-io"))
    adapter = model._in[0]
    quantize = adapter.quantizer()
    assert quantize is not None
    scale = float(adapter.quant[0])
    rng = np.random.default_rng(4)
    cases = [rng.standard_normal((1, T, C)).astype(np.float32) * k for k in (0.5, 3.0, 1e3)]
    cases.append(((np.arange(T * C) % 7 - 3.5) * scale).reshape(1, T, C).astype(np.float32))  # exact ties
    for x in cases:
        np.testing.assert_array_equal(quantize(x), adapter.to_artifact(x))
    first = quantize(cases[0]).copy()
    assert not np.array_equal(quantize(cases[2]), first)
    np.testing.assert_array_equal(quantize(cases[0]), first)
    assert np.array_equal(model.run({"imu": cases[1]})["logits"], model._general({"imu": cases[1]})["logits"])


def test_layout_adapter_feeds_nct_artifact_from_ntc_logical_input(bundle_dir: Path) -> None:
    """The ONNX artifact takes NCT; the logical input is NTC. Same outputs as the NTC TFLite model."""
    onnx_model = load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime", artifact="model_fp32.onnx"))
    tfl_model = load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="model_fp32.tflite"))
    assert onnx_model.session.inputs[0].shape == (1, C, T)
    assert onnx_model.inputs[0].shape == (1, T, C) and onnx_model.inputs[0].layout == "NTC"
    assert onnx_model._in[0].perm == (0, 2, 1)
    x = samples(3, seed=11)
    a = np.stack([onnx_model.run({"imu": w[None]})["logits"][0] for w in x])
    b = np.stack([tfl_model.run({"imu": w[None]})["logits"][0] for w in x])
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(a, raw_onnx(bundle_dir / "model_fp32.onnx", x), atol=1e-6)
    # A window without the batch axis is accepted too.
    np.testing.assert_allclose(onnx_model.run({"imu": x[0]})["logits"], a[:1], atol=1e-6)


def test_archive_bundle_loads_and_runs(bundle_archive: Path) -> None:
    with load_model(bundle_archive, RuntimePolicy(runtime="litert", artifact="fp32")) as model:
        assert model.info.artifact == "model_fp32.tflite"
        assert model.run({"imu": samples(1, seed=3)})["logits"].shape == (1, CLASSES)


def test_plain_files_use_their_own_tensors(plain_files: dict[str, Path]) -> None:
    tfl = load_model(plain_files["fp32"])
    assert tfl.info.runtime == "litert" and tfl.info.precision == "fp32" and tfl.artifact is None
    (inp,) = tfl.inputs
    assert inp.shape == (1, T, C) and inp.dtype == np.float32 and inp.layout is None
    out = tfl.run({inp.name: samples(1, seed=1)})
    assert next(iter(out.values())).shape == (1, CLASSES)

    onnx_model = load_model(plain_files["onnx"])
    assert onnx_model.info.runtime == "onnxruntime" and onnx_model.inputs[0].shape == (1, C, T)
    x = samples(1, seed=1)
    np.testing.assert_allclose(onnx_model.run({"x": x.transpose(0, 2, 1)})["logits"],
                               next(iter(out.values())), atol=1e-4)

    int8io = load_model(plain_files["int8-io"])
    assert int8io.info.precision == "int8-io" and int8io.inputs[0].dtype == np.int8
    y = int8io.run({int8io.inputs[0].name: np.zeros((1, T, C), np.int8)})
    assert next(iter(y.values())).dtype == np.int8


def test_model_info_describes_what_runs(bundle_dir: Path) -> None:
    model = load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="int8", threads=2))
    assert model.info.delegate == "XNNPACK" and model.info.provider is None
    assert model.session.delegated() is True  # seen in the graph (a DELEGATE node), not assumed
    assert "litert" in model.info.describe() and "model_int8.tflite" in model.info.describe()
    ort = load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime", artifact="int8"))
    assert ort.info.provider == "CPUExecutionProvider" and ort.info.delegate is None
    none = load_model(bundle_dir, RuntimePolicy(runtime="litert", artifact="fp32", delegate="none"))
    assert none.info.delegate is None and none.session.delegated() is False  # builtin kernels, no XNNPACK


def test_tiny_committed_bundle_runs_without_the_host_stack(make_bundle) -> None:
    """The foundation's tiny bundle (committed files): runs in the device-only venv too."""
    root = make_bundle(formats=("tflite",))
    with open_bundle(root) as bundle:
        model = load_model(bundle, RuntimePolicy(runtime="auto", cache_dir=root / ".cache"))
        assert isinstance(model, Model)
        golden = bundle.load_golden()
        result = check_golden(model, bundle.manifest, golden, model.artifact)
        assert result.ok, result.detail
        feeds = golden_inputs(golden, model.inputs, bundle.manifest.golden.count)
        assert feeds[0]["x"].shape == (1, 8, 3)
