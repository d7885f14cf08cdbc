"""Wrong models that look right: byte-level mutations of a bundle's ONNX and TFLite files.

Dependency-free (no ``onnx``, no TensorFlow), so the mutation tests also run on a device-only
install and under emulation. A mutation rewrites tensor bytes in place (same length, the file stays
valid) and the manifest is re-hashed, so integrity passes and only golden parity can notice.

- ONNX: initializers are ``TensorProto`` messages in ``ModelProto.graph`` (field 7, then 5); their
  ``raw_data`` (field 9) is located by walking the protobuf wire format.
- TFLite: tensors and buffers are located by walking the flatbuffer (Model: subgraphs 2,
  buffers 4; SubGraph: tensors 0; Tensor: type 1, buffer 2, name 3, quantization 4;
  QuantizationParameters: scale 2; Buffer: data 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.onnx_reader import _varint

ONNX_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 10: np.float16}
TFLITE_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8}


@dataclass(frozen=True)
class Blob:
    """One weight-like tensor inside a model file: where its values are and how to read them."""

    name: str
    dtype: type
    offset: int
    length: int
    scale_offset: int | None = None  # TFLite: the tensor's quantization scales (float32 vector)
    scale_count: int = 0

    def values(self, data: bytearray) -> np.ndarray:
        return np.frombuffer(bytes(data[self.offset:self.offset + self.length]), dtype=self.dtype).copy()

    def write(self, data: bytearray, values: np.ndarray) -> None:
        raw = np.asarray(values, dtype=self.dtype).tobytes()
        assert len(raw) == self.length
        data[self.offset:self.offset + self.length] = raw


def _proto_fields(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(field, wire type, value start, value end or the varint value)`` of one protobuf message."""
    out, pos = [], start
    view = memoryview(data)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
            out.append((number, wire, value, value))
        elif wire == 2:
            length, pos = _varint(view, pos)
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            out.append((number, wire, pos, pos + size))
            pos += size
        else:
            raise ValueError(f"wire type {wire}")
    return out


def onnx_blobs(data: bytes) -> list[Blob]:
    """Every initializer with ``raw_data`` in an ONNX file."""
    blobs = []
    for number, _, g_start, g_end in _proto_fields(data, 0, len(data)):
        if number != 7:
            continue
        for field_no, _, t_start, t_end in _proto_fields(data, g_start, g_end):
            if field_no != 5:
                continue
            name, dtype, raw = "", None, None
            for f, w, a, b in _proto_fields(data, t_start, t_end):
                if f == 8:
                    name = data[a:b].decode()
                elif f == 2:
                    dtype = ONNX_TYPES.get(a)
                elif f == 9 or (f == 4 and w == 2):  # raw_data, or packed float_data (the same bytes)
                    raw = (a, b)
            if dtype is not None and raw is not None and raw[1] > raw[0]:
                blobs.append(Blob(name, dtype, raw[0], raw[1] - raw[0]))
    return blobs


def _u32(data: bytes, pos: int) -> int:
    return struct.unpack_from("<I", data, pos)[0]


def _field(data: bytes, table: int, index: int) -> int | None:
    vtable = table - struct.unpack_from("<i", data, table)[0]
    size = struct.unpack_from("<H", data, vtable)[0]
    if 4 + 2 * index >= size:
        return None
    off = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
    return table + off if off else None


def _vector(data: bytes, table: int, index: int) -> tuple[int, int]:
    """``(first element position, count)`` of a vector field, ``(0, 0)`` when absent."""
    pos = _field(data, table, index)
    if pos is None:
        return 0, 0
    vec = pos + _u32(data, pos)
    return vec + 4, _u32(data, vec)


def _tables(data: bytes, table: int, index: int) -> list[int]:
    start, count = _vector(data, table, index)
    return [start + 4 * i + _u32(data, start + 4 * i) for i in range(count)]


def tflite_blobs(data: bytes) -> list[Blob]:
    """Every tensor of the first subgraph, with its buffer bytes (if constant) and scale vector."""
    model = _u32(data, 0)
    buffers = _tables(data, model, 4)
    blobs = []
    for tensor in _tables(data, _tables(data, model, 2)[0], 0):
        type_pos = _field(data, tensor, 1)
        dtype = TFLITE_TYPES.get(data[type_pos] if type_pos else 0)
        buf_pos = _field(data, tensor, 2)
        buffer = _u32(data, buf_pos) if buf_pos else 0
        name_pos = _field(data, tensor, 3)
        name = ""
        if name_pos:
            s = name_pos + _u32(data, name_pos)
            name = data[s + 4:s + 4 + _u32(data, s)].decode(errors="replace")
        offset, length = _vector(data, buffers[buffer], 0) if 0 < buffer < len(buffers) else (0, 0)
        q_pos = _field(data, tensor, 4)
        scale_offset, scale_count = (None, 0)
        if q_pos:
            scale_offset, scale_count = _vector(data, q_pos + _u32(data, q_pos), 2)
        if dtype is not None:
            blobs.append(Blob(name, dtype, offset, length, scale_offset or None, scale_count))
    return blobs


def blobs(path: Path, data: bytes) -> list[Blob]:
    return onnx_blobs(data) if path.suffix == ".onnx" else tflite_blobs(data)


def weights(found: list[Blob], minimum: int = 16) -> list[Blob]:
    """The constant tensors with at least ``minimum`` elements (weights, not shapes or scalars)."""
    return [b for b in found if b.length >= minimum * np.dtype(b.dtype).itemsize]


def other_weights(path: Path, seed: int = 0) -> None:
    """The same architecture with other weights: every weight tensor's values shuffled."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for blob in weights(blobs(path, bytes(data))):
        blob.write(data, rng.permutation(blob.values(data)))
    path.write_bytes(bytes(data))


def perturb_one_layer(path: Path, seed: int = 0, amount: float = 1.0) -> str:
    """The largest weight tensor with noise of ``amount`` x its spread added (integers: rounded, clipped).

    With ``amount`` 1 the layer is as far from the converted one as a layer of another training run.
    """
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    blob = max(weights(blobs(path, bytes(data))), key=lambda b: b.length)
    values = blob.values(data).astype(np.float64)
    noisy = values + amount * max(float(np.std(values)), 1.0 if blob.dtype in (np.int8, np.uint8) else 1e-6) \
        * rng.standard_normal(values.shape)
    if np.issubdtype(blob.dtype, np.integer):
        info = np.iinfo(blob.dtype)
        noisy = np.clip(np.rint(noisy), info.min + (blob.dtype == np.int8), info.max)
    blob.write(data, noisy)
    path.write_bytes(bytes(data))
    return blob.name


def rescale_weights(path: Path, factor: float = 1.5) -> str:
    """An int8 file with another scale: the weight quantization scale of the largest int8 weight x ``factor``."""
    data = bytearray(path.read_bytes())
    found = blobs(path, bytes(data))
    int8 = [b for b in weights(found) if b.dtype in (np.int8, np.uint8)]
    if not int8:
        raise ValueError(f"{path.name} has no int8 weights")
    target = max(int8, key=lambda b: b.length)
    if path.suffix == ".onnx":
        stem = target.name.removesuffix("_quantized")
        scale = next(b for b in found if b.name == f"{stem}_scale")
        scale.write(data, scale.values(data) * factor)
    else:
        assert target.scale_offset is not None
        scales = Blob(target.name, np.float32, target.scale_offset, 4 * target.scale_count)
        scales.write(data, scales.values(data) * factor)
    path.write_bytes(bytes(data))
    return target.name
