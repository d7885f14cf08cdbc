"""The converter's report: a terminal table, ``report.md`` and ``report.json``."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.table import Table


def clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars plain numbers, tuples lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def _num(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec``; ``nan`` for a value the JSON-safe copy made None (NaN or infinite)."""
    return "nan" if value is None else format(value, spec)


def _metric(entry: dict[str, Any]) -> str:
    if "accuracy" in entry:
        return f"top-1 {_num(entry['accuracy'], '.2f')}%"
    if "mae" in entry:
        return f"MAE {_num(entry['mae'], '.4g')} RMSE {_num(entry['rmse'], '.4g')}"
    if "cosine" in entry:
        return f"cos {_num(entry['cosine'], '.6f')} max|Δ| {_num(entry.get('max_abs', 0), '.3g')}"
    return "-"


def _drop(entry: dict[str, Any]) -> str:
    drop = entry.get("drop")
    return "-" if drop is None else f"{drop:+.3f}"


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per artifact tried: path, status, bytes, metric, drop, latency, quantization."""
    out: list[tuple[str, ...]] = []
    for status_key, status in (("artifacts", "shipped"), ("rejected", "REJECTED"), ("failed", "FAILED")):
        for path, entry in report.get(status_key, {}).items():
            if status_key == "failed":
                out.append((path, status, "-", entry.get("reason", "")[:70], "-", "-", ""))
                continue
            latency = entry.get("latency_us")
            out.append((
                path, status, f"{entry.get('bytes', 0):,}", _metric(entry), _drop(entry),
                "-" if latency is None else f"{latency:.0f} µs", entry.get("quantization", ""),
            ))
    return out


HEADERS = ("artifact", "status", "bytes", "metric", "drop vs fp32", "latency here", "quantization")


def table(report: dict[str, Any]) -> Table:
    """The summary table for the terminal."""
    t = Table(title=f"spinal convert: {report.get('name', '')}", title_justify="left")
    for h in ("artifact", "status", "bytes", "metric", "drop", "latency"):
        t.add_column(h, no_wrap=h != "metric", overflow="fold")
    for row in rows(report):
        style = "red" if row[1] != "shipped" else None
        t.add_row(*row[:6], style=style)
    return t


def markdown(report: dict[str, Any]) -> str:
    """``report.md``: what was converted, from what, with which data, and how every artifact did."""
    lines = [f"# {report.get('name', 'model')}: conversion report", ""]
    src = report.get("source", {})
    lines.append(f"- source: `{src.get('model', '')}` ({src.get('kind', '')})")
    for key in ("calibration", "validation"):
        data = report.get(key)
        if data:
            lines.append(f"- {key}: {data.get('source')} — {data.get('samples')} samples, sha256 "
                         f"`{str(data.get('sha256', ''))[:16]}…`"
                         + (f", {data['method']}" if data.get("method") else ""))
    lines.append(f"- accuracy gate: max drop {report.get('max_drop')} ({report.get('drop_meaning', '')})")
    if report.get("conversion_seconds") is not None:
        lines.append(f"- conversion time: {report['conversion_seconds']:.1f} s")
    lines += ["", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows(report)]
    remedies = [(p, e) for key in ("artifacts", "rejected") for p, e in report.get(key, {}).items()
                if e.get("attempts")]
    if remedies:
        lines += ["", "## Quantization attempts", ""]
        for path, entry in remedies:
            lines.append(f"- `{path}`:")
            for a in entry["attempts"]:
                drop = "failed: " + a.get("error", "") if a.get("drop") is None else f"drop {a['drop']:+.3f}"
                lines.append(f"  - {a['config']}: {drop}{' ← chosen' if a.get('chosen') else ''}")
    notes = report.get("notes", [])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(clean(report), indent=2, allow_nan=False) + "\n"
