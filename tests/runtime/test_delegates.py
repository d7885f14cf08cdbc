"""Honest delegates: a delegate counts only after it matched the golden vectors; otherwise loud fallback or refusal."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from device.errors import BadInput, CheckFailed
from device.runtime import DelegateError, RuntimePolicy, load_model
from device.runtime.delegates import EDGETPU_LIBRARY, parse_delegate
from tests.runtime.bundles import samples


def fp32(runtime: str = "litert", **kw: object) -> RuntimePolicy:
    return RuntimePolicy(runtime=runtime, artifact="fp32", **kw)  # type: ignore[arg-type]


def test_parse_delegate_specs() -> None:
    assert parse_delegate(None).kind == "cpu" and not parse_delegate("xnnpack").accelerated
    assert parse_delegate("none").kind == "none"
    tpu = parse_delegate("edgetpu:usb:0")
    assert (tpu.kind, tpu.library, tpu.options) == ("edgetpu", EDGETPU_LIBRARY, {"device": "usb:0"})
    ext = parse_delegate("/opt/armnn/libarmnnDelegate.so,backends=CpuAcc,logging-severity=info")
    assert ext.kind == "external" and ext.options == {"backends": "CpuAcc", "logging-severity": "info"}
    assert parse_delegate("cuda").provider == "CUDAExecutionProvider"
    assert parse_delegate("OpenVINOExecutionProvider").provider == "OpenVINOExecutionProvider"
    gpu = parse_delegate("gpu")
    assert gpu.applies_to("litert") and gpu.applies_to("onnxruntime")
    assert not parse_delegate("cuda").applies_to("litert") and not tpu.applies_to("onnxruntime")
    with pytest.raises(BadInput, match="delegate 'tpu' is unknown"):
        parse_delegate("tpu")
    with pytest.raises(BadInput, match="edgetpu:usb"):
        parse_delegate("edgetpu:wifi")
    assert parse_delegate("edgetpu:pci:1").options == {"device": "pci:1"}
    for typo in ("edgetpus", "edgetpu-usb", "edgetpu:usb:x", "edgetpu:usb:0:1"):  # were taken as plain edgetpu
        with pytest.raises(BadInput):
            parse_delegate(typo)
    with pytest.raises(BadInput, match="not key=value"):
        parse_delegate("/x/lib.so,oops")


@pytest.mark.parametrize(
    ("delegate", "cause"),
    [
        ("/nonexistent/libdelegate.so", r"delegate library /nonexistent/libdelegate.so not found; check the path"),
        ("edgetpu", r"libedgetpu.so.1 is not installed; install it with 'apt install libedgetpu1-std'"),
        ("libm.so.6", r"loads but is not a TFLite external delegate \(no tflite_plugin_create_delegate"),
    ],
)
def test_delegate_that_fails_to_load_falls_back_loudly(bundle_dir: Path, caplog: pytest.LogCaptureFixture,
                                                        delegate: str, cause: str) -> None:
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        model = load_model(bundle_dir, fp32(delegate=delegate))
    assert model.info.delegate == "XNNPACK"  # what actually runs: the CPU path
    assert model.info.fallback_reason is not None
    assert re.search(cause, model.info.fallback_reason)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and re.search(cause, warnings[-1].getMessage())
    assert "running model_fp32.tflite on the CPU instead" in warnings[-1].getMessage()
    assert model.run({"imu": samples(1, seed=1)})["logits"].shape == (1, 4)


def test_delegate_that_fails_to_load_is_refused_when_fail_closed(bundle_dir: Path) -> None:
    with pytest.raises(DelegateError, match="libedgetpu1-std") as info:
        load_model(bundle_dir, fp32(delegate="edgetpu", fail_closed=True))
    assert isinstance(info.value, CheckFailed) and info.value.exit_code == 1


def test_not_a_shared_library(bundle_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so"
    fake.write_bytes(b"\x7fELF" + b"\x00" * 10)
    model = load_model(bundle_dir, fp32(delegate=str(fake)))
    assert "is not a shared library for this machine" in (model.info.fallback_reason or "")


def test_delegate_that_loads_but_mismatches(bundle_dir: Path, zero_delegate: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """A real external delegate that takes every node and computes nothing: the golden check catches it."""
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        model = load_model(bundle_dir, fp32(delegate=str(zero_delegate)))
    reason = model.info.fallback_reason or ""
    assert ("runs model_fp32.tflite but its outputs do not match: not the model that was converted: "
            "golden vector 0") in reason
    assert "> bound 0.0001" in reason
    assert model.info.delegate == "XNNPACK"
    x = samples(1, seed=4)
    cpu = load_model(bundle_dir, fp32())
    np.testing.assert_array_equal(model.run({"imu": x})["logits"], cpu.run({"imu": x})["logits"])
    with pytest.raises(DelegateError, match="outputs do not match"):
        load_model(bundle_dir, fp32(delegate=str(zero_delegate), fail_closed=True))


def test_mismatching_delegate_on_a_plain_file_is_caught_against_the_cpu(plain_files: dict[str, Path],
                                                                         zero_delegate: Path) -> None:
    model = load_model(plain_files["fp32"], RuntimePolicy(delegate=str(zero_delegate)))
    assert "outputs do not match: random (against the CPU) vector 0: output" in (model.info.fallback_reason or "")


def test_the_zero_delegate_really_runs_when_unchecked(bundle_dir: Path, zero_delegate: Path) -> None:
    """Proof that the fixture is a working delegate (so the test above is not passing by accident)."""
    from device.runtime.delegates import parse_delegate as parse
    from device.runtime.select import open_session

    session = open_session("litert", bundle_dir / "model_fp32.tflite", 1, parse(str(zero_delegate)))
    assert session.delegate == "libzero_delegate.so"
    # The delegate never writes its outputs, so what comes out does not depend on the input (whatever the
    # output buffer held: it may even hold an earlier interpreter's result, so compare inputs, not values).
    a = session.run([samples(1, seed=1)])[0].copy()
    b = session.run([samples(1, seed=2)])[0].copy()
    np.testing.assert_array_equal(a, b)
    cpu = load_model(bundle_dir, fp32())
    cpu_a, cpu_b = (cpu.run({"imu": samples(1, seed=seed)})["logits"] for seed in (1, 2))
    assert not np.allclose(cpu_a, cpu_b), "the model itself does depend on its input"


def test_ort_provider_the_wheel_lacks(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        model = load_model(bundle_dir, fp32("onnxruntime", delegate="cuda"))
    assert model.info.provider == "CPUExecutionProvider"
    assert "CUDAExecutionProvider is not in this onnxruntime" in (model.info.fallback_reason or "")
    assert "install onnxruntime-gpu" in caplog.text
    with pytest.raises(DelegateError, match="install onnxruntime-gpu"):
        load_model(bundle_dir, fp32("onnxruntime", delegate="cuda", fail_closed=True))


def test_ort_per_node_fallback_is_detected(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Azure EP is in the PyPI wheel but runs none of these nodes: ORT puts them on the CPU quietly."""
    import onnxruntime

    if "AzureExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no Azure EP")
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        model = load_model(bundle_dir, fp32("onnxruntime", delegate="azure"))
    assert model.info.provider == "AzureExecutionProvider"
    assert "are not supported by AzureExecutionProvider and run on the CPU" in (model.info.fallback_reason or "")
    assert "run on the CPU" in caplog.text
    with pytest.raises(DelegateError, match="fail-closed"):
        load_model(bundle_dir, fp32("onnxruntime", delegate="azure", fail_closed=True))


def test_delegate_for_the_wrong_runtime(bundle_dir: Path) -> None:
    with pytest.raises(BadInput, match="delegate cuda does not apply to litert"):
        load_model(bundle_dir, fp32(delegate="cuda"))
    with pytest.raises(BadInput, match="delegate edgetpu does not apply to onnxruntime"):
        load_model(bundle_dir, fp32("onnxruntime", delegate="edgetpu"))


def test_auto_with_an_onnx_provider_only_considers_onnx(bundle_dir: Path, cache_dir: Path) -> None:
    model = load_model(bundle_dir, RuntimePolicy(delegate="cuda", cache_dir=cache_dir))
    assert model.info.runtime == "onnxruntime"


@pytest.fixture
def tpu_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    """The test bundle plus an artifact flagged as compiled for the Edge TPU (``*_edgetpu.tflite``)."""
    import dataclasses
    import shutil

    from device.bundle import file_digest, read_manifest, write_manifest

    root = tmp_path / "tpu"
    shutil.copytree(bundle_dir, root)
    shutil.copyfile(root / "model_int8.tflite", root / "model_int8_edgetpu.tflite")
    manifest = read_manifest(root)
    plain = manifest.artifact("model_int8.tflite")
    tpu = dataclasses.replace(plain, path="model_int8_edgetpu.tflite", edgetpu=True)
    with np.load(root / "golden.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output/model_int8_edgetpu.tflite/logits"] = arrays["output/model_int8.tflite/logits"]
    with open(root / "golden.npz", "wb") as fh:
        np.savez(fh, **arrays)
    sha, size = file_digest(root / "golden.npz")
    golden = dataclasses.replace(manifest.golden, sha256=sha, bytes=size)
    write_manifest(root, dataclasses.replace(manifest, artifacts=(*manifest.artifacts, tpu), golden=golden))
    return root


def test_edgetpu_artifacts_need_the_tpu(tpu_bundle: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Without the delegate an Edge TPU file is never a candidate.
    model = load_model(tpu_bundle, RuntimePolicy(runtime="litert", artifact="int8", cache_dir=cache_dir))
    assert model.info.artifact == "model_int8.tflite"
    # With it (and no TPU here) the runner falls back to a plain artifact on the CPU, loudly.
    with caplog.at_level(logging.WARNING, logger="spinal.runtime"):
        model = load_model(tpu_bundle, RuntimePolicy(runtime="litert", delegate="edgetpu", autotune=False,
                                                     cache_dir=cache_dir))
    assert model.info.artifact != "model_int8_edgetpu.tflite" and model.info.delegate == "XNNPACK"
    assert "libedgetpu1-std" in (model.info.fallback_reason or "") and "on the CPU instead" in caplog.text
    with pytest.raises(DelegateError, match="libedgetpu1-std"):
        load_model(tpu_bundle, RuntimePolicy(runtime="litert", delegate="edgetpu", fail_closed=True,
                                             autotune=False, cache_dir=cache_dir))


def test_verify_skips_edgetpu_artifacts_without_the_delegate(tpu_bundle: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli("verify", tpu_bundle, "--runtime", "litert")
    assert result.exit_code == 0
    assert "skip parity model_int8_edgetpu.tflite on litert: an Edge TPU artifact; verify it with --delegate " \
           "edgetpu" in " ".join(result.stdout.split())


def test_edgetpu_library_present_but_no_device(zero_delegate: Path) -> None:
    """The library loads but the driver refuses (as libedgetpu does with no TPU plugged in): say which."""
    from ai_edge_litert.interpreter import load_delegate

    from device.runtime.delegates import DelegateSpec, load_tflite_delegate

    spec = DelegateSpec(kind="edgetpu", name="edgetpu", library=str(zero_delegate), options={"fail": "1"})
    with pytest.raises(DelegateError, match=r"delegate edgetpu: no Edge TPU found \(no /dev/apex_\* and no Coral USB"):
        load_tflite_delegate(spec, load_delegate)
    external = DelegateSpec(kind="external", name="zero", library=str(zero_delegate), options={"fail": "1"})
    with pytest.raises(DelegateError, match=r"refused to create a delegate with options \{'fail': '1'\}"):
        load_tflite_delegate(external, load_delegate)


def test_edgetpu_permission_problems_name_the_node_and_the_fix(tmp_path: Path) -> None:
    from device.runtime.delegates import edgetpu_device_problem

    dev, usb = tmp_path / "dev", tmp_path / "usb"
    dev.mkdir()
    usb.mkdir()
    assert edgetpu_device_problem(dev, usb).startswith("no Edge TPU found")

    def denied(path: object, mode: int) -> bool:
        return False

    (dev / "apex_0").touch()
    msg = edgetpu_device_problem(dev, usb, access=denied)
    assert msg.startswith(f"permission denied on {dev / 'apex_0'}; install Spinal's udev rule")
    assert "'apex' group" in msg
    (dev / "apex_0").unlink()
    coral = usb / "2-1"
    coral.mkdir()
    for name, value in {"idVendor": "18d1", "idProduct": "9302", "busnum": "2", "devnum": "3"}.items():
        (coral / name).write_text(value + "\n")
    node = dev / "bus" / "usb" / "002" / "003"
    node.parent.mkdir(parents=True)
    node.touch()
    msg = edgetpu_device_problem(dev, usb, access=denied)
    assert msg.startswith(f"permission denied on the Coral USB device {node}") and "'plugdev' group" in msg
    assert edgetpu_device_problem(dev, usb).startswith("the Edge TPU is present but")
    (coral / "busnum").write_text("\n")  # sysfs mid-unplug: was a ValueError out of the delegate's error path
    assert edgetpu_device_problem(dev, usb).startswith("no Edge TPU found")
