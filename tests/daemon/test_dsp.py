"""The DSP chain (device/dsp/): blocks, registry, manifest round trip, and host == device bit for bit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from device import dsp
from device.dsp import filters, spectral
from device.errors import BadInput, BundleError
from device.manifest import Normalization, TensorSpec, parse_manifest
from device.pipeline import InputPlan, Windower, fit_normalization, model_windows, preparation_costs, sliding_windows
from tests.test_manifest import valid  # a valid manifest to put a spec into

RATE = 50.0
CHANNELS = ("imu.accel_x", "imu.accel_y", "imu.accel_z")

CHAINS = {
    "highpass": [{"block": "highpass", "cutoff_hz": 0.3}],
    "biquads": [{"block": "highpass", "cutoff_hz": 0.5, "order": 2}, {"block": "lowpass", "cutoff_hz": 10.0,
                                                                         "order": 2, "channels": ["imu.accel_z"]}],
    "detrend+resample": [{"block": "detrend", "kind": "linear"}, {"block": "lowpass", "cutoff_hz": 8.0},
                         {"block": "resample", "rate_hz": 20.0}],
    "bands": [{"block": "highpass", "cutoff_hz": 0.3}, {"block": "band_energies",
                                                        "bands": [[0.5, 3], [3, 8], [8, 20]], "log": True}],
    "features": [{"block": "features", "features": list(dsp.FEATURES)}],
    "logmel": [{"block": "logmel", "n_fft": 32, "hop": 16, "n_mels": 8}],
}


def spec_for(chain: list[dict], window: int = 100, hop: int = 30, channels: tuple[str, ...] = CHANNELS,
             norm: bool = True) -> TensorSpec:
    blocks = dsp.parse_chain(chain)
    last = dsp.compile_chain(blocks, dsp.Stage(window, len(channels), RATE, channels)).last
    n = Normalization(mean=(0.5,) * last.channels, std=(2.0,) * last.channels) if norm else None
    return TensorSpec(name="x", shape=(1, last.length, last.channels), layout="NTC", channels=channels,
                      sample_rate_hz=RATE, window=window, hop=hop, preprocessing=blocks, normalization=n)


def series(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    motion = np.stack([np.sin(2 * np.pi * 1.5 * t), np.sin(2 * np.pi * 5 * t), 0.3 * rng.normal(size=n)], axis=1)
    return motion + np.array([0.4, -3.0, 9.3])  # gravity along some mounting, plus offsets


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_host_and_device_features_are_identical_bit_for_bit(name):
    """The host cuts a recording into windows and prepares the batch; the device streams samples into the
    Windower and prepares each window as it completes. Same code, same bits."""
    spec = spec_for(CHAINS[name])
    data = series()
    host = model_windows(data, spec)
    plan = InputPlan.for_input(spec)
    w = Windower(window=plan.window, hop=plan.hop, channels=plan.channels)
    device = [plan.prepare(win.data) for k, row in enumerate(data) if (win := w.push(k, k, row)) is not None]
    assert len(device) == len(host) > 0
    np.testing.assert_array_equal(np.stack(device).reshape(host.shape), host)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_blocks_are_per_window_and_stateless(name):
    """A window's features depend on that window only (overlap, gaps and order do not matter)."""
    plan = InputPlan.for_input(spec_for(CHAINS[name]))
    data = series()
    a = plan.prepare(data[40:140])
    plan.prepare(data[200:300])
    np.testing.assert_array_equal(plan.prepare(data[40:140]), a)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_round_trips_through_the_manifest(name, tmp_path):
    spec = spec_for(CHAINS[name])
    m = dataclasses.replace(parse_manifest(json.dumps(valid())), inputs=(spec,))
    back = parse_manifest(m.to_json())
    assert back.inputs[0].preprocessing == spec.preprocessing
    assert json.loads(m.to_json())["inputs"][0]["preprocessing"][0]["block"] == CHAINS[name][0]["block"]


def test_a_device_refuses_an_unknown_block_in_one_line():
    data = valid()
    data["inputs"][0]["preprocessing"] = [{"block": "highpass", "cutoff_hz": 0.3}, {"block": "wavelet", "level": 3}]
    with pytest.raises(BundleError) as err:
        parse_manifest(json.dumps(data))
    msg = str(err.value)
    assert "\n" not in msg and "inputs[0].preprocessing[1].block" in msg and "'wavelet'" in msg
    data["inputs"][0]["preprocessing"] = [{"block": "highpass", "cutoff_hz": -1}]
    with pytest.raises(BundleError, match=r"inputs\[0\].preprocessing\[0\].cutoff_hz: must be > 0"):
        parse_manifest(json.dumps(data))
    data["inputs"][0]["preprocessing"] = [{"block": "highpass", "cutof_hz": 1}]
    with pytest.raises(BundleError, match=r"preprocessing\[0\].cutof_hz: highpass has no parameter"):
        parse_manifest(json.dumps(data))


def test_plan_refuses_a_chain_that_does_not_fit_the_model():
    spec = spec_for(CHAINS["bands"])
    with pytest.raises(BadInput, match="preprocessing makes 3 x 3"):
        InputPlan.for_input(dataclasses.replace(spec, shape=(1, 4, 3)))
    with pytest.raises(BadInput, match="Nyquist"):
        InputPlan.for_input(dataclasses.replace(spec_for(CHAINS["biquads"]), sample_rate_hz=10.0))
    with pytest.raises(BadInput, match="cannot be inverted"):
        InputPlan.for_input(spec).unprepare(np.zeros(spec.shape))


def test_highpass_removes_gravity_and_offsets_exactly():
    data = series()
    for order in (1, 2):
        plan = InputPlan.for_input(spec_for([{"block": "highpass", "cutoff_hz": 0.3, "order": order}], norm=False))
        a = plan.features(data[:100])
        b = plan.features(data[:100] - data[0] + np.array([5.0, -7.0, 1.0]))
        np.testing.assert_allclose(a, b, atol=1e-12)
        np.testing.assert_allclose(plan.features(np.full((100, 3), 9.81)), 0.0, atol=1e-12)


def test_filters_long_windows_agree_with_the_matrix_form(monkeypatch):
    x = np.random.default_rng(3).normal(size=(600, 2))
    for kind, order in (("highpass", 1), ("lowpass", 2)):
        stage = dsp.Stage(600, 2, 100.0)
        loop = filters._iir(kind, 3.0, order, stage, np.arange(2))(x)
        monkeypatch.setattr(filters, "MATRIX_MAX_LENGTH", 10_000)
        matrix = filters._iir(kind, 3.0, order, stage, np.arange(2))(x)
        monkeypatch.undo()
        np.testing.assert_allclose(loop, matrix, atol=1e-9)


def test_spectral_blocks_find_a_tone():
    t = np.arange(100) / RATE
    tone = np.stack([np.sin(2 * np.pi * 5.0 * t)] * 3, axis=1)
    feats = InputPlan.for_input(spec_for(CHAINS["features"], norm=False)).features(tone)
    names = list(dsp.FEATURES)
    assert feats[names.index("peak_hz"), 0] == pytest.approx(5.0)
    assert feats[names.index("rms"), 0] == pytest.approx(np.sqrt(0.5), rel=1e-3)
    assert feats[names.index("zero_crossings"), 0] == pytest.approx(10.0, abs=0.6)
    bands = InputPlan.for_input(spec_for(CHAINS["bands"], norm=False)).features(tone)
    assert np.argmax(bands[:, 0]) == 1  # 3-8 Hz
    mel = dsp.compile_chain(dsp.parse_chain([{"block": "logmel", "n_fft": 256, "hop": 128, "n_mels": 20}]),
                            dsp.Stage(2048, 1, 8000.0))
    x = np.sin(2 * np.pi * 1000.0 * np.arange(2048) / 8000.0)[:, None]
    out = mel(x)
    assert out.shape == (15, 20)
    centres = 700.0 * (10 ** (np.linspace(spectral._mel(0), spectral._mel(4000), 22)[1:-1] / 2595.0) - 1)
    assert abs(centres[int(np.argmax(out.mean(axis=0)))] - 1000.0) < 200.0


def test_resample_and_detrend():
    plan = InputPlan.for_input(spec_for([{"block": "detrend", "kind": "linear"}, {"block": "resample",
                                                                                  "rate_hz": 25.0}], norm=False))
    ramp = np.arange(100)[:, None] * np.array([1.0, 2.0, -3.0]) + 4.0
    out = plan.features(ramp)
    assert out.shape == (50, 3)
    np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_command_line_and_registry():
    assert set(dsp.BLOCKS) >= {"highpass", "lowpass", "detrend", "resample", "band_energies", "features", "logmel"}
    assert dsp.parse_block_text("band_energies:bands=[[0.5,2],[2,5]],log=true") == {
        "block": "band_energies", "bands": [[0.5, 2], [2, 5]], "log": True}
    for name, info in dsp.BLOCKS.items():
        block = info.block()
        if name in ("band_energies", "resample"):  # no default band list or target rate
            continue
        assert dsp.parse_block(block.params()) == block
    with pytest.raises(dsp.ChainError, match="KEY=VALUE"):
        dsp.parse_block_text("highpass:0.3")


def test_costs_and_normalization_helpers():
    spec = spec_for(CHAINS["bands"])
    plan = InputPlan.for_input(spec)
    costs = preparation_costs(plan, series()[:100], repeats=5)
    assert [c[0].split("(")[0] for c in costs] == ["highpass", "band_energies", "normalize + layout"]
    assert all(us > 0 for _, us in costs)
    feats = InputPlan.for_input(dataclasses.replace(spec, normalization=None)).features(
        sliding_windows(series(), 100, 30))
    mean, std = fit_normalization(feats)
    assert len(mean) == len(std) == 3 and all(s > 0 for s in std)
