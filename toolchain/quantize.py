"""Static int8 quantization of ONNX models (onnxruntime.quantization, QDQ format).

Options: per-channel or per-tensor weights, calibration by minmax, entropy or percentile, and
nodes kept in float. :func:`sensitive_nodes` ranks nodes by how much noise quantizing their
output adds (ORT's ``qdq_loss_debug``), which is how the accuracy gate picks what to keep in float.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelFileError
from toolchain.calibration import DataSet, InputSpec
from toolchain.failures import InternalFailure, describe, is_internal

METHODS = ("minmax", "entropy", "percentile")
# Histogram calibrators keep every activation of every sample: cap the samples they see.
HISTOGRAM_SAMPLE_CAP = 128
# The operators that carry weights: where int8 saves memory and time.
WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# The share of the available memory one calibration pass may hold as activations (the sessions, the model
# copies and the caller's data need the rest).
MEMORY_SHARE = 0.4
# How a configuration with the paths into range-sensitive ops kept float is labelled (toolchain.range_paths).
RANGE_LABEL = "paths into range-sensitive ops float"


@dataclass(frozen=True)
class QuantConfig:
    """One way to quantize a model."""

    per_channel: bool = True
    method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    # Only the ops with weights (WEIGHT_OPS) quantized; element-wise maths (residual adds, hard-swish,
    # layer-norm pieces, softmax) stays float between them.
    weight_ops_only: bool = False
    # The nodes on the paths into range-sensitive ops (Log, Sqrt, Pow, ...) kept float: see toolchain.range_paths.
    range_float: tuple[str, ...] = ()

    def label(self) -> str:
        text = f"{'per-channel' if self.per_channel else 'per-tensor'}, {self.method}"
        if self.weight_ops_only:
            text += ", weight ops only"
        if self.range_float:
            text += f", {RANGE_LABEL} ({len(self.range_float)} nodes)"
        if self.keep_float:
            text += f", {len(self.keep_float)} node(s) kept in float ({', '.join(self.keep_float)})"
        return text

    def with_(self, **changes: Any) -> QuantConfig:
        return replace(self, **changes)


@dataclass
class QuantResult:
    """What quantization produced."""

    path: Path
    config: QuantConfig
    quantized_nodes: int
    float_nodes: list[str]
    calibration_passes: int = 1  # histogram calibration in passes of bounded memory (see calibration_stride)


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a :class:`DataSet`."""

    def __init__(self, data: DataSet, inputs: tuple[InputSpec, ...]) -> None:
        self.data = data
        self.inputs = inputs
        self._iter: Iterator[int] = iter(range(data.count))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._iter, None)
        return None if index is None else self.data.sample(index, self.inputs)

    def rewind(self) -> None:
        self._iter = iter(range(self.data.count))

    def __len__(self) -> int:
        return self.data.count

    def set_range(self, start_index: int, end_index: int) -> None:
        """The samples of one pass (onnxruntime's ``CalibStridedMinMax`` calls it for every stride)."""
        self._iter = iter(range(start_index, min(end_index, self.data.count)))

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence onnxruntime.quantization's INFO/WARNING logging while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# 7-bit weights: x86 CPUs without VNNI multiply int8 pairs with VPMADDUBSW, whose 16-bit sums saturate
# for 8-bit weights, so the same int8 file answered differently there (measured: 8 output steps on the
# imu-activity model) than on AVX-512 VNNI or ARM. With weights in [-64, 63] no pair can saturate and
# every CPU computes the same integers; only requantization rounding may differ (docs/convert.md).
REDUCE_RANGE = True


def quantize_onnx(fp32: Path, out: Path, inputs: tuple[InputSpec, ...], calib: DataSet,
                  config: QuantConfig, workdir: Path) -> QuantResult:
    """Write a static QDQ int8 model of ``fp32`` to ``out``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[config.method]
    data = calib if config.method == "minmax" else calib.take(HISTOGRAM_SAMPLE_CAP)
    extra: dict[str, Any] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if config.method == "percentile":
        extra["CalibPercentile"] = 99.99
    passes = 1
    if config.method != "minmax":  # minmax reduces in the graph; histograms hold every activation of a pass
        stride = calibration_stride(fp32, activation_bytes(fp32), data.count, available_bytes(),
                                    f"{config.method} calibration",
                                    "use --calibration-method minmax (or smaller --input-shape sizes)")
        extra["CalibStridedMinMax"] = stride  # despite the name, every calibrator collects pass by pass
        passes = data.count // stride
    excluded = list(dict.fromkeys(config.keep_float + config.range_float))
    # No chdir: onnxruntime writes its augmented model into a temporary directory of its own, and a
    # chdir made every relative path of the caller's (a relative --out) point somewhere else.
    try:
        with _quiet():
            quantize_static(
                str(Path(fp32).resolve()), str(Path(out).resolve()), _Reader(data, inputs),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=config.per_channel, calibrate_method=method, nodes_to_exclude=excluded,
                op_types_to_quantize=list(WEIGHT_OPS) if config.weight_ops_only else None,
                extra_options=extra, reduce_range=REDUCE_RANGE,
            )
    except Exception as exc:
        if is_internal(exc):
            raise InternalFailure(f"onnxruntime static quantization of {fp32} failed for a reason that is not the "
                                  f"model's ({describe(exc)})") from None
        raise ModelFileError(f"{fp32.name}: onnxruntime static quantization failed ({describe(exc)})") from None
    model = onnx.load(str(out))
    quantized = sum(1 for n in model.graph.node if n.op_type == "DequantizeLinear")
    ops = {"Conv", "MatMul", "Gemm", "ConvTranspose", "LSTM", "GRU", "Attention", "MatMulInteger"}
    float_nodes = _float_compute_nodes(model, ops)
    return QuantResult(path=out, config=config, quantized_nodes=quantized, float_nodes=float_nodes,
                       calibration_passes=passes)


def activation_bytes(fp32: Path) -> int:
    """Bytes of every intermediate and output tensor of one inference (shapes inferred; unknown sizes left out)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    total = 0
    for info in [*model.graph.value_info, *model.graph.output]:
        tt = info.type.tensor_type
        dims = [d.dim_value for d in tt.shape.dim]
        if not tt.HasField("shape") or any(d <= 0 for d in dims):
            continue
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize if tt.elem_type else 4
        total += int(np.prod(dims, dtype=np.int64)) * itemsize
    return total


def available_bytes() -> int:
    """Memory this process may still use: MemAvailable, or less under an address-space limit (prlimit --as)."""
    import resource

    available = 8 << 30
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        with contextlib.suppress(OSError, ValueError, IndexError):
            used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
            available = min(available, max(soft - used, 0))
    return available


def calibration_stride(fp32: Path, per_sample: int, count: int, available: int, what: str, fix: str) -> int:
    """Samples per calibration pass: the most (dividing ``count``) whose activations fit in the memory share.

    A model of which even one sample's activations do not fit is refused in one line (never an OOM kill).
    """
    budget = int(available * MEMORY_SHARE)
    if per_sample > budget:
        raise ModelFileError(f"{fp32.name}: {what} holds {per_sample / 2**30:.1f} GiB of activations for one "
                             f"sample, more than the {budget / 2**30:.1f} GiB it may use here "
                             f"({available / 2**30:.1f} GiB available); {fix}")
    fits = max(1, budget // max(per_sample, 1))
    return max(d for d in range(1, count + 1) if count % d == 0 and d <= fits)


def _float_compute_nodes(model: Any, ops: set[str]) -> list[str]:
    """Compute-heavy nodes whose weight input is not fed by a DequantizeLinear (they stay in float)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = []
    for node in model.graph.node:
        if node.op_type not in ops or len(node.input) < 2:
            continue
        src = producers.get(node.input[1])
        if src is None or src.op_type != "DequantizeLinear":
            out.append(f"{node.name or node.op_type} ({node.op_type})")
    return out


@dataclass(frozen=True)
class NodeNoise:
    """One node of the fp32 model and the noise its int8 output carries: the SQNR (dB) of its output tensor
    before and after the tensor's own QuantizeLinear/DequantizeLinear pair (lower is noisier)."""

    node: str
    op_type: str
    sqnr_db: float


def sensitive_nodes(fp32: Path, qdq: Path, inputs: tuple[InputSpec, ...], calib: DataSet, workdir: Path,
                    limit: int = 8) -> list[NodeNoise]:
    """Nodes of ``fp32`` ranked most sensitive first: lowest SQNR of their quantized output (ORT qdq_loss_debug)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    # every tensor of every sample, float and int8: as many samples as fit in the memory share (at most 32)
    per_sample = 2 * activation_bytes(fp32)
    fits = calibration_stride(fp32, per_sample, 32, available_bytes(), "the sensitivity probe (float and int8)",
                              "use --no-remedies, or --keep-float with the nodes to keep")
    data = calib.take(min(calib.count, fits))
    aug_f = workdir / "debug_float.onnx"
    aug_q = workdir / "debug_qdq.onnx"
    with _quiet():
        modify_model_output_intermediate_tensors(str(fp32), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq), str(aug_q))
        float_acts = collect_activations(str(aug_f), _Reader(data, inputs))
        qdq_acts = collect_activations(str(aug_q), _Reader(data, inputs))
        matched = create_activation_matching(qdq_acts, float_acts)
        errors = compute_activation_error(matched)
    model = onnx.load(str(fp32))
    producer = {o: n for n in model.graph.node for o in n.output if n.name}
    ranked: list[tuple[float, str, str]] = []
    for tensor, err in errors.items():
        node = producer.get(tensor)
        value = err.get("qdq_err")
        if node is None or value is None:
            continue
        sqnr = float(np.mean(value)) if np.ndim(value) else float(value)
        if np.isfinite(sqnr):
            ranked.append((sqnr, node.name, node.op_type))
    ranked.sort()
    seen: dict[str, NodeNoise] = {}
    for sqnr, name, op_type in ranked:
        if name not in seen:
            seen[name] = NodeNoise(name, op_type, sqnr)
        if len(seen) >= limit:
            break
    return list(seen.values())
