"""The ``spinal`` command line.

Exit codes everywhere: 0 ok, 1 a check failed, 2 bad input or usage. Host-only commands
import ``toolchain`` lazily and explain how to install the ``host`` extra when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from device import __version__, cli_bench, cli_record, cli_run, cli_sensors, cli_signing
from device.bundle import Bundle, is_bundle_path, open_bundle
from device.cli_common import console, print_json, reports_errors, require_host
from device.cli_convert import RichProgress, csv_list, float_list, parse_preprocess, parse_shapes
from device.dsp import describe
from device.errors import BadInput
from device.modelfile import ModelInfo, check_model_file, inspect_model_file, probe_tflite_files
from device.signing import load_public_key

app = typer.Typer(
    name="spinal",
    help="Spinal: quantize and verify models on the workstation, run them next to the sensors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

PathArg = Annotated[Path, typer.Argument(help="A bundle (directory or .spinal archive), or a .onnx/.tflite file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _version(value: bool) -> None:
    if value:
        console.print(f"spinal {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Spinal: quantize and verify models on the workstation, run them next to the sensors."""


# --------------------------------------------------------------------------------------------
# inspect


def _model_info_dict(info: ModelInfo) -> dict[str, Any]:
    return {
        "path": info.path, "format": info.format, "bytes": info.bytes, "sha256": info.sha256,
        "quantized": info.quantized, "precision": info.precision,
        "inputs": [vars(t) for t in info.inputs], "outputs": [vars(t) for t in info.outputs],
        "ops": info.ops, "details": info.details,
    }


def _tensor_table(title: str, info: ModelInfo) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("", "name", "shape", "dtype", "quantization"):
        table.add_column(col)
    for kind, tensors in (("in", info.inputs), ("out", info.outputs)):
        for t in tensors:
            q = t.quantization
            quant = ""
            if q:
                quant = (f"scale={q['scale'][0]:.6g} zp={q['zero_point'][0]}" if len(q["scale"]) == 1
                         else f"per-channel ({len(q['scale'])}) axis={q['axis']}")
            table.add_row(kind, t.name, str(t.shape), t.dtype, quant)
    return table


def _ops_line(ops: dict[str, int]) -> str:
    total = sum(ops.values())
    shown = ", ".join(f"{name}×{count}" for name, count in list(ops.items())[:12])
    more = f", … {len(ops) - 12} more kinds" if len(ops) > 12 else ""
    return f"{total} ops: {shown}{more}" if ops else "ops: unknown"


def _print_model(info: ModelInfo) -> None:
    console.print(f"[bold]{info.path}[/]  {info.format}, {info.bytes:,} bytes, sha256 {info.sha256[:16]}…, "
                  f"precision {info.precision}{' (quantized)' if info.quantized else ''}")
    console.print(_tensor_table("tensors", info))
    console.print(_ops_line(info.ops))
    if info.details:
        console.print(", ".join(f"{k}: {v}" for k, v in info.details.items() if v not in (None, "", [], {})))


def _bundle_dict(bundle: Bundle, models: dict[str, ModelInfo]) -> dict[str, Any]:
    data = bundle.manifest.to_dict()
    data["source"] = str(bundle.source)
    data["models"] = {path: _model_info_dict(info) for path, info in models.items()}
    return data


def _headline(metrics: dict[str, Any]) -> str:
    """The report's figure for an artifact (its task measure, or its fidelity to fp32) and its drop."""
    keys = next(([k] for k in ("accuracy", "mae", "roc_auc") if k in metrics), ["cosine", "rel_rms"])
    shown = [f"{k}={metrics[k]:.4g}" for k in (*keys, "drop") if isinstance(metrics.get(k), int | float)]
    return ", ".join(shown)


def _print_bundle(bundle: Bundle, models: dict[str, ModelInfo]) -> None:
    m = bundle.manifest
    console.print(f"[bold]{m.name}[/]  bundle format {m.format_version}, created {m.created}"
                  f"{'  (' + m.description + ')' if m.description else ''}")
    io_table = Table(title="logical inputs and outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "layout", "channels", "rate / window / hop"):
        io_table.add_column(col)
    for kind, specs in (("in", m.inputs), ("out", m.outputs)):
        for s in specs:
            timing = ""
            if s.sample_rate_hz or s.window:
                timing = f"{s.sample_rate_hz or '-'} Hz / {s.window or '-'} / {s.hop or '-'}"
            io_table.add_row(kind, s.name, str(list(s.shape)), s.dtype, s.layout or "",
                             ", ".join(s.channels), timing)
    console.print(io_table)
    for s in m.inputs:
        if s.preprocessing:
            console.print(f"preprocessing of {s.name!r} (per window, device/dsp.py): {describe(s.preprocessing)}")
        if s.normalization is not None:
            console.print(f"normalization of {s.name!r}: mean {list(s.normalization.mean)}, "
                          f"std {list(s.normalization.std)}")
    task = m.task
    meaning = {
        "classification": f"classes: {', '.join(task.labels)} ({task.activation or 'scores'})",
        "regression": f"targets: {', '.join(task.targets)} [{', '.join(task.units)}]",
        "anomaly": f"anomaly score ({task.score or 'score'}), threshold {task.threshold}",
        "score": f"score ({task.score or 'score'})"
                 f"{', threshold ' + str(task.threshold) if task.threshold is not None else ''}",
        "features": "a feature vector (no decision on the device)",
    }.get(task.kind, "")
    console.print(f"task: {task.kind} on output {task.output!r}; {meaning}")
    art_table = Table(title="artifacts", title_justify="left")
    for col in ("path", "format", "precision", "bytes", "input dtype", "ops", "metrics", "parity bound"):
        art_table.add_column(col)
    for art in m.artifacts:
        info = models.get(art.path)
        metrics = m.report.get("artifacts", {}).get(art.path, {}) if isinstance(m.report, dict) else {}
        tol = m.golden.tolerances.get(art.path) if m.golden else None
        art_table.add_row(
            art.path, art.format, art.precision, f"{art.bytes:,}",
            ", ".join(t.dtype for t in art.inputs) or "",
            str(sum(info.ops.values())) if info else "?",
            _headline(metrics),
            f"{max([tol.atol, *tol.outputs.values()]):.3g}" if tol else "",
        )
    console.print(art_table)
    if m.golden:
        derived = any(t.basis for t in m.golden.tolerances.values())
        how = "; bounds derived from measured kernel spread and int8 rounding (--json: basis)" if derived else ""
        console.print(f"golden: {m.golden.count} vectors in {m.golden.path}{how}")
    for note in m.notes:
        console.print(f"note: {note}")


def _inspect_artifacts(bundle: Bundle) -> dict[str, ModelInfo]:
    """Every artifact's summary; the TFLite ones are read in one child process (see probe_tflite_files)."""
    tflite = [a.path for a in bundle.manifest.artifacts if a.format == "tflite"]
    for rel in tflite:
        check_model_file(bundle.path_of(rel), expected="tflite")
    infos = dict(zip(tflite, probe_tflite_files([bundle.path_of(p) for p in tflite]), strict=True))
    return {a.path: infos[a.path] if a.path in infos else inspect_model_file(bundle.path_of(a.path))
            for a in bundle.manifest.artifacts}


@app.command()
@reports_errors
def inspect(path: PathArg, json_out: JsonOpt = False) -> None:
    """Show what a bundle or model file holds: inputs, outputs, dtypes, shapes, quantization, ops, size."""
    if is_bundle_path(path):
        with open_bundle(path) as bundle:
            models = _inspect_artifacts(bundle)
            if json_out:
                print_json(_bundle_dict(bundle, models))
            else:
                _print_bundle(bundle, models)
        return
    info = inspect_model_file(path)
    if json_out:
        print_json(_model_info_dict(info))
    else:
        _print_model(info)


# --------------------------------------------------------------------------------------------
# verify


@app.command()
@reports_errors
def verify(
    path: PathArg,
    json_out: JsonOpt = False,
    runtime: Annotated[str, typer.Option(help="all (every runtime here), litert, tflite-runtime, onnxruntime")] = "all",
    delegate: Annotated[str | None, typer.Option(help="Verify on this delegate/provider (edgetpu, gpu, cuda, "
                                                      "a library path...); a fallback fails the check.")] = None,
    trusted_key: Annotated[list[Path] | None, typer.Option(
        "--trusted-key", help="A trusted public key (PREFIX.pub); repeat for several. A present signature must "
                              "be valid.")] = None,
    require_signature: Annotated[bool, typer.Option(
        "--require-signature", help="Refuse a bundle that is not signed by a trusted key.")] = False,
    input_shape: Annotated[list[str] | None, typer.Option(
        "--input-shape", help="A plain file's input shape, NAME=1,3,224,224 (repeat per input): the size of its "
                              "dynamic axes (default 1).")] = None,
) -> None:
    """Check a bundle's integrity (every file's size and sha256) and golden parity per artifact and runtime.

    A plain model file is checked, loaded and run once on random inputs. Exit 0 when everything checks
    out, 1 when outputs do not match the golden vectors (max error and tolerance shown), 2 when the
    bundle or file is corrupt or tampered with.
    """
    from device.runtime.checks import bundle_parity, file_smoke, parse_input_shapes

    checks: list[dict[str, Any]] = []
    shapes = parse_input_shapes(input_shape)
    if shapes and is_bundle_path(path):
        raise BadInput(f"{path}: --input-shape is for plain model files; a bundle's shapes are in its manifest")
    if is_bundle_path(path):
        trusted = [load_public_key(p) for p in trusted_key or []]
        with open_bundle(path, trusted_keys=trusted, require_signature=require_signature) as bundle:
            checks.append({"check": "manifest", "ok": True, "detail": f"format {bundle.manifest.format_version}"})
            if bundle.signed_by is not None:
                checks.append({"check": "signature", "ok": True,
                               "detail": f"signed by key {bundle.signed_by.key_id} ({bundle.signed_by.source})"})
            for key, rel, sha256, size in bundle.manifest.files():
                checks.append({"check": f"{key} {rel}", "ok": True, "detail": f"{size} bytes, sha256 {sha256[:12]}…"})
            for rel, info in _inspect_artifacts(bundle).items():
                checks.append({"check": f"loads {rel}", "ok": True,
                               "detail": f"{info.format}, {sum(info.ops.values())} ops"})
            checks += bundle_parity(bundle, runtime, delegate)
        kind = "bundle"
    else:
        info = inspect_model_file(path)
        checks.append({"check": "model file", "ok": True, "detail": f"{info.format}, {info.bytes} bytes"})
        checks += file_smoke(path, runtime, delegate, input_shapes=shapes)
        kind = "model"
    ok = all(c["ok"] is not False for c in checks)
    if json_out:
        print_json({"path": str(path), "kind": kind, "ok": ok, "checks": checks})
    else:
        for c in checks:
            mark = {True: "[green]ok[/]  ", False: "[red]FAIL[/]", None: "[yellow]skip[/]"}[c["ok"]]
            console.print(f"{mark} {c['check']}: {escape(c['detail'])}")
        console.print(f"{path}: {'verified' if ok else 'FAILED'}")
    if not ok:
        raise typer.Exit(1)


app.command(name="run")(cli_run.run)
app.add_typer(cli_sensors.app, name="sensors")
app.command(name="bench")(cli_bench.bench)
app.command(name="record")(cli_record.record)
app.command(name="keygen")(cli_signing.keygen)
app.command(name="sign")(cli_signing.sign)


# --------------------------------------------------------------------------------------------
# convert (host only: toolchain is imported inside the command)


@app.command()
@reports_errors
def convert(
    model: Annotated[str, typer.Argument(help="Model: .onnx, PyTorch .pt2/.pt or 'package.module:factory', Keras "
                                              ".keras/.h5/SavedModel dir, scikit-learn .joblib/.pkl.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Bundle directory, or NAME.spinal for one archive.")],
    formats: Annotated[str | None, typer.Option(help="Comma list of onnx-fp32, onnx-int8, tflite-fp32, "
                                                     "tflite-fp16, tflite-int8, tflite-int8-io (default: all)")] = None,
    input_shape: Annotated[list[str] | None, typer.Option(help="Input shape, e.g. 1,3,64 or NAME=1,3,64 "
                                                               "(repeat per input); fixes dynamic axes.")] = None,
    input_name: Annotated[str | None, typer.Option(help="Comma list of input names to give the model.")] = None,
    output_name: Annotated[str | None, typer.Option(help="Comma list of output names to give the model.")] = None,
    calibration: Annotated[Path | None, typer.Option(help=".npz keyed by input name, .npy, or .csv of sensor "
                                                          "readings.")] = None,
    calibration_method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    calibration_samples: Annotated[int, typer.Option(help="Use at most this many calibration samples.")] = 200,
    validation: Annotated[Path | None, typer.Option(help=".npz keyed by input name, plus 'labels' (class ids) or "
                                                         "'targets' (regression).")] = None,
    max_validation: Annotated[int | None, typer.Option(help="Score on at most this many validation samples "
                                                             "(default: all; a cap is noted).")] = None,
    max_drop: Annotated[float, typer.Option(help="Largest loss against fp32 an artifact may show: top-1 points; "
                                                 "% of MAE; or 100×(1−cosine).")] = 1.0,
    per_tensor: Annotated[bool, typer.Option("--per-tensor", help="Start from per-tensor weights, not "
                                                                    "per-channel.")] = False,
    no_remedies: Annotated[bool, typer.Option("--no-remedies", help="Do not retry a rejected int8 artifact "
                                                                     "with other settings.")] = False,
    keep_float: Annotated[str | None, typer.Option(help="Comma list of ONNX node names to keep in float.")] = None,
    golden: Annotated[int, typer.Option(help="How many golden vectors the bundle carries.")] = 8,
    name: Annotated[str | None, typer.Option(help="Bundle name (default: the model's file name, or the module of "
                                                  "'package.module:factory').")] = None,
    description: Annotated[str, typer.Option(help="One line describing the model.")] = "",
    task: Annotated[str | None, typer.Option(help="classification, regression, anomaly, score (one value; "
                                                  "--threshold optional) or features (default: guessed).")] = None,
    task_output: Annotated[str | None, typer.Option(help="Which output the task reads (default: the first "
                                                         "float output with several values).")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma list of class names.")] = None,
    activation: Annotated[str | None, typer.Option(help="logits or probabilities (default: guessed).")] = None,
    targets: Annotated[str | None, typer.Option(help="Comma list of regression target names.")] = None,
    units: Annotated[str | None, typer.Option(help="Comma list of the targets' units.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Score or anomaly threshold (above it: a detection).")]
    = None,
    channels: Annotated[str | None, typer.Option(help="Comma list of sensor channels, e.g. "
                                                      "imu.accel_x,imu.accel_y.")] = None,
    channel_units: Annotated[str | None, typer.Option(help="Comma list of the channels' SI units, e.g. "
                                                           "m/s^2,m/s^2,m/s^2,rad/s,rad/s,rad/s.")] = None,
    sample_rate: Annotated[float | None, typer.Option(help="Sensor sample rate in Hz.")] = None,
    window: Annotated[int | None, typer.Option(help="Window length in samples.")] = None,
    hop: Annotated[int | None, typer.Option(help="Hop between windows in samples.")] = None,
    layout: Annotated[str | None, typer.Option(help="Logical layout of the first input, e.g. NCT, NTC, NCHW.")] = None,
    norm_mean: Annotated[str | None, typer.Option(help="Per-channel mean the device subtracts before the model.")]
    = None,
    norm_std: Annotated[str | None, typer.Option(help="Per-channel std the device divides by.")] = None,
    preprocess: Annotated[list[str] | None, typer.Option(help="A DSP block, e.g. highpass:cutoff_hz=0.3 (repeat, "
                                                              "in order); --calibration is then raw recordings.")]
    = None,
    preprocess_file: Annotated[Path | None, typer.Option(help="TOML file of [[preprocess]] blocks.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset for PyTorch/Keras exports.")] = 17,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert a trained model into a bundle: ONNX fp32/int8 and TFLite fp32/fp16/int8/int8-io, gated on accuracy.

    Exit 0 with the bundle written, 1 when the accuracy gate rejected everything asked for, 2 on bad input.
    """
    require_host()
    from toolchain.convert import ConvertOptions, Meaning, Output, Quantization, Source
    from toolchain.convert import convert as run_convert

    opts = ConvertOptions(
        source=Source(model=model, input_shapes=parse_shapes(input_shape), input_names=csv_list(input_name),
                      output_names=csv_list(output_name), opset=opset),
        quantization=Quantization(
            formats=csv_list(formats), calibration=calibration, calibration_method=calibration_method,
            calibration_samples=calibration_samples, validation=validation, validation_samples=max_validation,
            max_drop=max_drop, per_channel=not per_tensor, remedies=not no_remedies,
            keep_float=csv_list(keep_float)),
        meaning=Meaning(
            task=task, task_output=task_output, labels=csv_list(labels), activation=activation,
            targets=csv_list(targets), units=csv_list(units), threshold=threshold, channels=csv_list(channels),
            channel_units=csv_list(channel_units), sample_rate_hz=sample_rate, window=window, hop=hop, layout=layout,
            norm_mean=float_list(norm_mean, "--norm-mean"), norm_std=float_list(norm_std, "--norm-std"),
            preprocess=parse_preprocess(preprocess, preprocess_file)),
        output=Output(out=out, golden_count=golden, name=name, description=description, force=force),
    )
    if activation is not None and activation not in ("logits", "probabilities"):
        raise BadInput(f"--activation {activation!r}: choose logits or probabilities")
    with RichProgress(enabled=not json_out) as progress:
        result = run_convert(opts, progress)
    if json_out:
        print_json(result.report)
        return
    from toolchain.report import table

    console.print(table(result.report))
    for note in result.manifest.notes:
        console.print(f"note: {note}", soft_wrap=True)
    console.print(f"bundle written: {result.out} ({result.report.get('conversion_seconds', 0):.1f} s)")



def main() -> None:
    """Console-script entry point."""
    app(prog_name="spinal")
