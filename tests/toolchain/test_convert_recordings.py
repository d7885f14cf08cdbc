"""`spinal convert` from raw sensor recordings plus a DSP chain: the chain and the normalization it computed
reach the manifest, the golden file holds the raw windows, and verify (the device's parity) passes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from device import recording
from device.bundle import open_bundle
from device.pipeline import InputPlan
from tests.conftest import DATA, run_cli

pytest.importorskip("onnx")

CHANNELS = ("imu.accel_x", "imu.accel_y", "imu.accel_z")
LABELS = ("a", "b", "c", "d")


def make_recording(path, seconds=60.0, rate=10.0, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    body = np.stack([np.sin(2 * np.pi * f * t) for f in (0.5, 1.0, 2.0)], axis=1) + 0.1 * rng.normal(size=(n, 3))
    samples = body + np.array([0.3, -0.2, 9.81])  # gravity and offsets, as a chip reports them
    labels = np.array([LABELS[(i // 100) % 4] for i in range(n)], dtype=object)
    segments = (np.arange(n) >= n // 2).astype(np.int64)  # a gap half-way
    rec = recording.Recording(samples, CHANNELS, rate, ("m/s^2",) * 3, labels, segments, source=str(path))
    recording.write(path, rec)
    return rec


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_recording_round_trip(tmp_path, suffix):
    rec = make_recording(tmp_path / f"r{suffix}")
    back = recording.read(tmp_path / f"r{suffix}")
    assert back.channels == CHANNELS and back.rate_hz == 10.0 and back.units == ("m/s^2",) * 3
    np.testing.assert_allclose(back.samples, rec.samples, rtol=1e-8)
    assert list(back.labels) == list(rec.labels) and list(back.segments) == list(rec.segments)
    assert recording.is_recording(tmp_path / f"r{suffix}")
    cut = recording.windows(back, CHANNELS, 40, 20)
    assert cut.mixed > 0 and len(cut.raw) > 0
    assert all(cut.starts < 300) or all(s + 40 <= 300 or s >= 300 for s in cut.starts)  # no window crosses the gap


def test_convert_from_recordings_with_a_chain(tmp_path):
    cal, val = tmp_path / "cal.csv", tmp_path / "val.npz"
    make_recording(cal, seed=1)
    make_recording(val, seed=2)
    chain = tmp_path / "chain.toml"
    chain.write_text('[[preprocess]]\nblock = "highpass"\ncutoff_hz = 0.3\n\n'
                     '[[preprocess]]\nblock = "resample"\nrate_hz = 2.0\n')
    out = tmp_path / "bundle"
    result = run_cli("convert", DATA / "tiny.onnx", "-o", out, "--formats", "onnx-fp32,onnx-int8",
                     "--channels", ",".join(CHANNELS), "--window", "40", "--hop", "20", "--preprocess-file", chain,
                     "--calibration", cal, "--validation", val, "--labels", ",".join(LABELS))
    assert result.exit_code == 0, result.stderr + result.stdout
    spec = json.loads((out / "manifest.json").read_text())["inputs"][0]
    assert spec["preprocessing"] == [{"block": "highpass", "cutoff_hz": 0.3, "order": 1},
                                     {"block": "resample", "rate_hz": 2.0}]
    assert (spec["window"], spec["hop"], spec["sample_rate_hz"], spec["layout"]) == (40, 20, 10.0, "NTC")
    assert spec["units"] == ["m/s^2"] * 3
    mean, std = spec["normalization"]["mean"], spec["normalization"]["std"]
    assert len(std) == 3 and all(s > 0 for s in std)
    assert len(mean) == 3 and all(abs(m) < 0.5 for m in mean)  # gravity is gone: the high-pass removed it
    with open_bundle(out) as bundle:
        golden = bundle.load_golden()
        plan = InputPlan.for_input(bundle.manifest.inputs[0])
        raw = golden["window/x"]
        assert raw.shape[1:] == (40, 3) and np.all(np.abs(raw[:, :, 2].mean(axis=1) - 9.81) < 0.5)  # raw, as read
        # the stored model inputs are the device pipeline's own preparation of the raw windows, bit for bit
        np.testing.assert_array_equal(golden["input/x"].reshape(len(raw), -1),
                                      np.stack([plan.prepare(w).reshape(-1) for w in raw]))
    assert run_cli("verify", out).exit_code == 0
    shown = run_cli("inspect", out)
    assert "highpass(cutoff_hz=0.3, order=1) -> resample(rate_hz=2.0)" in shown.stdout

    # a device that does not know a block refuses the bundle, in one line naming it
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["inputs"][0]["preprocessing"][1] = {"block": "wavelet", "level": 3}
    (out / "manifest.json").write_text(json.dumps(manifest))
    refused = run_cli("verify", out)
    assert refused.exit_code != 0
    assert "inputs[0].preprocessing[1].block: 'wavelet' is not a DSP block" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


def test_convert_flags_and_refusals(tmp_path):
    cal = tmp_path / "cal.csv"
    make_recording(cal)
    out = tmp_path / "b"
    bad = run_cli("convert", DATA / "tiny.onnx", "-o", out, "--formats", "onnx-fp32", "--window", "8",
                  "--preprocess", "bandpass:cutoff_hz=1", "--calibration", cal)
    assert bad.exit_code == 2 and "'bandpass' is not a DSP block" in bad.stderr
    nyq = run_cli("convert", DATA / "tiny.onnx", "-o", out, "--formats", "onnx-fp32", "--window", "8",
                  "--preprocess", "lowpass:cutoff_hz=7", "--calibration", cal)
    assert nyq.exit_code == 2 and "Nyquist" in nyq.stderr
    ok = run_cli("convert", DATA / "tiny.onnx", "-o", out, "--formats", "onnx-fp32", "--window", "8", "--hop", "8",
                 "--preprocess", "detrend:kind=linear", "--calibration", cal)
    assert ok.exit_code == 0, ok.stderr
    spec = json.loads((out / "manifest.json").read_text())["inputs"][0]
    assert spec["preprocessing"] == [{"block": "detrend", "kind": "linear"}]
    assert spec["channels"] == list(CHANNELS)  # from the recording
