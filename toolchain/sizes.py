"""Size and speed regressions: an int8 artifact not smaller, or slower, than the float file it replaces (issue 14).

An int8 ONNX with its GRU/LSTM kept in float, or an int8 TFLite padded by quantize/dequantize pairs, can be larger
than fp32; one with float paths between its int8 kernels (a remedy's) can be slower. Shipping it silently as
"int8" invites deploying it for a size or a speed it does not have.
"""

from __future__ import annotations

from typing import Any

# format -> the float file an int8 artifact of that format is compared with (first one present)
_BASELINES = {"onnx": ("model.fp32.onnx",), "tflite": ("model.fp32.tflite", "model.fp32.onnx")}


# Host latencies are medians of a few dozen runs: below this ratio a difference is within their spread.
SLOWER = 1.1


def _baseline(name: str, entry: dict[str, Any], artifacts: dict[str, dict[str, Any]], key: str) -> str | None:
    """The float file an int8 artifact is compared with on ``key`` (None when not an int8 file, or none has it)."""
    if not str(entry.get("precision", "")).startswith("int8"):
        return None
    base = next((b for b in _BASELINES.get(entry.get("format", ""), ()) if b in artifacts), None)
    return base if base is not None and artifacts[base].get(key) and entry.get(key) else None


def size_regressions(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Mark (``size_regression``: the ratio) every int8 artifact at least as large as its float file; one note each.

    ``artifacts`` maps file name → report entry (``format``, ``precision``, ``bytes``); entries are updated in place.
    """
    notes = []
    for name, entry in artifacts.items():
        base = _baseline(name, entry, artifacts, "bytes")
        if base is None:
            continue
        ratio = entry["bytes"] / artifacts[base]["bytes"]
        if ratio < 1.0:
            continue
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
    for name, entry in artifacts.items():
        base = _baseline(name, entry, artifacts, "latency_us")
        if base is None:
            continue
        ratio = entry["latency_us"] / artifacts[base]["latency_us"]
        if ratio < SLOWER:
            continue
        entry["speed_regression"] = round(ratio, 2)
        notes.append(f"speed regression: {name} ran {ratio:.2f}x slower than {base} on this host "
                     f"({entry['latency_us']:.0f} vs {artifacts[base]['latency_us']:.0f} µs); measure on the "
                     f"device (`spinal bench`); `spinal run` with runtime auto keeps the faster there")
    return notes
