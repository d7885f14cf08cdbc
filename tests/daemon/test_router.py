"""The router between samplers and inference: frames from several sensors, gaps, a full queue."""

from __future__ import annotations

import queue
from types import SimpleNamespace

from device.daemon import Metrics, Router
from device.manifest import TensorSpec
from device.pipeline import ChannelSource, InputPlan


def active(sources, window=4, hop=2, generation=1):
    spec = TensorSpec(name="x", shape=(1, window, len(sources)), layout="NTC", window=window, hop=hop)
    return SimpleNamespace(plan=InputPlan.for_input(spec), sources=tuple(sources), primary=sources[0].sensor,
                           generation=generation)


def test_secondary_sensor_values_are_held_and_a_stale_one_makes_a_gap():
    q: queue.Queue = queue.Queue(maxsize=10)
    router = Router(q, Metrics(), {"imu": 100.0, "env": 1.0})
    router.install(active([ChannelSource("imu", "ax"), ChannelSource("env", "t")]))
    ms = 1_000_000
    router.on_sample("imu", 0, 0, {"ax": 0.0})  # no env value yet: no honest frame, a gap
    router.on_sample("env", 0, 1 * ms, {"t": 20.0})
    for k in range(1, 5):
        router.on_sample("imu", k, k * 10 * ms, {"ax": float(k)})
    job = q.get_nowait()
    assert job.window.data.tolist() == [[1.0, 20.0], [2.0, 20.0], [3.0, 20.0], [4.0, 20.0]]
    router.on_sample("env", 1, 41 * ms, {"t": 21.0})
    router.on_sample("imu", 5, 50 * ms, {"ax": 5.0})
    router.on_sample("imu", 6, 60 * ms, {"ax": 6.0})
    assert q.get_nowait().window.data[:, 1].tolist() == [20.0, 20.0, 21.0, 21.0]
    # env goes silent for longer than 3 periods + 1 s: the next imu sample cannot form a frame
    router.on_sample("imu", 7, 4_100 * ms, {"ax": 7.0})
    assert router.stats()["gaps"] == 0  # the gap is recorded when the next sample arrives
    for k in range(8, 12):
        router.on_sample("env", k, (4_100 + k) * ms, {"t": 22.0})
        router.on_sample("imu", k, (4_100 + 10 * k) * ms, {"ax": float(k)})
    stats = router.stats()
    # one gap (the missing env before the very first frame is not a gap: nothing came before it)
    assert stats["gaps"] == 1 and stats["skipped_gap"] >= 1


def test_a_full_queue_drops_windows_and_counts_them_without_blocking():
    q: queue.Queue = queue.Queue(maxsize=1)
    router = Router(q, Metrics(), {"imu": 100.0})
    router.install(active([ChannelSource("imu", "ax")], window=2, hop=1))
    for k in range(6):
        router.on_sample("imu", k, k, {"ax": float(k)})
    assert q.qsize() == 1 and router.stats()["dropped_behind"] == 4
    assert q.get_nowait().window.data[:, 0].tolist() == [0.0, 1.0]


def test_a_missing_channel_or_a_new_model_layout_restarts_cleanly():
    q: queue.Queue = queue.Queue(maxsize=10)
    router = Router(q, Metrics(), {"imu": 100.0})
    router.install(active([ChannelSource("imu", "ax")], window=2, hop=2))
    router.on_sample("imu", 0, 0, {"ax": 0.0})
    router.on_sample("imu", 1, 1, {"other": 1.0})  # the chip skipped the channel: a gap, no exception
    router.on_sample("imu", 2, 2, {"ax": 2.0})
    router.on_sample("imu", 3, 3, {"ax": 3.0})
    assert router.stats()["gaps"] == 1
    router.install(active([ChannelSource("imu", "ax")], window=3, hop=3, generation=2))
    for k in range(4, 7):
        router.on_sample("imu", k, k, {"ax": float(k)})
    jobs = [q.get_nowait() for _ in range(q.qsize())]
    assert jobs[-1].generation == 2 and jobs[-1].window.data[:, 0].tolist() == [4.0, 5.0, 6.0]
