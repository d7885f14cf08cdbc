"""Holding a sampling rate: the one pacer of the daemon's samplers, ``spinal sensors read`` and the benchmark.

Tick ``k`` is due at ``t0 + k * period`` on ``time.monotonic_ns()`` (absolute deadlines: no drift). A tick
a little late (up to :data:`CATCH_UP_S` of ticks: the scheduler, the GIL) is caught up by reading the due
ticks back to back; further behind (a stalled bus, a long pause), the missed ticks are skipped and counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A pacer this late (or less) ticks back to back instead of skipping (at least two ticks).
CATCH_UP_S = 0.05
# The longest single sleep while waiting: a stop request or a heartbeat is never further away than this.
MAX_SLEEP_S = 0.25


def sleep_until(due_ns: int, stop: threading.Event | None = None, on_beat: Callable[[int], None] | None = None,
                spin_ns: int = 0) -> bool:
    """Sleep until ``due_ns`` (monotonic); ``False`` if ``stop`` was set meanwhile.

    Sleeps in steps of at most :data:`MAX_SLEEP_S`, calling ``on_beat(now_ns)`` before each (a
    heartbeat); with ``spin_ns`` the last ``spin_ns`` before the deadline are spun instead of slept."""
    while True:
        now = time.monotonic_ns()
        if on_beat is not None:
            on_beat(now)
        remaining = due_ns - now
        if remaining <= spin_ns:
            break
        step = min((remaining - spin_ns) / 1e9, MAX_SLEEP_S)
        if stop is not None:
            if stop.wait(step):
                return False
        else:
            time.sleep(step)
    while time.monotonic_ns() < due_ns:
        pass
    return stop is None or not stop.is_set()


class Pacer:
    """Ticks at ``rate_hz`` on the absolute schedule ``t0 + k / rate_hz`` (``t0``: when it was made).

    :meth:`wait` sleeps until tick ``k`` is due and returns its deadline; :meth:`advance` moves to the
    next tick, skipping the missed ones (counted in ``missed_ticks``) when more than ``catch_up_ticks``
    are already due; :meth:`rejoin` moves to the next tick on the grid after a pause (a recovery).
    ``spin_s`` spins the last part of each wait (more precise, costs CPU; the daemon does not spin).
    """

    def __init__(self, rate_hz: float, *, catch_up_s: float = CATCH_UP_S, spin_s: float = 0.0) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate must be positive, got {rate_hz}")
        self.period_ns = round(1e9 / rate_hz)
        self.catch_up_ticks = max(2, int(rate_hz * catch_up_s))
        self.spin_ns = int(spin_s * 1e9)
        self.t0 = time.monotonic_ns()
        self.k = 0
        self.missed_ticks = 0

    @property
    def due_ns(self) -> int:
        """When tick ``k`` is due (monotonic ns)."""
        return self.t0 + self.k * self.period_ns

    def wait(self, stop: threading.Event | None = None, on_beat: Callable[[int], None] | None = None) -> int | None:
        """Sleep until tick ``k`` is due; its deadline in ns, or ``None`` if ``stop`` was set meanwhile."""
        due = self.due_ns
        return due if sleep_until(due, stop, on_beat, self.spin_ns) else None

    def advance(self) -> int:
        """Move to the next tick; when far behind, past the missed ones. Returns how many were skipped."""
        self.k += 1
        late_ticks = (time.monotonic_ns() - self.due_ns) // self.period_ns
        if late_ticks <= self.catch_up_ticks:
            return 0
        self.k += late_ticks
        self.missed_ticks += late_ticks
        return late_ticks

    def rejoin(self) -> None:
        """Move to the next tick on the original grid that is not yet past (after a pause)."""
        self.k = max(self.k, -(-(time.monotonic_ns() - self.t0) // self.period_ns))
