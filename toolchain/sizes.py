"""Size and speed regressions: an int8 artifact not smaller, or slower, than the float file it replaces (issue 14).

An int8 ONNX with its GRU/LSTM kept in float, or an int8 TFLite padded by quantize/dequantize pairs, can be larger
than fp32; one with float paths between its int8 kernels (a remedy's) can be slower. Shipping it silently as
"int8" invites deploying it for a size or a speed it does not have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# format -> the float file an int8 artifact of that format is compared with (first one present)
_BASELINES = {"onnx": ("model.fp32.onnx",), "tflite": ("model.fp32.tflite", "model.fp32.onnx")}


# Host latencies are medians of a few dozen runs: below this ratio a difference is within their spread.
SLOWER = 1.1


def _regressed(artifacts: dict[str, dict[str, Any]], key: str, at_least: float,
               ) -> Iterator[tuple[str, dict[str, Any], str, float]]:
    """``(name, entry, float file, ratio)`` for every int8 artifact whose ``key`` is at least ``at_least`` times
    its float file's (the first of ``_BASELINES`` present with that key)."""
    for name, entry in artifacts.items():
        if not str(entry.get("precision", "")).startswith("int8") or not entry.get(key):
            continue
        base = next((b for b in _BASELINES.get(entry.get("format", ""), ()) if b in artifacts), None)
        if base is None or not artifacts[base].get(key):
            continue
        ratio = entry[key] / artifacts[base][key]
        if ratio >= at_least:
            yield name, entry, base, ratio


def size_regressions(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Mark (``size_regression``: the ratio) every int8 artifact at least as large as its float file; one note each.

    ``artifacts`` maps file name → report entry (``format``, ``precision``, ``bytes``); entries are updated in place.
    """
    notes = []
    for name, entry, base, ratio in _regressed(artifacts, "bytes", 1.0):
        entry["size_regression"] = round(ratio, 3)
        notes.append(f"size regression: {name} is {ratio:.2f}x the size of {base} ({entry['bytes']:,} vs "
                     f"{artifacts[base]['bytes']:,} bytes; float kernels kept, or quantize/dequantize pairs): "
                     f"deploy {base} unless {name} is measured faster where it runs")
    return notes


def speed_regressions(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Mark (``speed_regression``: the ratio) every int8 artifact at least :data:`SLOWER` times slower than its
    float file on this host (``latency_us``); one note each. The host is not the device: the note says so,
    and ``spinal run``'s ``auto`` measures the bundle's files where it runs and keeps the fastest."""
    notes = []
    for name, entry, base, ratio in _regressed(artifacts, "latency_us", SLOWER):
        entry["speed_regression"] = round(ratio, 2)
        notes.append(f"speed regression: {name} ran {ratio:.2f}x slower than {base} on this host "
                     f"({entry['latency_us']:.0f} vs {artifacts[base]['latency_us']:.0f} µs); measure on the "
                     f"device (`spinal bench`); `spinal run` with runtime auto keeps the faster there")
    return notes
