"""The project's exception types.

Libraries raise these; only ``device/cli/`` (and ``spinal run``'s serving process, :mod:`device.daemon.entry`)
turn them into messages and exit codes, with :func:`report_line`
(0 ok, 1 a check failed, 2 bad input or usage, 3 the device ran out of disk space). Every message is
one line that names the file, key or device concerned and, where there is one, the fix.
"""


class SpinalError(Exception):
    """Base class of every error Spinal reports to a user."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message from a library would break log parsing.
        super().__init__(" ".join(str(message).split()))


class BadInput(SpinalError):
    """The user gave us something we cannot use: a corrupt file, a wrong key, a bad option."""

    exit_code = 2


class BundleError(BadInput):
    """A bundle (directory or ``.spinal`` archive) is malformed, tampered with or unsafe."""


class ModelFileError(BadInput):
    """A model file (.onnx / .tflite) is unreadable, truncated or of the wrong format."""


class MissingDependency(BadInput):
    """An optional package is not installed; the message says which extra to install."""


class CheckFailed(SpinalError):
    """A check ran to completion and found a problem (parity mismatch, accuracy gate)."""

    exit_code = 1


class OutOfSpace(SpinalError):
    """The device's disk is full: not the input's fault. Exit code 3, which the systemd unit does not
    restart on (``RestartPreventExitStatus=3``): restarting cannot help until space is freed."""

    exit_code = 3


def report_line(exc: BaseException) -> tuple[str, int] | None:
    """What a command reports for ``exc``: the one line after ``error:`` and the exit code. A
    :class:`SpinalError` gives its message and code; an ``OSError`` (no such file, permission denied, disk
    full...: the environment, not a bug) its file and reason, code 2; anything else ``None`` (a bug: let its
    traceback show)."""
    if isinstance(exc, SpinalError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}", 2
    return None
