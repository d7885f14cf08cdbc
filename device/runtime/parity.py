"""Golden parity: does this runtime, on this device, compute what the bundle says the model computes?

The bundle's golden file holds reference inputs (``input/<name>``) and each artifact's expected
logical outputs (``output/<artifact path>/<name>``). Samples are stacked on the first axis: either
as an extra leading axis (``(count, *shape)``) or along a batch axis of size 1 (``(count, *shape[1:])``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from device.manifest import Artifact, Manifest, Tolerance
from device.runtime.base import RuntimeInfo
from device.runtime.model import LogicalTensor, Model

DEFAULT_TOLERANCE: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3),
    "fp16": Tolerance(atol=5e-3, rtol=5e-3),
    "int8": Tolerance(atol=5e-2, rtol=5e-2),
    "int8-io": Tolerance(atol=5e-2, rtol=5e-2),
}


@dataclass(frozen=True)
class ParityResult:
    """The outcome of one artifact on one runtime. ``ok`` is ``None`` when it could not be checked."""

    artifact: str
    runtime: str
    ok: bool | None
    count: int
    max_abs_err: float
    output: str | None
    tolerance: Tolerance
    detail: str
    info: RuntimeInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact, "runtime": self.runtime, "ok": self.ok, "count": self.count,
            "max_abs_err": self.max_abs_err, "worst_output": self.output,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol}, "detail": self.detail,
            "info": vars(self.info) if self.info else None,
        }


def tolerance_for(manifest: Manifest | None, artifact: Artifact | None, precision: str) -> Tolerance:
    """The manifest's tolerance for ``artifact``, else a default by precision."""
    if manifest is not None and manifest.golden is not None and artifact is not None:
        tol = manifest.golden.tolerances.get(artifact.path)
        if tol is not None:
            return tol
    return DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["int8"])


def _sample(array: np.ndarray, spec: LogicalTensor, i: int) -> np.ndarray:
    if array.ndim == len(spec.shape) + 1:
        return array[i]
    return array[i:i + 1]


def golden_inputs(golden: dict[str, np.ndarray], inputs: tuple[LogicalTensor, ...], count: int) -> list[dict[str, Any]]:
    """The golden inputs as ``count`` feeds for :meth:`Model.run`."""
    return [{s.name: _sample(golden[f"input/{s.name}"], s, i) for s in inputs} for i in range(count)]


def compare(actual: np.ndarray, expected: np.ndarray, tol: Tolerance) -> tuple[bool, float]:
    """``(within tolerance, max |actual - expected|)``; NaN or a shape mismatch never passes."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.size != b.size:
        return False, float("inf")
    a, b = a.reshape(-1), b.reshape(-1)
    diff = np.abs(a - b)
    if not np.all(np.isfinite(diff)):
        return False, float("inf")
    ok = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(b)))
    return ok, float(diff.max(initial=0.0))


def run_parity(model: Model, feeds: list[dict[str, Any]], expected: list[dict[str, np.ndarray]], tol: Tolerance,
               label: str = "golden") -> ParityResult:
    """Run ``feeds`` and compare every output with ``expected``."""
    worst, worst_name, ok = 0.0, None, True
    for feed, want in zip(feeds, expected, strict=True):
        got = model.run(feed)
        for name, ref in want.items():
            good, err = compare(got[name], ref, tol)
            ok = ok and good
            if err >= worst:
                worst, worst_name = err, name
    detail = (f"{len(feeds)} {label} vectors, max |err| {worst:.3g} "
              f"{'<=' if ok else '>'} tolerance atol={tol.atol:g} rtol={tol.rtol:g}")
    return ParityResult(artifact=model.info.artifact, runtime=model.info.runtime, ok=ok, count=len(feeds),
                        max_abs_err=worst, output=worst_name, tolerance=tol, detail=detail, info=model.info)


def check_golden(model: Model, manifest: Manifest, golden: dict[str, np.ndarray], artifact: Artifact) -> ParityResult:
    """Compare ``model`` (loaded from ``artifact``) against the bundle's golden vectors."""
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
            from device.errors import BundleError

            raise BundleError(f"golden file: {key} holds {held} samples, manifest.json golden.count says {count}; "
                              "rebuild the bundle")
    feeds = golden_inputs(golden, model.inputs, count)
    expected = [{s.name: _sample(golden[keys[s.name]], s, i) for s in model.outputs} for i in range(count)]
    return run_parity(model, feeds, expected, tol)


def random_inputs(inputs: tuple[LogicalTensor, ...], count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
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
