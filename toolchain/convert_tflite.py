"""The TFLite artifacts of one conversion: one SavedModel, then fp32/fp16 files, or int8 files through the gate.

int8 tries per-channel and per-tensor, then the paths into range-sensitive ops kept float (the ONNX remedy of
:mod:`toolchain.range_paths`, its nodes matched to TF tensors by value), then the debugger's most sensitive nodes
kept in float (after the range paths when that try came closest); int8-io reuses
the configuration int8 chose (the same kernels), and a file identical to one already judged is not judged twice.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from device.errors import ModelFileError
from device.manifest import ArtifactTensor
from toolchain.blame import Diagnosis, Suspect, Trial, drop_of, explain, trials
from toolchain.convert_artifacts import evaluate, gate, record
from toolchain.convert_records import Attempt, Basis, Conversion, Made
from toolchain.failures import describe, is_internal
from toolchain.options import FORMATS
from toolchain.validate import Runner


def saved_model(c: Conversion, b: Basis) -> Any:
    """The SavedModel every TFLite file is made from, made once (a failure fails every format the same)."""
    memo = c.tflite
    if memo.error is not None:
        raise ModelFileError(str(memo.error))
    if memo.saved_model is None:
        from toolchain.tflite import keras_saved_model, onnx_to_saved_model

        source = b.io.source
        if source.tflite_blocked:
            raise ModelFileError(source.tflite_blocked)
        try:
            if source.saved_model is not None:
                memo.saved_model = keras_saved_model(source.saved_model, b.inputs, b.outputs)
            else:
                memo.saved_model = onnx_to_saved_model(source.onnx_path, c.work, b.inputs, b.outputs)
        except ModelFileError as exc:
            memo.error = exc
            raise
    return memo.saved_model


class _Attempts:
    """TFLite attempts of one key: each makes a file from the SavedModel; the same configuration is queued
    once, the same file judged once."""

    def __init__(self, c: Conversion, b: Basis, key: str, precision: str, sm: Any) -> None:
        self.c, self.b, self.key, self.precision, self.sm = c, b, key, precision, sm
        self.counter = itertools.count()
        self.made: dict[str, str] = {}  # sha256 of a file made -> the attempt that made it
        self.seen: set[Any] = set()  # configurations already queued
        self.by_label: dict[str, Any] = {}

    def attempt(self, options: Any, label: str) -> Attempt:
        from toolchain.tflite import convert_saved_model, describe_tflite

        self.by_label[label] = options

        def making() -> tuple[Path, tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]:
            b = self.b
            content = convert_saved_model(self.sm, self.precision, b.inputs, b.calib, options)
            digest = hashlib.sha256(content).hexdigest()
            if digest in self.made:  # e.g. a denylist that changed nothing: the same file is not judged twice
                raise ModelFileError(f"made the same file as {self.made[digest]!r} (not evaluated again)")
            self.made[digest] = label
            out = self.c.work / f"{self.key}-{next(self.counter)}.tflite"
            out.write_bytes(content)
            ins, outs = describe_tflite(content, self.sm, b.inputs, b.outputs, b.io.layouts)
            return out, ins, outs
        return label, making

    def unique(self, items: list[tuple[Any, str]]) -> list[Attempt]:
        from toolchain.tflite import TfliteOptions

        out = []
        for options, label in items:
            config = TfliteOptions(per_channel=options.per_channel, denylist=tuple(sorted(set(options.denylist))))
            if config not in self.seen:
                self.seen.add(config)
                out.append(self.attempt(options, label))
        return out


def make_tflite(c: Conversion, b: Basis, key: str, precision: str) -> None:
    """Make TFLite artifact ``key`` (``precision`` fp32, fp16, int8 or int8-io)."""
    from toolchain.tflite import TfliteOptions

    tries = _Attempts(c, b, key, precision, saved_model(c, b))
    if precision in ("fp32", "fp16"):
        label, making = tries.attempt(TfliteOptions(), precision)
        path, ins, outs = making()
        metrics, runner = evaluate(b, path, "tflite", ins, outs)
        record(c, b, key, Made(label, path, ins, outs, metrics, runner), {})
        if FORMATS[key][2] in c.rejected:  # refused: say where it first answers unlike ONNX (paid only here)
            _explain(c.rejected[FORMATS[key][2]], b, path, runner, precision)
        return
    chosen = c.tflite.int8_choice
    if precision == "int8-io" and chosen is not None:  # the same kernels as int8: its search decided already
        options, int8_label = chosen
        gate(c, b, key, [tries.attempt(options, f"{int8_label} (chosen for model.int8.tflite)")], None)
    else:
        _int8_search(c, b, key, tries)
    entry = c.shipped[key].entry if key in c.shipped else c.rejected.get(FORMATS[key][2], {})
    quantization = entry.get("quantization")
    if precision == "int8" and quantization in tries.by_label:
        c.tflite.int8_choice = (tries.by_label[quantization], quantization)
        held = c.tflite.range_float or ()
        if held and set(held) <= set(tries.by_label[quantization].denylist):
            c.notes.append(f"{FORMATS[key][2]}: kept float, the TF tensors on the paths into range-sensitive ops "
                           f"(one int8 scale cannot hold their inputs' range): {', '.join(held[:6])}"
                           f"{' ...' if len(held) > 6 else ''}")
    if key not in c.shipped and entry:  # refused: say which node(s) and why (paid only here)
        explain(entry, lambda: _int8_diagnosis(c, b, entry, tries.sm))


def _int8_diagnosis(c: Conversion, b: Basis, entry: dict[str, Any], sm: Any) -> Diagnosis:
    """The diagnosis of a refused int8 TFLite file: the debugger's ranking (run now when the search did not run
    it), each tensor's ONNX node when one matches, the sensitive-node tries (int8-io: int8's, when int8 was refused
    too) and range-sensitive ONNX nodes every weight op feeds."""
    import onnx

    from toolchain.range_paths import unremediable
    from toolchain.tflite import sensitive_tf_nodes

    memo = c.tflite
    if memo.start is not None and memo.ranked is None:
        raise ModelFileError("the quantization debugger failed (see the notes)")
    if memo.ranked is None:
        memo.ranked = sensitive_tf_nodes(sm, b.inputs, b.calib)
    int8 = c.rejected.get(FORMATS["tflite-int8"][2], {})
    attempts = entry.get("attempts") or int8.get("attempts") or []
    if memo.matched is None:  # int8-io's diagnosis reuses int8's
        memo.matched = _onnx_nodes(c, b, sm, [r.tensor for r in memo.ranked])
    matched, error = memo.matched
    suspects = tuple(Suspect(r.tensor, ";".join(p.rsplit("/", 1)[-1] for p in r.tensor.split(";")),
                             r.rmse_per_step, tflite=True, onnx_node=matched.get(r.tensor)) for r in memo.ranked)
    range_drop = drop_of(attempts, memo.range_label)
    return Diagnosis(suspects=suspects, trials=trials(attempts, memo.kept), start_drop=drop_of(attempts, memo.start),
                     max_drop=c.opts.quantization.max_drop, fallback=FORMATS["tflite-fp32"][2],
                     range_trial=Trial(memo.range_float or (), range_drop) if range_drop is not None else None,
                     unremediable=unremediable(onnx.load(str(b.io.source.onnx_path))),
                     remedies=c.opts.quantization.remedies,
                     notes=(f"no ONNX node matched: {error}",) if error else ())


def _onnx_nodes(c: Conversion, b: Basis, sm: Any, names: list[str]) -> tuple[dict[str, tuple[str, str]], str]:
    """The ONNX node of each TF tensor in ``names`` (matched by value in the fp32 TFLite file, which has the int8
    file's tensor names), and why none could be matched when that failed (best effort)."""
    from toolchain.locate import matching_nodes

    try:
        path, runner = _fp32_file(c, b, sm)
        sample = b.val.sample(0, b.inputs)
        return matching_nodes(b.io.source.onnx_path, path, sample, runner.prepare(sample), names), ""
    except Exception as exc:  # the match only adds the ONNX names
        if is_internal(exc):
            raise
        return {}, describe(exc)


def _fp32_file(c: Conversion, b: Basis, sm: Any) -> tuple[Path, Runner]:
    """The fp32 TFLite file (the shipped one, else a probe made now, once per conversion) and its runner."""
    from toolchain.tflite import TfliteOptions

    shipped = c.shipped.get("tflite-fp32")
    if shipped is not None:
        return c.stage / FORMATS["tflite-fp32"][2], shipped.runner
    if c.tflite.fp32_probe is None:
        _, making = _Attempts(c, b, "tflite-fp32-probe", "fp32", sm).attempt(TfliteOptions(), "fp32")
        path, ins, outs = making()
        c.tflite.fp32_probe = (path, Runner(path, "tflite", ins, outs, b.inputs, b.outputs, b.io.layouts))
    return c.tflite.fp32_probe


def _range_float(c: Conversion, b: Basis, sm: Any) -> tuple[str, ...]:
    """The TF tensors that hold the values on the paths into range-sensitive ONNX ops (and the inputs they read),
    matched by value in the fp32 TFLite file, which has the int8 file's tensor names; empty when the model has no
    such path or keeping them float would leave no weight op int8. Matched once per conversion; a failure to match
    is noted, never raised (unless it is our own)."""
    import onnx

    from toolchain.locate import holding_tensors
    from toolchain.range_paths import range_path_tensors, range_sensitive_paths

    memo = c.tflite
    if memo.range_float is not None:
        return memo.range_float
    memo.range_float = ()
    model = onnx.load(str(b.io.source.onnx_path))
    paths = range_sensitive_paths(model)
    if not paths:
        return ()
    try:
        path, runner = _fp32_file(c, b, sm)
        sample = b.val.sample(0, b.inputs)
        held = holding_tensors(b.io.source.onnx_path, path, sample, runner.prepare(sample),
                               range_path_tensors(model, paths))
    except Exception as exc:  # a remedy not offered, never a failed conversion
        if is_internal(exc):
            raise
        c.notes.append(f"{FORMATS['tflite-int8'][2]}: the paths into range-sensitive ops could not be matched to "
                       f"TF tensors ({describe(exc)})")
        return ()
    memo.range_float = tuple(dict.fromkeys(t for names in held.values() for t in names))
    return memo.range_float


def _explain(entry: dict[str, Any], b: Basis, path: Path, runner: Any, precision: str) -> None:
    """Add to a refused float TFLite artifact's reason the first ONNX node it diverges at (and the cause when
    known); the details go to its report entry. A failure to locate is reported, never raised."""
    from toolchain.locate import locate

    sample = b.val.sample(0, b.inputs)
    try:
        found = locate(b.io.source.onnx_path, path, sample, runner.prepare(sample), precision)
    except Exception as exc:  # the search is a diagnosis: it never fails the conversion
        entry["divergence"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        return
    if found is None:
        entry["divergence"] = {"node": None, "note": "every ONNX node output was found in the file on sample 0"}
        return
    entry["reason"] += f"; {found.line()}"
    entry["divergence"] = {"node": found.node, "op_type": found.op_type, "output": found.output,
                           "cause": found.cause, "sample": 0, **found.details}


def _int8_search(c: Conversion, b: Basis, key: str, tries: _Attempts) -> None:
    """int8 through the gate: per-channel/per-tensor, then the most sensitive nodes kept in float."""
    from toolchain.tflite import TfliteOptions, sensitive_tf_nodes

    q = c.opts.quantization
    base = TfliteOptions(per_channel=q.per_channel)
    granularity = "per-channel" if base.per_channel else "per-tensor"
    items = [(base, granularity)]
    memo = c.tflite
    held: tuple[str, ...] = ()
    if q.remedies:
        items.append((TfliteOptions(per_channel=not base.per_channel),
                      "per-tensor" if base.per_channel else "per-channel"))
        held = _range_float(c, b, tries.sm)
    if held:
        memo.range_label = f"{granularity}, paths into range-sensitive ops float ({len(held)} tensors)"
        items.append((TfliteOptions(per_channel=base.per_channel, denylist=held), memo.range_label))

    def sensitive(best: str) -> list[Attempt]:
        memo.start = best
        if memo.ranked is None:  # one debugger run serves int8 and int8-io
            memo.ranked = sensitive_tf_nodes(tries.sm, b.inputs, b.calib)
        ranked = tuple(dict.fromkeys(r.tensor for r in memo.ranked))
        start = held if best == memo.range_label else ()  # the range paths stay float when they came closest
        items = []
        for k in (1, 2, 4):
            if k <= len(ranked):
                label = f"{granularity}, {k} node(s) kept in float ({', '.join(ranked[:k])})"
                label += ", with the range paths" if start else ""
                memo.kept[label] = ranked[:k]
                denylist = tuple(dict.fromkeys(start + ranked[:k]))
                items.append((TfliteOptions(per_channel=base.per_channel, denylist=denylist), label))
        return tries.unique(items)

    gate(c, b, key, tries.unique(items), sensitive)
