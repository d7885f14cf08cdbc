"""``auto``'s micro-benchmark and its cache: every candidate loaded, checked against the golden vectors and
timed briefly in interleaved rounds; the result kept per device and bundle so that later starts skip it."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.errors import BadInput, SpinalError
from device.manifest import Manifest
from device.runtime.base import RUNTIME_FORMAT, RUNTIME_RANK, DelegateError, RuntimePolicy, log
from device.runtime.cpu import CpuFeatures
from device.runtime.delegates import DelegateSpec
from device.runtime.loading import Target, open_model
from device.runtime.model import Model

CACHE_NAME = "autotune.json"
CACHE_ENTRIES = 64
MEASURE_SECONDS = 0.3  # all candidates together, at most
MEASURE_ROUNDS = 5  # at most
MEASURE_RUNS = 40  # per candidate and round, at most
STEADY_ROUNDS = 3  # timing stops once this many rounds in a row, each alone, chose the same candidate
OUT_BY = 1.25  # a candidate drops out when its fastest round is this much beyond the margin of another's slowest
PRECISION_RANK = {"fp32": 0, "fp16": 1, "int8": 2, "int8-io": 3}
CONFIRM_SECONDS = 0.04  # the recorded winner against one alternative
CONFIRM_ROUNDS = 3
RECORD_KEY = "latency_measured_on"  # in the manifest's report: where the converter's latency_us were measured


@dataclass
class Measurement:
    """One candidate as measured by ``auto`` (and cached)."""

    runtime: str
    artifact: str
    precision: str
    p50_us: float | None
    parity: bool | None
    error: str | None = None


def cache_path(policy: RuntimePolicy) -> Path:
    """The measurement cache: the policy's ``cache_dir``, ``$SPINAL_CACHE_DIR`` or the XDG cache directory."""
    base = policy.cache_dir or os.environ.get("SPINAL_CACHE_DIR") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spinal")
    return Path(base) / CACHE_NAME


def read_cache(path: Path) -> dict[str, Any]:
    """The whole cache file; ``{}`` when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _entry_time(entry: Any) -> float:
    stamp = entry.get("time") if isinstance(entry, dict) else None
    return float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else 0.0


def _valid(m: Measurement) -> bool:
    timed = m.p50_us is None or (isinstance(m.p50_us, int | float) and not isinstance(m.p50_us, bool)
                                 and m.p50_us > 0)
    return (m.runtime in RUNTIME_RANK and isinstance(m.artifact, str) and isinstance(m.precision, str)
            and timed and m.parity in (True, False, None) and isinstance(m.error, str | None))


def cached_measurements(entry: Any) -> list[Measurement]:
    """The measurements of a cache entry; ``[]`` when it is not what :func:`write_cache` wrote (edited, damaged)."""
    try:
        measured = [Measurement(**m) for m in entry["candidates"]]
    except (TypeError, KeyError):
        return []
    return measured if all(_valid(m) for m in measured) else []


def write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Set ``key`` to ``entry`` (atomically; the oldest entries beyond :data:`CACHE_ENTRIES` are dropped)."""
    data = read_cache(path)
    data[key] = entry
    while len(data) > CACHE_ENTRIES:
        data.pop(min(data, key=lambda k: _entry_time(data[k])))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autotune.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the half-written temp file; the error itself is reported below
                os.unlink(tmp)
            raise
    except OSError as exc:
        log.info("cannot write the runtime cache %s (%s); auto will measure again next time", path, exc)


def bundle_hash(manifest: Manifest) -> str:
    """A hash of the bundle (its manifest lists every file's sha256)."""
    return hashlib.sha256(manifest.to_json().encode()).hexdigest()


def _open_candidate(target: Target, strict: RuntimePolicy,
                    spec: DelegateSpec) -> tuple[Measurement, tuple[Model, dict[str, Any]] | None]:
    """Load one candidate, note its parity and warm it up; without a model (the error noted) when it cannot run."""
    from device.runtime.parity import check_golden, golden_inputs, random_inputs

    art = target.artifact
    assert art is not None
    try:
        model = open_model(target, dataclasses.replace(strict, runtime=target.runtime), spec)
    except SpinalError as exc:  # this candidate cannot run here (e.g. a file tflite-runtime cannot load)
        if not isinstance(exc, DelegateError | BadInput):
            log.warning("auto: %s on %s cannot be used: %s", art.path, target.runtime, exc)
        return Measurement(target.runtime, art.path, art.precision, None, None, error=str(exc)), None
    measured = Measurement(target.runtime, art.path, art.precision, None, None)
    try:
        if target.golden is not None and target.manifest is not None:
            measured.parity = check_golden(model, target.manifest, target.golden, art).ok
        feed = (golden_inputs(target.golden, model.inputs, 1)[0] if target.golden is not None
                else random_inputs(model.inputs, 1)[0])
        for _ in range(3):
            model.run(feed)
    except BaseException:
        model.close()
        raise
    return measured, (model, feed)


def pick(measured: list[Measurement], features: CpuFeatures) -> Measurement | None:
    """The fastest candidate that passed parity, or a more accurate one within the CPU's margin of it."""
    usable = [m for m in measured if m.parity is not False and m.p50_us is not None and m.error is None]
    if not usable:
        return None
    fastest = min(m.p50_us for m in usable)  # type: ignore[type-var]
    margin = margin_of(features)
    close = [m for m in usable if m.p50_us <= fastest * (1 + margin)]  # type: ignore[operator]
    return min(close, key=lambda m: (PRECISION_RANK.get(m.precision, 9), m.p50_us, RUNTIME_RANK[m.runtime]))


def margin_of(features: CpuFeatures) -> float:
    """How much slower a more accurate candidate may be and still be picked: 10% with int8 dot products, else 25%."""
    return 0.10 if features.int8_dot else 0.25


def _one_round(model: Model, feed: dict[str, Any], seconds: float) -> float:
    """The median µs of one candidate's runs in one round: up to ``seconds`` (at least 5, at most MEASURE_RUNS)."""
    times: list[int] = []
    end = time.perf_counter() + seconds
    while len(times) < MEASURE_RUNS and (len(times) < 5 or time.perf_counter() < end):
        t0 = time.perf_counter_ns()
        model.run(feed)
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1000


def still_in(rounds: list[list[float]], active: list[int], margin: float) -> list[int]:
    """The candidates that can still be picked: after two rounds, one whose fastest round is slower than
    another's slowest by more than ``(1 + margin) * OUT_BY`` cannot come within the margin of the fastest."""
    if not active or min(len(rounds[i]) for i in active) < 2:
        return active
    bar = min(max(rounds[i]) for i in active) * (1 + margin) * OUT_BY
    return [i for i in active if min(rounds[i]) <= bar]


def time_rounds(live: list[tuple[Model, dict[str, Any]]], seconds: float = MEASURE_SECONDS,
                rounds: int = MEASURE_ROUNDS, margin: float = 0.25,
                choose: Callable[[dict[int, float]], int | None] | None = None) -> list[float]:
    """Each model's p50 in µs: the median of its per-round medians over at most ``rounds`` interleaved rounds.

    Rounds alternate between the models so that a burst of other load on the CPU hits them all alike. A model
    that cannot be picked any more (:func:`still_in`) is not timed again; timing stops when one is left, or when
    ``choose`` (given each model's p50 by index, the index of the pick or ``None``) made the same pick from each of the
    last :data:`STEADY_ROUNDS` rounds alone.
    """
    per_model: list[list[float]] = [[] for _ in live]
    active = list(range(len(live)))
    picks: list[int | None] = []
    for _ in range(rounds):
        per_round = seconds / rounds / max(1, len(active))
        for i in active:
            per_model[i].append(_one_round(*live[i], per_round))
        if choose is not None:
            picks.append(choose({i: per_model[i][-1] for i in active}))
        active = still_in(per_model, active, margin)
        steady = picks[-STEADY_ROUNDS:]
        if len(active) <= 1 or (len(steady) == STEADY_ROUNDS and steady[0] is not None and len(set(steady)) == 1):
            break
    return [sorted(values)[len(values) // 2] for values in per_model]


def probe_together(targets: list[Target]) -> None:
    """First contact with the TFLite files not yet probed: one child process per runtime, not one per file."""
    from device.modelfile import ensure_tflite_loadable_many

    for runtime in sorted({t.runtime for t in targets if RUNTIME_FORMAT[t.runtime] == "tflite"}):
        ensure_tflite_loadable_many([t.path for t in targets if t.runtime == runtime], runtime)


def measure_all(targets: list[Target], policy: RuntimePolicy, spec: DelegateSpec,
                seconds: float = MEASURE_SECONDS, rounds: int = MEASURE_ROUNDS,
                features: CpuFeatures | None = None) -> list[Measurement]:
    """``auto``'s micro-benchmark: load every candidate, check its parity, then time them in interleaved rounds.

    With ``features``, timing stops early once :func:`pick` is clear (see :func:`time_rounds`).
    """
    results: dict[int, Measurement] = {}
    live: list[tuple[int, Model, dict[str, Any]]] = []
    strict = RuntimePolicy(runtime="auto", threads=policy.threads, delegate=policy.delegate, fail_closed=True)
    tflite = [RUNTIME_FORMAT[t.runtime] == "tflite" for t in targets]
    try:
        # The others first: they need no probe child, and they load while it gets ready (started ahead).
        for i in sorted(range(len(targets)), key=tflite.__getitem__):
            if tflite[i] and not any(tflite[j] for j in results):
                probe_together(targets)
            results[i], opened = _open_candidate(targets[i], strict, spec)
            if opened is not None:  # from here on, the finally block closes it
                live.append((i, *opened))

        def choose(p50s: dict[int, float]) -> int | None:
            trial = {j: dataclasses.replace(results[live[j][0]], p50_us=p50) for j, p50 in p50s.items()}
            best = pick(list(trial.values()), features) if features is not None else None
            return next((j for j, m in trial.items() if m is best), None)

        margin = margin_of(features) if features is not None else 0.25
        p50s = time_rounds([(model, feed) for _, model, feed in live], seconds, rounds, margin,
                           choose if features is not None else None)
        for (i, _, _), p50 in zip(live, p50s, strict=True):
            results[i].p50_us = p50
    finally:
        for _, model, _ in live:
            model.close()
    return [results[i] for i in range(len(targets))]


def cpu_family(features: CpuFeatures) -> str:
    """The CPU as far as it decides which artifact is fastest: architecture, core (not the board), int8 dot."""
    core = features.model.split(" (", 1)[0]
    return f"{features.arch}/{core}/{'int8dot' if features.int8_dot else 'no-int8dot'}"


def measured_on(features: CpuFeatures, threads: int, runtimes: dict[str, str]) -> dict[str, Any]:
    """What the converter records next to its per-artifact ``latency_us`` (``report.latency_measured_on``)."""
    return {"cpu": cpu_family(features), "threads": threads, "delegate": "cpu", "runtimes": dict(runtimes)}


def recorded_ranking(manifest: Manifest, features: CpuFeatures, threads: int | None, spec: DelegateSpec,
                     cands: list[tuple[str, Any]]) -> list[Measurement]:
    """The converter's latencies of the candidates, where it measured them on this CPU family with these
    threads on the CPU; ``[]`` when it did not (another CPU, a delegate, no record, fewer than two)."""
    report = manifest.report if isinstance(manifest.report, dict) else {}
    where, arts = report.get(RECORD_KEY), report.get("artifacts")
    if not isinstance(where, dict) or not isinstance(arts, dict) or spec.kind != "cpu":
        return []
    runtimes = where.get("runtimes")
    if (where.get("cpu") != cpu_family(features) or where.get("threads") != threads
            or where.get("delegate") != "cpu" or not isinstance(runtimes, dict)):
        return []
    out = []
    for runtime, art in cands:
        entry = arts.get(art.path)
        latency = entry.get("latency_us") if isinstance(entry, dict) else None
        if (runtimes.get(art.format) == runtime and isinstance(latency, int | float) and not isinstance(latency, bool)
                and latency > 0):
            out.append(Measurement(runtime, art.path, art.precision, float(latency), None))
    return out if len(out) > 1 else []


def converter_record() -> dict[str, Any]:
    """``report.latency_measured_on`` for the converter, whose ``latency_us`` are one CPU thread, onnx files in
    onnxruntime and TFLite files in the preferred TFLite runtime (``toolchain/validate.py``'s ``Runner``)."""
    from device.modelfile import tflite_interpreter_class
    from device.runtime.cpu import cpu_features

    tflite = "litert" if tflite_interpreter_class()[1] == "ai-edge-litert" else "tflite-runtime"
    return measured_on(cpu_features(), 1, {"onnx": "onnxruntime", "tflite": tflite})
