"""The manifest's types. Each checks itself (``check()``, which :func:`device.manifest.parse_manifest` runs
through :mod:`device.schema` as it builds them; the constructors stay permissive so that a converter can
build a manifest step by step). A failing check names its key: ``artifacts[1].sha256: ...``."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal, get_args

from device.dsp import Block, ChainError, chain_to_list, parse_chain
from device.errors import BundleError
from device.schema import SchemaError, check_tree, invalid

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = frozenset({1})
MANIFEST_NAME = "manifest.json"

ArtifactFormat = Literal["onnx", "tflite"]
Precision = Literal["fp32", "fp16", "int8", "int8-io"]
TaskKind = Literal["classification", "regression", "anomaly", "score", "features"]

ARTIFACT_FORMATS: tuple[ArtifactFormat, ...] = get_args(ArtifactFormat)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
DTYPES: tuple[str, ...] = (
    "float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
)
_LAYOUT_RE = re.compile(r"^[A-Z]{1,6}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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


def _safe_path(value: str) -> None:
    problem = unsafe_path_reason(value)
    if problem:
        raise ValueError(f"{value!r} {problem}")


def _sha256(value: str) -> None:
    if not _SHA256_RE.match(value):
        raise ValueError(f"expected 64 lowercase hex characters, got {value[:80]!r}")


def _chain(raw: Any) -> tuple[Block, ...]:
    """A ``preprocessing`` chain (:func:`device.dsp.parse_chain`) with its error at the block's key."""
    try:
        return parse_chain(raw)
    except ChainError as exc:
        hint = "; upgrade spinal or rebuild the bundle without it" if exc.key == "block" else ""
        path: list[str | int] = [exc.index] if exc.index is not None else []
        path += exc.key.split(".") if exc.key else []
        raise SchemaError(tuple(path), exc.message + hint) from None


def _shape(shape: tuple[int, ...]) -> None:
    for i, dim in enumerate(shape):  # () is a rank-0 (scalar) tensor
        if dim < 1:
            raise invalid(i, f"dimensions must be positive integers, got {dim!r}")


_PATH = {"check": _safe_path}
_SHA = {"check": _sha256}
_SHAPE = {"check": _shape}


@dataclass(frozen=True)
class Quantization:
    """Affine int8/uint8 quantization of one tensor: ``real = scale * (q - zero_point)``.

    ``scale`` and ``zero_point`` hold one value (per-tensor) or one per channel along ``axis``.
    """

    scale: tuple[float, ...] = field(metadata={"gt": 0})
    zero_point: tuple[int, ...]
    axis: int | None = None

    def check(self) -> None:
        """Zero points in int8/uint8 range, one per scale, an axis for several."""
        for i, zp in enumerate(self.zero_point):
            if not -128 <= zp <= 255:
                raise invalid(("zero_point", i), f"expected an integer in [-128, 255], got {zp!r}")
        if not self.scale or len(self.scale) != len(self.zero_point):
            raise invalid((), f"scale has {len(self.scale)} values but zero_point has {len(self.zero_point)}")
        if len(self.scale) > 1 and self.axis is None:
            raise invalid((), "per-channel quantization (several scales) needs an axis")


@dataclass(frozen=True)
class Normalization:
    """Per-channel standardisation applied by the pipeline before the model: ``(x - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...] = field(metadata={"gt": 0})

    def check(self) -> None:
        """As many means as standard deviations."""
        if len(self.mean) != len(self.std):
            raise invalid((), f"mean has {len(self.mean)} values but std has {len(self.std)}")


@dataclass(frozen=True)
class TensorSpec:
    """A logical model input or output, as every artifact sees it after the runner adapts it."""

    name: str
    shape: tuple[int, ...] = field(metadata=_SHAPE)
    dtype: str = field(default="float32", metadata={"choices": DTYPES})
    layout: str | None = None
    channels: tuple[str, ...] = ()
    sample_rate_hz: float | None = field(default=None, metadata={"gt": 0})
    window: int | None = field(default=None, metadata={"min": 1})
    hop: int | None = field(default=None, metadata={"min": 1})
    normalization: Normalization | None = None
    units: tuple[str, ...] = ()
    # The DSP chain (device/dsp/) from the raw window to the model input.
    preprocessing: tuple[Block, ...] = field(default=(), metadata={"parse": _chain})

    def check(self) -> None:
        """The layout fits the shape; channel names, units and normalization fit the channels."""
        shape, channels, layout = self.shape, self.channels, self.layout
        if layout is not None:
            if not _LAYOUT_RE.match(layout) or len(set(layout)) != len(layout):
                raise invalid("layout", f"{layout!r} is not a layout (distinct capital letters such as NTC or NCHW)")
            if len(layout) != len(shape):
                raise invalid("layout", f"{layout!r} has {len(layout)} axes but shape {list(shape)} has {len(shape)}")
            if channels and "C" in layout and shape[layout.index("C")] != len(channels) and not self.preprocessing:
                raise invalid("channels", f"{len(channels)} channel names for {shape[layout.index('C')]} channels")
        norm = self.normalization
        if norm is not None and channels and not self.preprocessing and len(norm.mean) not in (1, len(channels)):
            raise invalid("normalization", f"has {len(norm.mean)} values for {len(channels)} channels "
                                           f"(give 1 or {len(channels)})")
        if self.units and channels and len(self.units) not in (1, len(channels)):
            raise invalid("units", f"{len(self.units)} units for {len(channels)} channels (give 1 or {len(channels)})")


@dataclass(frozen=True)
class ArtifactTensor:
    """One input or output tensor of one artifact file, as the file itself declares it."""

    name: str
    shape: tuple[int, ...] = field(metadata=_SHAPE)
    dtype: str = field(metadata={"choices": DTYPES})
    layout: str | None = None
    quantization: Quantization | None = None


@dataclass(frozen=True)
class Artifact:
    """One model file in the bundle."""

    path: str = field(metadata=_PATH)
    format: str = field(metadata={"choices": ARTIFACT_FORMATS})
    precision: str = field(metadata={"choices": PRECISIONS})
    sha256: str = field(metadata=_SHA)
    bytes: int = field(metadata={"min": 1})
    inputs: tuple[ArtifactTensor, ...] = ()
    outputs: tuple[ArtifactTensor, ...] = ()
    edgetpu: bool = False

    @property
    def key(self) -> str:
        """The artifact's identity inside the bundle (its path)."""
        return self.path

    def check(self) -> None:
        """The file name ends as its format's do."""
        suffix = ".onnx" if self.format == "onnx" else ".tflite"
        if not self.path.endswith(suffix):
            raise invalid("path", f"{self.path!r} is a {self.format} artifact but does not end in {suffix}")


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

    kind: str = field(metadata={"choices": TASK_KINDS})
    output: str
    labels: tuple[str, ...] = ()
    activation: str | None = field(default=None, metadata={"choices": ("logits", "probabilities")})
    targets: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    threshold: float | None = None
    score: str | None = None

    def check(self) -> None:
        """A classification has labels, an anomaly task a threshold."""
        if self.kind == "classification" and not self.labels:
            raise invalid("labels", "a classification task needs labels")
        if self.kind == "anomaly" and self.threshold is None:
            raise invalid("threshold", "an anomaly task needs a threshold")


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

    def check(self) -> None:
        """No negative bound."""
        for key in ("outputs", "spread"):
            if any(v < 0 for v in getattr(self, key).values()):
                raise invalid(key, "values must be >= 0")
        if self.atol < 0 or self.rtol < 0 or (self.rounding is not None and self.rounding < 0):
            raise invalid((), "atol, rtol and rounding must be >= 0")


@dataclass(frozen=True)
class Golden:
    """Reference inputs and each artifact's expected outputs, in one ``.npz`` file.

    Keys in the file: ``input/<input name>`` (stacked, first axis = sample) and
    ``output/<artifact path>/<output name>``.
    """

    path: str = field(metadata=_PATH)
    sha256: str = field(metadata=_SHA)
    bytes: int = field(metadata={"min": 1})
    count: int = field(metadata={"min": 1})
    tolerances: dict[str, Tolerance] = field(default_factory=dict)

    def check(self) -> None:
        """An ``.npz`` file."""
        if not self.path.endswith(".npz"):
            raise invalid("path", f"{self.path!r} must be an .npz file")


@dataclass(frozen=True)
class Attachment:
    """Any other file carried by the bundle (model card, calibration summary...)."""

    path: str = field(metadata=_PATH)
    sha256: str = field(metadata=_SHA)
    bytes: int = field(metadata={"min": 0})


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

    def validate(self) -> None:
        """Check a manifest built by hand (a converter's) as parsing checks one: every part and the whole.
        Raises :class:`~device.schema.SchemaError` whose ``path`` is the failing key (``inputs[0].layout``)."""
        check_tree(self)

    def check(self) -> None:
        """What ties the parts together (each part checks itself): a supported version, a name, unique
        tensor names and file paths, a task on one of the outputs, tolerances for artifacts."""
        if self.format_version not in SUPPORTED_FORMAT_VERSIONS:
            supported = ", ".join(map(str, sorted(SUPPORTED_FORMAT_VERSIONS)))
            raise invalid("format_version", f"{self.format_version} is not supported by this spinal (supports "
                                            f"{supported}); upgrade spinal")
        if not _NAME_RE.match(self.name):
            raise invalid("name", f"{self.name!r} must be 1-128 letters, digits, '.', '_' or '-'")
        if not self.inputs or not self.outputs:
            raise invalid("inputs" if not self.inputs else "outputs", "a model needs at least one input and one "
                                                                      "output")
        for key, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [s.name for s in specs]
            if len(set(names)) != len(names):
                raise invalid(key, f"duplicate names {sorted(n for n in set(names) if names.count(n) > 1)}")
        self._check_files()
        outputs = {o.name for o in self.outputs}
        if self.task.output not in outputs:
            raise invalid(("task", "output"), f"{self.task.output!r} is not one of the outputs "
                                              f"({', '.join(sorted(outputs))})")

    def _check_files(self) -> None:
        if not self.artifacts:
            raise invalid("artifacts", "a bundle needs at least one artifact")
        paths = [a.path for a in self.artifacts]
        if len(set(paths)) != len(paths):
            raise invalid("artifacts", "two artifacts share a path")
        if self.golden is not None:
            for key in self.golden.tolerances:
                if key not in paths:
                    raise invalid(("golden", "tolerances", key), f"{key!r} is not an artifact path")
        all_paths = [path for _, path, _, _ in self.files()]
        if len(set(all_paths)) != len(all_paths) or MANIFEST_NAME in all_paths:
            raise invalid("attachments", "two files share a path (or one is called manifest.json)")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``None`` and empty optional values left out)."""
        out = asdict(self)
        for i, spec in enumerate(self.inputs):  # blocks keep their name ("block") first
            out["inputs"][i]["preprocessing"] = chain_to_list(spec.preprocessing)
        pruned: dict[str, Any] = _prune(out)
        return pruned

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
