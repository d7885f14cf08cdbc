"""The conversion's state as typed records: what the pipeline's steps hand each other.

- :class:`Conversion`: the run itself (options, work directory, progress) and its journal (notes, timings,
  artifacts shipped, rejected and failed), filled in as the steps go;
- :class:`Basis`: what every artifact is judged against, fixed once the model and the data are read;
- :class:`Made`: one artifact file made and measured; :class:`Shipped`: one that passed the gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from device.manifest import ArtifactTensor, TensorSpec
from device.runtime.parity import DecisionRule
from toolchain.calibration import DataSet, InputSpec
from toolchain.options import ConvertOptions
from toolchain.sources import SourceModel
from toolchain.validate import Metrics, Runner, TaskMeasure

if TYPE_CHECKING:
    from toolchain.tflite import TfNoise

T = TypeVar("T")
Tensors = tuple[tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]


class Progress:
    """Hooks the CLI fills in (rich progress); the defaults do nothing."""

    def start(self, total: int) -> None:  # pragma: no cover - trivial
        pass

    def step(self, description: str) -> None:  # pragma: no cover - trivial
        pass

    def advance(self) -> None:  # pragma: no cover - trivial
        pass


class Making(Protocol):
    """One attempt at an artifact: makes the file and returns it with its tensors."""

    def __call__(self) -> tuple[Path, tuple[ArtifactTensor, ...], tuple[ArtifactTensor, ...]]: ...


Attempt = tuple[str, Making]  # (the configuration's label, how to make it)


@dataclass
class Shipped:
    """An artifact that passed the gate: its report entry, its tensors and the runner that measured it."""

    entry: dict[str, Any]
    ins: tuple[ArtifactTensor, ...]
    outs: tuple[ArtifactTensor, ...]
    runner: Runner


@dataclass(frozen=True)
class Made:
    """One artifact file made and measured (before the gate's verdict)."""

    label: str
    path: Path
    ins: tuple[ArtifactTensor, ...]
    outs: tuple[ArtifactTensor, ...]
    metrics: Metrics
    runner: Runner


@dataclass
class TfliteMemo:
    """What the TFLite artifacts of one conversion share: the SavedModel (or why there is none), the int8
    choice that int8-io reuses, and the debugger's ranking."""

    saved_model: Any = None
    error: Exception | None = None
    int8_choice: tuple[Any, str] | None = None
    ranked: list[TfNoise] | None = None  # the debugger's ranking, noisiest first
    start: str | None = None  # the int8 attempt the sensitive-node tries started from
    kept: dict[str, tuple[str, ...]] = field(default_factory=dict)  # attempt label -> the TF nodes it kept float
    matched: tuple[dict[str, tuple[str, str]], str] | None = None  # TF tensor -> ONNX node (name, op); why none
    range_float: tuple[str, ...] | None = None  # TF tensors holding the paths into range-sensitive ops (matched)
    range_label: str | None = None  # the int8 attempt that kept them float
    fp32_probe: tuple[Path, Runner] | None = None  # fp32 file made to match tensors (none shipped)


@dataclass
class Conversion:
    """One run of the converter and its journal."""

    opts: ConvertOptions
    wanted: tuple[str, ...]
    work: Path
    progress: Progress
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    shipped: dict[str, Shipped] = field(default_factory=dict)  # key -> record
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> report entry
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounding: dict[str, float] | None = None  # int8 rounding movement, measured once per conversion
    tflite: TfliteMemo = field(default_factory=TfliteMemo)

    @property
    def stage(self) -> Path:
        """The bundle being written, published only at the end."""
        return self.work / "bundle"

    def timed(self, label: str, fn: Callable[[], T]) -> T:
        """``fn()`` as one progress step, its seconds recorded under ``label``."""
        self.progress.step(label)
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[label] = round(time.perf_counter() - t0, 3)
            self.progress.advance()


@dataclass(frozen=True)
class ModelIO:
    """The fp32 model's tensors and their logical layouts."""

    source: SourceModel
    inputs: tuple[InputSpec, ...]
    outputs: tuple[InputSpec, ...]
    layouts: dict[str, str | None]

    def onnx_tensors(self) -> Tensors:
        """The fp32/int8 ONNX artifact's tensors: the logical ones."""
        ins = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name))
                    for s in self.inputs)
        outs = tuple(ArtifactTensor(name=s.name, shape=s.shape, dtype=s.dtype, layout=self.layouts.get(s.name))
                     for s in self.outputs)
        return ins, outs


@dataclass(frozen=True)
class DataRead:
    """Calibration and validation data, and what reading recordings settled about the first input."""

    calib: DataSet
    val: DataSet
    sensor_spec: TensorSpec | None = None  # the first input's spec when built from recordings
    label_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Basis:
    """What every artifact is judged against: the model, the data, fp32's outputs and score."""

    io: ModelIO
    data: DataRead
    ref: dict[str, np.ndarray]
    source_parity: dict[str, Any] | None
    task_output: str
    baseline: Metrics
    decision: DecisionRule | None  # what the gate compares with fp32's decisions
    measure: TaskMeasure | None = None  # the task measure the gate judges on (--gate-measure), if given

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return self.io.inputs

    @property
    def outputs(self) -> tuple[InputSpec, ...]:
        return self.io.outputs

    @property
    def calib(self) -> DataSet:
        return self.data.calib

    @property
    def val(self) -> DataSet:
        return self.data.val
