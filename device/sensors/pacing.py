"""Holding a sampling rate: absolute deadlines (no drift), sleep then a short spin for precision."""

from __future__ import annotations

import time


class Pacer:
    """Ticks at ``rate_hz`` on an absolute schedule ``start + k / rate_hz``.

    :meth:`wait` sleeps until the next deadline (``time.sleep`` until ``spin_s`` before it, then
    spins on ``time.perf_counter_ns``) and returns that deadline in ns. A tick that is already more
    than one period late is skipped (counted in ``overruns``) instead of firing a burst of catch-up ticks.
    """

    def __init__(self, rate_hz: float, *, spin_s: float = 0.0002) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate must be positive, got {rate_hz}")
        self.period_ns = round(1e9 / rate_hz)
        self.spin_ns = int(spin_s * 1e9)
        self._next = time.perf_counter_ns()
        self.ticks = 0
        self.overruns = 0

    def wait(self) -> int:
        now = time.perf_counter_ns()
        if now - self._next > self.period_ns:
            missed = (now - self._next) // self.period_ns
            self.overruns += int(missed)
            self._next += missed * self.period_ns
        remaining = self._next - now
        if remaining > self.spin_ns:
            time.sleep((remaining - self.spin_ns) / 1e9)
        while time.perf_counter_ns() < self._next:
            pass
        deadline = self._next
        self._next += self.period_ns
        self.ticks += 1
        return deadline
