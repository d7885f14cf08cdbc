"""Unit names compared between a bundle's input channels and the sensor drivers.

The drivers speak SI with proper symbols (``°C``, ``m/s²``, ``%RH``, ``Pa``, ``V``, ``rad/s``); a
bundle may have been made with ASCII spellings. :func:`normalize_unit` maps each known spelling of
the same unit to one canonical symbol (``C``, ``degC``, ``celsius`` -> ``°C``; ``m/s^2``, ``m/s2``,
``m s-2`` -> ``m/s²``; ``%``, ``percent``, ``% RH`` -> ``%RH``; ``deg/s``, ``dps`` -> ``°/s``) and
leaves every other name as written. The listed spellings are matched without regard to case and
spacing; any other name must match exactly (``hPa`` is not ``Pa``, ``mPa`` is not ``MPa``). Two units
are the same when their normalized forms are equal.
"""

from __future__ import annotations

_ALIASES: dict[str, str] = {
    "c": "°C", "degc": "°C", "deg c": "°C", "°c": "°C", "celsius": "°C", "degrees celsius": "°C", "℃": "°C",
    "m/s^2": "m/s²", "m/s2": "m/s²", "m s-2": "m/s²", "m/s/s": "m/s²", "m/s²": "m/s²", "m·s⁻²": "m/s²",
    "%": "%RH", "%rh": "%RH", "% rh": "%RH", "percent": "%RH", "rh": "%RH",
    "deg/s": "°/s", "dps": "°/s", "°/s": "°/s", "degrees/s": "°/s",
    "rad/s": "rad/s", "rad s-1": "rad/s",
    "pa": "Pa", "pascal": "Pa", "v": "V", "volt": "V", "volts": "V",
    "kelvin": "K",
}


def normalize_unit(unit: str) -> str:
    """The canonical symbol of ``unit`` (see the module docstring); unknown names are returned stripped."""
    text = " ".join(unit.strip().split())
    return _ALIASES.get(text.lower(), text)


def same_unit(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same unit after normalization."""
    return normalize_unit(a) == normalize_unit(b)
