"""Making the artifacts: each key made, measured and put through the accuracy gate (see :mod:`toolchain.convert`).

A quantized artifact is tried in configurations (the remedies) until one loses at most ``max_drop`` points
against fp32; every attempt is reported, the best one is recorded, and only a passing one is shipped.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.errors import BadInput, ModelFileError
from device.manifest import ArtifactTensor
from device.runtime.parity import DecisionRule
from toolchain.blame import Diagnosis, Suspect, drop_of, explain, trials
from toolchain.calibration import DataSet, InputSpec
from toolchain.convert_records import Attempt, Basis, Conversion, Made, Shipped, Tensors
from toolchain.failures import is_internal
from toolchain.options import DROP_MEANING, FORMATS, Meaning
from toolchain.validate import Metrics, Runner, latency_us, run_all, score

if TYPE_CHECKING:
    from toolchain.quantize import NodeNoise, QuantConfig


def evaluate(b: Basis, path: Path, fmt: str, ins: tuple[ArtifactTensor, ...],
             outs: tuple[ArtifactTensor, ...]) -> tuple[Metrics, Runner]:
    """Run one artifact file on the validation data and score it against fp32."""
    runner = Runner(path, fmt, ins, outs, b.inputs, b.outputs, b.io.layouts)
    outputs = run_all(runner, b.val, b.inputs)
    return score(outputs, b.ref, b.val, b.task_output, b.baseline, b.decision, b.measure), runner


def decision(m: Meaning, outputs: tuple[InputSpec, ...], task_output: str, val: DataSet) -> DecisionRule | None:
    """The decision the gate compares with fp32's: a threshold's side, or the top-1 class."""
    if m.threshold is not None:
        return DecisionRule("threshold", task_output, threshold=m.threshold)
    out = next(o for o in outputs if o.name == task_output)
    classes = out.shape[-1] if out.shape else 1
    if (m.task == "classification" or m.labels or val.labels is not None) and classes > 1:
        return DecisionRule("top-1", task_output)
    return None


def record(c: Conversion, b: Basis, key: str, made: Made, extra: dict[str, Any]) -> None:
    """Report ``made`` and ship it when it passes the gate (fp32 ONNX always does)."""
    fmt, precision, name = FORMATS[key]
    q = c.opts.quantization
    metrics = made.metrics
    entry: dict[str, Any] = {"format": fmt, "precision": precision, "bytes": made.path.stat().st_size,
                             **metrics.values, "drop": metrics.drop, **extra}
    entry["latency_us"] = latency_us(made.runner, b.val.sample(0, b.inputs), c.opts.output.latency_runs)
    if (precision == "fp32" and fmt == "onnx") or metrics.drop <= q.max_drop:
        shutil.copyfile(made.path, c.stage / name)
        c.shipped[key] = Shipped(entry=entry, ins=made.ins, outs=made.outs, runner=made.runner)
    else:
        entry["reason"] = f"drop {metrics.drop:.3f} > max {q.max_drop} ({DROP_MEANING[metrics.kind]})"
        c.rejected[name] = entry


def gate(c: Conversion, b: Basis, key: str, attempts: list[Attempt],
         more: Callable[[str], list[Attempt]] | None) -> None:
    """Try configurations in turn until one passes the gate; report every attempt, record the best.

    When every attempt failed, ``more(label of the best so far)`` may add attempts (the sensitive nodes
    of that configuration kept in float)."""
    tried: list[dict[str, Any]] = []
    best: Made | None = None
    queue = list(attempts)
    extended = False
    while queue:
        label, making = queue.pop(0)
        try:
            path, ins, outs = making()
        except ModelFileError as exc:
            tried.append({"config": label, "drop": float("nan"), "error": str(exc)})
            continue
        metrics, runner = evaluate(b, path, FORMATS[key][0], ins, outs)
        tried.append({"config": label, "drop": metrics.drop})
        if best is None or metrics.drop < best.metrics.drop:
            best = Made(label, path, ins, outs, metrics, runner)
        if metrics.drop <= c.opts.quantization.max_drop:
            break
        if not queue and more is not None and not extended and c.opts.quantization.remedies and best is not None:
            extended = True
            try:
                queue.extend(more(best.label))
            except Exception as exc:  # the debugger is best effort, but not for our own failures
                if is_internal(exc):
                    raise
                c.notes.append(f"{FORMATS[key][2]}: sensitivity analysis failed ({type(exc).__name__}: {exc})")
    if best is None:
        errors = "; ".join(dict.fromkeys(t.get("error", "") for t in tried))
        raise ModelFileError(errors or "quantization failed")
    for t in tried:
        t["chosen"] = t["config"] == best.label
    record(c, b, key, best, {"quantization": best.label, "attempts": tried if len(tried) > 1 else []})


def _check_keep_float(fp32: Path, keep_float: tuple[str, ...]) -> None:
    nodes = _node_names(fp32)
    unknown = [n for n in keep_float if n not in nodes]
    if unknown:
        have = (f"nodes: {', '.join(sorted(nodes)[:8])}{' ...' if len(nodes) > 8 else ''}" if nodes
                else "its nodes have no names")
        raise BadInput(f"--keep-float: no node named {unknown[0]!r} in the model ({have})")


def make_onnx_int8(c: Conversion, b: Basis) -> None:
    from toolchain.quantize import RANGE_LABEL, QuantConfig, quantize_onnx, sensitive_nodes

    q = c.opts.quantization
    fp32 = b.io.source.onnx_path
    if q.keep_float:
        _check_keep_float(fp32, q.keep_float)
    if not _quantizable_ops(fp32):
        raise ModelFileError(f"no operator onnxruntime can quantize (ops: {_op_summary(fp32)}); "
                             "model.fp32.onnx is the ONNX artifact to use")
    base = QuantConfig(per_channel=q.per_channel, method=q.calibration_method, keep_float=q.keep_float)
    counter = itertools.count()

    def attempt(cfg: QuantConfig) -> Attempt:
        def making() -> tuple[Path, tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]:
            out = c.work / f"int8-{next(counter)}.onnx"
            result = quantize_onnx(fp32, out, b.inputs, b.calib, cfg, c.work)
            if result.quantized_nodes == 0:
                raise ModelFileError("onnxruntime found no node it can quantize (ops: "
                                     f"{_op_summary(fp32)}); the fp32 artifact is the one to use")
            if result.float_nodes and not cfg.keep_float and not cfg.range_float:
                c.notes.append(f"model.int8.onnx: kept in float by onnxruntime: "
                               f"{', '.join(result.float_nodes[:6])}")
            tensors: Tensors = b.io.onnx_tensors()
            return out, *tensors
        return cfg.label(), making

    paths = _range_paths(fp32) if q.remedies else ()
    remedies = onnx_remedies(base, paths) if q.remedies else [base]
    by_label = {cfg.label(): cfg for cfg in remedies}
    search = _Search()

    def rank(config: QuantConfig) -> list[NodeNoise]:
        probe = c.work / "int8-probe.onnx"
        quantize_onnx(fp32, probe, b.inputs, b.calib, config, c.work)
        return sensitive_nodes(fp32, probe, b.inputs, b.calib, c.work)

    def sensitive(best: str) -> list[Attempt]:
        start = by_label[best]  # the most sensitive nodes of the best configuration so far kept in float
        search.start = best
        search.ranked = rank(start)
        names = tuple(r.node for r in search.ranked)
        out = []
        for k in (1, 2, 4, 8):
            if k <= len(names):
                label, making = attempt(start.with_(keep_float=tuple(dict.fromkeys(start.keep_float + names[:k]))))
                search.kept[label] = names[:k]
                out.append((label, making))
        return out

    gate(c, b, "onnx-int8", [attempt(cfg) for cfg in remedies], sensitive)
    name = FORMATS["onnx-int8"][2]
    if name in c.rejected:  # refused: say which node(s) and why (paid only here)
        entry = c.rejected[name]
        explain(entry, lambda: _onnx_diagnosis(c, fp32, entry, search,
                                               lambda: rank(by_label.get(entry["quantization"], base))))
    chosen = c.shipped["onnx-int8"].entry if "onnx-int8" in c.shipped else c.rejected.get(name, {})
    if paths and RANGE_LABEL in chosen.get("quantization", ""):
        c.notes.append(f"{name}: kept float, the paths into range-sensitive ops (one int8 scale "
                       f"cannot hold their inputs' range): {', '.join(paths[:8])}{' ...' if len(paths) > 8 else ''}")


@dataclass
class _Search:
    """What the int8 ONNX search's sensitive-node step measured: its start, the ranking, the nodes each try kept."""

    start: str | None = None
    ranked: list[NodeNoise] | None = None
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attempt label -> the nodes it kept float


def _onnx_diagnosis(c: Conversion, fp32: Path, entry: dict[str, Any], search: _Search,
                    rank: Callable[[], list[NodeNoise]]) -> Diagnosis:
    """The diagnosis of a refused int8 ONNX file: the search's ranking and trials, or (remedies off, or the search
    never ran) a ranking of the refused configuration's nodes made now; and range-sensitive nodes every weight op
    feeds."""
    import onnx

    from toolchain.range_paths import unremediable

    if search.start is not None and search.ranked is None:
        raise ModelFileError("the sensitivity analysis failed (see the notes)")
    ranked = search.ranked if search.ranked is not None else rank()
    attempts = entry.get("attempts") or []
    return Diagnosis(suspects=tuple(Suspect(r.node, r.op_type, r.sqnr_db) for r in ranked),
                     trials=trials(attempts, search.kept), start_drop=drop_of(attempts, search.start),
                     max_drop=c.opts.quantization.max_drop, unremediable=unremediable(onnx.load(str(fp32))),
                     remedies=c.opts.quantization.remedies)


def onnx_remedies(base: QuantConfig, range_float: tuple[str, ...] = ()) -> list[QuantConfig]:
    """The configurations an int8 ONNX artifact is tried in, in order: the user's, the other weight granularity,
    the other calibration methods, then each method with only the weight ops quantized (element-wise maths
    such as residual adds, hard-swish and layer-norm pieces kept float: PP-OCRv4's recognizer read 56 % of its
    lines as fp32 does with every op quantized and 84 % with only its convolutions and matmuls), then, when
    ``range_float`` names the paths into range-sensitive ops (:mod:`toolchain.range_paths`), each method with
    those nodes kept float (silero VAD's log-power front end: 42 of 44 detections int8, 44 with it float)."""
    methods = [base.method] + [m for m in ("minmax", "entropy", "percentile") if m != base.method]
    out = [base, base.with_(per_channel=not base.per_channel)]
    out += [base.with_(method=m) for m in methods[1:]]
    if not base.weight_ops_only:
        out += [base.with_(method=m, weight_ops_only=True) for m in methods]
    if range_float:
        out += [base.with_(method=m, range_float=range_float) for m in methods]
    return out


def _range_paths(path: Path) -> tuple[str, ...]:
    import onnx

    from toolchain.range_paths import range_sensitive_paths

    return range_sensitive_paths(onnx.load(str(path)))


def unknown_ops(path: Path) -> str:
    """Nodes whose operator no ONNX schema (standard or ai.onnx.ml) defines, named with their op."""
    import onnx

    model = onnx.load(str(path))
    bad = [f"node {n.name or '?'} ({n.domain + ':' if n.domain else ''}{n.op_type})" for n in model.graph.node
           if not onnx.defs.has(n.op_type, n.domain or "")]
    return ", ".join(bad[:5])


def _quantizable_ops(path: Path) -> list[str]:
    """Default-domain operators with weights or activations that ORT's static quantizer handles."""
    import onnx

    model = onnx.load(str(path))
    has_default = any(imp.domain in ("", "ai.onnx") for imp in model.opset_import)
    ops = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Relu", "Clip", "Sigmoid", "LSTM", "GRU",
           "AveragePool", "MaxPool", "GlobalAveragePool", "Concat", "Softmax", "Attention"}
    return [n.op_type for n in model.graph.node if has_default and n.domain in ("", "ai.onnx") and n.op_type in ops]


def _node_names(path: Path) -> set[str]:
    import onnx

    return {n.name for n in onnx.load(str(path)).graph.node if n.name}


def _op_summary(path: Path) -> str:
    import onnx

    model = onnx.load(str(path))
    ops = sorted({n.op_type for n in model.graph.node})
    return ", ".join(ops[:12])
