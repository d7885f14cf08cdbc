"""Calibration and validation data: readers, checks against the model's inputs, and a hash.

Three file kinds are accepted:

- ``.npz`` keyed by input name (first axis = sample). A validation file may also hold
  ``labels`` (integer class ids, top-1 accuracy) or ``targets`` (regression values).
- ``.npy`` for a single-input model.
- ``.csv`` of sensor readings, one row per time step and one column per channel (a header row
  names the channels). Rows become model inputs exactly as the device makes them
  (:func:`device.pipeline.model_windows`): windows of ``window`` steps every ``hop`` steps, normalized
  as the manifest will say, laid out as the model's input wants them (``NTC`` or ``NCT``). A ``label``
  column, when present, gives each window the label of its last row.

Every reader checks names, dtypes and shapes against the model and fails with one line that
names the file, the input and the fix.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput
from device.manifest import Normalization, TensorSpec
from device.pipeline import model_windows, window_count

LABEL_KEYS = ("labels", "targets")


@dataclass(frozen=True)
class InputSpec:
    """One model input (or output) as the fp32 ONNX model declares it, with every dim fixed."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample in a data file: the model shape less a leading batch dim of 1."""
        return self.shape[1:] if self.shape and self.shape[0] == 1 else self.shape

    def batch(self, sample: np.ndarray) -> np.ndarray:
        """One sample shaped the way the model takes it (a batch of one)."""
        return np.asarray(sample).reshape(self.shape)  # a rank-0 input's sample is a NumPy scalar


@dataclass
class DataSet:
    """Samples for every model input (first axis = sample), plus optional labels or targets."""

    arrays: dict[str, np.ndarray]
    source: str
    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    raw: np.ndarray | None = None  # the raw sensor windows (M, T, C) the first input was prepared from

    @property
    def count(self) -> int:
        return len(next(iter(self.arrays.values())))

    def sample(self, index: int, inputs: tuple[InputSpec, ...]) -> dict[str, np.ndarray]:
        """Sample ``index`` for every input, shaped as the model takes it."""
        return {spec.name: spec.batch(self.arrays[spec.name][index]) for spec in inputs}

    def take(self, count: int) -> DataSet:
        """The first ``count`` samples."""
        return DataSet(
            arrays={k: v[:count] for k, v in self.arrays.items()},
            source=self.source,
            labels=None if self.labels is None else self.labels[:count],
            targets=None if self.targets is None else self.targets[:count],
            notes=list(self.notes),
            raw=None if self.raw is None else self.raw[:count],
        )

    def sha256(self) -> str:
        """A hash of the samples (input names, shapes, dtypes and bytes, in name order)."""
        digest = hashlib.sha256()
        for name in sorted(self.arrays):
            arr = np.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}|{arr.shape}|{arr.dtype.str}|".encode())
            digest.update(arr.tobytes())
        return digest.hexdigest()

    def summary(self) -> dict[str, object]:
        """What the report records about this data: where from, how many samples, its hash."""
        return {"source": self.source, "samples": self.count, "sha256": self.sha256(), "notes": list(self.notes)}


@dataclass(frozen=True)
class CsvOptions:
    """How a CSV of sensor readings becomes windows: the input's manifest semantics (layout, normalization)."""

    channels: tuple[str, ...] = ()
    window: int | None = None
    hop: int | None = None
    layout: str | None = None
    normalization: Normalization | None = None


def read_raw(path: Path) -> dict[str, np.ndarray]:
    """The arrays in an ``.npz``/``.npy`` file, unchecked (used to learn shapes before the model is fixed)."""
    if path.suffix == ".csv":
        return {}
    return _load_numpy(path)


def _load_numpy(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise BadInput(f"{path}: no such file (give an .npz keyed by input name, an .npy or a .csv)")
    try:
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
    except Exception as exc:  # numpy raises many kinds for a corrupt file
        raise BadInput(f"{path}: unreadable ({type(exc).__name__}: {exc}); expected a NumPy {path.suffix} "
                       "file") from None
    raise BadInput(f"{path}: unknown data file type {path.suffix!r}; use .npz (keyed by input name), .npy or .csv")


def read_dataset(path: Path, inputs: tuple[InputSpec, ...], csv_options: CsvOptions | None = None,
                 limit: int | None = None, purpose: str = "calibration") -> DataSet:
    """Read and check a calibration or validation file against the model inputs."""
    if path.suffix == ".csv":
        data = _read_csv(path, inputs, csv_options or CsvOptions())
    else:
        raw = _load_numpy(path)
        data = _from_arrays(path, raw, inputs, purpose)
    if data.count == 0:
        raise BadInput(f"{path}: holds no samples; {purpose} needs at least one")
    if limit is not None and data.count > limit:
        total = data.count
        data = data.take(limit)
        data.notes.append(f"first {limit} of {total} samples used")
    return data


def _from_arrays(path: Path, raw: dict[str, np.ndarray], inputs: tuple[InputSpec, ...],
                 purpose: str = "calibration") -> DataSet:
    if "" in raw:  # .npy
        if len(inputs) != 1:
            listed = ", ".join(s.name for s in inputs)
            raise BadInput(f"{path}: an .npy file serves single-input models only; this model has {len(inputs)} "
                           f"inputs ({listed}): give an .npz keyed by input name")
        raw = {inputs[0].name: raw[""]}
    arrays: dict[str, np.ndarray] = {}
    names = [s.name for s in inputs]
    for spec in inputs:
        if spec.name not in raw:
            extra = sorted(set(raw) - set(names) - set(LABEL_KEYS))
            hint = f"; it has {', '.join(extra)}" if extra else ""
            raise BadInput(f"{path}: no array for model input {spec.name!r}{hint} (keys must be the input names: "
                           f"{', '.join(names)})")
        arrays[spec.name] = _check_array(path, spec, raw[spec.name])
    counts = {name: len(arr) for name, arr in arrays.items()}
    if len(set(counts.values())) > 1:
        raise BadInput(f"{path}: inputs hold different numbers of samples {counts}; they must match")
    count = next(iter(counts.values()))
    labels = targets = None
    if "labels" in raw:
        labels = np.asarray(raw["labels"])
        if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != count:
            raise BadInput(f"{path}: 'labels' must be {count} integer class ids (one per sample), got "
                           f"shape {list(labels.shape)} dtype {labels.dtype}")
    if "targets" in raw:
        targets = np.asarray(raw["targets"], dtype=np.float64) if raw["targets"].dtype.kind in "fiu" else None
        if targets is None or targets.ndim == 0 or len(targets) != count:
            raise BadInput(f"{path}: 'targets' must be {count} numeric rows (one per sample)")
        if not np.all(np.isfinite(targets)):
            raise BadInput(f"{path}: 'targets' holds NaN or infinite values; clean the data first")
    if labels is not None and targets is not None:
        raise BadInput(f"{path}: holds both 'labels' and 'targets'; keep the one the model is scored on")
    unknown = sorted(set(raw) - set(names) - set(LABEL_KEYS))
    per_sample = [k for k in unknown if np.ndim(raw[k]) >= 1 and len(raw[k]) == count]
    if purpose == "validation" and per_sample and labels is None and targets is None:
        # One value per sample under another name is most likely the answers: scoring without them would
        # silently fall back to comparing against fp32 only.
        raise BadInput(f"{path}: array {per_sample[0]!r} holds one value per sample but is not an input; labels "
                       f"must be stored under 'labels' (class ids) or 'targets' (regression values) (keys found: "
                       f"{', '.join(sorted(raw))}; inputs: {', '.join(names)})")
    notes = [f"ignored arrays {', '.join(unknown)}"] if unknown else []
    return DataSet(arrays=arrays, source=str(path), labels=labels, targets=targets, notes=notes)


def _check_array(path: Path, spec: InputSpec, arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    want = np.dtype(spec.dtype)
    if arr.dtype.kind not in "fiub":
        raise BadInput(f"{path}: input {spec.name!r} has dtype {arr.dtype}, expected numbers ({want}); "
                       "save it with a numeric dtype")
    if want.kind == "f" and arr.dtype.kind == "b":
        raise BadInput(f"{path}: input {spec.name!r} is boolean but the model takes {want}")
    if want.kind in "iu" and arr.dtype.kind == "f":
        raise BadInput(f"{path}: input {spec.name!r} is {arr.dtype} but the model takes integers ({want})")
    sample = spec.sample_shape
    if tuple(arr.shape[1:]) != sample:
        if arr.shape == sample and len(sample) >= 1:
            raise BadInput(f"{path}: input {spec.name!r} has shape {list(arr.shape)}, one sample; stack samples on a "
                           f"new first axis: shape [N, {', '.join(map(str, sample))}]")
        raise BadInput(f"{path}: input {spec.name!r} has shape {list(arr.shape)}, expected [N, "
                       f"{', '.join(map(str, sample))}] (N samples of the model's input {list(spec.shape)})")
    arr = arr.astype(want, copy=False)
    if want.kind == "f" and not np.all(np.isfinite(arr)):
        raise BadInput(f"{path}: input {spec.name!r} holds NaN or infinite values; clean the data first")
    return arr


def _read_csv(path: Path, inputs: tuple[InputSpec, ...], opts: CsvOptions) -> DataSet:
    if len(inputs) != 1:
        raise BadInput(f"{path}: a CSV of sensor windows serves single-input models only; use an .npz keyed by "
                       "input name")
    spec = inputs[0]
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInput(f"{path}: unreadable CSV ({exc})") from None
    if len(rows) < 2:
        raise BadInput(f"{path}: needs a header row naming the channels and at least one data row")
    header = [h.strip() for h in rows[0]]
    label_col = header.index("label") if "label" in header else None
    wanted = list(opts.channels) or [h for i, h in enumerate(header) if i != label_col and h not in ("t", "time",
                                                                                                      "timestamp")]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise BadInput(f"{path}: no column {missing[0]!r} (columns: {', '.join(header)}); fix --channels or the header")
    cols = [header.index(c) for c in wanted]
    try:
        values = np.array([[float(row[c]) for c in cols] for row in rows[1:] if row], dtype=np.float32)
    except (ValueError, IndexError) as exc:
        raise BadInput(f"{path}: a data row is not numeric in the chosen columns ({exc})") from None
    labels_col = None
    if label_col is not None:
        try:
            labels_col = np.array([int(row[label_col]) for row in rows[1:] if row], dtype=np.int64)
        except ValueError:
            raise BadInput(f"{path}: the 'label' column must hold integer class ids") from None
    sample = spec.sample_shape
    n_ch = len(cols)
    if len(sample) != 2 or n_ch not in sample:
        raise BadInput(f"{path}: {n_ch} channels do not fit the model input {spec.name!r} of shape "
                       f"{list(spec.shape)} (a window of sensor channels: [1, T, C] or [1, C, T])")
    channels_last = sample[1] == n_ch
    window = sample[0] if channels_last else sample[1]
    if opts.window is not None and opts.window != window:
        raise BadInput(f"{path}: --window {opts.window} but the model input {spec.name!r} takes {window} steps")
    hop = opts.hop or window
    count = window_count(len(values), window, hop)
    if not count:
        raise BadInput(f"{path}: {len(values)} rows are fewer than one window of {window}")
    if not np.all(np.isfinite(values[: (count - 1) * hop + window])):
        raise BadInput(f"{path}: holds NaN or infinite readings; clean the data first")
    layout = opts.layout or ("N" * (len(spec.shape) - 2) + ("TC" if channels_last else "CT"))
    sensor = TensorSpec(name=spec.name, shape=spec.shape, dtype=spec.dtype, layout=layout, channels=tuple(wanted),
                        window=window, hop=hop, normalization=opts.normalization)
    windows = model_windows(values, sensor).reshape((count, *sample))
    labels = None if labels_col is None else np.array([labels_col[i * hop + window - 1] for i in range(count)])
    note = f"{len(windows)} windows of {window} steps, hop {hop}, channels {', '.join(wanted)}"
    return DataSet(arrays={spec.name: windows.astype(np.dtype(spec.dtype))}, source=str(path), labels=labels,
                   notes=[note])


@dataclass(frozen=True)
class RecordedWindows:
    """Raw windows cut from one labelled recording (``device.recording``), before the chain."""

    raw: np.ndarray
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    units: tuple[str, ...]
    rate_hz: float
    source: str
    notes: list[str]
    starts: np.ndarray  # each window's first sample in the recording


def read_recording_windows(path: Path, channels: tuple[str, ...], window: int, hop: int,
                           limit: int | None = None, purpose: str = "calibration") -> RecordedWindows:
    """The device's windows over a recording (per segment, hop grid, windows with two labels dropped);
    at most ``limit`` of them, spread evenly over the recording, then in label round-robin order so
    that the first few (the golden vectors) cover every label."""
    from device import recording

    return recorded_windows(recording.read(path), channels, window, hop, limit, purpose)


def recorded_windows(rec: Any, channels: tuple[str, ...], window: int, hop: int, limit: int | None = None,
                     purpose: str = "calibration") -> RecordedWindows:
    """:func:`read_recording_windows` on a :class:`device.recording.Recording` already in memory."""
    from device import recording

    path = rec.source
    chans = channels or rec.channels
    cut = recording.windows(rec, chans, window, hop)
    if not len(cut.raw):
        raise BadInput(f"{path}: {len(rec.samples)} samples give no complete window of {window} samples "
                       f"({purpose} needs at least one)")
    raw, labels, starts = cut.raw, np.asarray(cut.labels, dtype=object), cut.starts
    notes = [f"{len(raw)} windows of {window} samples, hop {hop}, cut from {len(rec.samples)} samples at "
             f"{rec.rate_hz:g} Hz in {len(np.unique(rec.segments))} segment(s)"]
    if cut.mixed:
        notes.append(f"{cut.mixed} windows spanning two labels dropped")
    if limit is not None and len(raw) > limit:
        keep = np.unique(np.linspace(0, len(raw) - 1, limit).round().astype(np.int64))
        raw, labels, starts = raw[keep], labels[keep], starts[keep]
        notes.append(f"{len(keep)} windows used, spread evenly")
    rank = np.empty(len(labels), dtype=np.int64)
    for name in dict.fromkeys(labels.tolist()):
        where = np.flatnonzero(labels == name)
        rank[where] = np.arange(len(where))
    order = np.argsort(rank, kind="stable")
    _, names = rec.select(chans)
    units = rec.units if not channels else tuple(rec.units[rec.channels.index(n)] for n in names) if rec.units else ()
    return RecordedWindows(raw[order], tuple(labels[order].tolist()), tuple(channels) or names, units, rec.rate_hz,
                           str(path), notes, starts[order])


def class_ids(labels: tuple[str, ...], names: tuple[str, ...], path: str) -> np.ndarray | None:
    """Integer class ids of window labels (by position in ``names``); ``None`` when any window is unlabelled."""
    if not labels or any(not lab for lab in labels):
        return None
    if not names and all(lab.lstrip("-").isdigit() for lab in labels):
        return np.asarray([int(lab) for lab in labels], dtype=np.int64)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise BadInput(f"{path}: label {unknown[0]!r} is not one of the classes ({', '.join(names)}); fix --labels "
                       "or the recording")
    return np.asarray([names.index(lab) for lab in labels], dtype=np.int64)


def synthetic(inputs: tuple[InputSpec, ...], count: int, seed: int = 0) -> DataSet:
    """Gaussian noise shaped like the inputs: the fallback when no data was given (said loudly in the report)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in inputs:
        kind = np.dtype(spec.dtype).kind
        shape = (count, *spec.sample_shape)
        arrays[spec.name] = (rng.standard_normal(shape).astype(spec.dtype) if kind == "f"
                             else rng.integers(0, 2, size=shape).astype(spec.dtype))
    return DataSet(arrays=arrays, source="synthetic", notes=[
        "no data given: Gaussian noise (mean 0, std 1) stands in; give --calibration/--validation for a "
        "meaningful int8 model and accuracy figures"])
