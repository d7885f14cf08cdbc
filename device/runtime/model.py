"""A loaded model that speaks the bundle's *logical* tensors.

Callers always feed the logical inputs (as the manifest declares them) and get the logical
outputs back. Between them and the file, each tensor has an adapter that validates the input
(name, shape, dtype, finite values), transposes when the artifact's layout differs from the
logical one (e.g. NTC logical, NCT in an ONNX file), and quantizes/dequantizes int8 I/O with
the artifact's scale and zero point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.errors import BundleError
from device.manifest import Artifact, ArtifactTensor, Quantization, TensorSpec
from device.runtime.base import InputError, RawTensor, RuntimeInfo, Session

_QUANT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


@dataclass(frozen=True)
class LogicalTensor:
    """A tensor as callers see it. ``None`` in ``shape`` means any size (plain files with dynamic axes)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[Any]
    layout: str | None = None

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"[{dims}] {self.dtype.name}{' ' + self.layout if self.layout else ''}"


def _quant_arrays(q: Quantization, ndim: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    scale = np.asarray(q.scale, dtype=np.float32)
    zero = np.asarray(q.zero_point, dtype=np.float32)
    if scale.size > 1:
        shape = [1] * ndim
        shape[q.axis or 0] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return scale, zero


class _Adapter:
    """Moves one tensor between its logical form and the artifact's form."""

    def __init__(self, logical: LogicalTensor, raw: RawTensor, index: int, layout: str | None,
                 quant: Quantization | None, where: str) -> None:
        self.name = logical.name
        self.logical = logical
        self.raw = raw
        self.index = index
        self.where = where
        self.perm: tuple[int, ...] | None = None
        self.inverse: tuple[int, ...] | None = None
        if layout and logical.layout and layout != logical.layout:
            if sorted(layout) != sorted(logical.layout):
                raise BundleError(f"{where}: layout {layout} cannot be made from logical layout {logical.layout}")
            self.perm = tuple(logical.layout.index(axis) for axis in layout)
            self.inverse = tuple(layout.index(axis) for axis in logical.layout)
        expected = logical.shape if self.perm is None else tuple(logical.shape[i] for i in self.perm)
        # A rank-0 (scalar) tensor that the file holds as one element ([1], or [-1] before a resize: what
        # onnx2tf makes of an ONNX scalar) is reshaped on the way in and out.
        self.scalar = logical.shape == () and tuple(raw.shape) in ((1,), (-1,))
        if self.scalar:
            expected = (1,)
        if len(raw.shape) != len(expected) or any(
            r != -1 and e is not None and r != e for r, e in zip(raw.shape, expected, strict=False)
        ):
            raise BundleError(f"{where}: the file's tensor {raw.name!r} has shape {list(raw.shape)}, but the "
                              f"logical {logical.name!r} {logical.describe()} needs {list(expected)} in the artifact")
        self.concrete = None if None in expected else tuple(int(d) for d in expected)  # type: ignore[arg-type]
        self.float_logical = logical.dtype.kind == "f"
        self.quant = None
        self.lut: np.ndarray[Any, Any] | None = None
        if raw.dtype.name in _QUANT_RANGE and self.float_logical:
            if quant is None:
                raise BundleError(f"{where}: {raw.dtype.name} tensor {raw.name!r} has no scale/zero point "
                                  "(neither in the manifest nor in the file)")
            lo, hi = _QUANT_RANGE[raw.dtype.name]
            scale: np.ndarray[Any, Any] | np.float32
            zero: np.ndarray[Any, Any] | np.float32
            scale, zero = _quant_arrays(quant, len(raw.shape))
            if scale.size == 1:  # numpy scalars broadcast at half the cost of one-element arrays
                scale, zero = np.float32(scale.item()), np.float32(zero.item())
            self.quant = (scale, zero, lo, hi)
            self.quant_in = (np.float32(1.0) / scale, zero, np.float32(lo), np.float32(hi))
            if raw.dtype.itemsize == 1 and np.size(scale) == 1:  # dequantize by table: one take, not three ufuncs
                codes = np.arange(256, dtype=np.uint8).view(raw.dtype).astype(np.float32)
                self.lut = ((codes - zero) * scale).astype(np.float32)
        elif raw.dtype.kind != logical.dtype.kind and not (raw.dtype.kind in "iu" and logical.dtype.kind in "iu"):
            raise BundleError(f"{where}: the file's tensor {raw.name!r} is {raw.dtype.name} but the logical "
                              f"{logical.name!r} is {logical.dtype.name} and there is no quantization between them")
        self.batchless = logical.shape[1:] if logical.shape and logical.shape[0] == 1 else None
        plain = self.quant is None and self.perm is None and raw.dtype == logical.dtype and not self.scalar
        self.identity = plain  # outputs: the runtime's array is already the logical one
        self.fast = logical.dtype if plain and logical.dtype == np.float32 and None not in logical.shape else None

    def quantizer(self) -> Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] | None:
        """For a float32 input the file takes as int8/uint8 (same layout, fixed shape): a function that
        quantizes a checked input into buffers allocated once, as :meth:`to_artifact` does (the same
        operations in the same order, so the same codes), without its per-call allocations.

        The returned array is reused by the next call: the runtime copies it in before that.
        """
        if (self.quant is None or self.perm is not None or self.scalar or self.concrete is None
                or self.logical.dtype != np.float32):
            return None
        # Full-shape operands: a ufunc on two arrays skips converting a scalar on every call (about half the cost).
        inv, zero, lo, hi = (np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float32), self.concrete))
                             for v in self.quant_in)
        work = np.empty(self.concrete, np.float32)
        codes = np.empty(self.concrete, self.raw.dtype)
        multiply, add, rint, maximum, minimum, copyto = np.multiply, np.add, np.rint, np.maximum, np.minimum, np.copyto

        def quantize(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            multiply(x, inv, out=work)
            add(work, zero, out=work)
            rint(work, out=work)
            maximum(work, lo, out=work)
            minimum(work, hi, out=work)
            copyto(codes, work, casting="unsafe")
            return codes

        return quantize

    # inputs -----------------------------------------------------------------------------------

    def _shape_ok(self, shape: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
        return len(shape) == len(want) and all(w is None or w == s for s, w in zip(shape, want, strict=True))

    def to_artifact(self, value: Any) -> np.ndarray[Any, Any]:
        """Validate one logical input and return it as the artifact wants it."""
        # The common case (float32 in, float32 file, same layout): only the finite check to do.
        if (self.fast and type(value) is np.ndarray and value.dtype is self.fast and value.shape == self.logical.shape
                and math.isfinite(np.vdot(value, value)) and value.flags.c_contiguous):
            return value
        x = value if type(value) is np.ndarray else self._as_array(value)
        if x.dtype.kind not in "biuf":
            raise InputError(f"input {self.name!r}: expected numbers, got {x.dtype.name} values")
        logical = self.logical
        if x.shape != logical.shape and not self._shape_ok(x.shape, logical.shape):
            if self.batchless is not None and self._shape_ok(x.shape, self.batchless):
                x = x[np.newaxis]
            else:
                raise InputError(f"input {self.name!r}: expected shape {logical.describe()}, got "
                                 f"{list(x.shape)} {x.dtype.name}")
        kind = x.dtype.kind
        if self.float_logical:
            if kind != "f":
                raise InputError(f"input {self.name!r}: expected floating-point values ({logical.dtype.name}), got "
                                 f"{x.dtype.name}; convert (and scale) it first")
            if x.dtype != logical.dtype:
                x = x.astype(logical.dtype)
            if not math.isfinite(np.vdot(x, x)):  # a cheap sum of squares; large finite values can overflow it
                bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
                if bad:
                    raise InputError(f"input {self.name!r}: {bad} of {x.size} values are NaN or infinite")
        elif x.dtype != logical.dtype:
            if kind not in "iu":
                raise InputError(f"input {self.name!r}: expected {logical.dtype.name}, got {x.dtype.name}")
            info = np.iinfo(logical.dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise InputError(f"input {self.name!r}: values outside the {logical.dtype.name} range")
            x = x.astype(logical.dtype)
        if self.perm is not None:
            x = x.transpose(self.perm)
        if self.quant is not None:
            inv, zero, lo, hi = self.quant_in
            q = np.multiply(x, inv)
            np.add(q, zero, out=q)
            np.rint(q, out=q)
            np.maximum(q, lo, out=q)
            np.minimum(q, hi, out=q)
            x = q.astype(self.raw.dtype)
        elif x.dtype != self.raw.dtype:
            x = x.astype(self.raw.dtype)
        if self.scalar:
            x = x.reshape(1)
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)

    def _as_array(self, value: Any) -> np.ndarray[Any, Any]:
        try:
            x = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise InputError(f"input {self.name!r}: not an array ({exc})") from None
        return x

    # outputs ----------------------------------------------------------------------------------

    def to_logical(self, y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Turn one artifact output into the logical output."""
        if self.identity:
            return y
        if self.lut is not None:
            y = self.lut.take(y.view(np.uint8))
        elif self.quant is not None:
            scale, zero, _, _ = self.quant
            y = y.astype(np.float32)
            np.subtract(y, zero, out=y)
            np.multiply(y, scale, out=y)
        elif y.dtype != self.logical.dtype:
            y = y.astype(self.logical.dtype)
        if self.inverse is not None:
            y = np.ascontiguousarray(y.transpose(self.inverse))
        if self.scalar:
            y = y.reshape(())
        return y


def _find_raw(raws: tuple[RawTensor, ...], names: tuple[str, ...], where: str) -> tuple[int, RawTensor]:
    for name in names:
        for i, raw in enumerate(raws):
            if raw.name == name:
                return i, raw
    if len(raws) == 1:
        return 0, raws[0]
    have = ", ".join(repr(r.name) for r in raws)
    raise BundleError(f"{where}: the file has no tensor {names[0]!r} (it has {have})")


def bind(logical: tuple[LogicalTensor, ...], declared: tuple[ArtifactTensor, ...], raws: tuple[RawTensor, ...],
         where: str) -> list[_Adapter]:
    """Pair each logical tensor with the file's tensor (by the manifest's artifact tensor name, else by position)."""
    if len(logical) != len(raws):
        raise BundleError(f"{where}: the file has {len(raws)} tensors but the manifest declares {len(logical)}")
    adapters: list[_Adapter] = []
    for i, spec in enumerate(logical):
        art = declared[i] if i < len(declared) else None
        names = (art.name, spec.name) if art else (spec.name,)
        if art:
            index, raw = _find_raw(raws, names, f"{where}[{i}]")
        else:
            index, raw = next(((j, r) for j, r in enumerate(raws) if r.name == spec.name), (i, raws[i]))
        quant = (art.quantization if art and art.quantization else None) or raw.quantization
        if art and art.quantization and raw.quantization and (
                len(art.quantization.scale) != len(raw.quantization.scale)
                or not np.allclose(art.quantization.scale, raw.quantization.scale, rtol=1e-5)):
            raise BundleError(f"{where}[{i}].quantization: the manifest says scale {art.quantization.scale[:3]} but "
                              f"the file says {raw.quantization.scale[:3]}; rebuild the bundle")
        taken = next((a for a in adapters if a.index == index), None)
        if taken is not None:
            side = where.rsplit(".", 1)[-1]
            raise BundleError(f"{where}[{i}]: logical {spec.name!r} and {taken.name!r} both bind to the file's "
                              f"tensor {raw.name!r}; name the file's tensors in the artifact's {side}")
        adapters.append(_Adapter(spec, raw, index, art.layout if art else None, quant, f"{where}[{i}]"))
    return adapters


def logical_from_spec(spec: TensorSpec) -> LogicalTensor:
    """A manifest tensor as a :class:`LogicalTensor`."""
    return LogicalTensor(spec.name, tuple(spec.shape), np.dtype(spec.dtype), spec.layout)


def logical_from_raw(raw: RawTensor) -> LogicalTensor:
    """A file's own tensor as a :class:`LogicalTensor` (plain files: logical = the file's tensors)."""
    return LogicalTensor(raw.name, tuple(None if d == -1 else d for d in raw.shape), raw.dtype, None)


class Model:
    """A model file loaded in a runtime, taking and returning logical tensors. Use :func:`load_model`."""

    def __init__(self, session: Session, inputs: tuple[LogicalTensor, ...], outputs: tuple[LogicalTensor, ...],
                 artifact: Artifact | None, precision: str, where: str) -> None:
        self.session = session
        self.artifact = artifact
        self.selection: Any = None  # how load_model chose (device.runtime.select.Selection)
        self.inputs = inputs
        self.outputs = outputs
        declared_in = artifact.inputs if artifact else ()
        declared_out = artifact.outputs if artifact else ()
        self._in = bind(inputs, declared_in, session.inputs, f"{where}.inputs")
        self._out = bind(outputs, declared_out, session.outputs, f"{where}.outputs")
        self._in_by_position = sorted(self._in, key=lambda a: a.index)
        self._names = frozenset(a.name for a in self._in)
        self._run = self._general
        if len(self._in) == 1 and len(self._out) == 1:  # the common case, with fewer lookups per call
            self._run = self._single()
        self.info = RuntimeInfo(
            runtime=session.runtime, version=session.version,
            artifact=artifact.path if artifact else session.path.name, precision=precision,
            delegate=session.delegate, provider=session.provider, threads=session.threads,
            fallback_reason=session.fallback_reason,
        )
        if all(a.concrete for a in self._in_by_position):
            session.resize([a.concrete for a in self._in_by_position])  # type: ignore[misc]

    def output_steps(self) -> dict[str, float]:
        """The quantization step of each output the file stores as int8/uint8 (largest step if per channel)."""
        return {a.name: float(np.max(a.quant[0])) for a in self._out if a.quant is not None}

    def with_fallback(self, reason: str | None) -> Model:
        """Record why this model runs where it runs (a delegate that was given up)."""
        if reason:
            from dataclasses import replace

            self.info = replace(self.info, fallback_reason=reason)
        return self

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        """Run one inference on logical inputs (by name) and return the logical outputs (by name).

        Inputs are validated first (names, shape, dtype, finite values): :class:`InputError` otherwise.
        Not thread-safe (neither are the interpreters): one model per thread, or a lock.
        """
        return self._run(inputs)

    def _general(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
        if not isinstance(inputs, Mapping) or len(inputs) != len(self._in) or not self._names.issuperset(inputs):
            self._name_error(inputs)
        arrays = [a.to_artifact(inputs[a.name]) for a in self._in_by_position]
        raw = self.session.run(arrays)
        return {a.name: a.to_logical(raw[a.index]) for a in self._out}

    def _single(self) -> Any:
        """One input, one output: the per-call path with as few Python steps as possible (it is most models)."""
        (adapter,) = self._in
        (out,) = self._out
        name, out_name = adapter.name, out.name
        to_artifact, to_logical, name_error = adapter.to_artifact, out.to_logical, self._name_error
        single = getattr(self.session, "single_call", None)
        session_run = self.session.run
        call = single() if single else (lambda x: session_run([x])[0])
        shape, identity = adapter.logical.shape, out.identity
        quantize = adapter.quantizer()
        fast = adapter.fast or (adapter.logical.dtype if quantize is not None else None)
        ndarray, isfinite, vdot = np.ndarray, math.isfinite, np.vdot

        def run(inputs: Mapping[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
            try:
                value = inputs[name]
            except (KeyError, TypeError, IndexError):
                name_error(inputs)
            if len(inputs) != 1:
                name_error(inputs)
            if (type(value) is ndarray and value.dtype is fast and value.shape == shape
                    and isfinite(vdot(value, value)) and value.flags.c_contiguous):
                # float32 in the logical shape, finite: nothing to adapt, or only to quantize
                y = call(value if quantize is None else quantize(value))
            else:
                y = call(to_artifact(value))
            return {out_name: y if identity else to_logical(y)}

        return run

    def _name_error(self, inputs: Mapping[str, Any]) -> None:
        if not isinstance(inputs, Mapping):
            raise InputError(f"inputs must be a mapping of input name to array, got {type(inputs).__name__}")
        missing = sorted(self._names - set(inputs))
        extra = sorted(set(inputs) - self._names)
        expected = ", ".join(f"{a.name} {a.logical.describe()}" for a in self._in)
        if missing:
            raise InputError(f"missing input {missing[0]!r} (the model takes {expected})")
        raise InputError(f"unknown input {extra[0]!r} (the model takes {expected})")

    def close(self) -> None:
        """Release the runtime's resources."""
        self.session.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
