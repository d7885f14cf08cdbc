"""The one pacer (device.sensors.pacing): absolute ticks, catch-up of short hiccups, skipped ticks when far
behind, rejoining the grid, stop and heartbeat. On a fake clock: no timing in the assertions."""

from __future__ import annotations

import threading

import pytest

from device.sensors import pacing
from device.sensors.pacing import Pacer, sleep_until

MS = 1_000_000


class FakeClock:
    """``time.monotonic_ns`` and ``time.sleep`` that move a counter instead of the wall clock."""

    def __init__(self) -> None:
        self.now = 10 * MS
        self.sleeps: list[float] = []

    def monotonic_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += round(seconds * 1e9)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pacing, "time", fake)
    return fake


def test_ticks_are_due_on_an_absolute_grid(clock: FakeClock) -> None:
    pacer = Pacer(100.0)  # 10 ms
    assert pacer.wait() == 10 * MS  # tick 0 is due at once
    pacer.advance()
    clock.now += 3 * MS  # the read took 3 ms: the next tick is still 10 ms after the first
    assert pacer.wait() == 20 * MS
    assert clock.now == 20 * MS
    assert pacer.missed_ticks == 0


def test_a_short_hiccup_is_caught_up_a_long_stall_skipped(clock: FakeClock) -> None:
    pacer = Pacer(100.0)  # 10 ms ticks; catch-up: max(2, 100 * 0.05) = 5 ticks
    assert pacer.catch_up_ticks == 5
    clock.now += 45 * MS  # 4 ticks late after this one: read them back to back
    assert pacer.advance() == 0
    assert pacer.k == 1 and pacer.wait() == 20 * MS
    clock.now = 125 * MS  # tick 2 was due at 30 ms: 9 ticks behind, skip them
    assert pacer.advance() == 9
    assert pacer.missed_ticks == 9
    assert pacer.due_ns == 120 * MS  # the tick that is due now, on the grid


def test_rejoin_moves_to_the_next_tick_on_the_original_grid(clock: FakeClock) -> None:
    pacer = Pacer(100.0)
    clock.now += 57 * MS
    pacer.rejoin()
    assert pacer.due_ns == 70 * MS  # t0 = 10 ms, next grid point not yet past
    pacer.rejoin()  # never backwards
    assert pacer.due_ns == 70 * MS


def test_sleep_until_beats_and_stops(clock: FakeClock) -> None:
    beats: list[int] = []
    assert sleep_until(clock.now + 600 * MS, on_beat=beats.append)
    assert max(clock.sleeps) <= pacing.MAX_SLEEP_S  # a heartbeat at least every MAX_SLEEP_S
    assert len(beats) >= 3
    stop = threading.Event()
    stop.set()
    assert not sleep_until(clock.now + 600 * MS, stop)
    assert Pacer(100.0).wait(stop) is None


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(0.0)
