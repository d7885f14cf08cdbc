"""Plain model files (.onnx, .tflite): format detection, front checks and inspection.

``inspect_model_file`` answers "what is in this file?" on the device, without host-only
packages: ONNX through :mod:`device.onnx_reader`, TFLite through the installed TFLite
interpreter (LiteRT or tflite-runtime).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.digests import file_digest, known_digest
from device.errors import MissingDependency, ModelFileError

if TYPE_CHECKING:
    from device.manifest import Quantization

MODEL_SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}
MAX_MODEL_BYTES = 1 << 30
_TFLITE_IDENTIFIER = b"TFL3"


@dataclass
class TensorInfo:
    """One input or output of a model file."""

    name: str
    shape: list[int | str | None]
    dtype: str
    quantization: dict[str, Any] | None = None


@dataclass
class ModelInfo:
    """A summary of one model file, the same for both formats."""

    path: str
    format: str
    bytes: int
    sha256: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        """``int8-io`` (integer inputs/outputs), ``int8``, ``fp16`` (float16 weights) or ``fp32``.

        A TFLite file's answer comes from the dtypes of all its tensors: an fp16-weight file has
        DEQUANTIZE operators too (float16 → float32), but no integer arithmetic.
        """
        io_dtypes = {t.dtype for t in self.inputs + self.outputs}
        if io_dtypes & {"int8", "uint8"} and (self.format == "tflite" or self.ops.keys() & {"QuantizeLinear",
                                                                                              "DequantizeLinear"}):
            return "int8-io"
        dtypes = set(self.details.get("tensor_dtypes") or ())
        if self.format == "tflite" and dtypes:
            return "int8" if dtypes & {"int8", "uint8"} else "fp16" if "float16" in dtypes else "fp32"
        quant_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                     "ConvInteger", "QUANTIZE"}
        if quant_ops & set(self.ops):
            return "int8"
        if "float16" in dtypes or "float16" in io_dtypes:
            return "fp16"
        return "fp32"

    @property
    def quantized(self) -> bool:
        """Whether the file computes in int8/uint8 (fp16 weights are not quantization in this sense)."""
        return self.precision in ("int8", "int8-io")


def sniff_format(head: bytes) -> str | None:
    """The format the first bytes of a file show (``tflite``/``onnx``), or ``None``."""
    if len(head) >= 8 and head[4:8] == _TFLITE_IDENTIFIER:
        return "tflite"
    # An ONNX ModelProto starts with field 1 (ir_version, varint: 0x08) in every exporter we
    # know; field order is not guaranteed by protobuf, so other first tags still get parsed.
    if head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x3a", b"\x42"):
        return "onnx"
    return None


def check_model_file(path: Path, expected: str | None = None) -> str:
    """Front checks before any runtime sees the file: exists, sane size, format matches suffix.

    Returns the format (``onnx`` or ``tflite``). Raises :class:`ModelFileError` naming the
    file and the fix.
    """
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise ModelFileError(f"{path}: file is empty")
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(f"{path}: {size} bytes is larger than the {MAX_MODEL_BYTES} a model may be")
    by_suffix = MODEL_SUFFIXES.get(path.suffix.lower())
    expected = expected or by_suffix
    if expected is None:
        raise ModelFileError(f"{path}: unknown model type (expected a .onnx or .tflite file, or a bundle)")
    with open(path, "rb") as fh:
        head = fh.read(16)
    sniffed = sniff_format(head)
    if sniffed is None:
        raise ModelFileError(f"{path}: not a model file (neither ONNX nor TFLite; starts with {head[:8]!r})")
    if sniffed != expected:
        described = {"onnx": "an ONNX", "tflite": "a TFLite"}
        raise ModelFileError(f"{path}: the file holds {described[sniffed]} model, not {described[expected]} one; "
                             f"rename it to "
                             f"{path.with_suffix('.' + sniffed).name}")
    return sniffed


def inspect_model_file(path: Path, isolate: bool = True) -> ModelInfo:
    """Inputs, outputs, dtypes, shapes, quantization and operator counts of a model file.

    A TFLite file is read by the TFLite runtime, which can crash (SIGSEGV) on a corrupt or
    hostile file; with ``isolate`` (the default) that happens in a child process, and a crash
    becomes a :class:`ModelFileError` instead of taking this process down.
    """
    fmt = check_model_file(path)
    sha256, size = file_digest(path)
    if fmt == "onnx":
        return _inspect_onnx(path, sha256, size)
    if isolate:
        return probe_tflite_files([path])[0]
    return _inspect_tflite(path, sha256, size)


def probe_tflite_files(paths: list[Path], timeout_s: float = 120.0, runtime: str | None = None) -> list[ModelInfo]:
    """Load TFLite files in one child process and return what it saw; crashes become errors.

    Used before a TFLite file is loaded into a long-lived process (the daemon, ``verify``). ``runtime``
    (``litert`` or ``tflite-runtime``) is the runtime the child loads it with (default: the preferred
    one): each runtime crashes on different files, so each gets its own first contact in a child. A child
    started ahead (:func:`probe_child_ahead`) for that runtime is handed the files instead of a new one.
    """
    import json
    import subprocess

    from device.children import exit_name

    if not paths:
        return []
    warm = _warm.pop(_warm_key(runtime), None)
    proc = warm or _spawn_probe([str(p) for p in paths], runtime)
    try:
        out, err = proc.communicate(json.dumps([str(p) for p in paths]) if warm else None, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ModelFileError(f"{paths[0]}: the TFLite runtime took more than {timeout_s:.0f} s to read it") from None
    if proc.returncode < 0:
        name = exit_name(proc.returncode)
        crashed = out.strip().splitlines()[-1] if out.strip() else str(paths[0])
        who = f"TFLite runtime {runtime}" if runtime not in (None, "default") else "TFLite runtime"
        raise ModelFileError(f"{crashed}: the {who} crashed reading it ({name}); the file is corrupt or "
                             "not a model this runtime can run")
    if proc.returncode == _PROBE_REFUSED:
        raise ModelFileError(err.strip().splitlines()[-1])
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise ModelFileError(f"{paths[0]}: reading it in a child process failed (exit {proc.returncode}: {last})")
    infos = [json.loads(line[len(_PROBE_INFO):]) for line in out.splitlines() if line.startswith(_PROBE_INFO)]
    for info in infos:
        _remember(_probe_key(info["sha256"], runtime))
    return [ModelInfo(**{**info, "inputs": [TensorInfo(**t) for t in info["inputs"]],
                         "outputs": [TensorInfo(**t) for t in info["outputs"]]}) for info in infos]


def _spawn_probe(args: list[str], runtime: str | None) -> Any:
    """The probe child (a ``subprocess.Popen``): with ``args`` it reads those files, without it imports the
    runtime and then waits for a JSON list of paths on stdin."""
    import subprocess
    import sys

    from device.children import child_env

    env = child_env(**{_PROBE_RUNTIME_ENV: runtime or "default"})
    return subprocess.Popen([sys.executable, "-c", _PROBE_CODE, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


_warm: dict[str | None, Any] = {}  # probe children started ahead, by runtime (None: the preferred one)


def _warm_key(runtime: str | None) -> str | None:
    return None if runtime in (None, "default", "litert", "ai-edge-litert") else runtime


def probe_child_started(runtime: str | None = None) -> bool:
    """Whether a probe child for ``runtime`` was started ahead and waits for files."""
    return _warm_key(runtime) in _warm


@contextlib.contextmanager
def probe_child_ahead(runtime: str | None = None) -> Iterator[None]:
    """Start the probe child for ``runtime`` now, before the files are known, so that its Python start-up and
    runtime import overlap with this process's own work; the first probe of that runtime inside the block hands
    it the files. On leaving the block a child nothing used is killed."""
    key = _warm_key(runtime)
    mine: Any = None
    if os.environ.get(ISOLATED_ENV) != "1" and key not in _warm:
        with contextlib.suppress(OSError):
            mine = _warm[key] = _spawn_probe([], key)
    try:
        yield
    finally:
        if _warm.get(key) is mine and mine is not None:
            del _warm[key]
            mine.kill()
            mine.communicate()


_PROBE_REFUSED = 3
_PROBE_RUNTIME_ENV = "SPINAL_PROBE_RUNTIME"  # which runtime the child loads the files with
_PROBE_INFO = "spinal-probe-info "  # marks the child's JSON lines (the lines between them are paths, any text)
_PROBE_CODE = "import sys; from device.modelfile import _probe_main; _probe_main(sys.argv[1:])"


_probed: set[str] = set()


def _probe_cache_dir() -> Path:
    base = os.environ.get("SPINAL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "spinal"
    return Path(base) / "probed"


def _remember(digest: str) -> None:
    """Record that the content ``digest`` loaded in a child without crashing (memory and marker file)."""
    _probed.add(digest)
    with contextlib.suppress(OSError):
        marker = _probe_cache_dir() / digest
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _probe_key(digest: str, runtime: str | None) -> str:
    """The marker name for a content that loaded in ``runtime`` (the preferred runtime's is the bare digest)."""
    return digest if runtime in (None, "default", "litert", "ai-edge-litert") else f"{digest}.{runtime}"


# Set in a child process that already isolates its first contact with a file (verify's smoke child):
# the probe would only repeat it.
ISOLATED_ENV = "SPINAL_ISOLATED_CHILD"


def ensure_tflite_loadable(path: Path, runtime: str | None = None) -> None:
    """Probe a TFLite file in a child process before this process loads it, unless its content passed before.

    Contents that passed (here or in ``inspect``/``verify``) are remembered by sha256, in memory and as an
    empty marker file in the cache directory (``$SPINAL_CACHE_DIR`` or ``~/.cache/spinal``), so each model
    costs one child process per device, not one per start. Without a writable cache the probe runs again.
    """
    if os.environ.get(ISOLATED_ENV) == "1":
        return
    runtime = _probe_runtime(runtime)
    if not _was_probed(path, runtime):
        _probe([path], runtime)


def ensure_tflite_loadable_many(paths: list[Path], runtime: str | None = None) -> None:
    """:func:`ensure_tflite_loadable` for several files at once: those not yet probed share one child process.

    A file the child refuses or crashes on is not reported here: each file's own :func:`ensure_tflite_loadable`
    (before it is loaded) probes it again alone, so the error names that file and spares the others.
    """
    if os.environ.get(ISOLATED_ENV) == "1":
        return
    runtime = _probe_runtime(runtime)
    pending = [p for p in paths if not _was_probed(p, runtime)]
    if len(pending) > 1:
        with contextlib.suppress(ModelFileError):
            _probe(pending, runtime)


def _probe(paths: list[Path], runtime: str | None) -> None:
    if runtime is None:  # the preferred runtime
        probe_tflite_files(paths)
    else:
        probe_tflite_files(paths, runtime=runtime)


def _probe_runtime(runtime: str | None) -> str | None:
    """The runtime a probe of ``runtime`` loads with: the preferred one's name is ``None``."""
    if runtime in (None, "default", "litert", "ai-edge-litert"):
        _, preferred = tflite_interpreter_class()
        return "tflite-runtime" if preferred == "tflite-runtime" else None  # no LiteRT here: tflite-runtime
    return runtime


def _was_probed(path: Path, runtime: str | None) -> bool:
    return digest_probed(known_digest(path), runtime)


def digest_probed(digest: str, runtime: str | None = None) -> bool:
    """Whether a TFLite content (sha256) passed a probe of ``runtime`` (None: the preferred one) on this device."""
    key = _probe_key(digest, runtime)
    if key in _probed or (_probe_cache_dir() / key).exists():
        _probed.add(key)
        return True
    return False


def _probe_main(args: list[str]) -> None:
    """Child side of :func:`probe_tflite_files`: one JSON line per file, each path announced first."""
    import dataclasses
    import json
    import sys

    from device.errors import SpinalError

    runtime = os.environ.get(_PROBE_RUNTIME_ENV) or None
    if not args:  # started ahead: import the runtime now, then wait for the files
        try:
            _interpreter_class_for(runtime)
        except SpinalError as exc:
            print(exc, file=sys.stderr)
            sys.exit(_PROBE_REFUSED)
        args = json.loads(sys.stdin.read() or "[]")
    for arg in args:
        path = Path(arg)
        print(path, flush=True)  # so that a crash can be pinned on this file
        try:
            sha256, size = file_digest(path)
            info = _inspect_tflite(path, sha256, size, runtime)
        except SpinalError as exc:
            print(exc, file=sys.stderr)
            sys.exit(_PROBE_REFUSED)
        print(_PROBE_INFO + json.dumps(dataclasses.asdict(info)), flush=True)


def _inspect_onnx(path: Path, sha256: str, size: int) -> ModelInfo:
    from device.onnx_reader import read_onnx

    info = read_onnx(path.read_bytes(), source=str(path))
    missing = sorted(f for f in info.external_data if not (path.parent / f).is_file())
    if missing:
        raise ModelFileError(f"{path}: external data file {missing[0]!r} is missing next to the model")
    return ModelInfo(
        path=str(path), format="onnx", bytes=size, sha256=sha256,
        inputs=[TensorInfo(v.name, v.shape, v.dtype) for v in info.inputs],
        outputs=[TensorInfo(v.name, v.shape, v.dtype) for v in info.outputs],
        ops=dict(info.ops.most_common()),
        details={"ir_version": info.ir_version, "producer": info.producer, "opsets": info.opsets,
                 "initializers": info.initializers, "external_data": sorted(info.external_data)},
    )


def tflite_interpreter_class() -> tuple[Any, str]:
    """The TFLite ``Interpreter`` class of the installed runtime and the runtime's name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    raise MissingDependency("no TFLite runtime installed; install one with: pip install 'spinal[device]'")


def _interpreter_class_for(runtime: str | None) -> tuple[Any, str]:
    """The ``Interpreter`` class of ``runtime`` (``litert``/``tflite-runtime``), or of the preferred one."""
    if runtime in (None, "", "default"):
        return tflite_interpreter_class()
    try:
        if runtime in ("litert", "ai-edge-litert"):
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter, "ai-edge-litert"
        if runtime == "tflite-runtime":
            from tflite_runtime.interpreter import Interpreter

            return Interpreter, "tflite-runtime"
    except ImportError as exc:
        raise MissingDependency(f"TFLite runtime {runtime} cannot be imported ({exc})") from None
    raise MissingDependency(f"unknown TFLite runtime {runtime!r}")


def _inspect_tflite(path: Path, sha256: str, size: int, runtime: str | None = None) -> ModelInfo:
    interpreter_class, runtime = _interpreter_class_for(runtime)
    if runtime == "tflite-runtime":  # files it is known not to load are refused with the reason, not tried
        from device.runtime import tflite as tflite_backend

        tflite_backend.check_model(path)

    def tensor(d: dict[str, Any]) -> TensorInfo:
        q = _decode_quantization(d)
        quant = None if q is None else {"scale": list(q[0]), "zero_point": list(q[1]), "axis": q[2]}
        return TensorInfo(d["name"], [int(x) for x in d["shape"]], _np_name(d["dtype"]), quant)

    try:
        # LiteRT prints an INFO banner to stderr on creation; keep inspect's output clean.
        with _quiet_stderr():
            interp = interpreter_class(model_path=str(path))
        # A corrupt file can also fail here (e.g. tensor names that are not UTF-8: a ValueError).
        inputs = [tensor(d) for d in interp.get_input_details()]
        outputs = [tensor(d) for d in interp.get_output_details()]
        signatures = sorted(interp.get_signature_list())
        # The one signature's keys name the tensors the way the model's author did ("x", "output_0") where the
        # tensor names are the converter's ("serving_default_x:0", "StatefulPartitionedCall:0").
        keys: dict[str, str] = {}
        with contextlib.suppress(AttributeError, RuntimeError, ValueError, KeyError):
            full = interp._get_full_signature_list()
            if len(full) == 1:
                by_index = {d["index"]: d["name"] for d in interp.get_input_details() + interp.get_output_details()}
                for side in ("inputs", "outputs"):
                    for key, index in next(iter(full.values()))[side].items():
                        if index in by_index:
                            keys[by_index[index]] = key
        ops: Counter[str] = Counter()
        with contextlib.suppress(AttributeError, RuntimeError, ValueError):  # a private API; absent in some versions
            ops.update(op["op_name"] for op in interp._get_ops_details())  # before a delegate rewrites the graph
        # What the runtimes do next when they load the file (allocate, list every tensor): the calls that crash
        # on some files (tflite-runtime 2.14's get_tensor_details on sparse DENSIFY models), here in the probe.
        # A file with dynamic axes may not allocate at its placeholder sizes (1): not a reason to refuse it.
        with contextlib.suppress(ValueError, RuntimeError):
            interp.allocate_tensors()
        tensor_dtypes = sorted({_np_name(d["dtype"]) for d in interp.get_tensor_details()})
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: the TFLite runtime cannot load it ({reason})") from None
    return ModelInfo(
        path=str(path), format="tflite", bytes=size, sha256=sha256, inputs=inputs, outputs=outputs,
        ops=dict(ops.most_common()),
        details={"runtime": runtime, "signatures": signatures, "tensor_dtypes": tensor_dtypes,
                 "signature_keys": keys},
    )


def tflite_quantization(detail: Mapping[str, Any]) -> Quantization | None:
    """The affine quantization of one TFLite tensor, decoded from its interpreter detail's
    ``quantization_parameters`` (scales, zero points, quantized dimension); ``None`` without scales.

    The one decoder: inspection and the runtimes' raw tensors read it here. Missing zero
    points are 0; ``axis`` is set only for per-channel quantization (more than one scale)."""
    decoded = _decode_quantization(detail)
    if decoded is None:
        return None
    from device.manifest import Quantization  # here: the probe child does not need the manifest module

    return Quantization(*decoded)


def _decode_quantization(detail: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[int, ...], int | None] | None:
    """``(scale, zero_point, axis)`` of :func:`tflite_quantization`, as plain values (no manifest import)."""
    q = detail.get("quantization_parameters") or {}
    scales = tuple(float(s) for s in q.get("scales", ()))
    if not scales:
        return None
    zero_points = tuple(int(z) for z in q.get("zero_points", ())) or (0,) * len(scales)
    axis = int(q.get("quantized_dimension", 0)) if len(scales) > 1 else None
    return scales, zero_points, axis


def _np_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """Silence writes to file descriptor 2 (C++ runtimes log there directly)."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)

