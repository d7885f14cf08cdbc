"""``spinal inspect`` and ``spinal verify``: what a bundle or model file holds, and whether it checks out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from device.cli.common import JsonOpt, PathArg, RuntimeChoice, console, print_json, reports_errors

if TYPE_CHECKING:
    from rich.table import Table

    from device.bundle import Bundle
    from device.modelfile import ModelInfo

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
    from rich.table import Table

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
    from rich.table import Table

    from device.dsp import describe

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
            console.print(f"preprocessing of {s.name!r} (per window, device/dsp/): {describe(s.preprocessing)}")
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
    from device.modelfile import check_model_file, inspect_model_file, probe_tflite_files

    tflite = [a.path for a in bundle.manifest.artifacts if a.format == "tflite"]
    for rel in tflite:
        check_model_file(bundle.path_of(rel), expected="tflite")
    infos = dict(zip(tflite, probe_tflite_files([bundle.path_of(p) for p in tflite]), strict=True))
    return {a.path: infos[a.path] if a.path in infos else inspect_model_file(bundle.path_of(a.path))
            for a in bundle.manifest.artifacts}


@reports_errors
def inspect(path: PathArg, json_out: JsonOpt = False) -> None:
    """Show what a bundle or model file holds: inputs, outputs, dtypes, shapes, quantization, ops, size."""
    from device.bundle import is_bundle_path, open_bundle
    from device.modelfile import inspect_model_file

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


@reports_errors
def verify(
    path: PathArg,
    json_out: JsonOpt = False,
    runtime: Annotated[RuntimeChoice, typer.Option(help="Every runtime here (all), or one.")] = RuntimeChoice.all,
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
    from rich.markup import escape

    from device.bundle import is_bundle_path, open_bundle
    from device.errors import BadInput
    from device.modelfile import inspect_model_file
    from device.runtime.checks import bundle_parity, file_smoke, parse_input_shapes
    from device.signing import load_public_key

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
            checks += bundle_parity(bundle, runtime.value, delegate)
        kind = "bundle"
    else:
        info = inspect_model_file(path)
        checks.append({"check": "model file", "ok": True, "detail": f"{info.format}, {info.bytes} bytes"})
        checks += file_smoke(path, runtime.value, delegate, input_shapes=shapes)
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

