"""The pipeline maths: streaming windows equal offline windows, gaps, normalization, layout, post-processing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from device.errors import BadInput
from device.manifest import Normalization, Task, TensorSpec
from device.pipeline import (
    InputPlan,
    PostprocessConfig,
    PostProcessor,
    Windower,
    bind_channels,
    model_windows,
    normalize,
    sliding_windows,
    softmax,
    to_layout,
    window_count,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def series_and_grid(draw):
    channels = draw(st.integers(1, 4))
    n = draw(st.integers(0, 60))
    window = draw(st.integers(1, 12))
    hop = draw(st.integers(1, 12))
    data = draw(arrays(np.float64, (n, channels), elements=finite))
    return data, window, hop


@settings(max_examples=200, deadline=None)
@given(series_and_grid())
def test_streaming_windows_equal_offline_windows(case):
    data, window, hop = case
    offline = sliding_windows(data, window, hop)
    w = Windower(window=window, hop=hop, channels=data.shape[1])
    streamed = [win for i, row in enumerate(data) if (win := w.push(i, i * 10, row)) is not None]
    assert len(streamed) == len(offline) == window_count(len(data), window, hop)
    for k, win in enumerate(streamed):
        np.testing.assert_array_equal(win.data, offline[k])
        assert win.first_seq == k * hop and win.last_seq == k * hop + window - 1
        assert (win.start_ns, win.end_ns) == (win.first_seq * 10, win.last_seq * 10)
    assert w.skipped_gap == 0 and w.gaps == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.integers(1, 10), st.integers(1, 80), st.integers(2, 60), st.integers(1, 5))
def test_a_gap_skips_exactly_the_windows_that_straddle_it(window, hop, n, gap_at, missed):
    """Samples before and after a gap keep the hop grid; a window containing the gap is skipped and counted."""
    w = Windower(window=window, hop=hop, channels=1)
    emitted, slot = [], 0
    for i in range(n):
        if i == gap_at:
            slot += missed  # the sampler missed `missed` ticks
        win = w.push(slot, slot, [float(i)])
        slot += 1
        if win is not None:
            emitted.append(win)
    grid_ends = [e for e in range(window - 1, n, hop)]  # windows over the sample sequence
    straddling = [e for e in grid_ends if e - window + 1 < gap_at <= e] if gap_at < n else []
    assert w.skipped_gap == len(straddling)
    assert [x.last_seq for x in emitted] == [e for e in grid_ends if e not in straddling]
    assert w.gaps == (1 if gap_at < n else 0)
    for win in emitted:  # every emitted window holds consecutive samples
        assert np.all(np.diff(win.data[:, 0]) == 1)


def test_mark_gap_skips_the_window_across_a_failed_read():
    w = Windower(window=3, hop=1, channels=1)
    out = [w.push(i, i, [i]) for i in range(3)]
    assert out[2] is not None
    w.mark_gap()
    assert w.push(3, 3, [3]) is None and w.push(4, 4, [4]) is None
    assert w.push(5, 5, [5]) is not None
    assert w.skipped_gap == 2


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)), elements=finite),
       arrays(np.float64, (3,), elements=st.floats(-100, 100)),
       arrays(np.float64, (3,), elements=st.floats(0.01, 100)))
def test_normalize_is_per_channel_standardisation_and_invertible(x, mean, std):
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z, ((x - mean) / std).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(z.astype(np.float64) * std + mean, x, rtol=1e-5,
                               atol=1e-5 * (1 + np.abs(x).max() + np.abs(mean).max()))


@pytest.mark.parametrize(("shape", "layout", "expect"), [
    ((1, 5, 3), "NTC", (1, 5, 3)),
    ((1, 3, 5), "NCT", (1, 3, 5)),
    ((5, 3), None, (5, 3)),
    ((1, 3, 1, 5), "NCHW", (1, 3, 1, 5)),
])
def test_to_layout_places_time_and_channels(shape, layout, expect):
    spec = TensorSpec(name="x", shape=shape, layout=layout, window=5, channels=("a", "b", "c"))
    win = np.arange(15, dtype=np.float64).reshape(5, 3)
    out = to_layout(win, spec)
    assert out.shape == expect
    t_first = layout is None or layout.index("T" if "T" in layout else "W") < layout.index("C")
    flat = out.reshape(5, 3) if t_first else out.reshape(3, 5).T
    np.testing.assert_array_equal(flat, win)
    batch = to_layout(np.stack([win, win + 100]), spec)
    assert batch.shape[0] == 2
    np.testing.assert_array_equal(batch[0].reshape(out.shape), out)


def test_model_windows_matches_the_streaming_device_path():
    spec = TensorSpec(name="x", shape=(1, 3, 4), layout="NCT", window=4, hop=2, channels=("a", "b", "c"),
                      normalization=Normalization(mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0)))
    series = np.random.default_rng(0).normal(size=(11, 3))
    host = model_windows(series, spec)
    plan = InputPlan.for_input(spec)
    w = Windower(window=plan.window, hop=plan.hop, channels=3)
    device = [plan.prepare(win.data) for i, row in enumerate(series) if (win := w.push(i, i, row)) is not None]
    assert host.shape == (4, 3, 4)
    np.testing.assert_array_equal(host, np.concatenate(device))


def test_bind_channels_defaults_overrides_and_errors():
    sensors = {"imu": ("accel_x", "accel_y", "gyro_z"), "env": ("temperature",)}
    got = bind_channels(["imu.accel_x", "imu.gyro_z"], sensors)
    assert [str(c) for c in got] == ["imu.accel_x", "imu.gyro_z"]
    got = bind_channels(["acc_x", "temp"], sensors, {"acc_x": "imu.accel_y", "temp": "env.temperature"})
    assert [str(c) for c in got] == ["imu.accel_y", "env.temperature"]
    with pytest.raises(BadInput, match=r"model channel 'imu\.mag_x': sensor 'imu' has no channel 'mag_x'"):
        bind_channels(["imu.mag_x"], sensors)
    with pytest.raises(BadInput, match=r"model channel 'baro\.p': no sensor with id 'baro'"):
        bind_channels(["baro.p"], sensors)
    with pytest.raises(BadInput, match=r"binding\.nope: the model has no input channel 'nope'"):
        bind_channels(["imu.accel_x"], sensors, {"nope": "imu.accel_x"})
    with pytest.raises(BadInput, match=r"model channel 'acc_x': no sensor has a channel 'acc_x'; bind it in"):
        bind_channels(["acc_x"], sensors)
    # a bare channel name binds to the one sensor that has it
    assert [str(c) for c in bind_channels(["gyro_z", "temperature"], sensors)] == ["imu.gyro_z", "env.temperature"]
    with pytest.raises(BadInput, match=r"sensors imu, imu2 all have a channel 'gyro_z'; say which in \[binding\]"):
        bind_channels(["gyro_z"], {**sensors, "imu2": ("gyro_z",)})


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-50, 50)))
def test_softmax_is_a_distribution_and_keeps_the_argmax(x):
    p = softmax(x)
    assert np.isclose(p.sum(), 1.0) and np.all(p >= 0)
    assert p[np.argmax(x)] == p.max()


CLS = Task(kind="classification", output="y", labels=("a", "b", "c"), activation="logits")
OUT = TensorSpec(name="y", shape=(1, 3))


def test_postprocess_labels_threshold_smoothing_and_change():
    post = PostProcessor(CLS, OUT, PostprocessConfig(threshold=0.6, smoothing=2, emit="change"))
    p1 = post(np.log([[0.8, 0.1, 0.1]]))
    assert p1.label == "a" and p1.emit and np.isclose(p1.score, 0.8)
    p2 = post(np.log([[0.8, 0.1, 0.1]]))
    assert p2.label == "a" and not p2.emit  # unchanged: not emitted
    p3 = post(np.log([[0.1, 0.8, 0.1]]))  # smoothed: a=0.45, b=0.45 -> below threshold
    assert p3.label == "unknown" and p3.emit and np.isclose(p3.values["b"], 0.45)
    p4 = post(np.log([[0.1, 0.8, 0.1]]))
    assert p4.label == "b" and p4.emit and np.isclose(p4.score, 0.8)


def test_postprocess_every_window_and_anomaly_threshold():
    post = PostProcessor(CLS, OUT, PostprocessConfig())
    assert all(post(np.array([[0.0, 1.0, 0.0]])).emit for _ in range(3))
    anomaly = PostProcessor(Task(kind="anomaly", output="s", threshold=0.5), TensorSpec(name="s", shape=(1, 1)),
                            PostprocessConfig(emit="change"))
    assert anomaly(np.array([[0.2]])).label == "normal"
    high = anomaly(np.array([[0.9]]))
    assert high.label == "anomaly" and high.emit and high.score == pytest.approx(0.9)


def test_postprocess_refuses_settings_that_do_not_fit_the_model():
    with pytest.raises(BadInput, match=r"postprocess\.labels: 2 labels for a model output of 3 classes"):
        PostProcessor(CLS, OUT, PostprocessConfig(labels=("x", "y")))
    reg = Task(kind="regression", output="y", targets=("t",))
    with pytest.raises(BadInput, match=r"postprocess\.threshold: has no meaning for a regression model"):
        PostProcessor(reg, TensorSpec(name="y", shape=(1, 1)), PostprocessConfig(threshold=0.5))
    with pytest.raises(BadInput, match=r"postprocess\.threshold: a class probability threshold must be in \[0, 1\]"):
        PostProcessor(CLS, OUT, PostprocessConfig(threshold=2.0))


def test_postprocess_refuses_outputs_that_do_not_fit_the_task():
    # Before: an anomaly output of 2 values was accepted and every window then failed in zip(strict=True);
    # regression targets of the wrong count were silently renamed y0, y1, ...
    with pytest.raises(BadInput, match=r"an anomaly model outputs one score, but its shape \[1, 2\] holds 2"):
        PostProcessor(Task(kind="anomaly", output="s", threshold=0.5), TensorSpec(name="s", shape=(1, 2)),
                      PostprocessConfig())
    with pytest.raises(BadInput, match=r"task\.targets: 1 names for a model output of 2 values"):
        PostProcessor(Task(kind="regression", output="y", targets=("t",)), TensorSpec(name="y", shape=(1, 2)),
                      PostprocessConfig())
    unnamed = PostProcessor(Task(kind="regression", output="y"), TensorSpec(name="y", shape=(1, 2)),
                            PostprocessConfig())
    assert unnamed(np.array([[1.0, 2.0]])).values == {"y0": 1.0, "y1": 2.0}
