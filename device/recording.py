"""Labelled sensor recordings: the dataset format ``spinal record`` writes and ``spinal convert`` and the
training scripts read.

One recording is ``N`` samples of ``C`` channels at one sample rate, with per-sample labels and
segments (a new segment starts after every gap, so no window straddles one). Two spellings:

* CSV (``.csv``)::

      # spinal recording 1
      # sample_rate_hz=10
      # units=m/s^2,m/s^2,m/s^2,rad/s,rad/s,rad/s
      # sensors=imu:mpu6050
      time_s,imu.accel_x,imu.accel_y,imu.accel_z,imu.gyro_x,imu.gyro_y,imu.gyro_z,label,segment
      0,0.013,-0.2,9.79,0.001,0.002,-0.003,walking,0

  ``label`` and ``segment`` are optional columns (no label: ``""``; no segment: one segment);
  ``time_s`` is optional when ``# sample_rate_hz`` is given.
* NumPy (``.npz``): ``samples`` ``(N, C)`` float64, ``channels`` ``(C,)`` str, ``sample_rate_hz``,
  optional ``units`` ``(C,)``, ``labels`` ``(N,)`` str, ``segments`` ``(N,)`` int, ``time_s`` ``(N,)``.

Channel names are ``SENSOR_ID.CHANNEL`` (``imu.accel_x``) as the daemon binds them; units are SI as
the drivers report them. :func:`windows` cuts the windows the device would cut (``device.pipeline``'s
hop grid), one segment at a time, and drops windows whose samples carry more than one label.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput
from device.pipeline import sliding_windows

FORMAT_LINE = "spinal recording 1"
TIME_COLUMNS = ("time_s", "t", "time", "timestamp")
Array = np.ndarray[Any, Any]


@dataclass
class Recording:
    """Samples ``(N, C)`` float64 with their channel names, units, rate, labels and segments."""

    samples: Array
    channels: tuple[str, ...]
    rate_hz: float
    units: tuple[str, ...] = ()
    labels: Array | None = None    # (N,) str; "" = unlabelled (None: all unlabelled)
    segments: Array | None = None  # (N,) int (None: one segment)
    time_s: Array | None = None    # (N,) seconds (None: from the rate)
    source: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.samples)
        if self.labels is None:
            self.labels = np.full(n, "", dtype=object)
        if self.segments is None:
            self.segments = np.zeros(n, dtype=np.int64)
        if self.time_s is None:
            self.time_s = np.arange(n, dtype=np.float64) / self.rate_hz

    @property
    def label_array(self) -> Array:
        assert self.labels is not None  # filled in by __post_init__
        return self.labels

    @property
    def segment_array(self) -> Array:
        assert self.segments is not None
        return self.segments

    @property
    def time_array(self) -> Array:
        assert self.time_s is not None
        return self.time_s

    def select(self, names: Sequence[str]) -> tuple[Array, tuple[str, ...]]:
        """The columns for ``names`` (``imu.accel_x`` matches ``imu.accel_x`` or ``accel_x``, and the other way
        round); raises :class:`BadInput` naming the missing channel."""
        cols = []
        for name in names:
            short = name.rpartition(".")[2]
            hits = [i for i, c in enumerate(self.channels) if c == name]
            if not hits:
                hits = [i for i, c in enumerate(self.channels) if c.rpartition(".")[2] == short]
            if len(hits) != 1:
                what = "no" if not hits else "more than one"
                raise BadInput(f"{self.source}: {what} channel {name!r} in the recording (channels: "
                               f"{', '.join(self.channels)}); fix --channels or record it")
            cols.append(hits[0])
        return self.samples[:, cols], tuple(self.channels[i] for i in cols)

    def summary(self) -> dict[str, Any]:
        labels, counts = np.unique(self.label_array.astype(str), return_counts=True)
        return {"samples": len(self.samples), "seconds": round(len(self.samples) / self.rate_hz, 3),
                "rate_hz": self.rate_hz, "channels": list(self.channels), "units": list(self.units),
                "segments": len(np.unique(self.segment_array)),
                "labels": {str(k) or "(none)": int(v) for k, v in zip(labels, counts, strict=True)}}


def write(path: Path, rec: Recording) -> None:
    """Write ``rec`` as CSV or NPZ (by suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(rec.label_array, dtype=str)
    if path.suffix == ".npz":
        np.savez(path, samples=np.asarray(rec.samples, np.float64), channels=np.asarray(rec.channels, dtype=str),
                 units=np.asarray(rec.units, dtype=str), sample_rate_hz=np.float64(rec.rate_hz), labels=labels,
                 segments=np.asarray(rec.segment_array, np.int64), time_s=np.asarray(rec.time_array, np.float64))
        return
    if path.suffix != ".csv":
        raise BadInput(f"{path}: a recording is a .csv or an .npz file")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        fh.write(f"# {FORMAT_LINE}\n# sample_rate_hz={rec.rate_hz:g}\n")
        if rec.units:
            fh.write(f"# units={','.join(rec.units)}\n")
        for key, value in rec.meta.items():
            fh.write(f"# {key}={value}\n")
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["time_s", *rec.channels, "label", "segment"])
        for t, row, label, seg in zip(rec.time_array, rec.samples, labels, rec.segment_array, strict=True):
            writer.writerow([f"{t:.6f}", *(f"{v:.9g}" for v in row), label, int(seg)])


def read(path: Path) -> Recording:
    """Read a recording (``.csv`` or ``.npz``); one-line :class:`BadInput` for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such recording")
    rec = _read_npz(path) if path.suffix == ".npz" else _read_csv(path)
    if rec.samples.ndim != 2 or len(rec.samples) == 0:
        raise BadInput(f"{path}: holds no samples")
    if not np.all(np.isfinite(rec.samples)):
        bad = np.argwhere(~np.isfinite(rec.samples))[0]
        raise BadInput(f"{path}: sample {bad[0]} of channel {rec.channels[bad[1]]!r} is not a finite number")
    if rec.units and len(rec.units) != len(rec.channels):
        raise BadInput(f"{path}: {len(rec.units)} units for {len(rec.channels)} channels")
    return rec


def is_recording(path: Path) -> bool:
    """Whether ``path`` is in this format (an ``.npz`` with ``samples`` and ``sample_rate_hz``, or a CSV that
    starts with the format line)."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return "samples" in z.files and "sample_rate_hz" in z.files
        if path.suffix == ".csv":
            with open(path, encoding="utf-8-sig") as fh:
                return fh.readline().lstrip("#").strip() == FORMAT_LINE
    except Exception:  # unreadable: the reader that follows says why
        return False
    return False


def _read_npz(path: Path) -> Recording:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise BadInput(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
    for key in ("samples", "channels", "sample_rate_hz"):
        if key not in arrays:
            raise BadInput(f"{path}: no {key!r} array (a recording holds samples, channels, sample_rate_hz)")
    samples = np.asarray(arrays["samples"], dtype=np.float64)
    channels = tuple(str(c) for c in arrays["channels"].reshape(-1))
    if samples.ndim != 2 or samples.shape[1] != len(channels):
        raise BadInput(f"{path}: samples has shape {list(samples.shape)} for {len(channels)} channels")
    rate = float(np.asarray(arrays["sample_rate_hz"]).reshape(-1)[0])
    if not (math.isfinite(rate) and rate > 0):
        raise BadInput(f"{path}: sample_rate_hz must be > 0, got {rate}")
    n = len(samples)
    labels = arrays.get("labels")
    segments = arrays.get("segments")
    for key, arr in (("labels", labels), ("segments", segments), ("time_s", arrays.get("time_s"))):
        if arr is not None and arr.shape != (n,):
            raise BadInput(f"{path}: {key!r} has shape {list(arr.shape)}, expected [{n}] (one per sample)")
    return Recording(samples, channels, rate, tuple(str(u) for u in arrays.get("units", np.array([])).reshape(-1)),
                     None if labels is None else labels.astype(str).astype(object),
                     None if segments is None else segments.astype(np.int64), arrays.get("time_s"), str(path))


def _read_csv(path: Path) -> Recording:
    meta, header, rows = _csv_rows(path)
    special = {name: header.index(name) for name in ("label", "segment") if name in header}
    time_col = next((header.index(t) for t in TIME_COLUMNS if t in header), None)
    value_cols = [i for i in range(len(header)) if i not in special.values() and i != time_col]
    samples = np.empty((len(rows), len(value_cols)))
    for r, (lineno, row) in enumerate(rows):
        for k, c in enumerate(value_cols):
            try:
                samples[r, k] = float(row[c])
            except ValueError:
                raise BadInput(f"{path}:{lineno}: {header[c]} = {row[c]!r} is not a number") from None
    times = None
    if time_col is not None:
        try:
            times = np.array([float(row[time_col]) for _, row in rows])
        except ValueError:
            raise BadInput(f"{path}: the {header[time_col]} column is not numeric") from None
    rate = _csv_rate(path, meta, times, header[time_col or 0])
    segments = None
    if "segment" in special:
        try:
            segments = np.array([int(row[special["segment"]]) for _, row in rows], dtype=np.int64)
        except ValueError:
            raise BadInput(f"{path}: the segment column must hold integers") from None
    labels = (np.array([row[special["label"]].strip() for _, row in rows], dtype=object)
              if "label" in special else None)
    units = tuple(u.strip() for u in meta.get("units", "").split(",") if u.strip())
    extra = {k: v for k, v in meta.items() if k not in ("sample_rate_hz", "rate_hz", "units")}
    return Recording(samples, tuple(header[i] for i in value_cols), rate, units, labels, segments, times, str(path),
                     extra)


def _csv_rows(path: Path) -> tuple[dict[str, str], list[str], list[tuple[int, list[str]]]]:
    """A recording CSV's ``# key=value`` lines, its header and its data rows (with line numbers)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not a readable UTF-8 CSV file ({exc})") from None
    meta: dict[str, str] = {}
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row or not "".join(row).strip():
            continue
        if row[0].lstrip().startswith("#"):
            key, eq, value = ",".join(row).lstrip().lstrip("#").strip().partition("=")
            if eq:
                meta[key.strip()] = value.strip()
            continue
        if header is None:
            header = [c.strip() for c in row]
            continue
        if len(row) != len(header):
            raise BadInput(f"{path}:{lineno}: {len(row)} values, the header has {len(header)} columns")
        rows.append((lineno, row))
    if header is None or not rows:
        raise BadInput(f"{path}: needs a header line of channel names and at least one sample")
    return meta, header, rows


def _csv_rate(path: Path, meta: dict[str, str], times: np.ndarray[Any, Any] | None, time_name: str) -> float:
    """The sample rate: a ``# sample_rate_hz=`` line, else the median step of the time column."""
    rate: float | None = None
    for key in ("sample_rate_hz", "rate_hz"):
        if key in meta:
            try:
                rate = float(meta[key])
            except ValueError:
                raise BadInput(f"{path}: # {key}={meta[key]!r} is not a number") from None
    if rate is None and times is not None and len(times) > 1:
        step = float(np.median(np.diff(times)))
        if step <= 0:
            raise BadInput(f"{path}: the {time_name} column does not increase")
        rate = 1.0 / step
    if rate is None or not rate > 0:
        raise BadInput(f"{path}: no sample rate; add a '# sample_rate_hz=10' line or a time_s column")
    return rate


@dataclass(frozen=True)
class Windows:
    """Raw windows ``(M, T, C)`` cut from a recording, with each window's label and first sample."""

    raw: Array
    labels: tuple[str, ...]
    starts: Array
    mixed: int  # windows dropped because their samples carry more than one label


def windows(rec: Recording, channels: Sequence[str], window: int, hop: int) -> Windows:
    """The device's windows over each segment (hop grid from the segment's first sample)."""
    data, _ = rec.select(channels) if channels else (rec.samples, rec.channels)
    out, labels, starts = [], [], []
    mixed = 0
    seg_ids = np.asarray(rec.segment_array)
    lab = np.asarray(rec.label_array, dtype=object)
    for seg in dict.fromkeys(seg_ids.tolist()):
        idx = np.flatnonzero(seg_ids == seg)
        if len(idx) < window:
            continue
        cut = sliding_windows(data[idx], window, hop)
        for k, w in enumerate(cut):
            rows = idx[k * hop:k * hop + window]
            names = set(lab[rows].tolist())
            if len(names) > 1:
                mixed += 1
                continue
            out.append(w)
            labels.append(str(names.pop()))
            starts.append(int(rows[0]))
    raw = np.stack(out) if out else np.empty((0, window, data.shape[1]))
    return Windows(raw, tuple(labels), np.asarray(starts, dtype=np.int64), mixed)
