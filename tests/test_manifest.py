"""The manifest schema: valid manifests round-trip; every bad key is named in the error."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import BundleError
from device.manifest import parse_manifest, unsafe_path_reason
from tests.conftest import tiny_manifest

SHA = "a" * 64


def valid() -> dict[str, Any]:
    from device.manifest import Artifact, ArtifactTensor, Golden, Quantization, Tolerance

    arts = (
        Artifact(path="model.fp32.onnx", format="onnx", precision="fp32", sha256=SHA, bytes=10,
                 inputs=(ArtifactTensor("x", (1, 8, 3), "float32", "NTC"),)),
        Artifact(path="model.int8io.tflite", format="tflite", precision="int8-io", sha256=SHA, bytes=10,
                 inputs=(ArtifactTensor("x", (1, 3, 8), "int8", "NCT", Quantization((0.02,), (-3,))),)),
    )
    golden = Golden(path="golden.npz", sha256=SHA, bytes=5, count=2,
                    tolerances={"model.fp32.onnx": Tolerance(atol=1e-5)})
    return tiny_manifest(golden, arts).to_dict()


def parse(obj: dict[str, Any]):
    return parse_manifest(json.dumps(obj))


def test_valid_manifest_round_trips():
    m = parse(valid())
    assert m.name == "tiny-activity"
    assert m.inputs[0].channels == ("imu.accel_x", "imu.accel_y", "imu.accel_z")
    assert m.artifact("model.int8io.tflite").inputs[0].quantization.zero_point == (-3,)
    assert parse_manifest(m.to_json()) == m
    assert [f[1] for f in m.files()] == ["model.fp32.onnx", "model.int8io.tflite", "golden.npz"]


def mutate(path: str, value: Any) -> dict[str, Any]:
    """A valid manifest with the value at dotted ``path`` replaced (``...`` deletes it)."""
    obj = copy.deepcopy(valid())
    *parents, last = path.split(".")
    target: Any = obj
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is ...:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("format_version", ..., "format_version: missing (required)"),
        ("format_version", 99, "format_version: 99 is not supported by this spinal (supports 1); upgrade spinal"),
        ("format_version", "1", "format_version: expected an integer, got a string"),
        ("name", "../evil", "name: '../evil' must be 1-128 letters"),
        ("artifacts.0.sha256", "abc", "artifacts[0].sha256: expected 64 lowercase hex characters"),
        ("artifacts.0.path", "../../etc/passwd.onnx", "artifacts[0].path: '../../etc/passwd.onnx' contains '..'"),
        ("artifacts.0.path", "/abs/model.onnx", "artifacts[0].path: '/abs/model.onnx' is an absolute path"),
        ("artifacts.0.path", "model.tflite", "artifacts[0].path: 'model.tflite' is a onnx artifact but does not end"),
        ("artifacts.0.format", "pt", "artifacts[0].format: 'pt' is not one of onnx, tflite"),
        ("artifacts.0.precision", "int4", "artifacts[0].precision: 'int4' is not one of fp32, fp16, int8, int8-io"),
        ("artifacts.0.bytes", -1, "artifacts[0].bytes: must be >= 1, got -1"),
        ("artifacts.1.inputs.0.quantization.zero_point", [999], "zero_point[0]: expected an integer in [-128, 255]"),
        ("artifacts.1.inputs.0.quantization.scale", [0.0], "quantization.scale[0]: must be > 0"),
        ("artifacts", [], "artifacts: a bundle needs at least one artifact"),
        ("inputs.0.layout", "NT", "inputs[0].layout: 'NT' has 2 axes but shape [1, 8, 3] has 3"),
        ("inputs.0.layout", "NNC", "inputs[0].layout: 'NNC' is not a layout"),
        ("inputs.0.shape", [1, 0, 3], "inputs[0].shape[1]: dimensions must be positive integers, got 0"),
        ("inputs.0.channels", ["a", "b"], "inputs[0].channels: 2 channel names for 3 channels"),
        ("inputs.0.units", ["m/s^2", "rad/s"], "inputs[0].units: 2 units for 3 channels (give 1 or 3)"),
        ("inputs.0.normalization.std", [1.0, 0.0, 1.0], "inputs[0].normalization.std[1]: must be > 0"),
        ("inputs.0.normalization.mean", [0.0], "inputs[0].normalization: mean has 1 values but std has 3"),
        ("inputs.0.sample_rate_hz", -5, "inputs[0].sample_rate_hz: must be > 0, got -5"),
        ("task.kind", "ranking", "task.kind: 'ranking' is not one of classification, regression, anomaly"),
        ("task.output", "nope", "task.output: 'nope' is not one of the outputs (logits)"),
        ("task.labels", [], "task.labels: a classification task needs labels"),
        ("golden.tolerances", {"missing.onnx": {"atol": 1}}, "golden.tolerances.missing.onnx: 'missing.onnx' is not"),
        ("golden.path", "golden.bin", "golden.path: 'golden.bin' must be an .npz file"),
        ("golden.path", "model.fp32.onnx.npz", None),
        ("report", [1, 2], "report: expected an object, got a list"),
        ("inputs", "x", "inputs: expected a list, got a string"),
    ],
)
def test_bad_keys_are_named(path: str, value: Any, message: str | None):
    obj = mutate(path, value)
    if message is None:  # a valid variant: must parse
        parse(obj)
        return
    with pytest.raises(BundleError) as err:
        parse(obj)
    text = str(err.value)
    assert text.startswith("manifest.json: ")
    assert message in text, text
    assert "\n" not in text


def test_anomaly_needs_threshold():
    obj = valid()
    obj["task"] = {"kind": "anomaly", "output": "logits"}
    with pytest.raises(BundleError, match=r"task.threshold: an anomaly task needs a threshold"):
        parse(obj)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8 text"),
        ("{", "not valid JSON (line 1 column 2"),
        ('{"format_version": NaN}', "NaN is not allowed"),
        ("[]", "<top>: expected an object, got a list"),
        ("[" * 100000 + "]" * 100000, "JSON nested more than 64 levels deep"),
        ('{"a": "[[[[' + "[" * 100 + '"}', "format_version: missing"),  # brackets inside strings do not count
    ],
)
def test_unparsable_text(text: str | bytes, message: str):
    with pytest.raises(BundleError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_manifest(text)


def test_deep_nesting_refused_even_with_a_raised_recursion_limit():
    """onnx2tf raises the limit to 2**31-1; the parser must still refuse, not overflow the C stack."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(2**31 - 1)
    try:
        with pytest.raises(BundleError, match="nested more than"):
            parse_manifest("{" + '"a":[' * 200000)
    finally:
        sys.setrecursionlimit(limit)


def test_oversized_manifest_refused():
    with pytest.raises(BundleError, match="larger than"):
        parse_manifest(b" " * (5 * 1024 * 1024))


@pytest.mark.parametrize(
    "path", ["", "/x", "a/../b", "./a", "a//b", "C:/x", "a\\b", "a\x00b", "x" * 300, ".."],
)
def test_unsafe_paths(path: str):
    assert unsafe_path_reason(path) is not None


def test_safe_paths():
    assert unsafe_path_reason("model.fp32.onnx") is None
    assert unsafe_path_reason("sub/dir/model.tflite") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["format_version", "name", "inputs", "outputs", "task", "artifacts", "golden",
                            "created", "report", "attachments", "notes"]), value=json_values)
def test_fuzzed_values_only_raise_bundle_error(key: str, value: Any):
    obj = valid()
    obj[key] = value
    try:
        parse(obj)
    except BundleError as exc:
        assert "\n" not in str(exc)


def test_a_manifest_built_by_hand_validates_itself_naming_the_key():
    """A converter builds the types directly (permissive constructors) and validates the whole at the end."""
    import dataclasses

    from device.manifest import Artifact
    from device.schema import SchemaError

    m = parse(valid())
    m.validate()  # a parsed manifest is valid
    bad_art = dataclasses.replace(m.artifacts[1], sha256="xyz")
    with pytest.raises(SchemaError) as err:
        dataclasses.replace(m, artifacts=(m.artifacts[0], bad_art)).validate()
    assert err.value.path == ("artifacts", 1, "sha256") and "64 lowercase hex" in err.value.detail
    spec = dataclasses.replace(m.inputs[0], layout="NT")
    with pytest.raises(SchemaError) as err:
        dataclasses.replace(m, inputs=(spec,)).validate()
    assert err.value.path == ("inputs", 0, "layout")
    with pytest.raises(SchemaError) as err:
        dataclasses.replace(m, task=dataclasses.replace(m.task, output="nope")).validate()
    assert err.value.path == ("task", "output")
    assert isinstance(Artifact(path="x", format="?", precision="", sha256="", bytes=0), Artifact)  # no check here
