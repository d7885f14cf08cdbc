"""The dependency-free ONNX reader agrees with the ``onnx`` package and fails cleanly on junk."""

from __future__ import annotations

import contextlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import ModelFileError
from device.onnx_reader import read_onnx
from tests.conftest import DATA

onnx = pytest.importorskip("onnx", reason="needs the host extra")


def _reference(model) -> tuple[Counter, list, list]:
    """Operator counts (subgraphs included), inputs and outputs according to the onnx package."""
    ops: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            ops[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    init = {i.name for i in model.graph.initializer}

    def values(vs):
        out = []
        for v in vs:
            if v.name in init:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in v.type.tensor_type.shape.dim]
            out.append((v.name, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name, dims))
        return out

    return ops, values(model.graph.input), values(model.graph.output)


def _if_model(tmp_path):
    """A model with an If node whose branches hold subgraphs, a dynamic batch axis and external data."""
    from onnx import TensorProto, helper, numpy_helper

    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["y_then"])], "then", [],
                               [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["batch", 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["y_else"])], "else", [],
                               [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["batch", 4])])
    big = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(1024, 4), "table")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
            helper.make_node("Greater", ["s", "zero"], ["cond"]),
            helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Gather", ["table", "idx"], ["g"]),
            helper.make_node("Identity", ["y"], ["z"]),
        ],
        "main",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("g", TensorProto.FLOAT, [2, 4])],
        initializer=[numpy_helper.from_array(np.array(0, dtype=np.float32), "zero"), big],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "if_model.onnx"
    onnx.save(model, path, save_as_external_data=True, location="if_model.data", size_threshold=1024)
    return path


def test_tiny_model_matches_onnx_package():
    data = (DATA / "tiny.onnx").read_bytes()
    info = read_onnx(data)
    ops, inputs, outputs = _reference(onnx.load_from_string(data))
    assert info.ops == ops
    assert [(v.name, v.dtype, v.shape) for v in info.inputs] == inputs
    assert [(v.name, v.dtype, v.shape) for v in info.outputs] == outputs
    assert info.opsets == {"ai.onnx": 13}
    assert info.producer == "spinal-tests"


def test_subgraphs_dynamic_axes_and_external_data(tmp_path):
    path = _if_model(tmp_path)
    info = read_onnx(path.read_bytes())
    ops, inputs, _outputs = _reference(onnx.load(path))
    assert info.ops == ops
    assert info.ops["Relu"] == 1 and info.ops["If"] == 1
    assert [(v.name, v.dtype, v.shape) for v in info.inputs] == inputs
    assert info.inputs[0].shape == ["batch", 4]
    assert info.external_data == {"if_model.data"}


def test_missing_external_data_is_named(tmp_path):
    from device.modelfile import inspect_model_file

    path = _if_model(tmp_path)
    (tmp_path / "if_model.data").unlink()
    with pytest.raises(ModelFileError, match=r"external data file 'if_model\.data' is missing"):
        inspect_model_file(path)


@pytest.mark.parametrize("cut", [1, 10, 100, 300, 500])
def test_truncated_model_is_a_model_file_error(cut):
    data = (DATA / "tiny.onnx").read_bytes()[:cut]
    with pytest.raises(ModelFileError):
        read_onnx(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_raise_model_file_error(data):
    try:
        read_onnx(data)
    except ModelFileError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=619), st.integers(min_value=0, max_value=255))
def test_flipped_bytes_never_escape(position, value):
    data = bytearray((DATA / "tiny.onnx").read_bytes())
    data[position] = value
    with contextlib.suppress(ModelFileError):
        read_onnx(bytes(data))


def test_a_negative_dim_value_reads_as_negative():
    # int64 fields: -1 is a 10-byte varint; it read as 18446744073709551615.
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    info = read_onnx(model.SerializeToString())
    assert info.inputs[0].shape == [-1, 3] and info.outputs[0].shape == [-1, 3]
