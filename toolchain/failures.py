"""Telling a model's refusal from our own failure.

An artifact may be left out of a bundle only for a reason that is the model's (an operator a
converter cannot translate, a quantizer that gives up on a graph): that is a
:class:`~device.errors.ModelFileError`, noted in the report while the command still succeeds. Any
other failure (a file we wrote and cannot find again, a bug) is :class:`InternalFailure`: it fails
the whole command with one line naming the artifact, so a bundle never silently lacks an artifact.
"""

from __future__ import annotations

from device.errors import SpinalError

# Text of library errors that mean a path of ours was wrong, whatever exception type carries it
# (onnxruntime's NoSuchFile, protobuf's "Unable to open proto file", TensorFlow's NotFoundError).
_INTERNAL_TEXT = ("no such file", "unable to open proto file", "no_suchfile", "permission denied",
                  "no space left")


class InternalFailure(SpinalError):
    """An artifact failed for a reason that is not the model's; the conversion fails (exit 1)."""

    exit_code = 1


def is_internal(exc: BaseException) -> bool:
    """Whether ``exc`` is our environment's or code's fault rather than the model's."""
    if isinstance(exc, InternalFailure | OSError | NameError | AssertionError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _INTERNAL_TEXT)


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an exception, at most 300 characters."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    if first.endswith("in user code:") and len(lines) > 1:  # TensorFlow's: the cause is the last line
        first = lines[-1]
    first = first[:300]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
