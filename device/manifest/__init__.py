"""The bundle manifest (``manifest.json``): schema, parsing and serialisation.

The manifest says everything a device needs to know to run a model: its logical inputs and
outputs (shape, dtype, layout, semantic channel names, sample rate, window, hop,
normalization), what the outputs mean (classes, regression, anomaly score), every artifact
(format, precision, sha256, size, per-tensor layout and int8 quantization), the golden
vectors that prove a device runs the same model, and the converter's report.

The types (:mod:`~device.manifest.types`) check themselves; parsing (:mod:`~device.manifest.parse`) builds
them through :mod:`device.schema` and names the key in every error (``artifacts[1].sha256: ...``).
The format is documented in ``docs/bundle-format.md``.
"""

from device.manifest.parse import MAX_MANIFEST_BYTES, MAX_NESTING, parse_manifest
from device.manifest.types import _LAYOUT_RE as _LAYOUT_RE  # toolchain/convert.py checks its options with
from device.manifest.types import _NAME_RE as _NAME_RE  # the manifest's own name and layout rules
from device.manifest.types import (
    ARTIFACT_FORMATS,
    DTYPES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    PRECISIONS,
    SUPPORTED_FORMAT_VERSIONS,
    TASK_KINDS,
    Artifact,
    ArtifactFormat,
    ArtifactTensor,
    Attachment,
    Golden,
    Manifest,
    Normalization,
    Precision,
    Quantization,
    Task,
    TaskKind,
    TensorSpec,
    Tolerance,
    unsafe_path_reason,
)

__all__ = [
    "ARTIFACT_FORMATS", "DTYPES", "FORMAT_VERSION", "MANIFEST_NAME", "MAX_MANIFEST_BYTES", "MAX_NESTING",
    "PRECISIONS", "SUPPORTED_FORMAT_VERSIONS", "TASK_KINDS", "Artifact", "ArtifactFormat", "ArtifactTensor",
    "Attachment", "Golden", "Manifest", "Normalization", "Precision", "Quantization", "Task", "TaskKind",
    "TensorSpec", "Tolerance", "parse_manifest", "unsafe_path_reason",
]
