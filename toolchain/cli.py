"""``spinal convert``: the converter's command, added to ``spinal`` through the ``spinal.commands`` entry point.

This module imports only typer and the device's CLI helpers at its top, so that ``spinal --help`` stays fast and
a device without the ``host`` extra still lists the command: the command checks the converter stack with
:func:`require_host` (one line on how to install it, exit 2) before it imports the converter.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from device.cli.common import console, print_json, reports_errors, require_host, rich_console
from device.errors import BadInput

if TYPE_CHECKING:
    from toolchain.convert import Progress


class CalibrationMethod(StrEnum):
    """How int8 ranges are calibrated (toolchain/quantize.py)."""

    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


class Task(StrEnum):
    """The manifest's task kinds (device.manifest.TASK_KINDS; tests/test_cli_commands.py checks they agree)."""

    classification = "classification"
    regression = "regression"
    anomaly = "anomaly"
    score = "score"
    features = "features"


class Activation(StrEnum):
    """What a classifier emits (the manifest's ``task.activation``)."""

    logits = "logits"
    probabilities = "probabilities"


def csv_list(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()


def float_list(text: str | None, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in csv_list(text))
    except ValueError:
        raise BadInput(f"{option}: expected comma-separated numbers, got {text!r}") from None


def parse_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape NAME=1,3,64`` (or ``NAME:1,3,64``, or bare dims for a one-input model; repeatable)
    → {name or "": shape}: the same parser ``verify`` and ``bench`` use."""
    from device.runtime.checks import parse_input_shapes

    return parse_input_shapes(values)


def parse_preprocess(values: list[str] | None, file: Any = None) -> tuple[dict[str, Any], ...]:
    """``--preprocess "highpass:cutoff_hz=0.3"`` (repeatable, in order) or ``--preprocess-file chain.toml``
    (``[[preprocess]]`` tables: ``block = "highpass"``, ``cutoff_hz = 0.3``) as the manifest's block objects."""
    from device.dsp import ChainError, parse_block, parse_block_text

    if values and file is not None:
        raise BadInput("give the chain with --preprocess or --preprocess-file, not both")
    if file is not None:
        import tomllib

        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise BadInput(f"--preprocess-file {file}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"--preprocess-file {file}: invalid TOML: {exc}") from None
        items = data.get("preprocess")
        unknown = sorted(set(data) - {"preprocess"})
        if unknown or not isinstance(items, list):
            raise BadInput(f"--preprocess-file {file}: expected [[preprocess]] tables (block = \"highpass\", ...)"
                           + (f"; unknown key {unknown[0]!r}" if unknown else ""))
        blocks = []
        for i, item in enumerate(items):
            try:
                parse_block(item)
            except ChainError as exc:
                raise BadInput(f"--preprocess-file {file}: {exc.where(f'preprocess[{i}]')}") from None
            blocks.append(dict(item))
        return tuple(blocks)
    out = []
    for i, text in enumerate(values or []):
        try:
            obj = parse_block_text(text)
            parse_block(obj)
        except ChainError as exc:
            raise BadInput(f"--preprocess {text!r}: {exc.where(f'block {i + 1}').split(': ', 1)[-1]}") from None
        out.append(obj)
    return tuple(out)


class RichProgress:
    """A rich progress bar fed by the pipeline's steps (on stderr, so --json stays clean)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                 console=rich_console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task("converting", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def start(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def step(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)


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
    calibration_method: Annotated[CalibrationMethod, typer.Option(help="How int8 ranges are calibrated.")] = (
        CalibrationMethod.minmax),
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
    gate_measure: Annotated[str | None, typer.Option(help="Judge the gate on the task: map-iou:THRESHOLD "
                                                          "(probability maps), ctc[:BLANK] (CTC sequences) or "
                                                          "detections[:THRESHOLD] (rare-event scores); "
                                                          "drop = 100 − agreement with fp32.")] = None,
    golden: Annotated[int, typer.Option(help="How many golden vectors the bundle carries.")] = 8,
    name: Annotated[str | None, typer.Option(help="Bundle name (default: the model's file name, or the module of "
                                                  "'package.module:factory').")] = None,
    description: Annotated[str, typer.Option(help="One line describing the model.")] = "",
    task: Annotated[Task | None, typer.Option(help="What the output means (score: one value, --threshold "
                                                  "optional; default: guessed).")] = None,
    task_output: Annotated[str | None, typer.Option(help="Which output the task reads (default: the first "
                                                         "float output with several values).")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma list of class names.")] = None,
    activation: Annotated[Activation | None, typer.Option(help="What a classifier emits (default: guessed).")] = None,
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
    args = dict(locals())  # the parsed options, as convert_options reads them
    require_host()
    from toolchain.convert import convert as run_convert

    opts = convert_options(args)
    with RichProgress(enabled=not json_out) as progress:
        result = run_convert(opts, cast("Progress", progress))
    if json_out:
        print_json(result.report)
        return
    from toolchain.report import table

    console.print(table(result.report))
    for note in result.manifest.notes:
        console.print(f"note: {note}", soft_wrap=True)
    larger = [n for n, a in result.report.get("artifacts", {}).items() if a.get("size_regression")]
    warn = f"; not smaller than float: {', '.join(larger)} (see the notes)" if larger else ""
    console.print(f"bundle written: {result.out} ({result.report.get('conversion_seconds', 0):.1f} s){warn}")


def convert_options(args: dict[str, Any]) -> Any:
    """The ``ConvertOptions`` of ``spinal convert``'s parsed arguments (``args``: the command's parameters)."""
    from toolchain.options import ConvertOptions, Meaning, Output, Quantization, Source

    a = SimpleNamespace(**args)
    return ConvertOptions(
        source=Source(model=a.model, input_shapes=parse_shapes(a.input_shape), input_names=csv_list(a.input_name),
                      output_names=csv_list(a.output_name), opset=a.opset),
        quantization=Quantization(
            formats=csv_list(a.formats), calibration=a.calibration, calibration_method=str(a.calibration_method),
            calibration_samples=a.calibration_samples, validation=a.validation, validation_samples=a.max_validation,
            max_drop=a.max_drop, per_channel=not a.per_tensor, remedies=not a.no_remedies,
            keep_float=csv_list(a.keep_float), gate_measure=a.gate_measure),
        meaning=Meaning(
            task=_value(a.task), task_output=a.task_output, labels=csv_list(a.labels),
            activation=_value(a.activation), targets=csv_list(a.targets), units=csv_list(a.units),
            threshold=a.threshold, channels=csv_list(a.channels), channel_units=csv_list(a.channel_units),
            sample_rate_hz=a.sample_rate, window=a.window, hop=a.hop, layout=a.layout,
            norm_mean=float_list(a.norm_mean, "--norm-mean"), norm_std=float_list(a.norm_std, "--norm-std"),
            preprocess=parse_preprocess(a.preprocess, a.preprocess_file)),
        output=Output(out=a.out, golden_count=a.golden, name=a.name, description=a.description, force=a.force),
    )


def _value(choice: str | None) -> str | None:
    """A choice's plain string (Typer gives the StrEnum member, whose repr would name the class)."""
    return None if choice is None else str(choice)


def register(app: typer.Typer) -> None:
    """Add ``spinal convert`` to the ``spinal`` app (the ``spinal.commands`` entry point)."""
    app.command(name="convert")(convert)
