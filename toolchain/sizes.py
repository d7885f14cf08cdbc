"""Size regressions: an int8 artifact that is not smaller than the float file it replaces (issue 14).

An int8 ONNX with its GRU/LSTM kept in float, or an int8 TFLite padded by quantize/dequantize pairs, can be larger
than fp32. Shipping it silently as "int8" invites deploying it for a size it does not have.
"""

from __future__ import annotations

from typing import Any

# format -> the float file an int8 artifact of that format is compared with (first one present)
_BASELINES = {"onnx": ("model.fp32.onnx",), "tflite": ("model.fp32.tflite", "model.fp32.onnx")}


def size_regressions(artifacts: dict[str, dict[str, Any]]) -> list[str]:
    """Mark (``size_regression``: the ratio) every int8 artifact at least as large as its float file; one note each.

    ``artifacts`` maps file name → report entry (``format``, ``precision``, ``bytes``); entries are updated in place.
    """
    notes = []
    for name, entry in artifacts.items():
        if not str(entry.get("precision", "")).startswith("int8"):
            continue
        base = next((b for b in _BASELINES.get(entry.get("format", ""), ()) if b in artifacts), None)
        if base is None or not artifacts[base].get("bytes"):
            continue
        ratio = entry["bytes"] / artifacts[base]["bytes"]
        if ratio < 1.0:
            continue
        entry["size_regression"] = round(ratio, 3)
        notes.append(f"size regression: {name} is {ratio:.2f}x the size of {base} ({entry['bytes']:,} vs "
                     f"{artifacts[base]['bytes']:,} bytes; float kernels kept, or quantize/dequantize pairs): "
                     f"deploy {base} unless {name} is measured faster where it runs")
    return notes
