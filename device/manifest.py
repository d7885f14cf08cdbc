"""The bundle manifest (``manifest.json``): schema, parsing and serialisation.

The manifest says everything a device needs to know to run a model: its logical inputs and
outputs (shape, dtype, layout, semantic channel names, sample rate, window, hop,
normalization), what the outputs mean (classes, regression, anomaly score), every artifact
(format, precision, sha256, size, per-tensor layout and int8 quantization), the golden
vectors that prove a device runs the same model, and the converter's report.

Parsing validates every key and names it in the error (``artifacts[1].sha256: ...``).
The format is documented in ``docs/bundle-format.md``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from device.dsp import Block, ChainError, chain_to_list, parse_chain
from device.errors import BundleError

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

ArtifactFormat = Literal["onnx", "tflite"]
Precision = Literal["fp32", "fp16", "int8", "int8-io"]
TaskKind = Literal["classification", "regression", "anomaly", "score", "features"]

ARTIFACT_FORMATS: tuple[str, ...] = ("onnx", "tflite")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "int8-io")
TASK_KINDS: tuple[str, ...] = ("classification", "regression", "anomaly", "score", "features")
DTYPES: tuple[str, ...] = (
    "float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
)
_LAYOUT_RE = re.compile(r"^[A-Z]{1,6}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# --------------------------------------------------------------------------------------------
# Dataclasses


@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 quantization of one tensor: ``real = scale * (q - zero_point)``.

    ``scale`` and ``zero_point`` hold one value (per-tensor) or one per channel along ``axis``.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None


@dataclass(frozen=True)
class Normalization:
    """Per-channel standardisation applied by the pipeline before the model: ``(x - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A logical model input or output, as every artifact sees it after the runner adapts it."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str | None = None
    channels: tuple[str, ...] = ()
    sample_rate_hz: float | None = None
    window: int | None = None
    hop: int | None = None
    normalization: Normalization | None = None
    units: tuple[str, ...] = ()
    preprocessing: tuple[Block, ...] = ()  # the DSP chain (device/dsp/) from the raw window to the model input


@dataclass(frozen=True)
class ArtifactTensor:
    """One input or output tensor of one artifact file, as the file itself declares it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str | None = None
    quantization: Quantization | None = None


@dataclass(frozen=True)
class Artifact:
    """One model file in the bundle."""

    path: str
    format: str
    precision: str
    sha256: str
    bytes: int
    inputs: tuple[ArtifactTensor, ...] = ()
    outputs: tuple[ArtifactTensor, ...] = ()
    edgetpu: bool = False

    @property
    def key(self) -> str:
        """The artifact's identity inside the bundle (its path)."""
        return self.path


@dataclass(frozen=True)
class Task:
    """What the outputs mean.

    - ``classification``: ``labels`` index the output's last axis; ``activation`` says whether
      the model emits ``logits`` (softmax to apply) or ``probabilities``.
    - ``regression``: ``targets`` name the values and ``units`` give their SI units.
    - ``anomaly``: the output is a score; above ``threshold`` is anomalous.
    - ``score``: the output is one score (a detector's probability); with a ``threshold``, above it is
      a detection.
    - ``features``: the output is a vector for another model or the host (a mel spectrogram, an
      embedding): no decision is made on the device.
    """

    kind: str
    output: str
    labels: tuple[str, ...] = ()
    activation: str | None = None
    targets: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    threshold: float | None = None
    score: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """How close an artifact's outputs must be to its golden outputs: ``|a-b| <= bound + rtol*|b|``.

    ``atol`` is the bound for every output that ``outputs`` does not name. A converter that derives
    the bound also records why (docs/runtime.md, "Parity"): ``spread`` holds the largest difference it
    measured between each kernel path on the host and the golden outputs, ``rounding`` what moving
    every int8 requantization by up to one step moved the outputs by, and ``basis`` says in words how
    the bound follows from them.
    """

    atol: float
    rtol: float = 0.0
    outputs: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    rounding: float | None = None
    basis: str = ""

    def bound(self, output: str) -> float:
        """The absolute bound for ``output``."""
        return self.outputs.get(output, self.atol)


@dataclass(frozen=True)
class Golden:
    """Reference inputs and each artifact's expected outputs, in one ``.npz`` file.

    Keys in the file: ``input/<input name>`` (stacked, first axis = sample) and
    ``output/<artifact path>/<output name>``.
    """

    path: str
    sha256: str
    bytes: int
    count: int
    tolerances: dict[str, Tolerance] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    """Any other file carried by the bundle (model card, calibration summary...)."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    format_version: int
    name: str
    created: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: Task
    artifacts: tuple[Artifact, ...]
    golden: Golden | None = None
    report: dict[str, Any] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    description: str = ""
    producer: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def artifact(self, path: str) -> Artifact:
        """The artifact stored at ``path``; raises :class:`BundleError` if there is none."""
        for art in self.artifacts:
            if art.path == path:
                return art
        known = ", ".join(a.path for a in self.artifacts) or "none"
        raise BundleError(f"{MANIFEST_NAME}: no artifact {path!r} (artifacts: {known})")

    def files(self) -> list[tuple[str, str, str, int]]:
        """Every file the manifest vouches for: ``(key, path, sha256, bytes)``."""
        out = [(f"artifacts[{i}]", a.path, a.sha256, a.bytes) for i, a in enumerate(self.artifacts)]
        if self.golden is not None:
            out.append(("golden", self.golden.path, self.golden.sha256, self.golden.bytes))
        out += [(f"attachments[{i}]", a.path, a.sha256, a.bytes) for i, a in enumerate(self.attachments)]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``None`` and empty optional values left out)."""
        out = asdict(self)
        for i, spec in enumerate(self.inputs):  # blocks keep their name ("block") first
            out["inputs"][i]["preprocessing"] = chain_to_list(spec.preprocessing)
        return _prune(out)

    def to_json(self) -> str:
        """Serialised ``manifest.json`` text: stable key order, two-space indent."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        # A shape is kept even when empty: () is a rank-0 (scalar) tensor, not a missing value.
        return {k: _prune(v) for k, v in value.items() if v is not None and (k == "shape" or (v != () and v != []))}
    if isinstance(value, list | tuple):
        return [_prune(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    """Typed access to one JSON object that names the full key path in every error."""

    def __init__(self, obj: Any, where: str, source: str) -> None:
        self.source = source
        self.where = where
        if not isinstance(obj, dict):
            self.fail(f"expected an object, got {_kind(obj)}")
        self.obj: dict[str, Any] = obj

    def fail(self, message: str, key: str | None = None) -> None:
        path = self.where if key is None else (f"{self.where}.{key}" if self.where else key)
        raise BundleError(f"{self.source}: {path or '<top>'}: {message}")

    def child(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.obj.get(key) is not None

    def raw(self, key: str, required: bool = True) -> Any:
        if key not in self.obj or self.obj[key] is None:
            if required:
                self.fail("missing (required)", key)
            return None
        return self.obj[key]

    def text(self, key: str, required: bool = True, choices: tuple[str, ...] | None = None) -> Any:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(f"expected a string, got {_kind(value)}", key)
        if choices is not None and value not in choices:
            self.fail(f"{value!r} is not one of {', '.join(choices)}", key)
        return value

    def integer(self, key: str, required: bool = True, minimum: int | None = None) -> Any:
        value = self.raw(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, got {_kind(value)}", key)
        if minimum is not None and value < minimum:
            self.fail(f"must be >= {minimum}, got {value}", key)
        return value

    def number(self, key: str, required: bool = True, positive: bool = False) -> Any:
        value = self.raw(key, required)
        if value is None:
            return None
        return _as_float(value, positive, lambda m: self.fail(m, key))

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw(key, required=False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"expected true or false, got {_kind(value)}", key)
        return value

    def array(self, key: str, required: bool = True) -> list[Any]:
        value = self.raw(key, required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"expected a list, got {_kind(value)}", key)
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        items = self.array(key, required=False)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(f"expected a string, got {_kind(item)}", f"{key}[{i}]")
        return tuple(items)

    def float_list(self, key: str, positive: bool = False) -> tuple[float, ...]:
        items = self.array(key)
        return tuple(
            _as_float(v, positive, lambda m, i=i: self.fail(m, f"{key}[{i}]")) for i, v in enumerate(items)
        )

    def shape(self, key: str) -> tuple[int, ...]:
        items = self.array(key)  # [] is a rank-0 (scalar) tensor
        for i, dim in enumerate(items):
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                self.fail(f"dimensions must be positive integers, got {dim!r}", f"{key}[{i}]")
        return tuple(items)

    def path(self, key: str) -> str:
        value = self.text(key)
        problem = unsafe_path_reason(value)
        if problem:
            self.fail(f"{value!r} {problem}", key)
        return value

    def sub(self, key: str, required: bool = True) -> _Reader | None:
        value = self.raw(key, required)
        if value is None:
            return None
        return _Reader(value, self.child(key), self.source)

    def items(self, key: str, required: bool = True) -> list[_Reader]:
        return [_Reader(v, f"{self.child(key)}[{i}]", self.source) for i, v in enumerate(self.array(key, required))]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _as_float(value: Any, positive: bool, fail: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(f"expected a number, got {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        fail(f"must be finite, got {value!r}")
    if positive and number <= 0:
        fail(f"must be > 0, got {value!r}")
    return number


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` may not name a file inside a bundle, or ``None`` if it is safe.

    Bundle paths are relative POSIX paths with no ``..``, no backslashes, no drive letters
    and no control characters, so that they cannot escape the bundle directory.
    """
    if not path:
        return "is empty"
    if len(path) > 255:
        return "is longer than 255 characters"
    if "\\" in path or any(ord(c) < 32 for c in path):
        return "contains a backslash or a control character"
    pure = PurePosixPath(path)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", path):
        return "is an absolute path"
    if any(part in ("..", ".", "") for part in path.split("/")):
        return "contains '..', '.' or an empty component"
    return None


def _tensor_spec(r: _Reader) -> TensorSpec:
    shape = r.shape("shape")
    channels = r.str_list("channels")
    layout = r.text("layout", required=False)
    if layout is not None:
        if not _LAYOUT_RE.match(layout) or len(set(layout)) != len(layout):
            r.fail(f"{layout!r} is not a layout (distinct capital letters such as NTC or NCHW)", "layout")
        if len(layout) != len(shape):
            r.fail(f"{layout!r} has {len(layout)} axes but shape {list(shape)} has {len(shape)}", "layout")
        if channels and "C" in layout and shape[layout.index("C")] != len(channels) and not r.has("preprocessing"):
            r.fail(f"{len(channels)} channel names for {shape[layout.index('C')]} channels", "channels")
    chain: tuple[Block, ...] = ()
    if r.has("preprocessing"):
        try:
            chain = parse_chain(r.raw("preprocessing"))
        except ChainError as exc:
            hint = "; upgrade spinal or rebuild the bundle without it" if exc.key == "block" else ""
            raise BundleError(f"{r.source}: {exc.where(r.child('preprocessing'))}{hint}") from None
    norm = None
    if (n := r.sub("normalization", required=False)) is not None:
        mean = n.float_list("mean")
        std = n.float_list("std", positive=True)
        if len(mean) != len(std):
            n.fail(f"mean has {len(mean)} values but std has {len(std)}")
        if channels and not chain and len(mean) not in (1, len(channels)):
            n.fail(f"has {len(mean)} values for {len(channels)} channels (give 1 or {len(channels)})")
        norm = Normalization(mean=mean, std=std)
    units = r.str_list("units")
    if units and channels and len(units) not in (1, len(channels)):
        r.fail(f"{len(units)} units for {len(channels)} channels (give 1 or {len(channels)})", "units")
    window = r.integer("window", required=False, minimum=1)
    hop = r.integer("hop", required=False, minimum=1)
    return TensorSpec(
        name=r.text("name"),
        shape=shape,
        dtype=r.text("dtype", required=False, choices=DTYPES) or "float32",
        layout=layout,
        channels=channels,
        sample_rate_hz=r.number("sample_rate_hz", required=False, positive=True),
        window=window,
        hop=hop,
        normalization=norm,
        units=units,
        preprocessing=chain,
    )


def _quantization(r: _Reader) -> Quantization:
    scale = r.float_list("scale", positive=True)
    zero_point_raw = r.array("zero_point")
    zero_point = []
    for i, zp in enumerate(zero_point_raw):
        if isinstance(zp, bool) or not isinstance(zp, int) or not -128 <= zp <= 255:
            r.fail(f"expected an integer in [-128, 255], got {zp!r}", f"zero_point[{i}]")
        zero_point.append(zp)
    if not scale or len(scale) != len(zero_point):
        r.fail(f"scale has {len(scale)} values but zero_point has {len(zero_point)}")
    axis = r.integer("axis", required=False)
    if len(scale) > 1 and axis is None:
        r.fail("per-channel quantization (several scales) needs an axis")
    return Quantization(scale=scale, zero_point=tuple(zero_point), axis=axis)


def _artifact_tensor(r: _Reader) -> ArtifactTensor:
    q = r.sub("quantization", required=False)
    return ArtifactTensor(
        name=r.text("name"),
        shape=r.shape("shape"),
        dtype=r.text("dtype", choices=DTYPES),
        layout=r.text("layout", required=False),
        quantization=_quantization(q) if q is not None else None,
    )


def _sha256(r: _Reader) -> str:
    value = r.text("sha256")
    if not _SHA256_RE.match(value):
        r.fail(f"expected 64 lowercase hex characters, got {value[:80]!r}", "sha256")
    return value


def _artifact(r: _Reader) -> Artifact:
    art = Artifact(
        path=r.path("path"),
        format=r.text("format", choices=ARTIFACT_FORMATS),
        precision=r.text("precision", choices=PRECISIONS),
        sha256=_sha256(r),
        bytes=r.integer("bytes", minimum=1),
        inputs=tuple(_artifact_tensor(t) for t in r.items("inputs", required=False)),
        outputs=tuple(_artifact_tensor(t) for t in r.items("outputs", required=False)),
        edgetpu=r.flag("edgetpu"),
    )
    suffix = ".onnx" if art.format == "onnx" else ".tflite"
    if not art.path.endswith(suffix):
        r.fail(f"{art.path!r} is a {art.format} artifact but does not end in {suffix}", "path")
    return art


def _task(r: _Reader, output_names: set[str]) -> Task:
    kind = r.text("kind", choices=TASK_KINDS)
    output = r.text("output")
    if output not in output_names:
        r.fail(f"{output!r} is not one of the outputs ({', '.join(sorted(output_names))})", "output")
    task = Task(
        kind=kind,
        output=output,
        labels=r.str_list("labels"),
        activation=r.text("activation", required=False, choices=("logits", "probabilities")),
        targets=r.str_list("targets"),
        units=r.str_list("units"),
        threshold=r.number("threshold", required=False),
        score=r.text("score", required=False),
    )
    if kind == "classification" and not task.labels:
        r.fail("a classification task needs labels", "labels")
    if kind == "anomaly" and task.threshold is None:
        r.fail("an anomaly task needs a threshold", "threshold")
    return task


def _number_map(r: _Reader, key: str) -> dict[str, float]:
    sub = r.sub(key, required=False)
    if sub is None:
        return {}
    if not isinstance(sub.obj, dict):
        r.fail(f"must be an object of names to numbers, got {_kind(sub.obj)}", key)
    values = {str(name): sub.number(name) for name in sub.obj}
    if any(v < 0 for v in values.values()):
        r.fail("values must be >= 0", key)
    return values


def _tolerance(t: _Reader) -> Tolerance:
    tol = Tolerance(atol=t.number("atol"), rtol=t.number("rtol", required=False) or 0.0,
                    outputs=_number_map(t, "outputs"), spread=_number_map(t, "spread"),
                    rounding=t.number("rounding", required=False), basis=t.text("basis", required=False) or "")
    if tol.atol < 0 or tol.rtol < 0 or (tol.rounding is not None and tol.rounding < 0):
        t.fail("atol, rtol and rounding must be >= 0")
    return tol


def _golden(r: _Reader, artifact_paths: set[str]) -> Golden:
    tolerances: dict[str, Tolerance] = {}
    if (tol := r.sub("tolerances", required=False)) is not None:
        for key in tol.obj:
            if key not in artifact_paths:
                tol.fail(f"{key!r} is not an artifact path", key)
            t = tol.sub(key)
            assert t is not None
            tolerances[key] = _tolerance(t)
    path = r.path("path")
    if not path.endswith(".npz"):
        r.fail(f"{path!r} must be an .npz file", "path")
    return Golden(
        path=path, sha256=_sha256(r), bytes=r.integer("bytes", minimum=1),
        count=r.integer("count", minimum=1), tolerances=tolerances,
    )


def parse_manifest(data: bytes | str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate manifest text; raise :class:`BundleError` naming the bad key."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{source}: {len(data)} bytes is larger than the {MAX_MANIFEST_BYTES} allowed")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        _check_nesting(text, source)
        obj = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except ValueError as exc:
        raise BundleError(f"{source}: {exc}") from None
    except RecursionError:
        raise BundleError(f"{source}: JSON nested too deeply") from None
    r = _Reader(obj, "", source)
    version = r.integer("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        supported = ", ".join(map(str, sorted(SUPPORTED_FORMAT_VERSIONS)))
        r.fail(f"{version} is not supported by this spinal (supports {supported}); upgrade spinal",
               "format_version")
    name = r.text("name")
    if not _NAME_RE.match(name):
        r.fail(f"{name!r} must be 1-128 letters, digits, '.', '_' or '-'", "name")
    inputs = tuple(_tensor_spec(t) for t in r.items("inputs"))
    outputs = tuple(_tensor_spec(t) for t in r.items("outputs"))
    if not inputs or not outputs:
        r.fail("a model needs at least one input and one output", "inputs" if not inputs else "outputs")
    for key, specs in (("inputs", inputs), ("outputs", outputs)):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            r.fail(f"duplicate names {sorted(n for n in set(names) if names.count(n) > 1)}", key)
    artifacts = tuple(_artifact(a) for a in r.items("artifacts"))
    if not artifacts:
        r.fail("a bundle needs at least one artifact", "artifacts")
    paths = [a.path for a in artifacts]
    if len(set(paths)) != len(paths):
        r.fail("two artifacts share a path", "artifacts")
    golden_r = r.sub("golden", required=False)
    golden = _golden(golden_r, set(paths)) if golden_r is not None else None
    task_r = r.sub("task")
    assert task_r is not None
    report = r.raw("report", required=False) or {}
    if not isinstance(report, dict):
        r.fail(f"expected an object, got {_kind(report)}", "report")
    attachments = tuple(
        Attachment(path=a.path("path"), sha256=_sha256(a), bytes=a.integer("bytes", minimum=0))
        for a in r.items("attachments", required=False)
    )
    all_paths = paths + ([golden.path] if golden else []) + [a.path for a in attachments]
    if len(set(all_paths)) != len(all_paths) or MANIFEST_NAME in all_paths:
        r.fail("two files share a path (or one is called manifest.json)", "attachments")
    producer = r.raw("producer", required=False) or {}
    if not isinstance(producer, dict):
        r.fail(f"expected an object, got {_kind(producer)}", "producer")
    return Manifest(
        format_version=version,
        name=name,
        created=r.text("created"),
        inputs=inputs,
        outputs=outputs,
        task=_task(task_r, {o.name for o in outputs}),
        artifacts=artifacts,
        golden=golden,
        report=report,
        attachments=attachments,
        description=r.text("description", required=False) or "",
        producer=producer,
        notes=r.str_list("notes"),
    )


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
MAX_NESTING = 64


def _check_nesting(text: str, source: str) -> None:
    """Refuse JSON nested deeper than any manifest needs, before the parser recurses into it.

    The JSON parser recurses once per level; how deep it may go depends on the interpreter's
    recursion limit, which libraries raise (onnx2tf sets it to 2**31-1), and past the C stack a
    deep document crashes the process instead of raising.
    """
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise BundleError(f"{source}: JSON nested more than {MAX_NESTING} levels deep")
        elif token in "]}":
            depth -= 1


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a manifest")
