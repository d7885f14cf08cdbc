"""The runtime half of ``spinal verify``: golden parity per artifact and per runtime available here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.bundle import Bundle
from device.children import child_env, exit_name
from device.errors import BadInput, MissingDependency, SpinalError
from device.runtime.base import INSTALL_HINT, RUNTIME_FORMAT, RUNTIMES, RuntimePolicy, first_line, log
from device.runtime.cpu import installed_runtimes
from device.runtime.delegates import parse_delegate
from device.runtime.loading import Target, open_model
from device.runtime.parity import check_golden, random_inputs


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


def _capability_gaps(rows: list[dict[str, Any]], named: str | None, key: str) -> list[dict[str, Any]]:
    """A runtime that cannot load a file that another runtime here ran and checked does not fail the check.

    Both TFLite runtimes claim ``.tflite`` files, but tflite-runtime 2.14 lacks ops and kernels newer files
    use (custom ops such as Convolution2DTransposeBias, FULLY_CONNECTED v12) and crashes on some (sparse
    files): that is a gap of the runtime, which ``auto`` and the daemon pass over, not a wrong model. The row
    becomes a skip that names the runtime and the runtime that passed; with ``--runtime`` naming it, it fails.
    """
    if named not in (None, "all", "auto"):
        return [{k: v for k, v in r.items() if k != "cannot_load"} for r in rows]
    passed: dict[str, list[str]] = {}
    for r in rows:
        if r["ok"] is True:
            passed.setdefault(str(r.get(key)), []).append(str(r.get("runtime")))
    out = []
    for r in rows:
        r = dict(r)
        if r.pop("cannot_load", False) and passed.get(str(r.get(key))):
            log.warning("%s cannot run %s here (%s); %s ran and checked it", r["runtime"], r.get(key),
                        first_line(r["detail"]), ", ".join(passed[str(r.get(key))]))
            r["ok"] = None
            r["detail"] = (f"{r['runtime']} cannot run this file ({first_line(r['detail'])}); "
                           f"{', '.join(passed[str(r.get(key))])} ran and checked it")
        out.append(r)
    return out


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
                rows.append(_row(label, False, str(exc), artifact=art.path, runtime=rt, cannot_load=True))
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
    return _capability_gaps(rows, runtime, "artifact")


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``--input-shape NAME=1,3,224,224`` (repeatable; ``NAME:dims`` too, or bare dims for a one-input model)
    → {name or "": shape}. ``=`` is looked for first: input names such as ``onnx::Flatten_0`` hold colons."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        if not sep:
            name, _, dims = value.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise BadInput(f"--input-shape {value!r}: expected NAME=1,3,224,224 (or 1,3,224,224 for a one-input "
                           "model)") from None
        if not shape or any(d < 1 for d in shape):
            raise BadInput(f"--input-shape {value!r}: dimensions must be positive integers")
        if (not name and shapes) or ("" in shapes):
            raise BadInput("--input-shape: with several shapes, name each input (NAME=1,3,224,224)")
        shapes[name] = shape
    return shapes


def shaped_inputs(inputs: tuple[Any, ...], shapes: dict[str, tuple[int, ...]], where: str,
                  seed: int = 0) -> dict[str, Any]:
    """One random feed for a plain file's logical inputs, dynamic axes from ``shapes`` (else 1).

    A shape for an input the file does not have, of the wrong rank, or against a fixed axis: BadInput.
    """
    import dataclasses

    names = [t.name for t in inputs]
    if "" in shapes and len(inputs) != 1:
        raise BadInput(f"--input-shape: {where} has {len(inputs)} inputs ({', '.join(names)}); name each one "
                       "(NAME=1,3,224,224)")
    unknown = [n for n in shapes if n and n not in names]
    if unknown:
        raise BadInput(f"--input-shape {unknown[0]}=...: {where} has no input {unknown[0]!r} (inputs: "
                       f"{', '.join(names)})")
    fixed = []
    for tensor in inputs:
        given = shapes.get(tensor.name) or (shapes.get("") if len(inputs) == 1 else None)
        if given is None:
            fixed.append(tensor)
            continue
        if len(given) != len(tensor.shape):
            raise BadInput(f"--input-shape {tensor.name}=...: {len(given)} dims, but input {tensor.name!r} of {where} "
                           f"has {len(tensor.shape)} ({tensor.describe()})")
        for i, (want, have) in enumerate(zip(given, tensor.shape, strict=True)):
            if have is not None and want != have:
                raise BadInput(f"--input-shape {tensor.name}=...: dim {i} of input {tensor.name!r} is fixed at "
                               f"{have} in {where}, not {want}")
        fixed.append(dataclasses.replace(tensor, shape=tuple(given)))
    return random_inputs(tuple(fixed), 1, seed)[0]


def _dynamic_hint(inputs: tuple[Any, ...], shapes: dict[str, tuple[int, ...]]) -> str:
    dynamic = [t for t in inputs if None in t.shape and t.name not in shapes and not ("" in shapes and
                                                                                      len(inputs) == 1)]
    if not dynamic:
        return ""
    t = dynamic[0]
    example = ",".join("N" if d is None else str(d) for d in t.shape)
    return f"; its dynamic axes were fed size 1: give the real size with --input-shape {t.name}={example}"


def _smoke_one(path: Path, rt: str, delegate: str | None, threads: int | None,
               shapes: dict[str, tuple[int, ...]], announce: Any = None) -> dict[str, Any]:
    """Load ``path`` in ``rt`` and run one inference on random inputs (the body of the smoke child)."""
    import numpy as np

    label = f"runs on {rt}"
    spec = parse_delegate(delegate)
    try:
        policy = RuntimePolicy(runtime=rt, threads=threads, delegate=delegate, fail_closed=True)
        model = open_model(Target(rt, path), policy, spec)
    except SpinalError as exc:
        return _row(label, False, str(exc), runtime=rt, cannot_load=True)
    with model:
        feed = shaped_inputs(model.inputs, shapes, str(path))
        if announce is not None:  # if the runtime dies on this feed, the parent can still say why it may have
            announce(_dynamic_hint(model.inputs, shapes))
        try:
            outputs = model.run(feed)
        except (RuntimeError, ValueError, SpinalError) as exc:  # e.g. random indices out of a Gather's range
            return _row(label, False, f"one inference on random inputs failed ({first_line(exc)})"
                        f"{_dynamic_hint(model.inputs, shapes)}; {model.info.describe()}", runtime=rt,
                        info=vars(model.info))
    finite = all(np.all(np.isfinite(v)) for v in outputs.values() if v.dtype.kind == "f")
    shapes_txt = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
    return _row(label, finite, f"one inference on random inputs: {shapes_txt}"
                f"{'' if finite else ' (NaN or infinite values)'}; {model.info.describe()}",
                runtime=rt, info=vars(model.info))


_SMOKE_MARK = "spinal-smoke-row "
_SMOKE_HINT = "spinal-smoke-hint "
SMOKE_TIMEOUT_S = 300.0


def _smoke_in_child(path: Path, rt: str, delegate: str | None, threads: int | None,
                    shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """:func:`_smoke_one` in a child process: a runtime that crashes on the file (SIGSEGV) fails this row only.

    A plain file is unknown: every runtime's first contact with it (load, resize of dynamic axes, invoke)
    belongs in a child. The child does not probe again (``ISOLATED_ENV``).
    """
    import json
    import subprocess
    import sys

    from device.modelfile import ISOLATED_ENV

    label = f"runs on {rt}"
    request = json.dumps({"path": str(path), "runtime": rt, "delegate": delegate, "threads": threads,
                          "shapes": {k: list(v) for k, v in shapes.items()}})
    env = child_env(**{ISOLATED_ENV: "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    code = "import sys; from device.runtime.checks import _smoke_main; _smoke_main(sys.argv[1])"
    try:
        proc = subprocess.run([sys.executable, "-c", code, request], capture_output=True, text=True,
                              timeout=SMOKE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return _row(label, False, f"{path}: no answer from {rt} within {SMOKE_TIMEOUT_S:.0f} s (stopped)", runtime=rt)
    rows = [ln[len(_SMOKE_MARK):] for ln in proc.stdout.splitlines() if ln.startswith(_SMOKE_MARK)]
    if rows:
        return json.loads(rows[-1])  # type: ignore[no-any-return]
    if proc.returncode < 0:
        name = exit_name(proc.returncode)
        hints = [ln[len(_SMOKE_HINT):] for ln in proc.stdout.splitlines() if ln.startswith(_SMOKE_HINT)]
        if hints:
            return _row(label, False, f"{path}: {rt} crashed running one inference on random inputs ({name})"
                        f"{hints[-1]}", runtime=rt)
        return _row(label, False, f"{path}: {rt} crashed loading it ({name}); the file is corrupt or not a model "
                    "this runtime can run", runtime=rt, cannot_load=True)
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return _row(label, False, f"{path}: checking it in a child process failed (exit {proc.returncode}: {last})",
                runtime=rt)


def _smoke_main(request: str) -> None:
    """Child side of :func:`_smoke_in_child`: one marked JSON row on stdout."""
    import json

    job = json.loads(request)
    shapes = {k: tuple(v) for k, v in job["shapes"].items()}
    try:
        row = _smoke_one(Path(job["path"]), job["runtime"], job["delegate"], job["threads"], shapes,
                         announce=lambda hint: print(_SMOKE_HINT + hint, flush=True))
    except SpinalError as exc:
        row = _row(f"runs on {job['runtime']}", False, str(exc), runtime=job["runtime"], exit_code=exc.exit_code)
    print(_SMOKE_MARK + json.dumps(row, default=str), flush=True)


def file_smoke(path: Path, runtime: str | None = None, delegate: str | None = None,
               threads: int | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
               isolate: bool = True) -> list[dict[str, Any]]:
    """For a plain model file: it loads and one inference on random inputs gives finite outputs.

    Each runtime loads and runs it in a child process (``isolate``): a crash is a failed row, not a dead
    ``verify``. ``input_shapes`` give dynamic axes their size (``--input-shape``); without them they get 1.
    A bad ``--input-shape`` (an input the file lacks, a wrong rank, a fixed axis) is BadInput.
    """
    from device.modelfile import check_model_file

    fmt = check_model_file(path)
    installed = installed_runtimes()
    _check_runtime(runtime, installed)
    shapes = dict(input_shapes or {})
    rows = []
    parse_delegate(delegate)
    for rt in _runtimes(runtime, fmt, installed):
        row = _smoke_in_child(path, rt, delegate, threads, shapes) if isolate else _smoke_one(
            path, rt, delegate, threads, shapes)
        if row.get("exit_code") == 2 and "--input-shape" in row.get("detail", ""):
            raise BadInput(row["detail"])  # the user's shape, refused the same way by every runtime
        row.pop("exit_code", None)
        rows.append(row)
    if not rows:
        rows.append(_row("runs", None, f"{_not_run(runtime, fmt)}; nothing ran"))
    for row in rows:
        row["file"] = str(path)
    return _capability_gaps(rows, runtime, "file")
