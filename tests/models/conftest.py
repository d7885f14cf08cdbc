"""Fixtures for the reference-model tests: each model's data, rebuilt once per session from package data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sktime", reason="the reference models' data ships in sktime (pip install -e '.[dev]')")
pytest.importorskip("pvlib", reason="the weather model's data ships in pvlib (pip install -e '.[dev]')")

from models import evaluate, prepare
from models.build import MODELS


@dataclass(frozen=True)
class Reference:
    """One committed reference model: its folder, card numbers and how to score it."""

    name: str
    prepare: Any
    scorer: Any
    tolerances: dict[str, float]  # metric -> allowed absolute difference from the card
    primary: tuple[str, int]  # the metric the card's table leads with, and its printed digits

    @property
    def directory(self) -> Path:
        return MODELS / self.name

    @property
    def bundle(self) -> Path:
        return self.directory / f"{self.name}.spinal"

    @property
    def metrics(self) -> dict[str, Any]:
        return json.loads((self.directory / "metrics.json").read_text(encoding="utf-8"))


# Tolerances allow a different CPU to flip a window or two (1 of 120 windows = 0.83 points), no more.
REFERENCES = {
    "imu-activity": Reference("imu-activity", prepare.imu_activity, evaluate.score_classification,
                              {"accuracy": 1.0, "recording_accuracy": 2.5}, ("accuracy", 2)),
    "weather": Reference("weather", prepare.weather, evaluate.score_regression,
                         {"mae": 0.01, "rmse": 0.01, "persistence_mae": 1e-4}, ("mae", 3)),
    "anomaly": Reference("anomaly", prepare.anomaly, evaluate.score_anomaly,
                         {"roc_auc": 0.01, "precision": 2.0, "recall": 2.0, "false_positive_rate": 2.0,
                          "recall_spike": 7.0, "recall_stuck": 7.0, "recall_noise": 7.0, "recall_bias": 7.0},
                         ("roc_auc", 3)),
}


@pytest.fixture(scope="session")
def prepared() -> dict[str, prepare.Prepared]:
    """Every model's data, prepared once."""
    return {name: ref.prepare() for name, ref in REFERENCES.items()}


@pytest.fixture(params=sorted(REFERENCES), ids=sorted(REFERENCES))
def reference(request: pytest.FixtureRequest) -> Reference:
    return REFERENCES[request.param]


@pytest.fixture(scope="session")
def scores(prepared: dict[str, prepare.Prepared]) -> Any:
    """``scores(reference)``: every artifact of the committed bundle scored on the validation data
    through the device runtime (computed once per model and session)."""
    from models import build

    cache: dict[str, dict[str, dict[str, Any]]] = {}

    def get(ref: Reference) -> dict[str, dict[str, Any]]:
        if ref.name not in cache:
            cache[ref.name] = build.score_bundle(ref.bundle, prepared[ref.name], ref.scorer)
        return cache[ref.name]

    return get
