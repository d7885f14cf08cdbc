"""``manifest.json`` text -> :class:`~device.manifest.types.Manifest`, through :mod:`device.schema`: every
error is a :class:`~device.errors.BundleError` naming the key (``manifest.json: artifacts[1].sha256: ...``)."""

from __future__ import annotations

import json
import re

from device.errors import BundleError
from device.manifest.types import MANIFEST_NAME, Manifest
from device.schema import Reader, SchemaError, path_text

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_NESTING = 64
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
# JSON's words; null is an absent value; keys a newer spinal added are skipped.
_READER = Reader(json=True, ignore_unknown=True)


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
    try:
        return _READER.build(Manifest, obj)
    except SchemaError as exc:
        raise BundleError(f"{source}: {path_text(exc.path, quote=False)}: {exc.detail}") from None


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
