"""One schema engine: a TOML/JSON table -> a typed frozen dataclass, driven by the dataclass itself.

A field's type says what a value must be (``bool``, ``int``, ``float``, ``str``, ``Path``, ``Literal[...]``,
an ``Enum``, ``tuple[T, ...]``, ``tuple[A, B]``, ``dict[str, T]``, ``X | None``, a nested dataclass, ``Any``);
its ``field(metadata=...)`` adds ``"min"``/``"max"`` (inclusive), ``"gt"`` (exclusive), ``"choices"`` (a
collection the value must be in), ``"check"`` (a callable raising :class:`ValueError` or
:class:`SchemaError` with what is wrong) and ``"parse"`` (a callable that makes the value from the raw one, for
a type the engine does not know); on a ``tuple`` the bounds apply to each item. Unknown keys are refused with a
"did you mean". Every error is a
:class:`SchemaError` carrying the key path as a tuple (``("sensors", 0, "address")``) and a one-line message, so
that a caller can point at the key (a TOML line) without reading the message text.

A dataclass may check itself in ``__post_init__`` or, to keep its constructor permissive, in a ``check()``
method that :meth:`Reader.build` calls after constructing it: raising :func:`invalid`
(``invalid("port", "must be ...")``) names its key; any other :class:`ValueError` or
:class:`~device.errors.BadInput` is reported at the table.

``Reader(json=True)`` speaks JSON's words (an object, a list, null) and treats a ``null`` value as absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from device.errors import BadInput

KeyPath = tuple[str | int, ...]
T = TypeVar("T")

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def path_text(path: Iterable[str | int], quote: bool = True) -> str:
    """``("sensors", 0, "sim", "seed")`` -> ``sensors[0].sim.seed`` (``<top>`` for the empty path); a key that
    is not a bare TOML key is quoted (``binding."imu.x"``) unless ``quote`` is false."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            shown = part if not quote or _BARE_KEY.fullmatch(part) else f'"{part}"'
            out += f".{shown}" if out else shown
    return out or "<top>"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class SchemaError(BadInput):
    """A value does not fit its schema. ``path`` is the key path (a tuple), ``detail`` what is wrong;
    the message is ``PATH: detail`` (just ``detail`` at the top) unless ``message`` gives another."""

    def __init__(self, path: KeyPath, detail: str, message: str | None = None) -> None:
        self.path: KeyPath = tuple(path)
        self.detail = " ".join(str(detail).split())
        self.custom = message is not None
        super().__init__(message if message is not None else
                         f"{path_text(self.path)}: {self.detail}" if self.path else self.detail)

    def under(self, prefix: KeyPath) -> SchemaError:
        """The same error with ``prefix`` put before its path (a custom message is kept as it is)."""
        return SchemaError((*prefix, *self.path), self.detail, str(self) if self.custom else None)


def invalid(key: str | int | KeyPath, detail: str) -> SchemaError:
    """For a dataclass's own check: an error about its field ``key`` (a relative path)."""
    return SchemaError(key if isinstance(key, tuple) else (key,), detail)


def kind_of(value: Any, json: bool = False) -> str:
    """``"an integer"``, ``"a table"`` (JSON: ``"an object"``): what a TOML/JSON value is, for messages."""
    if (json and isinstance(value, list | tuple | dict)) or value is None:
        return "null" if value is None else "an object" if isinstance(value, dict) else "a list"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            tuple: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _article(text: str) -> str:
    return text.removeprefix("a ").removeprefix("an ")


def describe(tp: Any) -> str:
    """What a value of type ``tp`` must be, in words: ``"an integer"``, ``"one of 'a', 'b'"``."""
    origin = typing.get_origin(tp)
    simple = {str: "a string", bool: "true or false", int: "an integer", float: "a number", Path: "a path (string)"}
    if tp in simple:
        return simple[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_article(describe(args[0]))}s"
        return f"an array of {len(args)} values"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a table"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp))


@functools.cache
def _schema_of(cls: type) -> tuple[dict[str, Any], tuple[dataclasses.Field[Any], ...]]:
    """A dataclass's resolved field types and its init fields (resolving string annotations is slow: once)."""
    return typing.get_type_hints(cls), tuple(f for f in dataclasses.fields(cls) if f.init)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclass(frozen=True)
class Reader:
    """How values are read. ``resolve_path`` turns a ``Path`` field's string into a path (e.g. relative
    to the config file); ``from_text``: the values may be command-line strings (``"0x10"``, ``"yes"``,
    ``"a,b"``) as well as TOML/JSON values; ``json``: messages in JSON's words, ``null`` is an absent value
    and a missing key is reported at its own path; ``ignore_unknown``: keys no field names are skipped."""

    resolve_path: Callable[[str], Path] | None = None
    from_text: bool = False
    json: bool = False
    ignore_unknown: bool = False

    def kind(self, value: Any) -> str:
        """What ``value`` is, in this reader's words."""
        return kind_of(value, self.json)

    def got(self, value: Any) -> str:
        """``"a string 'x'"`` (JSON: ``"a string"``, as manifests have always said)."""
        return self.kind(value) if self.json else f"{kind_of(value)} {value!r}"

    def build(self, cls: type[T], table: Any, path: KeyPath = (), *, skip: Collection[str] = (),
              extra: Mapping[str, Any] | None = None) -> T:
        """Build dataclass ``cls`` from ``table``: keys in ``skip`` are allowed and ignored, ``extra`` are
        given to the constructor as they are (and are not keys of the table)."""
        if not isinstance(table, dict):
            raise SchemaError(path, f"expected {'an object' if self.json else 'a table'}, got {self.got(table)}")
        hints, all_fields = _schema_of(typing.cast(type, cls))
        extra = dict(extra or {})
        fields = {f.name: f for f in all_fields if f.name not in extra}
        allowed = [*fields, *skip]
        for key in table:
            if key not in fields and key not in skip and not self.ignore_unknown:
                raise SchemaError((*path, key), f"unknown key{did_you_mean(str(key), allowed)} "
                                                f"(allowed: {', '.join(sorted(allowed))})")
        kwargs: dict[str, Any] = extra
        for name, f in fields.items():
            if name in table and not (self.json and table[name] is None):
                kwargs[name] = self.convert(table[name], hints[name], (*path, name), f.metadata)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if self.json:
                    raise SchemaError((*path, name), "missing (required)")
                raise SchemaError(path, f"missing required key {name!r} ({describe(hints[name])})")
        try:
            out = cls(**kwargs)
            check = getattr(out, "check", None)
            if callable(check):
                check()
        except SchemaError as exc:
            raise exc.under(path) from None
        except (BadInput, ValueError) as exc:
            raise SchemaError(path, str(exc)) from None
        return out

    def convert(self, value: Any, tp: Any, path: KeyPath = (), meta: Mapping[str, Any] | None = None) -> Any:
        """``value`` as type ``tp`` (checked against ``meta``: min, max, gt, choices, check)."""
        if meta and "parse" in meta:
            try:
                return meta["parse"](value)
            except SchemaError as exc:
                raise exc.under(path) from None
            except ValueError as exc:
                raise SchemaError(path, str(exc)) from None
        out = self._convert(value, tp, path)
        if meta:
            # Messages show the number as written (rate_hz = 0: "got 0", not "got 0.0").
            shown = value if isinstance(value, int | float) and not isinstance(value, bool) else out
            if out is not None:
                _check_meta(out, meta, path, shown, self.json)
        return out

    def _convert(self, value: Any, tp: Any, path: KeyPath) -> Any:
        scalar = _SCALARS.get(tp)
        if scalar is not None:  # the common case first: a manifest is mostly numbers and strings
            return scalar(self, value, path)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            return self._union(value, tp, path)
        if origin is Literal:
            return _literal(value, typing.get_args(tp), path, self.json)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return _enum(value, tp, path)
        if tp is Path:
            return self._path(value, path)
        if origin is tuple:
            return self._tuple(value, tp, path)
        if origin is dict:
            if not isinstance(value, dict):
                raise SchemaError(path, f"expected {'an object' if self.json else 'a table'}, got {self.got(value)}")
            val_tp = typing.get_args(tp)[1]
            if val_tp is Any:
                return dict(value)
            return {k: self.convert(v, val_tp, (*path, k)) for k, v in value.items()}
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.build(tp, value, path)
        if tp is Any:
            return value
        raise TypeError(f"schema: unsupported type {tp!r} at {path_text(path)}")

    def _union(self, value: Any, tp: Any, path: KeyPath) -> Any:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        errors: list[SchemaError] = []
        for option in options:
            try:
                return self._convert(value, option, path)
            except SchemaError as exc:
                errors.append(exc)
        if len(options) == 1:
            raise errors[0]
        raise SchemaError(path, f"expected {describe(tp)}, got {self.got(value)}")

    def _tuple(self, value: Any, tp: Any, path: KeyPath) -> tuple[Any, ...]:
        if self.from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SchemaError(path, f"expected {'a list' if self.json else describe(tp)}, got {self.got(value)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(self.convert(v, args[0], (*path, i)) for i, v in enumerate(value))
        if len(value) != len(args):
            raise SchemaError(path, f"expected {describe(tp)}, got {len(value)}: {list(value)!r}")
        return tuple(self.convert(v, a, (*path, i)) for i, (v, a) in enumerate(zip(value, args, strict=True)))

    def _path(self, value: Any, path: KeyPath) -> Path:
        if not isinstance(value, str) or not value:
            raise SchemaError(path, f"expected a path (a non-empty string), got {self.got(value)}")
        return self.resolve_path(value) if self.resolve_path else Path(value)


def _bool(reader: Reader, value: Any, path: KeyPath) -> bool:
    if isinstance(value, bool):
        return value
    if reader.from_text and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise SchemaError(path, f"expected true or false, got {reader.got(value)}")


def _int(reader: Reader, value: Any, path: KeyPath) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if reader.from_text:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
    raise SchemaError(path, f"expected an integer, got {reader.got(value)}")


def _float(reader: Reader, value: Any, path: KeyPath) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif reader.from_text and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if number is None:
        raise SchemaError(path, f"expected a number, got {reader.got(value)}")
    if not math.isfinite(number):
        raise SchemaError(path, f"expected a finite number, got {value!r}")
    return number


def _str(reader: Reader, value: Any, path: KeyPath) -> str:
    if not isinstance(value, str):
        raise SchemaError(path, f"expected a string, got {reader.got(value)}")
    return value


_SCALARS: dict[Any, Callable[[Reader, Any, KeyPath], Any]] = {bool: _bool, int: _int, float: _float, str: _str}


def _literal(value: Any, choices: tuple[Any, ...], path: KeyPath, json: bool = False) -> Any:
    # True == 1 in Python: a bool must meet a bool choice and a number a number.
    if not isinstance(value, str | int | float) or value not in choices \
            or isinstance(value, bool) != isinstance(choices[0], bool):
        if json:
            raise SchemaError(path, f"{value!r} is not one of {', '.join(map(str, choices))}")
        hint = did_you_mean(value, map(str, choices)) if isinstance(value, str) else ""
        raise SchemaError(path, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}{hint}")
    return value


def _enum(value: Any, tp: type[enum.Enum], path: KeyPath) -> enum.Enum:
    if isinstance(value, tp):
        return value
    values = [m.value for m in tp]
    return tp(_literal(value, tuple(values), path))


def _check_meta(value: Any, meta: Mapping[str, Any], path: KeyPath, shown: Any, json: bool = False) -> None:
    if isinstance(value, tuple) and any(k in meta for k in ("min", "max", "gt")):
        bounds = {k: meta[k] for k in ("min", "max", "gt") if k in meta}
        for i, item in enumerate(value):
            _check_meta(item, bounds, (*path, i), item, json)
        meta = {k: v for k, v in meta.items() if k not in bounds}
    # Written as "not in range" so that NaN (TOML and JSON can say nan) fails every bound instead of passing it.
    if "min" in meta and not value >= meta["min"]:
        raise SchemaError(path, f"must be >= {meta['min']}, got {shown}")
    if "max" in meta and not value <= meta["max"]:
        raise SchemaError(path, f"must be <= {meta['max']}, got {shown}")
    if "gt" in meta and not value > meta["gt"]:
        raise SchemaError(path, f"must be > {meta['gt']}, got {shown}")
    if "choices" in meta:
        choices = tuple(meta["choices"])
        for i, item in enumerate(value if isinstance(value, tuple) else (value,)):
            if item not in choices:
                shown = ", ".join(f"{c:g}" if isinstance(c, float) else str(c) for c in choices)
                where = (*path, i) if isinstance(value, tuple) else path
                raise SchemaError(where, f"{item!r} is not one of {shown}" if json
                                  else f"must be one of {shown} (got {item!r})")
    check = meta.get("check")
    if check is not None:
        try:
            check(value)
        except SchemaError as exc:
            raise exc.under(path) from None
        except ValueError as exc:
            raise SchemaError(path, str(exc)) from None


def check_fields(obj: Any) -> None:
    """Check a dataclass built by hand (not read from a table) against its fields' metadata: min, max, gt,
    choices, check. Raises :class:`SchemaError` at the field."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meta = {k: v for k, v in f.metadata.items() if k != "parse"}
        if meta and value is not None:
            _check_meta(value, meta, (f.name,), value)


def check_tree(obj: Any, path: KeyPath = ()) -> None:
    """Check a dataclass built by hand and every dataclass inside it (in fields, tuples and dict values) as
    :meth:`Reader.build` would have: field metadata (:func:`check_fields`), then each one's ``check()``.
    Raises :class:`SchemaError` with the full key path (``inputs[0].layout``), so that a builder can map it
    back to what it was given."""
    try:
        check_fields(obj)
    except SchemaError as exc:
        raise exc.under(path) from None
    for f in dataclasses.fields(obj):
        for key, item in _children(getattr(obj, f.name)):
            check_tree(item, (*path, f.name, *key))
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except SchemaError as exc:
            raise exc.under(path) from None
        except (BadInput, ValueError) as exc:
            raise SchemaError(path, str(exc)) from None


def _children(value: Any) -> list[tuple[KeyPath, Any]]:
    """The dataclasses in a field's value, each with its key below the field."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [((), value)]
    if isinstance(value, tuple):
        return [((i,), v) for i, v in enumerate(value) if dataclasses.is_dataclass(v) and not isinstance(v, type)]
    if isinstance(value, dict):
        return [((k,), v) for k, v in value.items() if dataclasses.is_dataclass(v) and not isinstance(v, type)]
    return []


_DEFAULT = Reader()


def build(cls: type[T], table: Any, path: KeyPath = (), *, skip: Collection[str] = (),
          extra: Mapping[str, Any] | None = None) -> T:
    """:meth:`Reader.build` with the default reader (TOML/JSON values, paths as given)."""
    return _DEFAULT.build(cls, table, path, skip=skip, extra=extra)


def convert(value: Any, tp: Any, path: KeyPath = (), meta: Mapping[str, Any] | None = None) -> Any:
    """:meth:`Reader.convert` with the default reader."""
    return _DEFAULT.convert(value, tp, path, meta)
