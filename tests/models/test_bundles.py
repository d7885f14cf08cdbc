"""The committed reference bundles verify, describe their inputs truly, and meet their model cards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from device import pipeline
from device.bundle import file_digest, open_bundle
from device.cli import app
from models import build, datasets, evaluate, prepare
from tests.models.conftest import REFERENCES, Reference

EXPECTED_INPUT = {
    "imu-activity": (datasets.IMU_CHANNELS, datasets.IMU_RATE_HZ, prepare.IMU_WINDOW, prepare.IMU_HOP),
    "anomaly": (datasets.IMU_CHANNELS, datasets.IMU_RATE_HZ, prepare.ANOMALY_WINDOW, prepare.ANOMALY_HOP),
    "weather": (datasets.WEATHER_CHANNELS, datasets.WEATHER_RATE_HZ, prepare.WEATHER_WINDOW, 1),
}
EXPECTED_TASK = {"imu-activity": "classification", "anomaly": "anomaly", "weather": "regression"}


def test_bundle_verifies_and_matches_its_card(reference: Reference) -> None:
    metrics = reference.metrics
    sha, size = file_digest(reference.bundle)
    assert (sha, size) == (metrics["bundle_sha256"], metrics["bundle_bytes"]), \
        "the committed bundle is not the one metrics.json and the card describe; run `make models`"
    with open_bundle(reference.bundle) as bundle:
        manifest = bundle.manifest
        assert manifest.name == reference.name
        assert {a.path for a in manifest.artifacts} == set(metrics["artifacts"])
        for art in manifest.artifacts:
            card = metrics["artifacts"][art.path]
            assert (art.format, art.precision, art.bytes) == (card["format"], card["precision"], card["bytes"])
        assert manifest.golden is not None and manifest.golden.count >= 4


def test_spinal_verify_passes(reference: Reference) -> None:
    """The device CLI checks hashes and golden parity of every artifact on every runtime here."""
    result = CliRunner().invoke(app, ["verify", str(reference.bundle), "--json"])
    assert result.exit_code == 0, result.output[-2000:]


def test_manifest_describes_the_input(reference: Reference, prepared: dict[str, prepare.Prepared]) -> None:
    data = prepared[reference.name]
    channels, rate, window, hop = EXPECTED_INPUT[reference.name]
    with open_bundle(reference.bundle) as bundle:
        m = bundle.manifest
    spec = m.inputs[0]
    assert (spec.layout, spec.channels, spec.window, spec.hop) == ("NTC", channels, window, hop)
    assert spec.shape == (1, window, len(channels))
    assert spec.sample_rate_hz == pytest.approx(rate)
    assert spec.normalization is not None
    np.testing.assert_allclose(spec.normalization.mean, data.norm.mean, rtol=1e-6)
    np.testing.assert_allclose(spec.normalization.std, data.norm.std, rtol=1e-6)
    assert m.task.kind == EXPECTED_TASK[reference.name]
    if reference.name == "imu-activity":
        assert m.task.labels == datasets.ACTIVITIES and m.task.activation == "logits"
    if reference.name == "anomaly":
        assert m.task.threshold == pytest.approx(reference.metrics["threshold"])
    if reference.name == "weather":
        assert m.task.units == ("degC",)


def test_golden_inputs_are_the_rebuilt_validation_set(reference: Reference,
                                                      prepared: dict[str, prepare.Prepared]) -> None:
    """The validation data is rebuilt from package data, not stored: the bundle's golden inputs
    (the first validation windows at conversion time) must come out of today's rebuild unchanged."""
    data = prepared[reference.name]
    with open_bundle(reference.bundle) as bundle:
        golden = bundle.load_golden()
        name = bundle.manifest.inputs[0].name
    inputs = golden[f"input/{name}"].reshape(-1, *data.val_x.shape[1:])
    np.testing.assert_allclose(inputs, data.val_x[: len(inputs)], atol=1e-6)


def test_every_artifact_meets_the_card(reference: Reference, scores) -> None:
    card = reference.metrics["artifacts"]
    measured = scores(reference)
    assert set(measured) == set(card)
    for path, result in measured.items():
        for key, tolerance in reference.tolerances.items():
            want = card[path]["metrics"][key]
            got = result["metrics"][key]
            assert abs(got - want) <= tolerance, f"{path} {key}: measured {got:.4f}, card says {want:.4f}"


def test_quantized_artifacts_stay_close_to_fp32(reference: Reference, scores) -> None:
    measured = scores(reference)
    base = measured["model.fp32.onnx"]["metrics"]
    for path, result in measured.items():
        got = result["metrics"]
        if reference.name == "imu-activity":
            assert got["accuracy"] >= base["accuracy"] - 1.0, path
        elif reference.name == "weather":
            assert got["mae"] <= base["mae"] * 1.05, path
            assert got["mae"] < got["persistence_mae"], path
        else:
            assert got["roc_auc"] >= base["roc_auc"] - 0.03, path


def test_card_prints_the_numbers(reference: Reference) -> None:
    metrics = reference.metrics
    card = (reference.directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    key, digits = reference.primary
    for path, art in metrics["artifacts"].items():
        rows = [line for line in card.splitlines() if line.startswith(f"| {path} |")]
        assert len(rows) == 1, f"MODEL_CARD.md has no single row for {path}"
        assert f"| {art['bytes']} |" in rows[0]
        assert f"| {build.fmt(art['metrics'][key], digits)} |" in rows[0]
    torch_row = next(line for line in card.splitlines() if line.startswith("| torch (training, fp32) |"))
    assert f"| {build.fmt(metrics['torch_fp32'][key], digits)} |" in torch_row
    assert metrics["bundle_sha256"][:16] in card


# --------------------------------------------------------------------------------------------
# Replay recordings: the simulated sensors feed these, the device pipeline cuts them


def _replay_index(name: str) -> dict:
    return json.loads((build.MODELS / name / "replay" / "index.json").read_text(encoding="utf-8"))


def _device_windows(name: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    """A replay CSV cut and normalized by the device pipeline: ``(model windows, raw values)``."""
    times, values, channels = datasets.read_replay_csv(build.MODELS / name / "replay" / file)
    with open_bundle(REFERENCES[name].bundle) as bundle:
        spec = bundle.manifest.inputs[0]
    assert channels == spec.channels
    np.testing.assert_allclose(np.diff(times), 1.0 / spec.sample_rate_hz, rtol=1e-3)
    return pipeline.model_windows(values, spec), values


def test_imu_replay_is_the_test_split_and_the_model_gets_it_right(prepared) -> None:
    """The replay files hold the TEST recordings' body motion; as the validation set's chip reports them
    (gravity, offsets, noise) the device pipeline gives the validation windows, and so does the motion alone
    (the chain removes what the chip adds, up to its noise)."""
    data = prepared["imu-activity"]
    index = _replay_index("imu-activity")
    assert index["units"] == ["s", *datasets.IMU_UNITS]
    assert {r["label"] for r in index["recordings"]} == set(datasets.ACTIVITIES)
    with open_bundle(REFERENCES["imu-activity"].bundle) as bundle:
        spec = bundle.manifest.inputs[0]
        fp32 = bundle.manifest.artifact("model.fp32.onnx")
        for rec in index["recordings"]:
            windows, values = _device_windows("imu-activity", rec["file"])
            assert len(windows) == rec["windows"]
            np.testing.assert_allclose(values, data.extra["test_raw"][rec["recording"]], rtol=1e-5, atol=1e-5)
            reported = datasets.mpu6050_reports(data.extra["test_raw"][rec["recording"]],
                                                prepare.imu_physics_seed("test", rec["recording"]))
            expected = data.val_x[data.extra["val_recording"] == rec["recording"]]
            device = pipeline.model_windows(reported, spec)
            np.testing.assert_allclose(device.reshape(expected.shape), expected, atol=1e-5)
            np.testing.assert_allclose(windows.reshape(expected.shape), expected, atol=0.05)
            for x in (windows, device):
                logits = evaluate.run_artifact(bundle, fp32, x)
                predicted = [datasets.ACTIVITIES[i] for i in logits.argmax(axis=1)]
                assert predicted == [rec["label"]] * rec["windows"], rec["file"]


def test_anomaly_replay_scores_match_its_index() -> None:
    index = _replay_index("anomaly")
    with open_bundle(REFERENCES["anomaly"].bundle) as bundle:
        threshold = bundle.manifest.task.threshold
        assert index["threshold"] == pytest.approx(threshold)
        fp32 = bundle.manifest.artifact("model.fp32.onnx")
        for rec in index["recordings"]:
            windows, _ = _device_windows("anomaly", rec["file"])
            scores = evaluate.run_artifact(bundle, fp32, windows).reshape(-1)
            listed = [w["fp32_score"] for w in rec["windows"]]
            np.testing.assert_allclose(scores, listed, atol=2e-3)
            assert [bool(s > threshold) for s in scores] == [w["fp32_flagged"] for w in rec["windows"]]
            if rec["variant"] == "clean":
                assert not any(w["anomalous"] for w in rec["windows"])


def test_weather_replay_is_validation_data(prepared) -> None:
    data = prepared["weather"]
    index = _replay_index("weather")
    assert index["units"] == ["s", *datasets.WEATHER_UNITS]
    for rec in index["recordings"]:
        windows, _ = _device_windows("weather", rec["file"])
        month = data.val_x[data.extra["val_month"] == rec["month"]]
        usable = windows[: rec["windows"]]
        np.testing.assert_allclose(usable.reshape(-1, *month.shape[1:]), month[: len(usable)], atol=1e-4)


# --------------------------------------------------------------------------------------------
# Baselines: every card compares its model with a simple one on the same split


def test_card_compares_with_a_simple_baseline(reference: Reference, prepared) -> None:
    from models import baselines

    metrics = reference.metrics
    card = (reference.directory / "MODEL_CARD.md").read_text(encoding="utf-8")
    base = metrics["baselines"]
    data = prepared[reference.name]
    if reference.name == "imu-activity":
        forest = base["forest"]["metrics"]
        assert f"window accuracy {forest['accuracy']:.2f} %" in card
        assert baselines.imu_forest(data)["metrics"] == pytest.approx(forest, abs=1.0)
    elif reference.name == "weather":
        ridge = base["ridge"]["metrics"]
        assert f"MAE {ridge['mae']:.3f} °C, RMSE {ridge['rmse']:.3f} °C" in card
        assert baselines.weather_ridge(data)["metrics"] == pytest.approx(ridge, abs=1e-3)
    else:
        seeds = base["over_seeds"]
        assert len(seeds["seeds"]) == 5 and prepare.SEED in seeds["seeds"]
        for row, key in (("autoencoder (fp32)", "autoencoder_fp32_auc"), ("two hand rules", "hand_rules_auc")):
            line = next(ln for ln in card.splitlines() if ln.startswith(f"| {row} |"))
            assert f"| {seeds[key]['mean']:.3f} | {seeds[key]['std']:.3f} |" in line
