"""device.schema: a table -> a typed frozen dataclass; every error carries the key path as a tuple."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from device.errors import BadInput
from device.schema import Reader, SchemaError, build, convert, describe, did_you_mean, invalid, path_text


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def _even(value: int) -> None:
    if value % 2:
        raise ValueError(f"{value} is odd; use an even number")


@dataclass(frozen=True)
class Inner:
    name: str
    level: int = field(default=1, metadata={"min": 0, "max": 9})


@dataclass(frozen=True)
class Outer:
    rate_hz: float = field(default=1.0, metadata={"gt": 0})
    mode: Literal["fast", "slow"] = "fast"
    color: Color = Color.RED
    pair: tuple[int, int] = (0, 0)
    tags: tuple[str, ...] = ()
    inner: Inner | None = None
    items: tuple[Inner, ...] = ()
    where: Path | None = None
    size: int = field(default=2, metadata={"check": _even, "choices": (2, 4, 6)})
    flag: bool = False

    def __post_init__(self) -> None:
        if self.mode == "slow" and self.rate_hz > 10:
            raise invalid("rate_hz", "must be <= 10 in slow mode")


@dataclass(frozen=True)
class Pair:
    low: int = 0
    high: int = 1

    def check(self) -> None:
        if self.low > self.high:
            raise invalid("high", f"must be >= low ({self.low})")


@dataclass(frozen=True)
class Holder:
    pairs: dict[str, Pair] = field(default_factory=dict)


def error(table: object, cls: type = Outer, reader: Reader | None = None) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        (reader or Reader()).build(cls, table)
    return info.value


def test_a_table_becomes_the_typed_dataclass() -> None:
    out = build(Outer, {"rate_hz": 5, "mode": "slow", "color": "green", "pair": [1, 2], "tags": ["a"],
                        "inner": {"name": "x"}, "items": [{"name": "y", "level": 3}], "where": "a/b", "size": 4})
    assert out == Outer(rate_hz=5.0, mode="slow", color=Color.GREEN, pair=(1, 2), tags=("a",), inner=Inner("x"),
                        items=(Inner("y", 3),), where=Path("a/b"), size=4)
    assert isinstance(out.rate_hz, float)
    assert build(Outer, {}) == Outer()


@pytest.mark.parametrize(("table", "path", "message"), [
    ({"rate": 1}, ("rate",), "rate: unknown key; did you mean 'rate_hz'? (allowed: color, flag, inner, "),
    ({"rate_hz": 0}, ("rate_hz",), "rate_hz: must be > 0, got 0"),
    ({"rate_hz": "1"}, ("rate_hz",), "rate_hz: expected a number, got a string '1'"),
    ({"rate_hz": float("nan")}, ("rate_hz",), "rate_hz: expected a finite number, got nan"),
    ({"mode": "fsat"}, ("mode",), "mode: expected one of 'fast', 'slow', got 'fsat'; did you mean 'fast'?"),
    ({"color": "blue"}, ("color",), "color: expected one of 'red', 'green', got 'blue'"),
    ({"pair": [1]}, ("pair",), "pair: expected an array of 2 values, got 1: [1]"),
    ({"tags": ["a", 2]}, ("tags", 1), "tags[1]: expected a string, got an integer 2"),
    ({"inner": {}}, ("inner",), "inner: missing required key 'name' (a string)"),
    ({"items": [{"name": "a"}, {"name": "b", "level": 10}]}, ("items", 1, "level"),
     "items[1].level: must be <= 9, got 10"),
    ({"size": 3}, ("size",), "size: must be one of 2, 4, 6 (got 3)"),
    ({"size": 8}, ("size",), "size: must be one of 2, 4, 6 (got 8)"),
    ({"flag": 1}, ("flag",), "flag: expected true or false, got an integer 1"),
    ({"where": ""}, ("where",), "where: expected a path (a non-empty string), got a string ''"),
    ({"mode": "slow", "rate_hz": 20}, ("rate_hz",), "rate_hz: must be <= 10 in slow mode"),
])
def test_errors_carry_the_key_path_and_one_line(table, path, message) -> None:
    exc = error(table)
    assert exc.path == path
    assert str(exc).startswith(message), str(exc)
    assert "\n" not in str(exc) and isinstance(exc, BadInput)


def test_a_custom_check_names_the_key() -> None:
    @dataclass(frozen=True)
    class Odd:
        size: int = field(default=2, metadata={"check": _even})

    exc = error({"size": 3}, Odd)
    assert (exc.path, exc.detail) == (("size",), "3 is odd; use an even number")


def test_a_plain_error_from_the_dataclass_is_reported_at_the_table() -> None:
    @dataclass(frozen=True)
    class Strict:
        n: int = 0

        def __post_init__(self) -> None:
            if self.n < 0:
                raise BadInput("n must not be negative")

    with pytest.raises(SchemaError) as info:
        build(Strict, {"n": -1}, ("top", 0))
    assert info.value.path == ("top", 0) and str(info.value) == "top[0]: n must not be negative"


def test_a_path_below_the_root_is_prefixed() -> None:
    with pytest.raises(SchemaError) as info:
        build(Inner, {"level": "x", "name": "n"}, ("sensors", 2))
    assert info.value.path == ("sensors", 2, "level")
    assert str(info.value) == "sensors[2].level: expected an integer, got a string 'x'"
    assert info.value.under(("a",)).path == ("a", "sensors", 2, "level")


def test_not_a_table() -> None:
    exc = error([1, 2])
    assert exc.path == () and str(exc) == "expected a table, got an array [1, 2]"


def test_from_text_reads_command_line_strings() -> None:
    text = Reader(from_text=True)
    out = text.build(Outer, {"rate_hz": "2.5", "tags": "a, b", "pair": ["0x10", 3.0], "flag": "yes"})
    assert (out.rate_hz, out.tags, out.pair, out.flag) == (2.5, ("a", "b"), (16, 3), True)
    assert str(error({"flag": "maybe"}, reader=text)) == "flag: expected true or false, got a string 'maybe'"
    # A TOML/JSON reader takes none of these.
    assert error({"tags": "a, b"}).path == ("tags",)


def test_paths_resolve_through_the_reader(tmp_path) -> None:
    reader = Reader(resolve_path=lambda s: tmp_path / s)
    assert reader.build(Outer, {"where": "x.txt"}).where == tmp_path / "x.txt"


def test_bool_is_not_a_number_nor_a_literal_number() -> None:
    assert convert(3, int) == 3
    with pytest.raises(SchemaError, match="expected an integer, got a boolean True"):
        convert(True, int)
    with pytest.raises(SchemaError, match="expected one of 1, 2, got True"):
        convert(True, Literal[1, 2])


def test_optional_and_unions() -> None:
    assert convert(None, int | None) is None
    assert convert("a", int | str) == "a"
    with pytest.raises(SchemaError, match=r"^k: expected an integer or a string, got a number 1\.5$"):
        convert(1.5, int | str, ("k",))


def test_words() -> None:
    assert path_text(("sensors", 0, "sim", "odd key")) == 'sensors[0].sim."odd key"'
    assert path_text(()) == "<top>"
    assert did_you_mean("adress", ["address", "bus"]) == "; did you mean 'address'?"
    assert did_you_mean("zzz", ["address"]) == ""
    assert describe(tuple[str, ...]) == "an array of strings"
    assert describe(int | None) == "an integer"


def test_check_fields_checks_a_dataclass_made_by_hand() -> None:
    from device.schema import check_fields

    check_fields(Outer(size=4))
    with pytest.raises(SchemaError) as info:
        check_fields(Outer(size=3))
    assert info.value.path == ("size",) and info.value.detail == "must be one of 2, 4, 6 (got 3)"
    with pytest.raises(SchemaError) as info:
        check_fields(Outer(rate_hz=-1.0))
    assert info.value.path == ("rate_hz",)


def test_the_json_reader_speaks_json() -> None:
    json_reader = Reader(json=True, ignore_unknown=True)
    assert json_reader.build(Inner, {"name": "a", "level": None, "newer_key": 1}) == Inner("a")  # null: absent
    exc = error({"level": 1}, Inner, json_reader)
    assert (exc.path, exc.detail) == (("name",), "missing (required)")
    assert error({"tags": "x"}, reader=json_reader).detail == "expected a list, got a string"
    assert error({"mode": "fsat"}, reader=json_reader).detail == "'fsat' is not one of fast, slow"
    assert error([], reader=json_reader).detail == "expected an object, got a list"
    assert error({"size": 3}, reader=json_reader).detail == "3 is not one of 2, 4, 6"


def test_a_parse_hook_makes_a_type_the_engine_does_not_know() -> None:
    def hex_byte(value: object) -> int:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a hex string")
        return int(value, 16)

    @dataclass(frozen=True)
    class Reg:
        value: int = field(default=0, metadata={"parse": hex_byte})

    assert build(Reg, {"value": "ff"}).value == 255
    with pytest.raises(SchemaError) as info:
        build(Reg, {"value": 3}, ("regs", 1))
    assert info.value.path == ("regs", 1, "value") and info.value.detail == "3 is not a hex string"


def test_check_tree_walks_nested_dataclasses_with_their_paths() -> None:
    from device.schema import check_tree

    check_tree(Outer(items=(Inner("a"), Inner("b", 3))))
    with pytest.raises(SchemaError) as info:
        check_tree(Outer(items=(Inner("a"), Inner("b", 12))), ("top",))
    assert info.value.path == ("top", "items", 1, "level")

    Pair(5, 1)  # the constructor stays permissive
    with pytest.raises(SchemaError) as info:
        check_tree(Holder({"x": Pair(5, 1)}))
    assert info.value.path == ("pairs", "x", "high") and info.value.detail == "must be >= low (5)"
    with pytest.raises(SchemaError) as info:
        build(Holder, {"pairs": {"y": {"low": 2, "high": 1}}})  # build runs check() as well
    assert info.value.path == ("pairs", "y", "high")


@dataclass(frozen=True)
class Bounded:
    above: float = field(default=1.0, metadata={"gt": 0})
    at_least: float = field(default=1.0, metadata={"min": 0})
    at_most: float = field(default=1.0, metadata={"max": 9})


@pytest.mark.parametrize("key", ["above", "at_least", "at_most"])
def test_nan_fails_every_bound_instead_of_passing_it(key) -> None:
    """TOML and JSON can say nan; `nan <= 0` is false, so a bound written that way let it through."""
    with pytest.raises(SchemaError) as err:
        build(Bounded, {key: float("nan")})
    assert err.value.path == (key,)
