"""A small, dependency-free reader of ONNX model files (protobuf wire format).

The device must not import the ``onnx`` package (host-only), yet ``spinal inspect`` and the
model-file front checks need an ONNX file's inputs, outputs, opsets and operator counts on
the device too. ONNX is a plain protobuf message, so we decode just the fields we need.
Field numbers follow ``onnx/onnx.proto``.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from device.errors import ModelFileError

# onnx.TensorProto.DataType
ONNX_DTYPES: dict[int, str] = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
    19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4",
}
_MAX_DEPTH = 32  # nested subgraphs (If/Loop/Scan bodies)


@dataclass
class OnnxValue:
    """A graph input or output: name, element type and shape (ints, or names for dynamic axes)."""

    name: str
    dtype: str
    shape: list[int | str | None]


@dataclass
class OnnxModelInfo:
    """What :func:`read_onnx` extracts from a model file."""

    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    inputs: list[OnnxValue] = field(default_factory=list)
    outputs: list[OnnxValue] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    initializers: int = 0
    external_data: set[str] = field(default_factory=set)


class _Truncated(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field number, wire type, value)`` for each field of one message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        value: int | memoryview
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise _Truncated
        yield number, wire, value


def _text(value: int | memoryview) -> str:
    if not isinstance(value, memoryview):
        raise ValueError("expected a string field")
    return bytes(value).decode("utf-8", errors="replace")


def _submsg(value: int | memoryview) -> memoryview:
    if not isinstance(value, memoryview):
        raise ValueError("expected a message field")
    return value


def _value_info(buf: memoryview) -> OnnxValue:
    name, dtype, shape = "", "unknown", []
    for number, _, value in _fields(buf):
        if number == 1:
            name = _text(value)
        elif number == 2:  # TypeProto
            for tnum, _, tval in _fields(_submsg(value)):
                if tnum != 1:  # only tensor_type
                    continue
                for fnum, _, fval in _fields(_submsg(tval)):
                    if fnum == 1 and isinstance(fval, int):
                        dtype = ONNX_DTYPES.get(fval, f"type{fval}")
                    elif fnum == 2:
                        shape = _shape(_submsg(fval))
    return OnnxValue(name=name, dtype=dtype, shape=shape)


def _shape(buf: memoryview) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for number, _, value in _fields(buf):
        if number != 1:
            continue
        dim: int | str | None = None
        for dnum, _, dval in _fields(_submsg(value)):
            if dnum == 1 and isinstance(dval, int):
                dim = dval - (1 << 64) if dval >= 1 << 63 else dval  # int64: negatives are 10-byte varints
            elif dnum == 2:
                dim = _text(dval)
        dims.append(dim)
    return dims


def _graph(buf: memoryview, info: OnnxModelInfo, depth: int, top: bool) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("subgraphs nested too deeply")
    inputs, outputs, initializer_names = [], [], set()
    for number, _, value in _fields(buf):
        if number == 1:  # NodeProto
            _node(_submsg(value), info, depth)
        elif number == 5:  # TensorProto initializer
            info.initializers += 1 if top else 0
            name, location, external = "", 0, ""
            for tnum, _, tval in _fields(_submsg(value)):
                if tnum == 8:
                    name = _text(tval)
                elif tnum == 14 and isinstance(tval, int):
                    location = tval
                elif tnum == 13:  # StringStringEntryProto external_data
                    entry = {k: _text(v) for k, _, v in _fields(_submsg(tval))}
                    if entry.get(1) == "location":
                        external = entry.get(2, "")
            initializer_names.add(name)
            if location == 1 and external:
                info.external_data.add(external)
        elif number == 11 and top:
            inputs.append(_value_info(_submsg(value)))
        elif number == 12 and top:
            outputs.append(_value_info(_submsg(value)))
    if top:
        # Before IR 4, initializers were also listed as graph inputs.
        info.inputs = [v for v in inputs if v.name not in initializer_names]
        info.outputs = outputs


def _node(buf: memoryview, info: OnnxModelInfo, depth: int) -> None:
    op_type, domain = "", ""
    subgraphs: list[memoryview] = []
    for number, _, value in _fields(buf):
        if number == 4:
            op_type = _text(value)
        elif number == 7:
            domain = _text(value)
        elif number == 5:  # AttributeProto: g = 6, graphs = 11
            for anum, _, aval in _fields(_submsg(value)):
                if anum in (6, 11):
                    subgraphs.append(_submsg(aval))
    info.ops[f"{domain}::{op_type}" if domain not in ("", "ai.onnx") else op_type] += 1
    for sub in subgraphs:
        _graph(sub, info, depth + 1, top=False)


def read_onnx(data: bytes | memoryview, source: str = "model.onnx") -> OnnxModelInfo:
    """Decode an ONNX ``ModelProto``; raise :class:`ModelFileError` if it is not one."""
    buf = memoryview(data)
    info = OnnxModelInfo()
    saw_graph = False
    try:
        for number, _, value in _fields(buf):
            if number == 1 and isinstance(value, int):
                info.ir_version = value
            elif number == 2:
                info.producer = _text(value)
            elif number == 8:  # OperatorSetIdProto
                domain, version = "", 0
                for onum, _, oval in _fields(_submsg(value)):
                    if onum == 1:
                        domain = _text(oval)
                    elif onum == 2 and isinstance(oval, int):
                        version = oval
                info.opsets[domain or "ai.onnx"] = version
            elif number == 7:
                saw_graph = True
                _graph(_submsg(value), info, 0, top=True)
    except _Truncated:
        raise ModelFileError(f"{source}: truncated ONNX file (a field runs past the end)") from None
    except (ValueError, struct.error, RecursionError) as exc:
        raise ModelFileError(f"{source}: not a valid ONNX file ({exc})") from None
    if not saw_graph or info.ir_version == 0:
        raise ModelFileError(f"{source}: not an ONNX model (no graph or no ir_version found)")
    return info
