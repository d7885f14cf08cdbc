"""The signals simulated chips serve: synthetic functions of time, and recordings (CSV/NPZ in SI units)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from device.errors import BadInput

TWO_PI = 2.0 * math.pi


class Signal(Protocol):
    """What a chip reads its physical quantities from: ``values(k, t)`` for sample ``k`` at time ``t``."""

    @property
    def rate_hz(self) -> float | None: ...

    def values(self, k: int, t: float) -> dict[str, float]: ...


class Synthetic:
    """A plausible physical signal: ``{channel: f(t)}`` in SI units. The chip adds its own noise
    (and, for the MPU-6050, gravity and offsets)."""

    rate_hz: float | None = None

    def __init__(self, funcs: dict[str, Callable[[float], float]]) -> None:
        self.funcs = dict(funcs)
        self.channels = tuple(self.funcs)

    def values(self, k: int, t: float) -> dict[str, float]:
        return {c: f(t) for c, f in self.funcs.items()}


class Recording:
    """Samples in SI units, ``data[i, j]`` = channel ``channels[j]`` at sample ``i``, at ``rate_hz``.

    A recording holds the physical signal (an IMU's body motion without gravity); the simulated chip
    adds what the real one adds: its noise, and for the MPU-6050 gravity and offsets."""

    def __init__(self, channels: tuple[str, ...], data: np.ndarray[Any, Any], rate_hz: float,
                 source: str = "<arrays>") -> None:
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(channels) or data.shape[0] == 0:
            raise BadInput(f"{source}: a recording needs rows of {len(channels)} values, got shape {data.shape}")
        if not np.all(np.isfinite(data)):
            row = int(np.argwhere(~np.isfinite(data))[0][0])
            raise BadInput(f"{source}: sample {row} holds a non-finite value")
        if not (rate_hz and rate_hz > 0 and math.isfinite(rate_hz)):
            raise BadInput(f"{source}: sample rate {rate_hz!r} must be a positive number of Hz")
        self.channels = tuple(channels)
        self.data = data
        self.rate_hz = float(rate_hz)
        self.source = source
        self._rows = [dict(zip(self.channels, row, strict=True)) for row in data.tolist()]

    def __len__(self) -> int:
        return len(self._rows)

    def values(self, k: int, t: float) -> dict[str, float]:
        return self._rows[k % len(self._rows)]

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], rate_hz: float, source: str = "<arrays>") -> Recording:
        names = tuple(arrays)
        try:
            columns = [np.asarray(arrays[n], dtype=np.float64).reshape(-1) for n in names]
        except (TypeError, ValueError) as exc:
            raise BadInput(f"{source}: channels must be arrays of numbers ({exc})") from None
        if len({len(c) for c in columns}) > 1:
            raise BadInput(f"{source}: recording channels have different lengths: {[len(c) for c in columns]}")
        return cls(names, np.stack(columns, axis=1) if columns else np.empty((0, 0)), rate_hz, source)

    @classmethod
    def load(cls, path: str | Path, rate_hz: float | None = None) -> Recording:
        """Load a ``.csv`` (a ``# sample_rate_hz=N`` comment line or a ``time_s`` column gives the rate)
        or a ``.npz`` (one array per channel, optionally ``sample_rate_hz``)."""
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"recording {path} does not exist")
        if path.suffix == ".npz":
            return cls._load_npz(path, rate_hz)
        return cls._load_csv(path, rate_hz)

    @classmethod
    def _load_npz(cls, path: Path, rate_hz: float | None) -> Recording:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BadInput(f"recording {path}: not a readable .npz ({exc})") from None
        rate = arrays.pop("sample_rate_hz", None)
        if rate_hz is None and rate is not None:
            if np.size(rate) != 1 or rate.dtype.kind not in "iuf":
                raise BadInput(f"recording {path}: 'sample_rate_hz' must be one number, got {rate.dtype.name} "
                               f"shape {list(rate.shape)}")
            rate_hz = float(rate.reshape(-1)[0])
        if rate_hz is None:
            raise BadInput(f"recording {path}: no sample rate; store a 'sample_rate_hz' array or pass one")
        return cls.from_arrays(arrays, rate_hz, str(path))

    @classmethod
    def _load_csv(cls, path: Path, rate_hz: float | None) -> Recording:
        declared: float | None = None
        rows: list[list[str]] = []
        header: list[str] | None = None
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"recording {path}: not a readable UTF-8 CSV file ({exc})") from None
        for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not row or not "".join(row).strip():
                continue
            first = row[0].strip()
            if first.startswith("#"):
                comment = ",".join(row).lstrip("#").strip()
                key, _, value = comment.replace(":", "=").partition("=")
                if key.strip() in ("sample_rate_hz", "rate_hz", "sample_rate"):
                    try:
                        declared = float(value)
                    except ValueError:
                        raise BadInput(f"{path}:{lineno}: sample rate {value.strip()!r} is not a number") from None
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                raise BadInput(f"{path}:{lineno}: {len(row)} values, the header has {len(header)} columns")
            rows.append(row)
        if header is None or not rows:
            raise BadInput(f"recording {path} has no header line of channel names and no samples")
        try:
            data = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
        except ValueError as exc:
            raise BadInput(f"recording {path}: {exc}") from None
        time_cols = [i for i, name in enumerate(header) if name in ("time_s", "t", "time")]
        if time_cols:
            times = data[:, time_cols[0]]
            if declared is None and rate_hz is None and len(times) > 1:
                step = float(np.median(np.diff(times)))
                if step <= 0:
                    raise BadInput(f"recording {path}: the time column does not increase")
                declared = 1.0 / step
            data = np.delete(data, time_cols[0], axis=1)
            header = [h for i, h in enumerate(header) if i != time_cols[0]]
        rate = rate_hz or declared
        if rate is None:
            raise BadInput(f"recording {path}: no sample rate; add a '# sample_rate_hz=100' line or a time_s column")
        return cls(tuple(header), data, rate, str(path))


class Merged:
    """A recording for some channels, a synthetic signal for the rest."""

    def __init__(self, primary: Recording, fallback: Synthetic) -> None:
        self.primary, self.fallback = primary, fallback
        self.rate_hz = primary.rate_hz

    def values(self, k: int, t: float) -> dict[str, float]:
        out = self.fallback.values(k, t)
        out.update(self.primary.values(k, t))
        return out
