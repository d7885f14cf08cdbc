"""Register layouts declared as data: one declaration serves the driver (to encode what it writes, decode
what it reads) and the simulated chip (to decode what it is sent, encode what it serves).

A :class:`Register` has an address, a width (1 or 2 bytes), a power-on value and named
:class:`Field` s; a field is a bit mask and, optionally, a lookup from meaningful values (2 g,
"normal", 16x oversampling) to the bits the datasheet gives for them. The idea is the one of
pimoroni's ``i2cdevice`` (``Register('CTRL_MEAS', 0xF4, fields=(BitField('osrs_t', 0b11100000,
adapter=LookupAdapter({...})), ...))``), written here without a bus of its own: drivers keep
talking to :class:`device.sensors.bus.I2CBus`.

    >>> CTRL = Register("CTRL", 0xF4, (Field("osrs_t", 0xE0, {1: 1, 2: 2, 4: 3}), Field("mode", 0x03,
    ...                                {"sleep": 0, "forced": 1, "normal": 3})))
    >>> hex(CTRL.encode(osrs_t=4, mode="normal"))
    '0x63'
    >>> CTRL.decode(0x63)
    {'osrs_t': 4, 'mode': 'normal'}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Field:
    """``mask`` selects the bits (contiguous); ``values`` maps a value to its bits (shifted down),
    ``also`` maps further bit patterns to a value when decoding (e.g. osrs codes 6 and 7 also mean x16).
    Without ``values`` a field is a plain unsigned number (a flag is a one-bit field: 0 or 1)."""

    name: str
    mask: int
    values: Mapping[Any, int] | None = None
    also: Mapping[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mask <= 0:
            raise ValueError(f"field {self.name}: mask must be positive")
        bits = self.mask >> self.shift
        if bits & (bits + 1):
            raise ValueError(f"field {self.name}: mask {self.mask:#x} is not contiguous")

    @property
    def shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1

    @property
    def bits(self) -> int:
        """The field's largest raw value."""
        return self.mask >> self.shift

    def raw(self, register_value: int) -> int:
        """The field's bits of ``register_value``, shifted down."""
        return (register_value & self.mask) >> self.shift

    def encode(self, value: Any) -> int:
        """``value`` as bits in place (to OR into a register value)."""
        if self.values is not None:
            try:
                raw = self.values[value]
            except (KeyError, TypeError):
                raise ValueError(f"field {self.name}: {value!r} is not one of "
                                 f"{', '.join(map(repr, self.values))}") from None
        else:
            raw = int(value)
        if not 0 <= raw <= self.bits:
            raise ValueError(f"field {self.name}: {raw} does not fit in mask {self.mask:#x}")
        return raw << self.shift

    def decode(self, register_value: int) -> Any:
        """The field's value in ``register_value`` (a raw number where no lookup names the bits)."""
        raw = self.raw(register_value)
        if self.values is None:
            return raw
        for value, code in self.values.items():
            if code == raw:
                return value
        return self.also.get(raw, raw)


@dataclass(frozen=True)
class Register:
    """One register: ``address``, ``fields``, ``width`` in bytes (big-endian on the wire when 2),
    ``reset`` (the power-on value), ``read_only``; ``length`` > width for a block (calibration, data)."""

    name: str
    address: int
    fields: tuple[Field, ...] = ()
    width: int = 1
    reset: int = 0
    read_only: bool = False
    length: int | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"register {self.name}: a field name is used twice")
        used = 0
        for f in self.fields:
            if f.mask & used:
                raise ValueError(f"register {self.name}: field {f.name} overlaps another field")
            if f.mask >> (8 * self.width):
                raise ValueError(f"register {self.name}: field {f.name} is wider than {self.width} byte(s)")
            used |= f.mask

    @property
    def size(self) -> int:
        """Bytes that belong to the register (a block's length, or the width)."""
        return self.length or self.width

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    def __getitem__(self, name: str) -> Field:
        return self.field(name)

    def encode(self, base: int = 0, **values: Any) -> int:
        """A register value: ``base`` with the named fields replaced."""
        out = base
        for name, value in values.items():
            f = self.field(name)
            out = (out & ~f.mask) | f.encode(value)
        return out

    def decode(self, value: int) -> dict[str, Any]:
        """Every field's value."""
        return {f.name: f.decode(value) for f in self.fields}

    def get(self, value: int, name: str) -> Any:
        return self.field(name).decode(value)

    def to_bytes(self, value: int) -> bytes:
        return value.to_bytes(self.width, "big")

    def from_bytes(self, data: bytes | bytearray | list[int]) -> int:
        return int.from_bytes(bytes(data[: self.width]), "big")


class RegisterMap:
    """A chip's registers by name (attribute or item) and by address."""

    def __init__(self, chip: str, *registers: Register) -> None:
        self.chip = chip
        self._by_name: dict[str, Register] = {}
        self._by_address: dict[int, Register] = {}
        for r in registers:
            if r.name in self._by_name:
                raise ValueError(f"{chip}: register {r.name} declared twice")
            if r.address in self._by_address:
                raise ValueError(f"{chip}: registers {self._by_address[r.address].name} and {r.name} share "
                                 f"address {r.address:#04x}")
            self._by_name[r.name] = r
            self._by_address[r.address] = r

    def __getattr__(self, name: str) -> Register:
        try:
            reg: Register = self.__dict__["_by_name"][name]
            return reg
        except KeyError:
            raise AttributeError(f"{self.__dict__.get('chip', '?')} has no register {name!r}") from None

    def __getitem__(self, name: str) -> Register:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Register]:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def at(self, address: int) -> Register | None:
        """The register at ``address`` (``None`` if none is declared there)."""
        return self._by_address.get(address)

    def covering(self, address: int) -> Register | None:
        """The register or block that ``address`` belongs to."""
        for r in self._by_name.values():
            if r.address <= address < r.address + r.size:
                return r
        return None

    def replace(self, chip: str, *registers: Register, drop: tuple[str, ...] = ()) -> RegisterMap:
        """A map for a sibling chip: these registers replace the ones of the same name, ``drop`` are left out."""
        new = {r.name: r for r in registers}
        kept = [new.pop(r.name, r) for r in self if r.name not in drop]
        return RegisterMap(chip, *kept, *new.values())
