"""The runtime half of ``spinal verify``: golden parity per artifact and per runtime available here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.bundle import Bundle
from device.errors import BadInput, MissingDependency, SpinalError
from device.runtime.base import INSTALL_HINT, RUNTIME_FORMAT, RUNTIMES, RuntimePolicy, first_line
from device.runtime.delegates import parse_delegate
from device.runtime.parity import check_golden, random_inputs
from device.runtime.select import Target, installed_runtimes, open_model


def _check_runtime(runtime: str | None, installed: dict[str, str]) -> None:
    """Refuse an unknown ``--runtime``, or a named one that is not installed, in one line."""
    if runtime not in (None, "all", "auto", *RUNTIMES):
        raise BadInput(f"--runtime {runtime!r} is not one of all, {', '.join(RUNTIMES)}")
    if runtime in RUNTIMES and runtime not in installed:
        raise MissingDependency(f"runtime {runtime} is not installed; install it with: {INSTALL_HINT[runtime]}")


def _not_run(runtime: str | None, fmt: str) -> str:
    """Why no runtime ran a ``fmt`` file: none installed, or the one asked for does not take the format."""
    if runtime in (None, "all", "auto"):
        needed = [r for r in RUNTIMES if RUNTIME_FORMAT[r] == fmt and r != "tflite-runtime"]
        return f"no {fmt} runtime installed ({INSTALL_HINT[needed[0]]})"
    return f"--runtime {runtime} does not run {fmt} files"


def _runtimes(wanted: str | None, fmt: str, installed: dict[str, str]) -> list[str]:
    if wanted in (None, "all", "auto"):
        return [r for r in RUNTIMES if RUNTIME_FORMAT[r] == fmt and r in installed]
    return [wanted] if RUNTIME_FORMAT[wanted] == fmt else []


def _row(check: str, ok: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    return {"check": check, "ok": ok, "detail": detail, **extra}


def bundle_parity(bundle: Bundle, runtime: str | None = None, delegate: str | None = None,
                  threads: int | None = None) -> list[dict[str, Any]]:
    """One row per (artifact, runtime): golden parity, with the max error and the tolerance.

    With a delegate, the delegate must load and match (fail-closed): a fallback is a failed check.
    """
    installed = installed_runtimes()
    _check_runtime(runtime, installed)
    manifest = bundle.manifest
    spec = parse_delegate(delegate)
    if manifest.golden is None:
        return [_row("parity", None, "the bundle has no golden vectors; parity not checked")]
    golden = bundle.load_golden()
    rows = []
    for art in manifest.artifacts:
        runtimes = _runtimes(runtime, art.format, installed)
        if not runtimes:
            rows.append(_row(f"parity {art.path}", None, _not_run(runtime, art.format), artifact=art.path))
            continue
        for rt in runtimes:
            label = f"parity {art.path} on {rt}"
            if art.edgetpu and spec.kind != "edgetpu":
                rows.append(_row(label, None, "an Edge TPU artifact; verify it with --delegate edgetpu",
                                 artifact=art.path, runtime=rt))
                continue
            if not spec.applies_to(rt):
                rows.append(_row(label, None, f"delegate {spec.name} does not apply to {rt}", artifact=art.path,
                                 runtime=rt))
                continue
            policy = RuntimePolicy(runtime=rt, artifact=art.path, threads=threads, delegate=delegate, fail_closed=True)
            try:
                model = open_model(Target(rt, bundle.path_of(art.path), art, manifest, golden), policy, spec)
            except SpinalError as exc:
                rows.append(_row(label, False, str(exc), artifact=art.path, runtime=rt))
                continue
            with model:
                try:
                    result = check_golden(model, manifest, golden, art)
                except (RuntimeError, ValueError) as exc:  # the runtime failed during an inference
                    rows.append(_row(label, False, f"inference failed on the golden inputs ({first_line(exc)}); "
                                     f"{model.info.describe()}", artifact=art.path, runtime=rt))
                    continue
            extra = {k: v for k, v in result.to_dict().items() if k not in ("ok", "detail")}
            rows.append(_row(label, result.ok, f"{result.detail}; {model.info.describe()}", **extra))
    return rows


def file_smoke(path: Path, runtime: str | None = None, delegate: str | None = None,
               threads: int | None = None) -> list[dict[str, Any]]:
    """For a plain model file: it loads and one inference on random inputs gives finite outputs."""
    import numpy as np

    from device.modelfile import check_model_file

    fmt = check_model_file(path)
    installed = installed_runtimes()
    _check_runtime(runtime, installed)
    rows = []
    spec = parse_delegate(delegate)
    for rt in _runtimes(runtime, fmt, installed):
        label = f"runs on {rt}"
        try:
            policy = RuntimePolicy(runtime=rt, threads=threads, delegate=delegate, fail_closed=True)
            model = open_model(Target(rt, path), policy, spec)
        except SpinalError as exc:
            rows.append(_row(label, False, str(exc), runtime=rt))
            continue
        with model:
            try:
                outputs = model.run(random_inputs(model.inputs, 1)[0])
            except (RuntimeError, ValueError) as exc:  # e.g. random indices out of a Gather's range
                rows.append(_row(label, False, f"one inference on random inputs failed ({first_line(exc)}); "
                                 f"{model.info.describe()}", runtime=rt, info=vars(model.info)))
                continue
        finite = all(np.all(np.isfinite(v)) for v in outputs.values() if v.dtype.kind == "f")
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
        rows.append(_row(label, finite, f"one inference on random inputs: {shapes}"
                         f"{'' if finite else ' (NaN or infinite values)'}; {model.info.describe()}",
                         runtime=rt, info=vars(model.info)))
    if not rows:
        rows.append(_row("runs", None, f"{_not_run(runtime, fmt)}; nothing ran"))
    return rows
