"""The tflite-runtime fallback backend, with its known breakages detected before they crash.

tflite-runtime 2.14 is the last release. What goes wrong with it, and what we say instead:

- numpy 2: the wheel was built against numpy 1.x and fails at ``Interpreter()`` with
  ``_ARRAY_API not found`` (after printing a page of warnings). Checked before the import.
- Python 3.13+: there is no wheel; say so instead of "module not found".
- Dynamic-range files made by TF >= 2.19 use FULLY_CONNECTED version 12, which 2.14 cannot
  load. Checked in the flatbuffer before the interpreter sees it.
- It does not hand int8 models to XNNPACK (about 10x slower than LiteRT): a warning.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

from device.errors import MissingDependency, ModelFileError
from device.runtime.base import RUNTIMES, log
from device.runtime.delegates import DelegateSpec
from device.runtime.litert import InterpreterSession, open_interpreter

NAME = "tflite-runtime"
LITERT_HINT = "install ai-edge-litert instead: pip install 'spinal[device]'"
# Builtin operator code -> the newest version tflite-runtime 2.14 implements (only the ones seen to break).
MAX_OP_VERSION_2_14: dict[int, tuple[str, int]] = {9: ("FULLY_CONNECTED", 11)}
_FULLY_INT8 = {"int8", "uint8"}


def version() -> str:
    """The installed tflite-runtime version."""
    return RUNTIMES[NAME].version()


def preflight(numpy_version: str | None = None, python: tuple[int, int] | None = None) -> None:
    """Raise :class:`MissingDependency` naming the fix if tflite-runtime cannot work in this environment."""
    numpy_version = numpy_version or np.__version__
    python = python or (sys.version_info.major, sys.version_info.minor)
    if int(numpy_version.split(".")[0]) >= 2:
        raise MissingDependency(f"tflite-runtime was built for numpy 1.x and fails with '_ARRAY_API not found' "
                                f"under numpy {numpy_version}; {LITERT_HINT} (or pin 'numpy<2')")
    if python >= (3, 13):
        raise MissingDependency(f"tflite-runtime has no release for Python {python[0]}.{python[1]}; {LITERT_HINT}")


def operator_codes(data: bytes, source: str = "model.tflite") -> list[tuple[int, int, str | None]]:
    """``(builtin_code, version, custom_code)`` of every operator code in a ``.tflite`` flatbuffer."""

    def u32(pos: int) -> int:
        return int(struct.unpack_from("<I", data, pos)[0])

    def field(table: int, index: int) -> int | None:
        vtable = table - struct.unpack_from("<i", data, table)[0]
        vsize = struct.unpack_from("<H", data, vtable)[0]
        if 4 + 2 * index >= vsize:
            return None
        off = struct.unpack_from("<H", data, vtable + 4 + 2 * index)[0]
        return table + off if off else None

    try:
        root = u32(0)
        pos = field(root, 1)  # Model.operator_codes
        if pos is None:
            return []
        vec = pos + u32(pos)
        codes = []
        for i in range(u32(vec)):
            elem = vec + 4 + 4 * i
            table = elem + u32(elem)
            deprecated = field(table, 0)
            custom = field(table, 1)
            ver = field(table, 2)
            builtin = field(table, 3)
            code = max(struct.unpack_from("<b", data, deprecated)[0] if deprecated else 0,
                       struct.unpack_from("<i", data, builtin)[0] if builtin else 0)
            name = None
            if custom is not None:
                start = custom + u32(custom)
                name = data[start + 4:start + 4 + u32(start)].decode("utf-8", "replace")
            codes.append((code, struct.unpack_from("<i", data, ver)[0] if ver else 1, name))
        return codes
    except (struct.error, IndexError) as exc:
        raise ModelFileError(f"{source}: not a readable TFLite flatbuffer (truncated or corrupt: {exc})") from None


def check_model(path: Path) -> None:
    """Refuse files that tflite-runtime 2.14 is known not to load, before it tries."""
    codes = operator_codes(path.read_bytes(), str(path))
    for code, ver, _ in codes:
        known = MAX_OP_VERSION_2_14.get(code)
        if known and ver > known[1]:
            raise ModelFileError(f"{path}: uses {known[0]} version {ver} (a dynamic-range file from TensorFlow "
                                 f">= 2.19), which tflite-runtime {version()} cannot load; {LITERT_HINT}")


def open_session(path: Path, threads: int | None, delegate: DelegateSpec) -> InterpreterSession:
    """Load ``path`` in tflite-runtime after the preflight checks."""
    preflight()
    check_model(path)
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType, load_delegate
    except (ImportError, AttributeError) as exc:
        raise MissingDependency(f"tflite-runtime cannot be imported ({exc}); {LITERT_HINT}") from None
    session = open_interpreter(Interpreter, load_delegate, OpResolverType, NAME, version(), path, threads, delegate)
    if delegate.kind == "cpu" and session.delegate is None and session.tensor_dtypes() & _FULLY_INT8:
        log.warning("%s: tflite-runtime does not run int8 models on XNNPACK (about 10x slower than LiteRT); %s",
                    path.name, LITERT_HINT)
    return session
