"""The conversion pipeline: load → fp32 ONNX → quantize → TFLite → validate → bundle.

``convert(ConvertOptions(...))`` is the whole of ``spinal convert``. Work happens in a private
temporary directory next to the output; the bundle appears (renamed into place, or packed as a
``.spinal`` archive) only when everything worked, so a failed run leaves nothing half-written.

Artifacts (``--formats``; the default is every one that applies):

==============  ======================  ===================================================
key             file                    how
==============  ======================  ===================================================
onnx-fp32       model.fp32.onnx         the imported model, one file, fixed shapes
onnx-int8       model.int8.onnx         onnxruntime static QDQ int8
tflite-fp32     model.fp32.tflite       onnx2tf SavedModel (or Keras) → TFLiteConverter
tflite-fp16     model.fp16.tflite       float16 weights
tflite-int8     model.int8.tflite       full-integer kernels, float input/output
tflite-int8-io  model.int8-io.tflite    full-integer, int8 input/output tensors
==============  ======================  ===================================================

Every quantized artifact goes through the accuracy gate (:mod:`toolchain.validate`): one that
loses more than ``max_drop`` points against fp32 is re-made with the remedies (per-channel ↔
per-tensor, other calibration methods, the most sensitive nodes kept in float) and is shipped
only if one of them passes. Every attempt is reported.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from device import __version__
from device.bundle import ARCHIVE_SUFFIX, file_digest, pack_archive, verify_directory, write_manifest
from device.dsp import ChainError, Stage, compile_chain, parse_chain
from device.dsp import describe as describe_chain
from device.errors import BadInput, BundleError, CheckFailed, ModelFileError, SpinalError
from device.manifest import (  # the name and layout rules are the manifest's own
    _LAYOUT_RE,
    _NAME_RE,
    Artifact,
    ArtifactTensor,
    Attachment,
    Golden,
    Manifest,
    Normalization,
    Task,
    TensorSpec,
    Tolerance,
)
from device.pipeline import InputPlan, fit_normalization
from device.runtime.parity import DecisionRule
from toolchain import report as report_mod
from toolchain.bounds import derive_tolerance, measure_spread, rounding_movement
from toolchain.calibration import (
    CsvOptions,
    DataSet,
    class_ids,
    read_dataset,
    read_raw,
    read_recording_windows,
    synthetic,
)
from toolchain.failures import InternalFailure, describe, is_internal
from toolchain.validate import Metrics, Runner, latency_us, onnx_io, parse_gate_measure, run_all, score

FORMATS: dict[str, tuple[str, str, str]] = {  # key -> (format, precision, file)
    "onnx-fp32": ("onnx", "fp32", "model.fp32.onnx"),
    "onnx-int8": ("onnx", "int8", "model.int8.onnx"),
    "tflite-fp32": ("tflite", "fp32", "model.fp32.tflite"),
    "tflite-fp16": ("tflite", "fp16", "model.fp16.tflite"),
    "tflite-int8": ("tflite", "int8", "model.int8.tflite"),
    "tflite-int8-io": ("tflite", "int8-io", "model.int8-io.tflite"),
}
TASKS = ("classification", "regression", "anomaly", "score", "features")
DROP_MEANING = {
    "accuracy": "top-1 accuracy points lost against fp32",
    "regression": "MAE increase in percent of fp32's MAE",
    "fidelity": "largest of 100 × (1 − cosine), 50 × relative RMS error² and % of decisions changed, against fp32",
    "task": "100 − agreement with fp32 in percent on the task measure given by --gate-measure",
}


@dataclass
class ConvertOptions:
    """Everything ``spinal convert`` takes. ``model`` is a path or ``package.module:factory``."""

    model: str
    out: Path
    formats: tuple[str, ...] = ()
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # "" = the first input
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    calibration: Path | None = None
    calibration_method: str = "minmax"
    calibration_samples: int = 200
    validation: Path | None = None
    validation_samples: int | None = None  # None: every row (--max-validation caps it, and says so)
    max_drop: float = 1.0
    per_channel: bool = True
    remedies: bool = True
    keep_float: tuple[str, ...] = ()
    golden_count: int = 8
    name: str | None = None
    description: str = ""
    task: str | None = None
    task_output: str | None = None
    labels: tuple[str, ...] = ()
    activation: str | None = None
    targets: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    threshold: float | None = None
    gate_measure: str | None = None  # map-iou:T | ctc[:BLANK]: the gate's drop is 100 - that agreement
    channels: tuple[str, ...] = ()
    channel_units: tuple[str, ...] = ()
    sample_rate_hz: float | None = None
    window: int | None = None
    hop: int | None = None
    layout: str | None = None
    norm_mean: tuple[float, ...] = ()
    norm_std: tuple[float, ...] = ()
    preprocess: tuple[dict[str, Any], ...] = ()  # the DSP chain (device/dsp.py), manifest form; with it (or an
    # .npz recording) --calibration/--validation are raw recordings and the normalization is computed
    opset: int = 17
    force: bool = False
    latency_runs: int = 50
    seed: int = 0


@dataclass
class ConvertResult:
    """What ``convert`` made."""

    out: Path
    manifest: Manifest
    report: dict[str, Any]


class Progress:
    """Hooks the CLI fills in (rich progress); the defaults do nothing."""

    def start(self, total: int) -> None:  # pragma: no cover - trivial
        pass

    def step(self, description: str) -> None:  # pragma: no cover - trivial
        pass

    def advance(self) -> None:  # pragma: no cover - trivial
        pass


# --------------------------------------------------------------------------------------------
# Option checks


def _check_options(opts: ConvertOptions) -> tuple[str, ...]:
    unknown = [f for f in opts.formats if f not in FORMATS]
    if unknown:
        raise BadInput(f"--formats: unknown {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    if opts.calibration_method not in ("minmax", "entropy", "percentile"):
        raise BadInput(f"--calibration-method {opts.calibration_method!r}: choose minmax, entropy or percentile")
    if opts.task is not None and opts.task not in TASKS:
        raise BadInput(f"--task {opts.task!r}: choose {', '.join(TASKS)}")
    if opts.name and not _NAME_RE.match(opts.name):
        raise BadInput(f"--name {opts.name!r}: use 1-128 letters, digits, '.', '_' or '-' (starting with a letter "
                       "or digit)")
    if opts.layout is not None and (not _LAYOUT_RE.match(opts.layout) or len(set(opts.layout)) != len(opts.layout)):
        raise BadInput(f"--layout {opts.layout!r}: give distinct capital letters such as NTC, NCT or NCHW")
    if opts.activation is not None and opts.activation not in ("logits", "probabilities"):
        raise BadInput(f"--activation {opts.activation!r}: choose logits or probabilities")
    if opts.task == "anomaly" and opts.threshold is None:
        raise BadInput("--task anomaly needs --threshold")
    if opts.threshold is not None and opts.task in ("classification", "regression", "features"):
        raise BadInput(f"--threshold has no meaning for --task {opts.task} (it is for score and anomaly)")
    parse_gate_measure(opts.gate_measure)
    if not (math.isfinite(opts.max_drop) and opts.max_drop >= 0):
        raise BadInput(f"--max-drop must be a number >= 0, got {opts.max_drop}")
    if opts.threshold is not None and not math.isfinite(opts.threshold):
        raise BadInput(f"--threshold must be a finite number, got {opts.threshold}")
    if opts.golden_count < 1:
        raise BadInput(f"--golden must be >= 1, got {opts.golden_count}")
    for option, value in (("--calibration-samples", opts.calibration_samples),
                          ("--max-validation", opts.validation_samples), ("--window", opts.window),
                          ("--hop", opts.hop)):
        if value is not None and value < 1:
            raise BadInput(f"{option} must be >= 1, got {value}")
    if opts.sample_rate_hz is not None and not (math.isfinite(opts.sample_rate_hz) and opts.sample_rate_hz > 0):
        raise BadInput(f"--sample-rate must be > 0 Hz, got {opts.sample_rate_hz}")
    if opts.channel_units and not opts.channels:
        raise BadInput("--channel-units needs --channels (the units are the channels')")
    if opts.channel_units and len(opts.channel_units) not in (1, len(opts.channels)):
        raise BadInput(f"--channel-units gives {len(opts.channel_units)} units for {len(opts.channels)} "
                       f"--channels (give 1 or {len(opts.channels)})")
    if opts.norm_mean and opts.channels and len(opts.norm_mean) not in (1, len(opts.channels)):
        raise BadInput(f"--norm-mean/--norm-std give {len(opts.norm_mean)} values for {len(opts.channels)} "
                       f"--channels (give 1 or {len(opts.channels)})")
    if len(opts.norm_mean) != len(opts.norm_std):
        raise BadInput(f"--norm-mean has {len(opts.norm_mean)} values but --norm-std has {len(opts.norm_std)}")
    if any(s <= 0 for s in opts.norm_std):
        raise BadInput("--norm-std values must be > 0")
    try:
        parse_chain(list(opts.preprocess))
    except ChainError as exc:
        raise BadInput(exc.where("--preprocess")) from None
    out = opts.out
    if out.exists() and not opts.force:
        raise BadInput(f"{out}: already exists; remove it or pass --force")
    if out.exists() and out.is_dir() and out.suffix != ARCHIVE_SUFFIX and any(out.iterdir()) and \
            not (out / "manifest.json").exists():
        raise BadInput(f"{out}: is a non-empty directory that is not a bundle; refusing to replace it")
    return opts.formats or tuple(FORMATS)


# --------------------------------------------------------------------------------------------
# The pipeline


def convert(opts: ConvertOptions, progress: Progress | None = None) -> ConvertResult:
    """Convert ``opts.model`` into a verified bundle at ``opts.out``. Raises SpinalError subclasses."""
    progress = progress or Progress()
    wanted = _check_options(opts)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    # Absolute: TensorFlow's child process has its own working directory, and a relative --out must not
    # depend on anybody's.
    work = Path(tempfile.mkdtemp(prefix=".spinal-convert-", dir=opts.out.parent.resolve()))
    try:
        return _Pipeline(opts, wanted, work, progress).run()
    finally:
        if "toolchain.tflite" in sys.modules:
            sys.modules["toolchain.tflite"].close_workers()
        shutil.rmtree(work, ignore_errors=True)


class _Pipeline:
    def __init__(self, opts: ConvertOptions, wanted: tuple[str, ...], work: Path, progress: Progress) -> None:
        self.opts = opts
        self.wanted = wanted
        self.work = work
        self.stage = work / "bundle"
        self.stage.mkdir()
        self.progress = progress
        self.notes: list[str] = []
        self.shipped: dict[str, dict[str, Any]] = {}  # key -> record
        self.rejected: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, dict[str, Any]] = {}
        self._rounding: dict[str, float] | None = None  # int8 rounding movement, measured once per conversion
        self.timings: dict[str, float] = {}
        self.sensor_spec: TensorSpec | None = None  # the first input's spec when built from recordings
        self.label_names: tuple[str, ...] = ()

    # ---- helpers

    def _timed(self, label: str, fn: Callable[[], Any]) -> Any:
        self.progress.step(label)
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[label] = round(time.perf_counter() - t0, 3)
            self.progress.advance()

    # ---- main

    def run(self) -> ConvertResult:
        from toolchain.sources import SourceOptions, load_source

        t_start = time.perf_counter()
        opts = self.opts
        from toolchain.as_is import as_is_kind

        if as_is_kind(opts.model) is not None:
            return self._run_as_is(t_start)
        steps = 4 + len(self.wanted)
        self.progress.start(steps)
        hints = {}
        if opts.calibration is not None and opts.calibration.suffix in (".npz", ".npy") and not self._recorded():
            hints = {k: tuple(v.shape) for k, v in read_raw(opts.calibration).items()}
        src_opts = SourceOptions(input_shapes=opts.input_shapes, hint_shapes=hints, input_names=opts.input_names,
                                 output_names=opts.output_names, opset=opts.opset)
        self.source = self._timed("import model", lambda: load_source(opts.model, self.work, src_opts))
        self.notes += self.source.notes
        from toolchain.graph_fixes import fold_ifs

        self.notes += fold_ifs(self.source.onnx_path)
        if self.source.tflite_blocked and not opts.formats:  # the default is every format that applies
            self.wanted = tuple(k for k in self.wanted if FORMATS[k][0] != "tflite")
        fp32 = self.source.onnx_path
        try:
            self.inputs, self.outputs = onnx_io(fp32)
        except Exception as exc:
            unknown = _unknown_ops(fp32)
            if unknown:
                raise ModelFileError(f"{opts.model}: unsupported operator(s): {unknown}; onnxruntime (and so every "
                                     "artifact) needs standard ONNX operators — replace or decompose them before "
                                     "export") from None
            detail = str(exc).splitlines()[0]
            detail = detail.split("failed:", 1)[-1].strip() if "failed:" in detail else detail
            raise ModelFileError(f"{opts.model}: onnxruntime cannot run the imported model "
                                 f"({type(exc).__name__}: {detail[:300]})") from None
        if "" in hints and len(self.inputs) == 1:
            hints = {self.inputs[0].name: hints[""]}
        self.layouts = self._logical_layouts()
        self.calib, self.val = self._timed("read data", self._read_data)
        self.ref = self._timed("reference outputs", self._reference)
        self.task_output = self._task_output()
        self.baseline = score(self.ref, self.ref, self.val, self.task_output, None,
                              measure=parse_gate_measure(self.opts.gate_measure))
        self.drop_kind = self.baseline.kind
        for key in self.wanted:
            self._timed(key, lambda key=key: self._make(key))
        if not self.shipped:
            reasons = [f"{k}: {v.get('reason', 'rejected by the accuracy gate')}" for k, v in
                       {**self.rejected, **self.failed}.items()]
            if not self.rejected:  # nothing could be made at all: the model is the problem
                raise ModelFileError(f"{opts.model}: no artifact could be made; " + "; ".join(reasons))
            raise CheckFailed("no artifact passed; " + "; ".join(reasons))
        report = self._timed("bundle", lambda: self._bundle(time.perf_counter() - t_start))
        return report

    def _run_as_is(self, t_start: float) -> ConvertResult:
        """A .tflite file or an already-quantized .onnx: one artifact, the file itself (see toolchain.as_is)."""
        from toolchain.as_is import as_is_kind, prepare_onnx, prepare_tflite

        opts = self.opts
        path = Path(opts.model)
        files = {k: v[2] for k, v in FORMATS.items()}
        self.progress.start(5)
        hints = {}
        if opts.calibration is not None and opts.calibration.suffix in (".npz", ".npy"):
            hints = {k: tuple(v.shape) for k, v in read_raw(opts.calibration).items()}
        if as_is_kind(opts.model) == "tflite":
            made = self._timed("read model", lambda: prepare_tflite(path, self.work, files, opts.input_shapes))
        else:
            made = self._timed("read model", lambda: prepare_onnx(path, self.work, files, opts.input_shapes, hints))
        if opts.formats and set(opts.formats) != {made.key}:
            raise BadInput(f"{path}: is bundled as it is ({made.key}); --formats cannot make "
                           f"{', '.join(k for k in opts.formats if k != made.key)} from it (convert the source model "
                           "for those)")
        self.wanted = (made.key,)
        self.notes += made.notes
        try:
            return self._bundle_as_is(made, path, t_start)
        except SpinalError as exc:  # name the user's file, not the copy in the work directory
            message = str(exc)
            for copy in (made.path, self.stage / files[made.key]):
                message = message.replace(str(copy), str(path))
            exc.args = (message, *exc.args[1:])
            raise

    def _bundle_as_is(self, made: Any, path: Path, t_start: float) -> ConvertResult:
        """The as-is artifact measured, recorded and bundled (``made``: toolchain.as_is's prepared file)."""
        from toolchain.sources import SourceModel

        self.source = SourceModel(kind=f"{FORMATS[made.key][0]} (as is)", onnx_path=made.path)
        self.source_parity = None
        self.inputs, self.outputs = made.inputs, made.outputs
        self.layouts = self._logical_layouts()
        self.calib, self.val = self._timed("read data", self._read_data)
        fmt = FORMATS[made.key][0]
        runner = Runner(made.path, fmt, made.art_inputs, made.art_outputs, self.inputs, self.outputs, self.layouts)
        self.ref = self._timed("reference outputs", lambda: run_all(runner, self.val, self.inputs))
        self.task_output = self._task_output()
        self.baseline = score(self.ref, self.ref, self.val, self.task_output, None,
                              measure=parse_gate_measure(self.opts.gate_measure))
        self.drop_kind = self.baseline.kind
        metrics = score(self.ref, self.ref, self.val, self.task_output, self.baseline,
                        measure=parse_gate_measure(self.opts.gate_measure))
        self._record(made.key, made.path, made.art_inputs, made.art_outputs, metrics, runner, {"as_is": True})
        return self._timed("bundle", lambda: self._bundle(time.perf_counter() - t_start))

    # ---- data

    def _logical_layouts(self) -> dict[str, str | None]:
        opts = self.opts
        layouts: dict[str, str | None] = {}
        for i, spec in enumerate(self.inputs):
            layout = opts.layout if i == 0 and opts.layout else None
            if layout is None and i == 0 and len(spec.shape) == 3 and not opts.preprocess:
                if opts.channels:
                    n = len(opts.channels)
                    layout = "NCT" if spec.shape[1] == n else ("NTC" if spec.shape[2] == n else None)
                elif opts.window:
                    layout = "NTC" if spec.shape[1] == opts.window else ("NCT" if spec.shape[2] == opts.window
                                                                         else None)
            if layout is not None and len(layout) != len(spec.shape):
                raise BadInput(f"--layout {layout!r} has {len(layout)} axes but input {spec.name!r} has shape "
                               f"{list(spec.shape)}")
            layouts[spec.name] = layout
            if i == 0 and opts.channels and not opts.preprocess:  # a chain may change the channel count
                n = len(opts.channels)
                fits = spec.shape[layout.index("C")] == n if layout and "C" in layout else n in spec.shape[1:]
                if not fits:
                    raise BadInput(f"--channels names {n} channels but input {spec.name!r} has shape "
                                   f"{list(spec.shape)}{' (' + layout + ')' if layout else ''}")
        for spec in self.outputs:
            layouts[spec.name] = None
        return layouts

    def _recorded(self) -> bool:
        """Whether --calibration is raw recordings (a chain was given, or it is an .npz recording)."""
        from device import recording

        opts = self.opts
        return opts.calibration is not None and (bool(opts.preprocess) or recording.is_recording(opts.calibration))

    def _read_recordings(self) -> tuple[DataSet, DataSet]:
        """Calibration and validation windows from raw recordings: cut as the device cuts them, through the
        chain, normalized with statistics computed here from the processed calibration windows."""
        opts = self.opts
        spec0 = self.inputs[0]
        if len(self.inputs) != 1:
            raise BadInput("raw recordings (--preprocess) serve single-input models only")
        window = opts.window
        if window is None:
            if opts.preprocess:
                raise BadInput("--preprocess needs --window (raw samples per window)")
            window = next((d for d in spec0.shape[1:] if d > 1), 1)
        hop = opts.hop or window
        assert opts.calibration is not None
        cal = read_recording_windows(opts.calibration, opts.channels, window, hop, opts.calibration_samples)
        val = (read_recording_windows(opts.validation, cal.channels, window, hop, opts.validation_samples,
                                      "validation") if opts.validation is not None else None)
        rate = cal.rate_hz
        if opts.sample_rate_hz is not None and not math.isclose(opts.sample_rate_hz, rate, rel_tol=1e-6):
            raise BadInput(f"--sample-rate {opts.sample_rate_hz:g} Hz but {cal.source} was recorded at {rate:g} Hz; "
                           "resample in the chain (resample:rate_hz=...) instead")
        if val is not None and not math.isclose(val.rate_hz, rate, rel_tol=1e-6):
            raise BadInput(f"{val.source} was recorded at {val.rate_hz:g} Hz, {cal.source} at {rate:g} Hz")
        chain = parse_chain(list(opts.preprocess))
        layout = opts.layout
        if layout is None and len(spec0.shape) == 3:
            try:
                last = compile_chain(chain, Stage(window, len(cal.channels), rate, cal.channels)).last
            except ChainError as exc:
                raise BadInput(exc.where("--preprocess")) from None
            dims = (last.length, last.channels)
            layout = "NTC" if spec0.shape[1:] == dims else ("NCT" if spec0.shape[1:] == dims[::-1] else None)
        spec = TensorSpec(name=spec0.name, shape=spec0.shape, dtype=spec0.dtype, layout=layout, channels=cal.channels,
                          sample_rate_hz=rate, window=window, hop=hop, units=opts.channel_units or cal.units,
                          preprocessing=chain)
        plan = InputPlan.for_input(spec)
        notes = [f"preprocessing: {describe_chain(chain)}"] if chain else []
        if opts.norm_mean:
            norm = Normalization(mean=opts.norm_mean, std=opts.norm_std)
        else:
            mean, std = fit_normalization(plan.features(cal.raw))
            norm = Normalization(mean=mean, std=std)
            notes.append(f"normalization computed from {len(cal.raw)} calibration windows"
                         + (" after the chain" if chain else ""))
        self.sensor_spec = spec = dataclasses.replace(spec, normalization=norm)
        self.layouts[spec0.name] = layout
        plan = InputPlan.for_input(spec)
        self.notes += notes
        names = opts.labels or tuple(sorted({lab for w in (cal, val) if w is not None for lab in w.labels if lab}))
        if names and not all(n.lstrip("-").isdigit() for n in names):
            self.label_names = names

        def dataset(w: Any) -> DataSet:
            x = plan.prepare(w.raw).reshape((len(w.raw), *spec0.sample_shape)).astype(np.dtype(spec0.dtype))
            labels = class_ids(w.labels, self.label_names, w.source)
            return DataSet(arrays={spec0.name: x}, source=w.source, labels=labels, notes=list(w.notes), raw=w.raw)

        calib = dataset(cal)
        if val is None:
            valset = dataset(cal)
            valset.notes.append("no --validation given: the calibration data stands in (optimistic)")
        else:
            valset = dataset(val)
        return calib, valset

    def _read_data(self) -> tuple[DataSet, DataSet]:
        opts = self.opts
        if self._recorded():
            return self._read_recordings()
        if opts.preprocess:
            raise BadInput("--preprocess needs --calibration: raw sensor recordings (.csv or .npz, see "
                           "docs/recording.md) to compute the features and the normalization from")
        csv_opts = CsvOptions(channels=opts.channels, window=opts.window, hop=opts.hop)
        if opts.calibration is not None:
            calib = read_dataset(opts.calibration, self.inputs, csv_opts, limit=opts.calibration_samples)
        else:
            calib = synthetic(self.inputs, 64, opts.seed)
            self.notes.append("calibration: no --calibration given, Gaussian noise used: int8 accuracy will be poor")
        if opts.validation is not None:
            val = read_dataset(opts.validation, self.inputs, csv_opts, limit=opts.validation_samples,
                               purpose="validation")
        elif opts.calibration is not None:
            val = read_dataset(opts.calibration, self.inputs, csv_opts, limit=opts.validation_samples,
                               purpose="validation")
            val.notes.append("no --validation given: the calibration data stands in (optimistic)")
        else:
            val = synthetic(self.inputs, 32, opts.seed + 1)
        capped = [n for n in val.notes if n.startswith("first ")]
        if capped and opts.validation is not None:
            self.notes.append(f"validation: {capped[0]} (--max-validation)")
        return calib, val

    def _reference(self) -> dict[str, np.ndarray]:
        fp32 = self.source.onnx_path
        sess_runner = Runner(fp32, "onnx", self._onnx_tensors()[0], self._onnx_tensors()[1], self.inputs,
                             self.outputs, self.layouts)
        ref = run_all(sess_runner, self.val, self.inputs)
        self.source_parity: dict[str, Any] | None = None
        if self.source.reference is not None:
            sub = self.val.take(min(self.val.count, 16))
            src_out = run_all(self.source.reference, sub, self.inputs)
            diffs = [float(np.max(np.abs(src_out[k].astype(np.float64) - ref[k][: sub.count].astype(np.float64))))
                     for k in ref if k in src_out and np.issubdtype(ref[k].dtype, np.floating)]
            self.source_parity = {"samples": sub.count, "max_abs": max(diffs, default=0.0)}
            peak = max(float(np.max(np.abs(ref[k]))) for k in ref)
            if self.source_parity["max_abs"] > 1e-3 * max(1.0, peak):
                self.notes.append(f"fp32 ONNX differs from the {self.source.kind} model by up to "
                                  f"{self.source_parity['max_abs']:.3g}")
        return ref

    def _task_output(self) -> str:
        names = [o.name for o in self.outputs]
        if self.opts.task_output:
            if self.opts.task_output not in names:
                raise BadInput(f"--task-output {self.opts.task_output!r} is not an output ({', '.join(names)})")
            return self.opts.task_output
        floats = [o for o in self.outputs if np.dtype(o.dtype).kind == "f"]
        if self.opts.task in ("score", "anomaly"):  # a task about one value: the output that holds one
            single = [o for o in floats if int(np.prod(o.shape)) == 1]
            if single:
                return single[0].name
        multi = [o for o in floats if o.shape and o.shape[-1] > 1]
        return (multi or floats or list(self.outputs))[0].name

    # ---- artifacts

    def _onnx_tensors(self, path: Path | None = None) -> tuple[tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]:
        ins = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name))
                    for s in self.inputs)
        outs = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name))
                     for s in self.outputs)
        return ins, outs

    def _evaluate(self, path: Path, fmt: str, ins: tuple[ArtifactTensor, ...],
                  outs: tuple[ArtifactTensor, ...]) -> tuple[Metrics, Runner]:
        runner = Runner(path, fmt, ins, outs, self.inputs, self.outputs, self.layouts)
        outputs = run_all(runner, self.val, self.inputs)
        return score(outputs, self.ref, self.val, self.task_output, self.baseline, self._decision(),
                     parse_gate_measure(self.opts.gate_measure)), runner

    def _decision(self) -> DecisionRule | None:
        """The decision the gate compares with fp32's: a threshold's side, or the top-1 class."""
        opts = self.opts
        if opts.threshold is not None:
            return DecisionRule("threshold", self.task_output, threshold=opts.threshold)
        out = next(o for o in self.outputs if o.name == self.task_output)
        classes = out.shape[-1] if out.shape else 1
        if (opts.task == "classification" or opts.labels or self.val.labels is not None) and classes > 1:
            return DecisionRule("top-1", self.task_output)
        return None

    def _record(self, key: str, path: Path, ins: tuple[ArtifactTensor, ...], outs: tuple[ArtifactTensor, ...],
                metrics: Metrics, runner: Runner, extra: dict[str, Any]) -> None:
        fmt, precision, name = FORMATS[key]
        entry: dict[str, Any] = {"format": fmt, "precision": precision, "bytes": path.stat().st_size,
                                 **metrics.values, "drop": metrics.drop, **extra}
        entry["latency_us"] = latency_us(runner, self.val.sample(0, self.inputs), self.opts.latency_runs)
        passed = (precision == "fp32" and fmt == "onnx") or metrics.drop <= self.opts.max_drop
        if passed:
            shutil.copyfile(path, self.stage / name)
            self.shipped[key] = {"entry": entry, "ins": ins, "outs": outs, "runner": runner}
        else:
            entry["reason"] = (f"drop {metrics.drop:.3f} > max {self.opts.max_drop} "
                               f"({DROP_MEANING[metrics.kind]})")
            self.rejected[name] = entry

    def _make(self, key: str) -> None:
        fmt, precision, name = FORMATS[key]
        try:
            if key == "onnx-fp32":
                ins, outs = self._onnx_tensors()
                metrics, runner = self._evaluate(self.source.onnx_path, "onnx", ins, outs)
                self._record(key, self.source.onnx_path, ins, outs, metrics, runner, {})
            elif key == "onnx-int8":
                self._make_onnx_int8()
            else:
                self._make_tflite(key, precision)
        except ModelFileError as exc:  # the model's reason: noted, the other artifacts go on
            self.failed[name] = {"format": fmt, "precision": precision, "reason": str(exc)}
            if not (fmt == "tflite" and self.source.tflite_blocked):
                self.notes.append(f"{name} not produced: {exc}")
        except InternalFailure as exc:
            raise InternalFailure(f"{name} could not be made: {exc}") from None
        except SpinalError:
            raise
        except Exception as exc:  # not the model's fault: never a bundle that silently lacks an artifact
            raise InternalFailure(f"{name} could not be made: internal error ({describe(exc)})") from None

    def _gate(self, key: str, attempts: list[tuple[str, Callable[[], tuple[Path, tuple, tuple]]]],
              more: Callable[[], list[tuple[str, Callable[[], tuple[Path, tuple, tuple]]]]] | None) -> None:
        """Try configurations in turn until one passes the gate; report every attempt."""
        tried: list[dict[str, Any]] = []
        best: tuple[float, Any] | None = None
        queue = list(attempts)
        extended = False
        while queue:
            label, make = queue.pop(0)
            try:
                path, ins, outs = make()
            except ModelFileError as exc:
                tried.append({"config": label, "drop": float("nan"), "error": str(exc)})
                continue
            metrics, runner = self._evaluate(path, FORMATS[key][0], ins, outs)
            tried.append({"config": label, "drop": metrics.drop})
            if best is None or metrics.drop < best[0]:
                best = (metrics.drop, (label, path, ins, outs, metrics, runner))
            if metrics.drop <= self.opts.max_drop:
                break
            if not queue and more is not None and not extended and self.opts.remedies:
                extended = True
                try:
                    queue.extend(more())
                except Exception as exc:  # the debugger is best effort, but not for our own failures
                    if is_internal(exc):
                        raise
                    self.notes.append(f"{FORMATS[key][2]}: sensitivity analysis failed ({type(exc).__name__}: {exc})")
        if best is None:
            errors = "; ".join(dict.fromkeys(t.get("error", "") for t in tried))
            raise ModelFileError(errors or "quantization failed")
        label, path, ins, outs, metrics, runner = best[1]
        for t in tried:
            t["chosen"] = t["config"] == label
        self._record(key, path, ins, outs, metrics, runner, {"quantization": label,
                                                             "attempts": tried if len(tried) > 1 else []})

    def _make_onnx_int8(self) -> None:
        from toolchain.quantize import QuantConfig, quantize_onnx, sensitive_nodes

        fp32 = self.source.onnx_path
        if self.opts.keep_float:
            nodes = _node_names(fp32)
            unknown = [n for n in self.opts.keep_float if n not in nodes]
            if unknown:
                have = (f"nodes: {', '.join(sorted(nodes)[:8])}{' ...' if len(nodes) > 8 else ''}" if nodes
                        else "its nodes have no names")
                raise BadInput(f"--keep-float: no node named {unknown[0]!r} in the model ({have})")
        quantizable = _quantizable_ops(fp32)
        if not quantizable:
            raise ModelFileError(f"no operator onnxruntime can quantize (ops: {_op_summary(fp32)}); "
                                 "model.fp32.onnx is the ONNX artifact to use")
        base = QuantConfig(per_channel=self.opts.per_channel, method=self.opts.calibration_method,
                           keep_float=self.opts.keep_float)
        counter = iter(range(1000))

        def attempt(cfg: QuantConfig) -> tuple[str, Callable[[], tuple[Path, tuple, tuple]]]:
            def make() -> tuple[Path, tuple, tuple]:
                out = self.work / f"int8-{next(counter)}.onnx"
                result = quantize_onnx(fp32, out, self.inputs, self.calib, cfg, self.work)
                if result.quantized_nodes == 0:
                    raise ModelFileError("onnxruntime found no node it can quantize (ops: "
                                         f"{_op_summary(fp32)}); the fp32 artifact is the one to use")
                if result.float_nodes and not cfg.keep_float:
                    self.notes.append(f"model.int8.onnx: kept in float by onnxruntime: "
                                      f"{', '.join(result.float_nodes[:6])}")
                return out, *self._onnx_tensors()
            return cfg.label(), make

        remedies = [base]
        if self.opts.remedies:
            remedies.append(base.with_(per_channel=not base.per_channel))
            for method in ("entropy", "percentile", "minmax"):
                if method != base.method:
                    remedies.append(base.with_(method=method))

        def sensitive() -> list[tuple[str, Callable[[], tuple[Path, tuple, tuple]]]]:
            probe = self.work / "int8-probe.onnx"
            quantize_onnx(fp32, probe, self.inputs, self.calib, base, self.work)
            ranked = sensitive_nodes(fp32, probe, self.inputs, self.calib, self.work)
            return [attempt(base.with_(keep_float=tuple(ranked[:k]))) for k in (1, 2, 4, 8) if k <= len(ranked)]

        self._gate("onnx-int8", [attempt(c) for c in remedies], sensitive)

    def _saved_model(self) -> Any:
        if getattr(self, "_sm_error", None) is not None:  # onnx2tf failed once: it fails the same for every format
            raise ModelFileError(str(self._sm_error))
        if getattr(self, "_sm", None) is None:
            from toolchain.tflite import keras_saved_model, onnx_to_saved_model

            if self.source.tflite_blocked:
                raise ModelFileError(self.source.tflite_blocked)
            try:
                if self.source.saved_model is not None:
                    self._sm = keras_saved_model(self.source.saved_model, self.inputs, self.outputs)
                else:
                    self._sm = onnx_to_saved_model(self.source.onnx_path, self.work, self.inputs, self.outputs)
            except ModelFileError as exc:
                self._sm_error = exc
                raise
        return self._sm

    def _make_tflite(self, key: str, precision: str) -> None:
        import hashlib

        from toolchain.tflite import TfliteOptions, convert_saved_model, describe_tflite, sensitive_tf_nodes

        sm = self._saved_model()
        counter = iter(range(1000))
        made: dict[str, str] = {}  # sha256 of a file made -> the attempt that made it
        seen: set[Any] = set()  # configurations already queued
        by_label: dict[str, Any] = {}

        def attempt(options: TfliteOptions, label: str) -> tuple[str, Callable[[], tuple[Path, tuple, tuple]]]:
            by_label[label] = options

            def make() -> tuple[Path, tuple, tuple]:
                content = convert_saved_model(sm, precision, self.inputs, self.calib, options)
                digest = hashlib.sha256(content).hexdigest()
                if digest in made:  # e.g. a denylist that changed nothing: the same file is not judged twice
                    raise ModelFileError(f"made the same file as {made[digest]!r} (not evaluated again)")
                made[digest] = label
                out = self.work / f"{key}-{next(counter)}.tflite"
                out.write_bytes(content)
                ins, outs = describe_tflite(content, sm, self.inputs, self.outputs, self.layouts)
                return out, ins, outs
            return label, make

        def unique(items: list[tuple[TfliteOptions, str]]) -> list[tuple[str, Callable[[], tuple[Path, tuple,
                                                                                                  tuple]]]]:
            out = []
            for options, label in items:
                config = TfliteOptions(per_channel=options.per_channel,
                                       denylist=tuple(sorted(set(options.denylist))))
                if config not in seen:
                    seen.add(config)
                    out.append(attempt(options, label))
            return out

        if precision in ("fp32", "fp16"):
            _, make = attempt(TfliteOptions(), precision)
            path, ins, outs = make()
            metrics, runner = self._evaluate(path, "tflite", ins, outs)
            self._record(key, path, ins, outs, metrics, runner, {})
            return
        chosen = getattr(self, "_tflite_int8_choice", None)
        if precision == "int8-io" and chosen is not None:  # the same kernels as int8: its search decided already
            options, label = chosen
            self._gate(key, [attempt(options, f"{label} (chosen for model.int8.tflite)")], None)
            return
        base = TfliteOptions(per_channel=self.opts.per_channel)
        items = [(base, "per-channel" if base.per_channel else "per-tensor")]
        if self.opts.remedies:
            items.append((TfliteOptions(per_channel=not base.per_channel),
                          "per-tensor" if base.per_channel else "per-channel"))

        def sensitive() -> list[tuple[str, Callable[[], tuple[Path, tuple, tuple]]]]:
            if getattr(self, "_tf_ranked", None) is None:  # one debugger run serves int8 and int8-io
                self._tf_ranked = list(dict.fromkeys(sensitive_tf_nodes(sm, self.inputs, self.calib)))
            ranked = self._tf_ranked
            return unique([(TfliteOptions(per_channel=base.per_channel, denylist=tuple(ranked[:k])),
                            f"{'per-channel' if base.per_channel else 'per-tensor'}, {k} node(s) kept in float "
                            f"({', '.join(ranked[:k])})") for k in (1, 2, 4) if k <= len(ranked)])

        self._gate(key, unique(items), sensitive)
        name = FORMATS[key][2]
        entry = self.shipped[key]["entry"] if key in self.shipped else self.rejected.get(name, {})
        label = entry.get("quantization")
        if precision == "int8" and label in by_label:
            self._tflite_int8_choice = (by_label[label], label)

    # ---- bundle

    def _specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        opts = self.opts
        norm = Normalization(mean=opts.norm_mean, std=opts.norm_std) if opts.norm_mean else None
        ins = []
        for i, s in enumerate(self.inputs):
            first = i == 0
            if first and self.sensor_spec is not None:
                ins.append(self.sensor_spec)
                continue
            ins.append(TensorSpec(
                name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name),
                channels=opts.channels if first else (), sample_rate_hz=opts.sample_rate_hz if first else None,
                window=opts.window if first else None, hop=opts.hop if first else None,
                normalization=norm if first else None, units=opts.channel_units if first else (),
            ))
        outs = tuple(TensorSpec(name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name),
                                units=opts.units if s.name == self.task_output else ()) for s in self.outputs)
        return tuple(ins), outs

    def _task(self) -> Task:
        opts = self.opts
        out = next(o for o in self.outputs if o.name == self.task_output)
        kind = opts.task or self._guess_task(out)
        if kind == "features":
            return Task(kind="features", output=out.name)
        if kind == "classification":
            labels = opts.labels or self.label_names
            classes = out.shape[-1] if out.shape else 1
            if not labels:
                labels = tuple(str(i) for i in range(classes))
                self.notes.append("no --labels given: class ids stand in for class names")
            elif len(labels) != classes:
                raise BadInput(f"--labels gives {len(labels)} names but output {out.name!r} has {classes} classes")
            activation = opts.activation or self._guess_activation()
            return Task(kind="classification", output=out.name, labels=labels, activation=activation)
        size = int(np.prod(out.shape))
        if kind == "regression":
            if opts.targets and len(opts.targets) != size:
                raise BadInput(f"--targets gives {len(opts.targets)} names but output {out.name!r} holds {size} "
                               "value(s)")
            if opts.units and len(opts.units) not in (1, size):
                raise BadInput(f"--units gives {len(opts.units)} units but output {out.name!r} holds {size} "
                               f"value(s) (give 1 or {size})")
            return Task(kind="regression", output=out.name, targets=opts.targets, units=opts.units)
        if kind == "score":
            if size != 1:
                raise BadInput(f"--task score needs an output with one score, but {out.name!r} has shape "
                               f"{list(out.shape)}; pick it with --task-output")
            return Task(kind="score", output=out.name, threshold=opts.threshold, score=out.name)
        if opts.threshold is None:
            raise BadInput("--task anomaly needs --threshold")
        if size != 1:
            raise BadInput(f"--task anomaly needs an output with one score, but {out.name!r} has shape "
                           f"{list(out.shape)}; pick it with --task-output")
        return Task(kind="anomaly", output=out.name, threshold=opts.threshold, score=out.name)

    def _guess_task(self, out: Any) -> str:
        """The task when ``--task`` is not given, guessed conservatively and said in a note.

        Labels (given or in the validation data) mean classification, targets regression, a threshold
        anomaly. Otherwise the reference outputs decide: one value in [0, 1] is a ``score``, one other
        value ``regression``; several values are ``classification`` only when they are probabilities
        (each row in [0, 1], summing to 1): a mel extractor or an embedding is ``features``, not a
        32- or 96-class classifier.
        """
        opts = self.opts
        if opts.labels or self.val.labels is not None:
            return "classification"
        if opts.targets or self.val.targets is not None:
            return "regression"
        if opts.threshold is not None:
            return "anomaly"
        values = self.ref[out.name].reshape(self.val.count, -1).astype(np.float64)
        in_unit = bool(np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6))
        if values.shape[1] == 1:
            kind = "score" if in_unit else "regression"
        elif in_unit and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
            kind = "classification"
        else:
            kind = "features"
        self.notes.append(f"task guessed from the outputs: {kind} on {out.name!r} (say --task "
                          f"{'|'.join(TASKS)} to override)")
        return kind

    def _guess_activation(self) -> str:
        values = self.ref[self.task_output].reshape(self.val.count, -1).astype(np.float64)
        probs = bool(np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6)
                     and np.allclose(values.sum(axis=1), 1.0, atol=1e-3))
        return "probabilities" if probs else "logits"

    def _golden_feeds(self, gold: DataSet, specs: tuple[TensorSpec, ...]) -> tuple[list[dict[str, np.ndarray]],
                                                                                 dict[str, np.ndarray]]:
        """The golden feeds and the arrays that store them.

        Where an input is a sensor window, the raw window (``window/<name>``) is stored too and the
        feed is the device pipeline's own preparation of it, so parity on the device also proves
        the manifest's normalization and layout.
        """
        feeds = [gold.sample(i, self.inputs) for i in range(gold.count)]
        arrays: dict[str, np.ndarray] = {}
        for spec in specs:
            if spec.preprocessing or (spec.window is not None and gold.raw is not None and spec.name == specs[0].name):
                # the raw windows as read from the recording (a chain cannot be inverted)
                if gold.raw is None:
                    raise BadInput(f"input {spec.name!r}: a preprocessing chain needs raw recordings as --calibration")
                plan = InputPlan.for_input(spec)
                windows = [np.asarray(w, dtype=np.float64) for w in gold.raw]
                for feed, window in zip(feeds, windows, strict=True):
                    feed[spec.name] = plan.prepare(window).reshape(feed[spec.name].shape)
                arrays[f"window/{spec.name}"] = np.stack(windows)
            elif spec.window is not None:
                plan = InputPlan.for_input(spec)
                windows = [plan.unprepare(feed[spec.name]) for feed in feeds]
                for feed, window in zip(feeds, windows, strict=True):
                    feed[spec.name] = plan.prepare(window).reshape(feed[spec.name].shape)
                arrays[f"window/{spec.name}"] = np.stack(windows)
            arrays[f"input/{spec.name}"] = np.stack([feed[spec.name] for feed in feeds])
        return feeds, arrays

    def _bound(self, file_name: str, fmt: str, precision: str, rec: dict[str, Any],
               feeds: list[dict[str, np.ndarray]], outs: list[dict[str, np.ndarray]]) -> Tolerance:
        """The parity bound of one shipped artifact (toolchain.bounds), with what was measured in the report."""
        model = rec["runner"].model
        spread, skipped = measure_spread(self.stage / file_name, fmt, model, feeds, outs)
        rounding: dict[str, float] = {}
        if precision.startswith("int8") and "onnx-int8" in self.shipped:
            if self._rounding is None:
                qdq = self.shipped["onnx-int8"]["runner"].model
                self._rounding = rounding_movement(self.stage / FORMATS["onnx-int8"][2], qdq, feeds)[0]
            rounding = self._rounding
        tol = derive_tolerance(precision, outs, spread, rounding, model.output_steps())
        rec["entry"]["parity"] = {"bound": tol.atol, "spread": tol.spread, "rounding": tol.rounding,
                                  "kernel_paths_skipped": skipped}
        return tol

    def _bundle(self, elapsed_before: float) -> ConvertResult:
        opts = self.opts
        name = opts.name or _default_name(opts.model)
        inputs, outputs = self._specs()
        task = self._task()
        artifacts: list[Artifact] = []
        gold = self.val.take(min(self.opts.golden_count, self.val.count))
        feeds, golden_arrays = self._golden_feeds(gold, inputs)
        tolerances: dict[str, Tolerance] = {}
        report_artifacts: dict[str, Any] = {}
        for key in FORMATS:
            if key not in self.shipped:
                continue
            fmt, precision, file_name = FORMATS[key]
            rec = self.shipped[key]
            if fmt == "onnx":  # same tensors as the logical ones; layouts may have been settled since
                rec["ins"], rec["outs"] = self._onnx_tensors()
            sha, size = file_digest(self.stage / file_name)
            artifacts.append(Artifact(path=file_name, format=fmt, precision=precision, sha256=sha, bytes=size,
                                      inputs=rec["ins"], outputs=rec["outs"]))
            outs = [rec["runner"](feed) for feed in feeds]
            for out_name in outs[0]:
                golden_arrays[f"output/{file_name}/{out_name}"] = np.stack([o[out_name] for o in outs])
            tolerances[file_name] = self._bound(file_name, fmt, precision, rec, feeds, outs)
            report_artifacts[file_name] = rec["entry"]
        from toolchain.sizes import size_regressions

        self.notes += size_regressions(report_artifacts)
        golden_path = self.stage / "golden.npz"
        np.savez_compressed(golden_path, **golden_arrays)
        gsha, gsize = file_digest(golden_path)
        elapsed = elapsed_before
        report: dict[str, Any] = {
            "name": name,
            "source": {"model": opts.model, "kind": self.source.kind, "parity_vs_fp32_onnx": self.source_parity},
            "calibration": {**self.calib.summary(), "method": opts.calibration_method},
            "validation": self.val.summary(),
            "metric": self.baseline.kind,
            "max_drop": opts.max_drop,
            "drop_meaning": DROP_MEANING[self.baseline.kind],
            "artifacts": report_artifacts,
            "rejected": self.rejected,
            "failed": self.failed,
            "timings_s": self.timings,
            "conversion_seconds": round(elapsed, 2),
            "notes": list(dict.fromkeys(self.notes)),
        }
        report = report_mod.clean(report)
        (self.stage / "report.json").write_text(report_mod.to_json(report), encoding="utf-8")
        (self.stage / "report.md").write_text(report_mod.markdown(report), encoding="utf-8")
        attachments = []
        for att in ("report.md", "report.json"):
            sha, size = file_digest(self.stage / att)
            attachments.append(Attachment(path=att, sha256=sha, bytes=size))
        notes = list(self.notes)
        if self.source.tflite_blocked:
            notes.append(f"no TFLite artifacts: {self.source.tflite_blocked}")
        manifest = Manifest(
            format_version=1, name=name,
            created=datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            inputs=inputs, outputs=outputs, task=task, artifacts=tuple(artifacts),
            golden=Golden(path="golden.npz", sha256=gsha, bytes=gsize, count=gold.count, tolerances=tolerances),
            report=report, attachments=tuple(attachments), description=opts.description,
            producer={"tool": "spinal convert", "version": __version__, **_versions()},
            notes=tuple(dict.fromkeys(notes)),
        )
        try:
            write_manifest(self.stage, manifest)
        except BundleError as exc:  # an option the checks above let through: name the key, not the temp dir
            detail = str(exc).split("(being written): ", 1)[-1]
            raise BadInput(f"the options make an invalid manifest: {detail}") from None
        verify_directory(self.stage)
        out = opts.out
        if out.suffix == ARCHIVE_SUFFIX:
            tmp_out = self.work / out.name
            pack_archive(self.stage, tmp_out)
            if out.exists() and out.is_dir():
                shutil.rmtree(out)
            tmp_out.replace(out)
        else:
            if out.is_dir():
                out.replace(self.work / "old-bundle")  # removed with the work directory
            elif out.exists():
                out.unlink()
            self.stage.replace(out)
        return ConvertResult(out=out, manifest=manifest, report=report)


def _unknown_ops(path: Path) -> str:
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


def _default_name(model: str) -> str:
    import re

    # pkg.mod:factory is named after its module ("mod"), not the factory every module may call "build"
    stem = model.split(":")[0].split(".")[-1] if ":" in model and not Path(model).exists() else Path(model).stem
    name = re.sub(r"[^A-Za-z0-9._-]", "-", stem).strip("-.") or "model"
    return name[:128]


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("onnx", "onnxruntime", "tensorflow", "onnx2tf", "torch"):
        import sys

        if mod in sys.modules:
            out[mod] = str(getattr(sys.modules[mod], "__version__", "?"))
    return out
