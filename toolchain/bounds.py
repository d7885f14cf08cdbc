"""Parity bounds: how far a correct device may land from an artifact's golden outputs, and why.

A golden output is what one kernel path on the converting host computed. Another CPU (an x86
with or without AVX-512 VNNI, a Cortex-A72 or A76), another thread count or another runtime runs
other kernels: float ones sum in another order, int8 ones requantize with other rounding (or, on
x86 without VNNI, with 16-bit intermediate saturation). The bound a device is held to comes from
two things measured here, never from a guess:

- **spread**: the same golden inputs through every kernel path this host has for the file
  (onnxruntime at 1, 2 and 4 threads and without graph optimizations; LiteRT with XNNPACK at 1
  and 2 threads, with its builtin kernels and with its reference kernels; tflite-runtime), each
  through the device's own :class:`~device.runtime.model.Model`;
- **rounding** (int8 artifacts): the int8 ONNX graph run with a tenth of the values at every
  activation requantization one quantization step off (random places and signs, fresh each trial):
  the largest output movement over the trials is what kernels that round values near an edge the
  other way could do, at every layer at once.

bound(output) = max(2 x spread, rounding, 2 x the output's quantization step, a float floor).
The mutation tests (tests/runtime/test_parity_mutants.py) prove such bounds still catch a model
that is not the one converted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from device.manifest import Tolerance
from device.runtime.model import Model
from toolchain.spread_child import SpreadRequest, max_abs, measure_in_children, measure_one

ROUNDING_TRIALS = 16
# Kernels that requantize differently disagree only where a value lies near a rounding edge: on the host,
# LiteRT's builtin and reference kernels agreed on every intermediate int8 value of the reference models and
# XNNPACK differed by one output step. A tenth of every activation one step off, at every layer at once, is
# far beyond that, and still far below "every value off", which would excuse a retrained layer.
FLIP_FRACTION = 0.1
FLOAT_FLOOR = {"fp32": (1e-4, 1e-3), "fp16": (2e-3, 1e-2)}  # (atol x max(peak, 1), rtol) for float files


@dataclass(frozen=True)
class KernelPath:
    """One way this host can run a file: a label and how to open it as a device session."""

    label: str
    open: Callable[[], Any]


def _ort_session(model: Path | bytes, path: Path, threads: int, optimize: bool) -> Any:
    """A device :class:`OrtSession` over ``model`` (a file, or serialized bytes labelled ``path``) on the CPU."""
    import onnxruntime as ort

    from device.runtime.delegates import CPU_PROVIDER
    from device.runtime.onnx import OrtSession
    from device.runtime.onnx import version as ort_version

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(source, opts, providers=[CPU_PROVIDER])
    return OrtSession(sess, ort_version(), path, threads, CPU_PROVIDER, None)


def _onnx_paths(path: Path) -> list[KernelPath]:
    def session(threads: int, optimize: bool) -> Any:
        return _ort_session(path, path, threads, optimize)

    paths = [KernelPath(f"onnxruntime {t} thread{'s' if t > 1 else ''}", partial(session, t, True))
             for t in (1, 2, 4)]
    paths.append(KernelPath("onnxruntime unoptimized graph", lambda: session(1, False)))
    return paths


def _tflite_paths(path: Path) -> list[KernelPath]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from device.runtime import litert
    from device.runtime.delegates import parse_delegate

    def builtin(resolver: Any) -> Any:
        interp = Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        return litert.InterpreterSession(interp, litert.NAME, litert.version(), path, 1, parse_delegate("none"), [])

    def xnnpack(threads: int) -> Any:
        return litert.open_session(path, threads, parse_delegate("cpu"))

    paths = [KernelPath(f"litert xnnpack {t} thread{'s' if t > 1 else ''}", partial(xnnpack, t)) for t in (1, 2)]
    paths.append(KernelPath("litert builtin kernels",
                            lambda: builtin(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)))
    paths.append(KernelPath("litert reference kernels", lambda: builtin(OpResolverType.BUILTIN_REF)))
    try:
        import tflite_runtime  # noqa: F401

        from device.runtime import tflite
    except ImportError:
        return paths
    paths.append(KernelPath("tflite-runtime builtin kernels",
                            lambda: tflite.open_session(path, 1, parse_delegate("none"))))
    return paths


def kernel_paths(path: Path, fmt: str) -> list[KernelPath]:
    """Every kernel path this host has for a ``fmt`` file."""
    return _onnx_paths(path) if fmt == "onnx" else _tflite_paths(path)


def measure_spread(path: Path, fmt: str, like: Model, feeds: list[dict[str, np.ndarray]],
                   golden: list[dict[str, np.ndarray]]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """``({path label: {output: max |err| against golden}}, {path label: why it could not run})``.

    ``like`` is the converter's model of the artifact: its logical tensors are reused so every
    kernel path is fed and read exactly as a device feeds and reads it. TFLite paths run in a child
    process (toolchain.spread_child): some of them abort or crash the process on files the others run.
    """
    if fmt == "tflite":
        return measure_in_children(SpreadRequest(path, fmt, (like.inputs, like.outputs, like.artifact,
                                                             like.info.precision), feeds, golden))
    spread: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for kernel in kernel_paths(path, fmt):
        value = measure_one(kernel, lambda session: Model(session, like.inputs, like.outputs, like.artifact,
                                                          like.info.precision, path.name), feeds, golden)
        if isinstance(value, dict):
            spread[kernel.label] = value
        else:
            skipped[kernel.label] = value
    return spread, skipped


def noisy_requantization(qdq: Any, fraction: float = FLIP_FRACTION) -> tuple[Any, int]:
    """A copy of a QDQ ONNX model in which, at every activation DequantizeLinear, a random ``fraction``
    of the values is one quantization step off (up or down), fresh on every run.

    Returns ``(model, points)``; weights (initializer inputs) are left alone: they are the same
    bytes on every device.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    model.graph.initializer.append(helper.make_tensor("__rounding_fraction", TensorProto.FLOAT, [], [fraction]))
    nodes, points = [], 0
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "DequantizeLinear" or node.input[0] in constants:
            continue
        points += 1
        out, clean, tag = node.output[0], f"{node.output[0]}__clean", f"__rounding{points}"
        nodes += [
            helper.make_node("RandomUniformLike", [clean], [tag + "_u"], low=0.0, high=1.0, seed=float(2 * points)),
            helper.make_node("Less", [tag + "_u", "__rounding_fraction"], [tag + "_hit"]),
            helper.make_node("Cast", [tag + "_hit"], [tag + "_mask"], to=TensorProto.FLOAT),
            helper.make_node("RandomUniformLike", [clean], [tag + "_v"], low=-1.0, high=1.0,
                             seed=float(2 * points + 1)),
            helper.make_node("Sign", [tag + "_v"], [tag + "_sign"]),
            helper.make_node("Mul", [tag + "_mask", tag + "_sign"], [tag + "_flip"]),
            helper.make_node("Mul", [tag + "_flip", node.input[1]], [tag + "_step"]),
            helper.make_node("Add", [clean, tag + "_step"], [out]),
        ]
        node.output[0] = clean
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model, points


def rounding_movement(qdq_path: Path, like: Model, feeds: list[dict[str, np.ndarray]],
                      trials: int = ROUNDING_TRIALS) -> tuple[dict[str, float], int]:
    """``({output: largest movement}, requantization points)`` of the int8 ONNX file at ``qdq_path``.

    ``like`` is a model of that file (its logical tensors); both runs go through the device adapters.
    """
    import onnx

    noisy, points = noisy_requantization(onnx.load(str(qdq_path)))
    if not points:
        return {}, 0

    def model_of(proto: Any) -> Model:  # unoptimized: the noise nodes must stay where they were put
        session = _ort_session(proto.SerializeToString(), qdq_path, 1, optimize=False)
        return Model(session, like.inputs, like.outputs, like.artifact, like.info.precision, qdq_path.name)

    with model_of(onnx.load(str(qdq_path))) as clean_model:
        clean = [clean_model.run(f) for f in feeds]
    worst: dict[str, float] = {}
    with model_of(noisy) as noisy_model:
        for _ in range(trials):
            for name, value in max_abs([noisy_model.run(f) for f in feeds], clean).items():
                worst[name] = max(worst.get(name, 0.0), value)
    return worst, points


def derive_tolerance(precision: str, golden: list[dict[str, np.ndarray]], spread: dict[str, dict[str, float]],
                     rounding: dict[str, float], steps: dict[str, float]) -> Tolerance:
    """The bound per output, from the measured spread, the rounding movement and the output's step."""
    names = list(golden[0]) if golden else []
    peak = {n: max(float(np.max(np.abs(g[n]), initial=0.0)) for g in golden) for n in names}
    widest = {n: max((s.get(n, 0.0) for s in spread.values()), default=0.0) for n in names}
    floor_atol, rtol = FLOAT_FLOOR.get(precision, (0.0, 0.0))
    bounds = {}
    for n in names:
        floor = floor_atol * max(peak[n], 1.0)
        bounds[n] = float(max(2 * widest[n], rounding.get(n, 0.0), 2 * steps.get(n, 0.0), floor, 1e-7))
    parts = [f"2 x the widest spread between this host's kernel paths ({max(widest.values(), default=0):.3g})"]
    if rounding:
        parts.append(f"the largest movement with {FLIP_FRACTION:.0%} of every int8 requantization one step off "
                     f"({max(rounding.values()):.3g}, {ROUNDING_TRIALS} trials)")
    if any(steps.values()):
        parts.append(f"2 output quantization steps ({2 * max(steps.values()):.3g})")
    if floor_atol:
        parts.append(f"{floor_atol:g} x max(|golden|, 1) for float rounding, + {rtol:g} x |golden|")
    atol = max(bounds.values(), default=floor_atol)
    return Tolerance(atol=atol, rtol=rtol, outputs=bounds if len(set(bounds.values())) > 1 else {},
                     spread={label: max(v.values(), default=0.0) for label, v in spread.items()},
                     rounding=max(rounding.values()) if rounding else None,
                     basis="per output, the largest of: " + "; ".join(parts))
