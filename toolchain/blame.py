"""Why an int8 artifact was refused, in one line that names the node(s) and the reason (issue 14).

The gate refuses an int8 file with its drop; this module says where and why, from what the search measured:

- the noisiest node (ONNX: lowest SQNR of its int8 output; TFLite: the quantization debugger's largest error in
  int8 steps, with the ONNX node whose output holds the same values when one does);
- what keeping the noisiest nodes float did: brought the drop most of the way down (those nodes are the ones to
  blame), or left it (the loss is spread over many nodes, not one: no single layer to keep float);
- the range-sensitive class: Log/Sqrt/Pow/Div nodes whose inputs span more than one int8 scale can hold, when
  the remedy for them is not offered (every weight op feeds them) or when they top the TFLite debugger's list.

Only the line goes into the reason; the ranking, the trials and the verdict go into the entry's ``diagnosis``.
A diagnosis is paid only on refusal and never fails the conversion (:func:`explain`), except for our own errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from toolchain.failures import describe, is_internal

# Keeping the noisiest nodes float names the culprits when it recovers at least this share of the excess drop
# (most of it: a 24-layer chain whose every layer adds the same noise recovered half with its 8 noisiest float).
RECOVERED_SHARE = 2 / 3
# TF op names (the last part of a TF tensor name, lowercased, digits dropped) of range-sensitive operators.
TF_RANGE_OPS = {"sqrt": "Sqrt", "rsqrt": "Rsqrt", "truediv": "Div", "realdiv": "Div", "div": "Div", "log": "Log",
                "pow": "Pow", "reciprocal": "Reciprocal"}


@dataclass(frozen=True)
class Suspect:
    """One node (ONNX) or tensor (TFLite) ranked by the noise its int8 version adds."""

    name: str
    op_type: str  # ONNX op type; for TFLite the TF ops of the tensor's name ("truediv;Sqrt")
    metric: float  # ONNX: SQNR in dB (lower is noisier); TFLite: rmse in int8 steps (higher is noisier)
    tflite: bool = False
    onnx_node: tuple[str, str] | None = None  # TFLite: the ONNX node (name, op) whose output has the same values

    def text(self) -> str:
        if not self.tflite:
            return f"{self.name!r} ({self.op_type}, SQNR {self.metric:.1f} dB)"
        onnx = f", ONNX node {self.onnx_node[0]!r} ({self.onnx_node[1]})" if self.onnx_node else ""
        return f"{self.name!r} (rmse {self.metric:.2f} int8 steps{onnx})"

    def range_ops(self) -> list[str]:
        """The range-sensitive operators among this tensor's TF ops (TFLite) or its op (ONNX)."""
        ops = [TF_RANGE_OPS.get(re.sub(r"[\d_]+$", "", p.rsplit("/", 1)[-1]).lower()) for p in self.name.split(";")]
        found = [o for o in ops if o] if self.tflite else []
        for op in (self.op_type, self.onnx_node[1] if self.onnx_node else ""):
            if op in TF_RANGE_OPS.values():
                found.append(op)
        return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Trial:
    """One attempt with the noisiest nodes kept float, and the drop it measured (NaN: it made no file)."""

    kept: tuple[str, ...]
    drop: float


@dataclass(frozen=True)
class Diagnosis:
    """What the search measured about a refused int8 artifact."""

    suspects: tuple[Suspect, ...]
    trials: tuple[Trial, ...] = ()
    start_drop: float | None = None  # the drop of the configuration the trials started from
    max_drop: float = 0.0
    unremediable: tuple[tuple[str, str], ...] = ()  # range-sensitive nodes every weight op feeds (name, op)
    fallback: str = "model.fp32.onnx"  # the artifact to use instead
    remedies: bool = True
    notes: tuple[str, ...] = ()  # what the diagnosis could not find out, and why
    range_trial: Trial | None = None  # TFLite: the try with the paths into range-sensitive ops float (TF tensors)

    def verdict(self) -> str:
        """``range`` (range-sensitive ops), ``recovered`` (the nodes kept float are the ones to blame), ``spread``
        (keeping them float did not help), ``untried`` (nothing kept float) or ``unranked``."""
        if self.unremediable or (self.suspects and self.suspects[0].tflite and self._tf_range()):
            return "range"
        if not self.suspects:
            return "unranked"
        best = self._best()
        if best is None:
            return "untried"
        return "recovered" if self._recovered(best) else "spread"

    def _recovered(self, best: Trial) -> bool:
        """Whether keeping ``best.kept`` float recovered most of the excess drop."""
        start = best.drop if self.start_drop is None else self.start_drop
        recovered = start - best.drop
        return recovered > 0 and recovered >= RECOVERED_SHARE * (start - self.max_drop)

    def line(self) -> str:
        """One line for the artifact's reason."""
        if self.unremediable:
            shown = ", ".join(f"{n!r} ({op})" for n, op in self.unremediable[:3])
            more = f" and {len(self.unremediable) - 3} more" if len(self.unremediable) > 3 else ""
            head = f"worst TF tensor {self.suspects[0].text()}; " if self.suspects and self.suspects[0].tflite else ""
            return (f"{head}range-sensitive node(s) {shown}{more}: one int8 scale per tensor cannot hold their "
                    f"inputs' range, and every weight op feeds them (keeping their paths float leaves nothing int8); "
                    f"{self.fallback} is the artifact to use")
        if not self.suspects:
            return "no node could be ranked"
        top = self.suspects[0]
        head = f"worst TF tensor {top.text()}" if top.tflite else f"noisiest node {top.text()}"
        ops = self._tf_range()
        if top.tflite and ops:
            head += (f"; {', '.join(ops)} among the worst layers: one int8 scale per tensor cannot hold their "
                     "inputs' range")
        return f"{head}; {self._trials_text(bool(top.tflite and ops))}"

    def _tf_range(self) -> list[str]:
        return list(dict.fromkeys(op for s in self.suspects if s.tflite for op in s.range_ops()))

    def _best(self) -> Trial | None:
        done = [t for t in self.trials if math.isfinite(t.drop)]
        return min(done, key=lambda t: (t.drop, len(t.kept))) if done else None

    def _range_text(self) -> str:
        """What keeping the paths into range-sensitive ops float measured (TFLite), or empty when not tried."""
        t = self.range_trial
        if t is None:
            return ""
        drop = f"drops {t.drop:.1f}" if math.isfinite(t.drop) else "made no file"
        return f"keeping the paths into range-sensitive ops float ({len(t.kept)} TF tensors) {drop}"

    def _trials_text(self, range_class: bool) -> str:
        best, paths = self._best(), self._range_text()
        if best is None:
            if self.remedies:
                text = "keeping it float was not tried" if not self.trials else "keeping it float made no file"
                return f"{text}; {paths}" if paths else text
            fix = "" if self.suspects[0].tflite else f"; --keep-float {self.suspects[0].name} tries it"
            return f"keeping it float not tried (--no-remedies{fix})"
        if self._recovered(best):
            kept = ", ".join(repr(n) for n in best.kept[:4]) + (f" and {len(best.kept) - 4} more"
                                                                 if len(best.kept) > 4 else "")
            return f"keeping {kept} float brings it to {best.drop:.1f} (max {self.max_drop})"
        last = max((t for t in self.trials if math.isfinite(t.drop)), key=lambda t: len(t.kept))
        if range_class:  # with their paths kept float and still refused, int8 inputs are not the whole story
            why = "the loss is not on those paths alone" if paths else "their inputs stay int8"
        else:
            why = "the loss is spread over many nodes, not one"
        also = f", {paths}" if paths else ""
        return f"keeping the {len(last.kept)} noisiest float still drops {last.drop:.1f}{also}: {why}"

    def details(self) -> dict[str, Any]:
        """The report entry's ``diagnosis``."""
        ranked = [{"tensor": s.name, "ops": s.op_type, "rmse_int8_steps": round(s.metric, 4),
                   **({"onnx_node": s.onnx_node[0], "onnx_op": s.onnx_node[1]} if s.onnx_node else {})}
                  if s.tflite else {"node": s.name, "op_type": s.op_type, "sqnr_db": round(s.metric, 2)}
                  for s in self.suspects]
        return {"verdict": self.verdict(), "ranked": ranked, "start_drop": self.start_drop, "max_drop": self.max_drop,
                "kept_float": [{"nodes": list(t.kept), "drop": t.drop} for t in self.trials],
                "range_sensitive": [{"node": n, "op_type": op} for n, op in self.unremediable],
                **({"range_paths_float": {"tensors": list(self.range_trial.kept), "drop": self.range_trial.drop}}
                   if self.range_trial else {}),
                **({"notes": list(self.notes)} if self.notes else {})}


def trials(attempts: Sequence[dict[str, Any]], kept: dict[str, tuple[str, ...]]) -> tuple[Trial, ...]:
    """The gate's attempts (report entries) that kept nodes float, by the labels in ``kept``."""
    return tuple(Trial(kept[a["config"]], float(a["drop"])) for a in attempts if a.get("config") in kept)


def drop_of(attempts: Sequence[dict[str, Any]], label: str | None) -> float | None:
    """The drop the attempt labelled ``label`` measured."""
    return next((float(a["drop"]) for a in attempts if a.get("config") == label), None)


def explain(entry: dict[str, Any], diagnose: Callable[[], Diagnosis]) -> Diagnosis | None:
    """Add the diagnosis of a refused artifact to its report ``entry``: its line to the reason, its details under
    ``diagnosis``. A failure of the diagnosis is reported there, never raised, unless it is our own."""
    try:
        found = diagnose()
    except Exception as exc:  # a diagnosis never fails the conversion
        if is_internal(exc):
            raise
        entry["diagnosis"] = {"error": describe(exc)}
        return None
    attach(entry, found)
    return found


def attach(entry: dict[str, Any], found: Diagnosis) -> None:
    entry["reason"] += f"; {found.line()}"
    entry["diagnosis"] = found.details()
