"""``spinal convert``: a trained model in, a quantized and verified bundle out (host only).

The converter stack (onnx, onnxruntime, TensorFlow, onnx2tf...) is imported lazily inside the
command, after :func:`require_host` has said how to install it when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from device.cli_common import console, print_json, reports_errors, require_host
from device.errors import BadInput


def _csv(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()


def _floats(text: str | None, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in _csv(text))
    except ValueError:
        raise BadInput(f"{option}: expected comma-separated numbers, got {text!r}") from None


def parse_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape 1,3,64`` or ``--input-shape NAME:1,3,64`` (repeatable) → {name or "": shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, _, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise BadInput(f"--input-shape {value!r}: expected e.g. 1,3,64 or NAME:1,3,64") from None
        if not shape or any(d < 1 for d in shape):
            raise BadInput(f"--input-shape {value!r}: dimensions must be positive integers")
        if not name and shapes:
            raise BadInput("--input-shape: with several inputs, name each one (NAME:1,3,64)")
        shapes[name] = shape
    return shapes


@reports_errors
def convert(
    model: Annotated[str, typer.Argument(help="Model: .onnx, PyTorch .pt2/.pt or 'package.module:factory', Keras "
                                              ".keras/.h5/SavedModel dir, scikit-learn .joblib/.pkl.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Bundle directory, or NAME.spinal for one archive.")],
    formats: Annotated[str | None, typer.Option(help="Comma list of onnx-fp32, onnx-int8, tflite-fp32, "
                                                     "tflite-fp16, tflite-int8, tflite-int8-io (default: all)")] = None,
    input_shape: Annotated[list[str] | None, typer.Option(help="Input shape, e.g. 1,3,64 or NAME:1,3,64 "
                                                               "(repeat per input); fixes dynamic axes.")] = None,
    input_name: Annotated[str | None, typer.Option(help="Comma list of input names to give the model.")] = None,
    output_name: Annotated[str | None, typer.Option(help="Comma list of output names to give the model.")] = None,
    calibration: Annotated[Path | None, typer.Option(help=".npz keyed by input name, .npy, or .csv of sensor "
                                                          "readings.")] = None,
    calibration_method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    calibration_samples: Annotated[int, typer.Option(help="Use at most this many calibration samples.")] = 200,
    validation: Annotated[Path | None, typer.Option(help=".npz keyed by input name, plus 'labels' (class ids) or "
                                                         "'targets' (regression).")] = None,
    max_drop: Annotated[float, typer.Option(help="Largest loss against fp32 an artifact may show: top-1 points; "
                                                 "% of MAE; or 100×(1−cosine).")] = 1.0,
    per_tensor: Annotated[bool, typer.Option("--per-tensor", help="Start from per-tensor weights, not "
                                                                    "per-channel.")] = False,
    no_remedies: Annotated[bool, typer.Option("--no-remedies", help="Do not retry a rejected int8 artifact "
                                                                     "with other settings.")] = False,
    keep_float: Annotated[str | None, typer.Option(help="Comma list of ONNX node names to keep in float.")] = None,
    golden: Annotated[int, typer.Option(help="How many golden vectors the bundle carries.")] = 8,
    name: Annotated[str | None, typer.Option(help="Bundle name (default: the model's file name).")] = None,
    description: Annotated[str, typer.Option(help="One line describing the model.")] = "",
    task: Annotated[str | None, typer.Option(help="classification, regression or anomaly.")] = None,
    task_output: Annotated[str | None, typer.Option(help="Which output the task reads (default: the first "
                                                         "float output with several values).")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma list of class names.")] = None,
    activation: Annotated[str | None, typer.Option(help="logits or probabilities (default: guessed).")] = None,
    targets: Annotated[str | None, typer.Option(help="Comma list of regression target names.")] = None,
    units: Annotated[str | None, typer.Option(help="Comma list of the targets' units.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Anomaly score threshold.")] = None,
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
    opset: Annotated[int, typer.Option(help="ONNX opset for PyTorch/Keras exports.")] = 17,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Convert a trained model into a bundle: ONNX fp32/int8 and TFLite fp32/fp16/int8/int8-io, gated on accuracy.

    Exit 0 with the bundle written, 1 when the accuracy gate rejected everything asked for, 2 on bad input.
    """
    require_host()
    from toolchain.convert import ConvertOptions
    from toolchain.convert import convert as run_convert

    opts = ConvertOptions(
        model=model, out=out, formats=_csv(formats), input_shapes=parse_shapes(input_shape),
        input_names=_csv(input_name), output_names=_csv(output_name), calibration=calibration,
        calibration_method=calibration_method, calibration_samples=calibration_samples, validation=validation,
        max_drop=max_drop, per_channel=not per_tensor, remedies=not no_remedies, keep_float=_csv(keep_float),
        golden_count=golden, name=name, description=description, task=task, task_output=task_output,
        labels=_csv(labels), activation=activation, targets=_csv(targets), units=_csv(units), threshold=threshold,
        channels=_csv(channels), channel_units=_csv(channel_units), sample_rate_hz=sample_rate, window=window,
        hop=hop, layout=layout,
        norm_mean=_floats(norm_mean, "--norm-mean"), norm_std=_floats(norm_std, "--norm-std"), opset=opset,
        force=force,
    )
    if activation is not None and activation not in ("logits", "probabilities"):
        raise BadInput(f"--activation {activation!r}: choose logits or probabilities")
    with _RichProgress(enabled=not json_out) as progress:
        result = run_convert(opts, progress)
    if json_out:
        print_json(result.report)
        return
    from toolchain.report import table

    console.print(table(result.report))
    for note in result.manifest.notes:
        console.print(f"note: {note}", soft_wrap=True)
    console.print(f"bundle written: {result.out} ({result.report.get('conversion_seconds', 0):.1f} s)")


class _RichProgress:
    """A rich progress bar fed by the pipeline's steps (on stderr, so --json stays clean)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _RichProgress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            from device.cli_common import err_console

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                 console=err_console, transient=True)
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

