"""The bundle step: golden vectors and parity bounds, the report files, the manifest, then publishing.

Everything is written into the conversion's stage directory; the bundle appears at ``--out`` (renamed into
place, or packed as a ``.spinal`` archive) only when all of it worked.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from device.bundle import ARCHIVE_SUFFIX, file_digest, pack_archive, verify_directory, write_manifest
from device.errors import BadInput, BundleError
from device.manifest import Artifact, Attachment, Golden, Manifest, TensorSpec, Tolerance
from device.pipeline import InputPlan
from toolchain import report as report_mod
from toolchain.bounds import derive_tolerance, measure_spread, rounding_movement
from toolchain.calibration import DataSet, InputSpec
from toolchain.convert_records import Basis, Conversion, Shipped
from toolchain.manifest_build import (
    BundleContents,
    Evidence,
    ReportFacts,
    build_manifest,
    build_report,
    build_task,
    tensor_specs,
)
from toolchain.options import FORMATS, default_name

Feeds = list[dict[str, np.ndarray]]


def golden_feeds(gold: DataSet, inputs: tuple[InputSpec, ...], specs: tuple[TensorSpec, ...]
                 ) -> tuple[Feeds, dict[str, np.ndarray]]:
    """The golden feeds and the arrays that store them.

    Where an input is a sensor window, the raw window (``window/<name>``) is stored too and the
    feed is the device pipeline's own preparation of it, so parity on the device also proves
    the manifest's normalization and layout.
    """
    feeds = [gold.sample(i, inputs) for i in range(gold.count)]
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


def parity_bound(c: Conversion, file_name: str, fmt: str, precision: str, rec: Shipped, feeds: Feeds,
                 outs: Feeds) -> Tolerance:
    """The parity bound of one shipped artifact (toolchain.bounds), with what was measured in the report."""
    model = rec.runner.model
    spread, skipped = measure_spread(c.stage / file_name, fmt, model, feeds, outs)
    rounding: dict[str, float] = {}
    if precision.startswith("int8") and "onnx-int8" in c.shipped:
        if c.rounding is None:
            qdq = c.shipped["onnx-int8"].runner.model
            c.rounding = rounding_movement(c.stage / FORMATS["onnx-int8"][2], qdq, feeds)[0]
        rounding = c.rounding
    tol = derive_tolerance(precision, outs, spread, rounding, model.output_steps())
    rec.entry["parity"] = {"bound": tol.atol, "spread": tol.spread, "rounding": tol.rounding,
                           "kernel_paths_skipped": skipped}
    return tol


def _artifacts(c: Conversion, b: Basis, feeds: Feeds, golden_arrays: dict[str, np.ndarray]
               ) -> tuple[list[Artifact], dict[str, Tolerance], dict[str, Any]]:
    """Each shipped artifact described, its golden outputs stored in ``golden_arrays``, its bound derived."""
    artifacts: list[Artifact] = []
    tolerances: dict[str, Tolerance] = {}
    report_artifacts: dict[str, Any] = {}
    for key in FORMATS:
        if key not in c.shipped:
            continue
        fmt, precision, file_name = FORMATS[key]
        rec = c.shipped[key]
        if fmt == "onnx":  # same tensors as the logical ones; layouts may have been settled since
            rec.ins, rec.outs = b.io.onnx_tensors()
        sha, size = file_digest(c.stage / file_name)
        artifacts.append(Artifact(path=file_name, format=fmt, precision=precision, sha256=sha, bytes=size,
                                  inputs=rec.ins, outputs=rec.outs))
        outs = [rec.runner(feed) for feed in feeds]
        for out_name in outs[0]:
            golden_arrays[f"output/{file_name}/{out_name}"] = np.stack([o[out_name] for o in outs])
        tolerances[file_name] = parity_bound(c, file_name, fmt, precision, rec, feeds, outs)
        report_artifacts[file_name] = rec.entry
    return artifacts, tolerances, report_artifacts


def _attach(stage: Path, report: dict[str, Any]) -> tuple[Attachment, ...]:
    """``report.json`` and ``report.md`` written into the stage and described."""
    (stage / "report.json").write_text(report_mod.to_json(report), encoding="utf-8")
    (stage / "report.md").write_text(report_mod.markdown(report), encoding="utf-8")
    attachments = []
    for att in ("report.md", "report.json"):
        sha, size = file_digest(stage / att)
        attachments.append(Attachment(path=att, sha256=sha, bytes=size))
    return tuple(attachments)


def bundle(c: Conversion, b: Basis, elapsed: float) -> tuple[Manifest, dict[str, Any]]:
    """Write the bundle into the stage (golden vectors, reports, manifest) and verify it."""
    opts = c.opts
    name = opts.output.name or default_name(opts.source.model)
    specs = tensor_specs(opts.meaning, b.inputs, b.outputs, b.io.layouts, b.task_output, b.data.sensor_spec)
    task, task_notes = build_task(opts.meaning, Evidence(b.outputs, b.task_output, b.ref, b.val, b.data.label_names))
    c.notes += task_notes
    gold = b.val.take(min(opts.output.golden_count, b.val.count))
    feeds, golden_arrays = golden_feeds(gold, b.inputs, specs[0])
    artifacts, tolerances, report_artifacts = _artifacts(c, b, feeds, golden_arrays)
    from toolchain.sizes import size_regressions, speed_regressions

    c.notes += size_regressions(report_artifacts) + speed_regressions(report_artifacts)
    golden_path = c.stage / "golden.npz"
    np.savez_compressed(golden_path, **golden_arrays)
    gsha, gsize = file_digest(golden_path)
    facts = ReportFacts(name=name, model=opts.source.model, source_kind=b.io.source.kind,
                        source_parity=b.source_parity,
                        calibration={**b.calib.summary(), "method": opts.quantization.calibration_method},
                        validation=b.val.summary(), metric=b.baseline.kind, max_drop=opts.quantization.max_drop)
    report = build_report(facts, report_artifacts, c.rejected, c.failed, c.timings, elapsed, c.notes)
    # Where the latency_us above were measured: a device of the same CPU family confirms the winner cheaply.
    from device.runtime.autotune import RECORD_KEY, converter_record

    report = report_mod.clean({**report, RECORD_KEY: converter_record()})
    contents = BundleContents(artifacts=tuple(artifacts), attachments=_attach(c.stage, report), golden=Golden(
        path="golden.npz", sha256=gsha, bytes=gsize, count=gold.count, tolerances=tolerances))
    notes = list(c.notes)
    if b.io.source.tflite_blocked:
        notes.append(f"no TFLite artifacts: {b.io.source.tflite_blocked}")
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    manifest = build_manifest(name, created, specs, task, contents, report, opts.output.description, notes,
                              _versions())
    try:
        write_manifest(c.stage, manifest)
    except BundleError as exc:  # an option the checks let through: name the key, not the temp dir
        detail = str(exc).split("(being written): ", 1)[-1]
        raise BadInput(f"the options make an invalid manifest: {detail}") from None
    verify_directory(c.stage)
    return manifest, report


def publish(stage: Path, out: Path, work: Path) -> None:
    """Put the verified ``stage`` at ``out`` in one rename (a directory) or pack it (a ``.spinal`` archive);
    whatever was at ``out`` is replaced only then."""
    if out.suffix == ARCHIVE_SUFFIX:
        tmp_out = work / out.name
        pack_archive(stage, tmp_out)
        if out.exists() and out.is_dir():
            shutil.rmtree(out)
        tmp_out.replace(out)
        return
    if out.is_dir():
        out.replace(work / "old-bundle")  # removed with the work directory
    elif out.exists():
        out.unlink()
    stage.replace(out)


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for mod in ("onnx", "onnxruntime", "tensorflow", "onnx2tf", "torch"):
        if mod in sys.modules:
            out[mod] = str(getattr(sys.modules[mod], "__version__", "?"))
    return out
