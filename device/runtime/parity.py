"""Golden parity: does this runtime, on this device, compute what the bundle says the model computes?

The bundle's golden file holds reference inputs (``input/<name>``) and each artifact's expected
logical outputs (``output/<artifact path>/<name>``). Samples are stacked on the first axis: either
as an extra leading axis (``(count, *shape)``) or along a batch axis of size 1 (``(count, *shape[1:])``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from device.errors import BundleError
from device.manifest import Artifact, Manifest, Task, Tolerance
from device.pipeline import InputPlan
from device.runtime.base import RuntimeInfo
from device.runtime.model import LogicalTensor, Model

Array = np.ndarray[Any, Any]  # any shape, any dtype

DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3),
    "fp16": Tolerance(atol=5e-3, rtol=5e-3),
    "int8": Tolerance(atol=5e-2, rtol=5e-2),
    "int8-io": Tolerance(atol=5e-2, rtol=5e-2),
}


@dataclass(frozen=True)
class ParityResult:
    """The outcome of one artifact on one runtime. ``ok`` is ``None`` when it could not be checked.

    ``vector`` and ``output`` locate the worst (or the first failing) golden vector and output;
    ``decisions`` says how the task's decisions compared (top-1 or threshold crossings).
    """

    artifact: str
    runtime: str
    ok: bool | None
    count: int
    max_abs_err: float
    output: str | None
    tolerance: Tolerance
    detail: str
    info: RuntimeInfo | None = None
    vector: int | None = None
    decisions: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "runtime": self.runtime, "ok": self.ok, "count": self.count,
            "max_abs_err": self.max_abs_err, "worst_output": self.output, "worst_vector": self.vector,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol,
                          **({"outputs": self.tolerance.outputs} if self.tolerance.outputs else {})},
            "decisions": self.decisions, "detail": self.detail,
            "info": vars(self.info) if self.info else None,
        }


@dataclass(frozen=True)
class DecisionRule:
    """What the task decides from one output: its top-1 class, or which side of a threshold a score is on."""

    kind: str  # "top-1" | "threshold"
    output: str
    threshold: float | None = None
    labels: tuple[str, ...] = ()

    def name(self, index: int) -> str:
        return repr(self.labels[index]) if index < len(self.labels) else f"class {index}"


def decision_rule(task: Task | None) -> DecisionRule | None:
    """The decision the manifest's task makes (``None`` for tasks judged on numbers alone)."""
    if task is None:
        return None
    if task.kind == "classification":
        return DecisionRule("top-1", task.output, labels=task.labels)
    if task.threshold is not None:
        return DecisionRule("threshold", task.score or task.output, threshold=task.threshold)
    return None


def tolerance_for(manifest: Manifest | None, artifact: Artifact | None, precision: str) -> Tolerance:
    """The manifest's tolerance for ``artifact``, else a default by precision."""
    if manifest is not None and manifest.golden is not None and artifact is not None:
        tol = manifest.golden.tolerances.get(artifact.path)
        if tol is not None:
            return tol
    return DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["int8"])


def _sample(array: Array, spec: LogicalTensor, i: int) -> Array:
    sample: Array = array[i] if array.ndim == len(spec.shape) + 1 else array[i:i + 1]
    return sample


def golden_inputs(golden: dict[str, Array], inputs: tuple[LogicalTensor, ...], count: int) -> list[dict[str, Any]]:
    """The golden inputs as ``count`` feeds for :meth:`Model.run`."""
    return [{s.name: _sample(golden[f"input/{s.name}"], s, i) for s in inputs} for i in range(count)]


def golden_feeds(golden: dict[str, Array], manifest: Manifest, inputs: tuple[LogicalTensor, ...],
                 count: int) -> list[dict[str, Any]]:
    """The feeds parity runs: raw sensor windows (``window/<input>``) prepared by the device's own
    pipeline with the manifest's normalization and layout where the golden file holds them, so a
    manifest that no longer says how the model was fed fails parity; else the stored model inputs."""
    feeds = golden_inputs(golden, inputs, count)
    for spec in manifest.inputs:
        key = f"window/{spec.name}"
        if key not in golden:
            continue
        if golden[key].shape[0] != count:
            raise BundleError(f"golden file: {key} holds {golden[key].shape[0]} samples, manifest.json "
                              f"golden.count says {count}; rebuild the bundle")
        plan = InputPlan.for_input(spec)
        for i, feed in enumerate(feeds):
            feed[spec.name] = plan.prepare(golden[key][i])
    return feeds


def compare(actual: Array, expected: Array, tol: Tolerance, output: str = "") -> tuple[bool, float]:
    """``(within the bound, max |actual - expected|)``; NaN or a shape mismatch never passes."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.size != b.size:
        return False, float("inf")
    a, b = a.reshape(-1), b.reshape(-1)
    diff = np.abs(a - b)
    if not np.all(np.isfinite(diff)):
        return False, float("inf")
    ok = bool(np.all(diff <= tol.bound(output) + tol.rtol * np.abs(b)))
    return ok, float(diff.max(initial=0.0))


def _rows(value: Array, classes: int) -> Array:
    return np.asarray(value, dtype=np.float64).reshape(-1, classes)


def _decide(got: dict[str, Array], want: dict[str, Array], tol: Tolerance, rule: DecisionRule,
            vector: int) -> tuple[int, int, str | None]:
    """``(decisions, agreeing, why the first clear decision disagrees)`` for one golden vector.

    A decision is judged only where the golden output is clear of the edge by more than what the
    bound lets a correct model move (twice the bound for a top-1 margin, the bound for a threshold).
    """
    if rule.output not in want or rule.output not in got:
        return 0, 0, None
    w, g = np.asarray(want[rule.output], dtype=np.float64), np.asarray(got[rule.output], dtype=np.float64)
    if w.size != g.size or not w.size:
        return 0, 0, None
    bound = tol.bound(rule.output) + tol.rtol * float(np.max(np.abs(w)))
    if rule.kind == "top-1":
        classes = w.shape[-1] if w.ndim else 1
        wr, gr = _rows(w, classes), _rows(g, classes)
        top, mine = wr.argmax(axis=1), gr.argmax(axis=1)
        ordered = np.sort(wr, axis=1)
        margin = ordered[:, -1] - (ordered[:, -2] if classes > 1 else -np.inf)
        for row in np.flatnonzero((top != mine) & (margin > 2 * bound)):
            return len(top), int(np.sum(top == mine)), (
                f"golden vector {vector}: top-1 is {rule.name(int(mine[row]))} where the bundle says "
                f"{rule.name(int(top[row]))} (margin {margin[row]:.3g} > 2 x bound {bound:.3g})")
        return len(top), int(np.sum(top == mine)), None
    threshold = float(rule.threshold or 0.0)
    wf, gf = w.reshape(-1), g.reshape(-1)
    flips = (wf > threshold) != (gf > threshold)
    for i in np.flatnonzero(flips & (np.abs(wf - threshold) > bound)):
        return wf.size, int(np.sum(~flips)), (
            f"golden vector {vector}: {rule.output!r} {gf[i]:.4g} is on the other side of threshold {threshold:g} "
            f"than the bundle's {wf[i]:.4g} (clear of it by more than the bound {bound:.3g})")
    return wf.size, int(np.sum(~flips)), None


def _summary(worst: float, precision: str) -> str:
    if worst == 0.0:
        return "identical"
    what = "int8 kernels do" if precision.startswith("int8") else "float rounding does"
    return f"numbers differ within what {what} on this CPU"


def run_parity(model: Model, feeds: list[dict[str, Any]], expected: list[dict[str, Array]], tol: Tolerance,
               label: str = "golden", rule: DecisionRule | None = None) -> ParityResult:
    """Run ``feeds`` and judge every output against ``expected``: within the bound, and (with ``rule``)
    the same decision wherever the expected output is clearly decided."""
    worst, worst_name, worst_vector, failure = 0.0, None, None, None
    decided = agreeing = 0
    for i, (feed, want) in enumerate(zip(feeds, expected, strict=True)):
        got = model.run(feed)
        for name, ref in want.items():
            good, err = compare(got[name], ref, tol, name)
            if failure is None and not good:
                failure = (f"{label} vector {i}: output {name!r} |err| {err:.3g} > bound "
                           f"{tol.bound(name):g}{f' + {tol.rtol:g} x |golden|' if tol.rtol else ''}")
                worst, worst_name, worst_vector = err, name, i
            elif failure is None and err >= worst:
                worst, worst_name, worst_vector = err, name, i
        if rule is not None:
            n, agree, why = _decide(got, want, tol, rule, i)
            decided, agreeing = decided + n, agreeing + agree
            failure = failure or why
    decisions = f"{rule.kind} {agreeing}/{decided}" if rule is not None and decided else ""
    precision = model.info.precision
    if failure is not None:
        detail = f"not the model that was converted: {failure}" if label == "golden" else failure
    else:
        detail = (f"{len(feeds)} {label} vectors, {_summary(worst, precision)} "
                  f"(max |err| {worst:.3g} <= bound {tol.bound(worst_name or ''):.3g}"
                  f"{f' + {tol.rtol:g} x |golden|' if tol.rtol else ''})"
                  f"{f'; every decision agrees ({decisions})' if decisions else ''}")
    return ParityResult(artifact=model.info.artifact, runtime=model.info.runtime, ok=failure is None,
                        count=len(feeds), max_abs_err=worst, output=worst_name, tolerance=tol, detail=detail,
                        info=model.info, vector=worst_vector, decisions=decisions)


def check_golden(model: Model, manifest: Manifest, golden: dict[str, Array], artifact: Artifact) -> ParityResult:
    """Judge ``model`` (loaded from ``artifact``) against the bundle's golden vectors.

    The one judgement ``verify``, ``bench`` and the daemon's canary share: every output within the
    artifact's bound (derived by the converter from the kernel paths it measured and int8 rounding),
    and every clear decision of the task (top-1, threshold crossing) the same as the golden one.
    """
    tol = tolerance_for(manifest, artifact, artifact.precision)
    count = manifest.golden.count if manifest.golden else 0
    keys = {s.name: f"output/{artifact.path}/{s.name}" for s in model.outputs}
    missing = [k for k in keys.values() if k not in golden]
    if missing:
        return ParityResult(artifact=artifact.path, runtime=model.info.runtime, ok=None, count=0,
                            max_abs_err=0.0, output=None, tolerance=tol, info=model.info,
                            detail=f"no golden outputs for this artifact ({missing[0]} missing)")
    for key in keys.values():
        held = golden[key].shape[0] if golden[key].ndim else 0
        if held != count:
            raise BundleError(f"golden file: {key} holds {held} samples, manifest.json golden.count says {count}; "
                              "rebuild the bundle")
    feeds = golden_feeds(golden, manifest, model.inputs, count)
    expected = [{s.name: _sample(golden[keys[s.name]], s, i) for s in model.outputs} for i in range(count)]
    return run_parity(model, feeds, expected, tol, rule=decision_rule(manifest.task))


def random_inputs(inputs: tuple[LogicalTensor, ...], count: int, seed: int = 0) -> list[dict[str, Array]]:
    """Deterministic random feeds of the right shape and dtype (dynamic axes get size 1)."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        feed = {}
        for spec in inputs:
            shape = tuple(1 if d is None else d for d in spec.shape)
            if spec.dtype.kind == "f":
                feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            elif spec.dtype.kind == "b":
                feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
            else:
                info = np.iinfo(spec.dtype)
                lo, hi = max(info.min, -128), min(info.max, 127)
                feed[spec.name] = rng.integers(lo, hi + 1, shape).astype(spec.dtype)
        feeds.append(feed)
    return feeds


def check_against(model: Model, reference: Model, tol: Tolerance, count: int = 4) -> ParityResult:
    """Compare ``model`` with a CPU ``reference`` of the same file on random inputs (plain files: no golden)."""
    feeds = random_inputs(model.inputs, count)
    expected = [reference.run(feed) for feed in feeds]
    return run_parity(model, feeds, expected, tol, label="random (against the CPU)")
