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


@dataclass(frozen=True)
class QuantConfig:
    """One way to quantize a model."""

    per_channel: bool = True
    method: str = "minmax"
    keep_float: tuple[str, ...] = ()

    def label(self) -> str:
        text = f"{'per-channel' if self.per_channel else 'per-tensor'}, {self.method}"
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
    # No chdir: onnxruntime writes its augmented model into a temporary directory of its own, and a
    # chdir made every relative path of the caller's (a relative --out) point somewhere else.
    try:
        with _quiet():
            quantize_static(
                str(Path(fp32).resolve()), str(Path(out).resolve()), _Reader(data, inputs),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=config.per_channel, calibrate_method=method, nodes_to_exclude=list(config.keep_float),
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
    return QuantResult(path=out, config=config, quantized_nodes=quantized, float_nodes=float_nodes)


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


def sensitive_nodes(fp32: Path, qdq: Path, inputs: tuple[InputSpec, ...], calib: DataSet, workdir: Path,
                    limit: int = 8) -> list[str]:
    """Nodes of ``fp32`` ranked most sensitive first: lowest SQNR of their quantized output (ORT qdq_loss_debug)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    data = calib.take(min(calib.count, 32))
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
    producer = {o: n.name for n in model.graph.node for o in n.output if n.name}
    ranked: list[tuple[float, str]] = []
    for tensor, err in errors.items():
        node = producer.get(tensor)
        value = err.get("qdq_err")
        if node is None or value is None:
            continue
        sqnr = float(np.mean(value)) if np.ndim(value) else float(value)
        if np.isfinite(sqnr):
            ranked.append((sqnr, node))
    ranked.sort()
    seen: list[str] = []
    for _, node in ranked:
        if node not in seen:
            seen.append(node)
        if len(seen) >= limit:
            break
    return seen
