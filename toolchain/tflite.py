"""TFLite export: ONNX → SavedModel (onnx2tf) → TFLite (TensorFlow's converter).

onnx2tf is told to keep every input's shape exactly as ONNX has it, so the logical layout
(``NCW``, ``NCHW``...) is the same for every artifact; whatever layout a tensor of the TFLite file
still has is worked out by :func:`describe_tflite` and recorded, so the runner can adapt.
We drive ``tf.lite.TFLiteConverter`` ourselves from the SavedModel onnx2tf writes (onnx2tf's own
``-oiqt`` wants calibration files or downloads some). Keras models skip onnx2tf.

Precisions: ``fp32``; ``fp16`` (float16 weights); ``int8`` (full-integer kernels, float I/O);
``int8-io`` (full-integer with int8 input and output tensors).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelFileError, SpinalError
from device.manifest import ArtifactTensor, Quantization
from toolchain.calibration import DataSet, InputSpec
from toolchain.failures import InternalFailure, describe, is_internal

TFLITE_PRECISIONS = ("fp32", "fp16", "int8", "int8-io")
DEFAULT_LAYOUTS = {3: "NCW", 4: "NCHW", 5: "NCDHW"}  # ONNX's channels-first conventions


@dataclass
class SavedModel:
    """A SavedModel ready for the TFLite converter, and how its signature names map to the logical ones."""

    path: Path
    input_keys: dict[str, str]  # logical input name -> signature key
    output_keys: dict[str, str]  # logical output name -> signature key
    producer: str  # onnx2tf | keras


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Send stdout/stderr (Python and C level) to a buffer while TF/onnx2tf chatter; restore after.

    ``SPINAL_CONVERT_VERBOSE=1`` in the environment lets everything through (for debugging).
    """
    if os.environ.get("SPINAL_CONVERT_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _quiet_tf_env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    # onnx2tf runs onnxsim through PATH: make this interpreter's bin directory visible.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).lower()


_POSITIONAL = re.compile(r"(input|output)_(\d+)")


def match_keys(logical: list[str], keys: list[str], what: str, label: str) -> dict[str, str]:
    """Map logical tensor names to signature keys: exact, then sanitized, then by position."""
    out: dict[str, str] = {}
    free = list(keys)
    for name in logical:
        hit = name if name in free else next((k for k in free if _sanitize(k) == _sanitize(name)), None)
        if hit is not None:
            out[name] = hit
            free.remove(hit)
    rest = [n for n in logical if n not in out]
    numbered = [_POSITIONAL.fullmatch(k) for k in free]
    if rest and len(rest) == len(free) and all(numbered):
        # onnx2tf's own positional keys (output_0, output_1, ...): by their number, not by a prefix, which
        # matched an ONNX output named "output" to output_2 (silero VAD)
        ranked = sorted(free, key=lambda k: int(_POSITIONAL.fullmatch(k).group(2)))  # type: ignore[union-attr]
        out.update(zip(rest, ranked, strict=True))
        return out
    for name in rest:
        hit = next((k for k in free if _sanitize(k).startswith(_sanitize(name))), None)
        if hit is not None:
            out[name] = hit
            free.remove(hit)
    rest = [n for n in logical if n not in out]
    if len(rest) == len(free):
        out.update(zip(rest, free, strict=True))
    elif rest:
        raise ModelFileError(f"{label}: cannot match {what} {rest} to the SavedModel signature ({keys})")
    return out


def onnx_to_saved_model(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                        outputs: tuple[InputSpec, ...]) -> SavedModel:
    """Convert the fp32 ONNX model with onnx2tf, keeping every input's layout as it is.

    onnx2tf runs in the TensorFlow child process that later makes the TFLite files: TensorFlow is imported
    once per conversion, and never into this process (it would double the peak memory).
    """
    import json

    job = {"kind": "saved_model", "onnx": str(onnx_path.resolve()),
           "inputs": _spec_list(inputs), "outputs": _spec_list(outputs)}
    reply = json.loads(_submit(workdir.resolve(), job, "the SavedModel", tool="onnx2tf").read_text())
    return SavedModel(path=Path(reply["path"]), input_keys=reply["input_keys"], output_keys=reply["output_keys"],
                      producer=reply["producer"])


def _spec_list(specs: tuple[InputSpec, ...]) -> list[list[Any]]:
    return [[s.name, list(s.shape), s.dtype] for s in specs]


def _spec_tuple(items: list[list[Any]]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec(name, tuple(shape), dtype) for name, shape, dtype in items)


def _saved_model_here(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                      outputs: tuple[InputSpec, ...]) -> SavedModel:
    # onnx2tf raises the interpreter's recursion limit to 2**31-1 when imported; left there, deep recursion
    # anywhere later in this process overflows the C stack (a segfault) instead of raising RecursionError.
    recursion_limit = sys.getrecursionlimit()
    try:
        return _onnx_to_saved_model(onnx_path, workdir, inputs, outputs)
    finally:
        sys.setrecursionlimit(recursion_limit)


def _onnx_to_saved_model(onnx_path: Path, workdir: Path, inputs: tuple[InputSpec, ...],
                         outputs: tuple[InputSpec, ...]) -> SavedModel:
    _quiet_tf_env()
    out_dir = workdir / "onnx2tf"
    try:
        with quiet_native():
            import onnx2tf
    except ImportError as exc:
        raise ModelFileError(f"onnx2tf is not importable ({exc}); install the host extra") from None
    import onnx

    model = onnx.load(str(onnx_path))
    ops = {n.op_type for n in model.graph.node}
    from toolchain.graph_fixes import replace_erf

    # TF's converter cannot lower tf.math.erf (MLIR "could not translate"): Erf (GELU) is rewritten in builtins
    replace_erf(model)
    # onnx2tf sanitizes some characters (':' → '__') before matching keep_shape_absolutely_input_names, and
    # TensorFlow rejects others ('@', quotes, braces) in op names: it gets a copy with safe names only.
    renames = safe_names(model)
    safe_path = workdir / "onnx2tf-input.onnx"
    onnx.save(model, str(safe_path))
    back = {new: old for old, new in renames.items()}
    safe_in = [renames.get(s.name, s.name) for s in inputs]
    safe_out = [renames.get(s.name, s.name) for s in outputs]
    try:
        with quiet_native():
            onnx2tf.convert(
                input_onnx_file_path=str(safe_path),
                # Unrolled recurrent layers become plain ops that the int8 quantizer handles; the
                # while-loop form crashes TF's quantizer.
                enable_rnn_unroll=bool(ops & {"LSTM", "GRU", "RNN"}),
                output_folder_path=str(out_dir),
                keep_shape_absolutely_input_names=safe_in,
                copy_onnx_input_output_names_to_tflite=True,
                non_verbose=True,
                verbosity="error",
            )
    except SystemExit as exc:  # onnx2tf exits on some unsupported graphs
        raise ModelFileError(f"{onnx_path.name}: onnx2tf gave up (exit {exc.code}); {unsupported_hint(onnx_path)}") \
            from None
    except Exception as exc:
        if is_internal(exc):
            raise InternalFailure(f"onnx2tf on {onnx_path} failed for a reason that is not the model's "
                                  f"({describe(exc)})") from None
        if isinstance(exc, KeyError) and exc.args and exc.args[0] in back:  # name the tensor as the user knows it
            exc = KeyError(back[exc.args[0]])
        raise ModelFileError(f"{onnx_path.name}: onnx2tf failed ({_unrename(describe(exc), back)}); "
                             f"{unsupported_hint(onnx_path, exc)}") from None
    if not (out_dir / "saved_model.pb").exists():
        raise ModelFileError(f"{onnx_path.name}: onnx2tf wrote no SavedModel; {unsupported_hint(onnx_path)}")
    in_keys, out_keys = _signature_keys(out_dir)
    in_match = match_keys(safe_in, in_keys, "inputs", onnx_path.name)
    out_match = match_keys(safe_out, out_keys, "outputs", onnx_path.name)
    return SavedModel(
        path=out_dir,
        input_keys={s.name: in_match[safe] for s, safe in zip(inputs, safe_in, strict=True)},
        output_keys={s.name: out_match[safe] for s, safe in zip(outputs, safe_out, strict=True)},
        producer="onnx2tf",
    )


_SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


def safe_names(model: Any) -> dict[str, str]:
    """Rename (in place) every tensor and node name of ``model`` that onnx2tf or TensorFlow may mangle or refuse
    (anything but a letter then letters, digits and '_'); returns old → new for the tensor names.

    Graph inputs become ``input_N``, outputs ``output_N``, other tensors ``tensor_N`` and nodes ``node_N``;
    names already safe are kept, so the TFLite file's tensor names stay readable where they can.
    """
    graphs = [model.graph]
    for graph in graphs:  # subgraphs (If/Loop/Scan bodies) share the outer scope's names
        for node in graph.node:
            for attr in node.attribute:
                graphs.extend([attr.g] if attr.HasField("g") else [])
                graphs.extend(attr.graphs)
    taken = {v.name for g in graphs for v in (*g.input, *g.output, *g.initializer, *g.value_info)}
    taken |= {name for g in graphs for n in g.node for name in (*n.input, *n.output, n.name)}
    renames: dict[str, str] = {}

    def fresh(prefix: str) -> str:
        index = len(renames)
        while f"{prefix}_{index}" in taken:
            index += 1
        taken.add(f"{prefix}_{index}")
        return f"{prefix}_{index}"

    for prefix, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name and not _SAFE_NAME.fullmatch(value.name) and value.name not in renames:
                renames[value.name] = fresh(prefix)
    for name in sorted(taken):
        if name and not _SAFE_NAME.fullmatch(name) and name not in renames:
            renames[name] = fresh("tensor")
    node_names: dict[str, str] = {}
    for graph in graphs:
        for value in (*graph.input, *graph.output, *graph.initializer, *graph.value_info):
            value.name = renames.get(value.name, value.name)
        for node in graph.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]
            if node.name and not _SAFE_NAME.fullmatch(node.name):
                node.name = node_names.setdefault(node.name, renames.get(node.name) or fresh("node"))
    return renames


def _unrename(text: str, back: dict[str, str]) -> str:
    """``text`` with the safe names put back to the model's own (longest first)."""
    for new in sorted(back, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(new)}\b", back[new], text)
    return text


def unsupported_hint(onnx_path: Path, error: BaseException | None = None) -> str:
    """Name the node(s) of the model that most likely stopped onnx2tf, and why."""
    try:
        import onnx
        import onnx2tf.ops as ops_pkg

        known = {p.stem for p in Path(ops_pkg.__file__).parent.glob("*.py")}
        model = onnx.load(str(onnx_path))
        nodes = list(model.graph.node)
        missing = [(n.name or "?", n.op_type) for n in nodes if n.op_type not in known]
        if missing:
            listed = ", ".join(f"{name} ({op})" for name, op in missing[:5])
            return f"onnx2tf has no converter for node(s) {listed}; the ONNX artifacts are still produced"
        tensor = str(error.args[0]) if isinstance(error, KeyError) and error.args else None
        if tensor is not None:
            users = [n for n in nodes if tensor in n.input or tensor in _subgraph_inputs(n)]
            if users:
                node = users[-1]
                where = " (an outer-scope input of its subgraphs)" if tensor in _subgraph_inputs(node) else ""
                return (f"node {node.name or '?'} ({node.op_type}) could not be converted: tensor {tensor!r}{where} "
                        "was not available; the ONNX artifacts are still produced")
        control = [n for n in nodes if n.op_type in ("If", "Loop", "Scan")]
        if control:
            listed = ", ".join(f"{n.name or '?'} ({n.op_type})" for n in control[:5])
            return f"control-flow node(s) {listed} are the likely cause; the ONNX artifacts are still produced"
    except Exception:
        pass
    return "the ONNX artifacts are still produced"


def _subgraph_inputs(node: Any) -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for g in graphs:
            produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | \
                {t.name for t in g.initializer}
            for n in g.node:
                names |= {i for i in n.input if i and i not in produced}
                names |= _subgraph_inputs(n)
    return names


def import_tf() -> Any:
    """TensorFlow, imported with its start-up chatter (CUDA probing, absl) silenced."""
    _quiet_tf_env()
    with quiet_native():
        import tensorflow as tf
    return tf


def _signature_keys(saved_model: Path) -> tuple[list[str], list[str]]:
    tf = import_tf()
    with quiet_native():
        loaded = tf.saved_model.load(str(saved_model))
    sig = loaded.signatures["serving_default"]
    in_keys = list(sig.structured_input_signature[1].keys())
    out_keys = list(sig.structured_outputs.keys())
    return in_keys, out_keys


def keras_saved_model(saved_model: Path, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...]) -> SavedModel:
    """Describe a SavedModel exported from Keras (signature keys mapped to the ONNX names)."""
    _quiet_tf_env()
    in_keys, out_keys = _signature_keys(saved_model)
    return SavedModel(
        path=saved_model,
        input_keys=match_keys([s.name for s in inputs], in_keys, "inputs", str(saved_model)),
        output_keys=match_keys([s.name for s in outputs], out_keys, "outputs", str(saved_model)),
        producer="keras",
    )


@dataclass(frozen=True)
class TfliteOptions:
    """Knobs of one TFLite conversion (the accuracy gate's remedies turn them)."""

    per_channel: bool = True
    denylist: tuple[str, ...] = ()  # TF node names kept in float (quantization debugger)


class _Worker:
    """A child process that runs TensorFlow jobs one at a time (job file path in, status line out).

    TensorFlow's TFLite converter can crash (SIGSEGV) on some graphs: in a child, that loses one
    artifact instead of the whole run. The child stays up between jobs so TensorFlow is imported
    once; after a crash the next job starts a fresh one.
    """

    def __init__(self, workdir: Path, command: list[str] | None = None) -> None:
        import subprocess

        _quiet_tf_env()
        self.log = workdir / f"tflite-worker-{os.getpid()}-{id(self)}.log"
        self._log_fh = open(self.log, "ab")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "toolchain.tflite", "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log_fh, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            cwd=str(workdir.resolve()))

    def run(self, job_path: Path, timeout_s: float) -> str:
        """Send one job and wait for its status line: ``""`` if the child died, ``"timeout"`` if it hung
        (then it is killed)."""
        import select

        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{job_path}\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            if not ready:
                self.proc.kill()
                self.proc.wait()
                return "timeout"
            return self.proc.stdout.readline().strip()
        except (BrokenPipeError, OSError):
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log_fh.close()


_WORKERS: dict[Path, _Worker] = {}
# One TFLite conversion takes seconds to a minute or two here; ten minutes means TensorFlow hangs.
JOB_TIMEOUT_S = 600.0


def close_workers() -> None:
    """Stop the TensorFlow child processes (the pipeline calls this when it ends)."""
    while _WORKERS:
        _, worker = _WORKERS.popitem()
        worker.close()


def _run_worker(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet, job: dict[str, Any],
                what: str) -> Path:
    """Run one TensorFlow job on ``sm`` in the worker child process and return the file it wrote."""
    workdir = sm.path.parent.resolve()  # the child works in its own cwd: every path it gets is absolute
    data_path = workdir / f"tflite-data-{calib.sha256()[:16]}.npz"
    if not data_path.exists():
        np.savez(data_path, **{f"in{i}": calib.arrays[s.name] for i, s in enumerate(inputs)})
    job = {**job, "saved_model": str(sm.path.resolve()), "input_keys": sm.input_keys, "output_keys": sm.output_keys,
           "producer": sm.producer, "inputs": _spec_list(inputs), "data": str(data_path)}
    return _submit(workdir, job, what)


def _submit(workdir: Path, job: dict[str, Any], what: str, tool: str = "TensorFlow's TFLite converter") -> Path:
    """Send ``job`` to the worker child of ``workdir`` (started when needed) and return the file it wrote;
    a failure, crash or hang becomes one line naming ``tool`` and ``what``."""
    import json

    out = workdir / f"tflite-job-{abs(hash(json.dumps(job, sort_keys=True)))}-{len(list(workdir.iterdir()))}"
    job_path = out.with_suffix(".json")
    job_path.write_text(json.dumps({**job, "out": str(out)}))
    worker = _WORKERS.get(workdir)
    if worker is None or worker.proc.poll() is not None:
        worker = _WORKERS[workdir] = _Worker(workdir)
    status = worker.run(job_path, JOB_TIMEOUT_S)
    if status == "ok" and out.exists():
        return out
    if status.startswith("error: "):
        raise ModelFileError(status[len("error: "):])
    if status.startswith("internal: "):
        if tool == "onnx2tf":  # the message is already whole
            raise InternalFailure(status[len("internal: "):])
        raise InternalFailure(f"{tool} failed making {what} for a reason that is not the "
                              f"model's ({status[len('internal: '):]})")
    _WORKERS.pop(workdir, None)
    if status == "timeout":
        worker.close()
        raise ModelFileError(f"{tool} did not finish making {what} in {JOB_TIMEOUT_S:.0f} s "
                             "(stopped); the other artifacts are unaffected")
    raise ModelFileError(_death_reason(worker, status, what, tool))


def _death_reason(worker: _Worker, status: str, what: str, tool: str) -> str:
    """Why the worker child died mid-job: its signal, or the last error line of its log."""
    import subprocess

    if not status:  # wait for its exit status
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=60)
    code = worker.proc.poll()
    worker.close()
    if code is not None and code < 0:
        import signal

        return f"{tool} crashed ({signal.Signals(-code).name}) making {what}; the other artifacts are unaffected"
    tail = [ln for ln in worker.log.read_text(errors="replace").splitlines() if ln.strip()]
    last = next((ln for ln in reversed(tail) if "Error" in ln), tail[-1] if tail else status or "no output")
    if tool == "onnx2tf":
        return f"onnx2tf failed making {what}: {last.strip()[:300]}"
    return f"TFLite {what} conversion failed: {last.strip()[:300]}"


def convert_saved_model(sm: SavedModel, precision: str, inputs: tuple[InputSpec, ...], calib: DataSet,
                        options: TfliteOptions = TfliteOptions()) -> bytes:
    """One TFLite flatbuffer of ``sm`` at ``precision`` (made in a child process)."""
    if precision not in TFLITE_PRECISIONS:
        raise ValueError(f"unknown TFLite precision {precision!r}")
    job = {"kind": "convert", "precision": precision, "per_channel": options.per_channel,
           "denylist": list(options.denylist)}
    return _run_worker(sm, inputs, calib, job, precision).read_bytes()


def _serve() -> int:
    """The child's loop: one job file path per stdin line; ``ok`` or ``error: ...`` per stdout line."""
    import json

    for line in sys.stdin:
        try:
            _worker_job(json.loads(Path(line.strip()).read_text()))
            reply = "ok"
        except InternalFailure as exc:
            reply = f"internal: {' '.join(str(exc).split())}"  # the reply is one line
        except SpinalError as exc:
            reply = f"error: {' '.join(str(exc).split())}"
        except Exception as exc:
            kind = "internal" if is_internal(exc) else "error"
            reply = f"{kind}: {' '.join(describe(exc).split())}"
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    return 0


def _worker_job(job: dict[str, Any]) -> int:
    import json

    if job["kind"] == "saved_model":
        made = _saved_model_here(Path(job["onnx"]), Path(job["out"]).parent, _spec_tuple(job["inputs"]),
                                 _spec_tuple(job["outputs"]))
        Path(job["out"]).write_text(json.dumps({"path": str(made.path), "input_keys": made.input_keys,
                                                "output_keys": made.output_keys, "producer": made.producer}))
        return 0
    sm = SavedModel(path=Path(job["saved_model"]), input_keys=job["input_keys"], output_keys=job["output_keys"],
                    producer=job["producer"])
    inputs = _spec_tuple(job["inputs"])
    with np.load(job["data"]) as data:
        calib = DataSet(arrays={s.name: data[f"in{i}"] for i, s in enumerate(inputs)}, source=job["data"])
    if job["kind"] == "convert":
        options = TfliteOptions(per_channel=job["per_channel"], denylist=tuple(job["denylist"]))
        content = _convert_here(sm, job["precision"], inputs, calib, options)
        Path(job["out"]).write_bytes(content)
    else:
        names = _sensitive_here(sm, inputs, calib, job["limit"])
        Path(job["out"]).write_text(json.dumps(names))
    return 0


def _convert_here(sm: SavedModel, precision: str, inputs: tuple[InputSpec, ...], calib: DataSet,
                  options: TfliteOptions) -> bytes:
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(sm.path))
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision in ("int8", "int8-io"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(sm, inputs, calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if precision == "int8-io":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        if not options.per_channel:
            conv._experimental_disable_per_channel = True
        if options.denylist:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            debug_options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(options.denylist))
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=conv, debug_dataset=representative(sm, inputs, calib, as_list=True),
                debug_options=debug_options)
            with quiet_native():
                return bytes(debugger.get_nondebug_quantized_model())
    elif precision != "fp32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    try:
        with quiet_native():
            return bytes(conv.convert())
    except Exception as exc:
        if is_internal(exc):
            raise InternalFailure(f"TFLite {precision} conversion failed ({describe(exc)})") from None
        raise ModelFileError(f"TFLite {precision} conversion failed ({describe(exc)})") from None


def representative(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet, as_list: bool = False) -> Any:
    """A representative-dataset generator keyed by signature input name (or a list, for the debugger)."""

    def gen() -> Iterator[Any]:
        for i in range(calib.count):
            sample = calib.sample(i, inputs)
            feeds = {sm.input_keys[name]: value.astype(np.float32) if value.dtype.kind == "f" else value
                     for name, value in sample.items()}
            yield list(feeds.values()) if as_list else feeds

    return gen


def sensitive_tf_nodes(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet, limit: int = 4) -> list[str]:
    """TF node names whose int8 version adds the most error, per the TFLite quantization debugger."""
    import json

    out = _run_worker(sm, inputs, calib, {"kind": "debug", "limit": limit}, "quantization debugger")
    return list(json.loads(out.read_text()))


def _sensitive_here(sm: SavedModel, inputs: tuple[InputSpec, ...], calib: DataSet, limit: int) -> list[str]:
    tf = import_tf()
    conv = tf.lite.TFLiteConverter.from_saved_model(str(sm.path))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(sm, inputs, calib.take(min(calib.count, 64)))
    with quiet_native():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=representative(sm, inputs, calib.take(min(calib.count, 32)), as_list=True))
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    import csv

    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    scored = []
    for row in rows:
        try:
            rmse, scale = float(row["mean_squared_error"]) ** 0.5, float(row["scale"])
        except (KeyError, ValueError):
            continue
        if scale > 0 and np.isfinite(rmse):
            scored.append((rmse / scale, row.get("tensor_name", "")))
    scored.sort(reverse=True)
    return [name for _, name in scored[:limit] if name]


# --------------------------------------------------------------------------------------------
# Describing a TFLite file: tensors in logical order, their layout and quantization


def describe_tflite(content: bytes, sm: SavedModel, inputs: tuple[InputSpec, ...], outputs: tuple[InputSpec, ...],
                    logical_layouts: dict[str, str | None]) -> tuple[tuple[ArtifactTensor, ...],
                                                                     tuple[ArtifactTensor, ...]]:
    """The file's input and output tensors, in the manifest's logical order, with layout and int8 parameters.

    ``ArtifactTensor.name`` is the tensor's name inside the TFLite file; ``layout`` is the logical
    layout permuted the way the file holds it (recorded only when the file differs from the logical
    layout, or when the logical layout is known).
    """
    from device.modelfile import tflite_interpreter_class

    cls, _ = tflite_interpreter_class()
    interp = cls(model_content=content)
    runner = interp.get_signature_runner()
    details = {d["index"]: d for d in interp.get_input_details() + interp.get_output_details()}
    sig_in = runner.get_input_details()
    sig_out = runner.get_output_details()

    def one(spec: InputSpec, key: str, sig: dict[str, Any]) -> ArtifactTensor:
        d = details[sig[key]["index"]] if sig[key].get("index") in details else sig[key]
        shape = tuple(int(x) for x in d["shape"])
        if spec.shape == () and len(shape) == 1 and shape[0] in (1, -1):
            shape = (1,)  # onnx2tf holds an ONNX scalar as one element; the runtime adapter reshapes it
        if tuple(shape) != tuple(spec.shape) and logical_layouts.get(spec.name) is None:
            # The file holds this tensor permuted (onnx2tf's channels-last): give the logical side
            # ONNX's channels-first names so the permutation can be recorded and undone.
            logical_layouts[spec.name] = DEFAULT_LAYOUTS.get(len(spec.shape))
        layout = _permuted_layout(spec.shape, shape, logical_layouts.get(spec.name))
        qp = d.get("quantization_parameters") or {}
        quant = None
        scales = np.asarray(qp.get("scales", []))
        if np.dtype(d["dtype"]).kind in "iu" and scales.size:
            zps = np.asarray(qp.get("zero_points", []))
            quant = Quantization(scale=tuple(float(s) for s in scales), zero_point=tuple(int(z) for z in zps),
                                 axis=int(qp.get("quantized_dimension", 0)) if scales.size > 1 else None)
        return ArtifactTensor(name=str(d.get("name", key)), shape=shape, dtype=np.dtype(d["dtype"]).name,
                              layout=layout, quantization=quant)

    ins = tuple(one(s, sm.input_keys[s.name], sig_in) for s in inputs)
    outs = tuple(one(s, sm.output_keys[s.name], sig_out) for s in outputs)
    return ins, outs


def _permuted_layout(logical: tuple[int, ...], actual: tuple[int, ...], layout: str | None) -> str | None:
    """The artifact layout string: the logical layout letters permuted to match ``actual``."""
    if tuple(logical) == tuple(actual):
        return layout
    letters = layout or "ABCDEFGH"[: len(logical)]
    if len(logical) != len(actual):
        return None
    # onnx2tf moves channels last: prefer that permutation when it fits.
    rank = len(logical)
    preferred = (0, *range(2, rank), 1)
    candidates = [preferred, *permutations(range(rank))]
    for perm in candidates:
        if tuple(logical[p] for p in perm) == tuple(actual):
            return "".join(letters[p] for p in perm)
    return None


def layout_permutation(logical: str, artifact: str) -> tuple[int, ...]:
    """Axes to transpose a logical-layout array into the artifact's layout."""
    return tuple(logical.index(c) for c in artifact)


if __name__ == "__main__":
    code = _serve()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # TensorFlow's interpreter teardown takes most of a second and does nothing useful here
