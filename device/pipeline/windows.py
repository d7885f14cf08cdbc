"""Windows: cut a series offline (:func:`sliding_windows`) or a live stream one sample at a time
(:class:`Windower`, with gap detection); both give the same windows from the same samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from device.dsp import Array


def sliding_windows(series: Array, window: int, hop: int) -> Array:
    """Cut a ``(N, C)`` series into windows ``(M, window, C)`` starting at ``0, hop, 2*hop, ...``.

    Only complete windows are returned (``M = 0`` when ``N < window``). This is the offline twin
    of :class:`Windower`: fed the same samples without gaps, both give identical windows.
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got window={window} hop={hop}")
    data = np.asarray(series)
    if data.ndim != 2:
        raise ValueError(f"expected a (samples, channels) array, got shape {data.shape}")
    n = data.shape[0]
    if n < window:
        return np.empty((0, window, data.shape[1]), dtype=data.dtype)
    starts = np.arange(0, n - window + 1, hop)
    index = starts[:, None] + np.arange(window)[None, :]
    return data[index]


def window_count(n_samples: int, window: int, hop: int) -> int:
    """How many complete windows :func:`sliding_windows` cuts from ``n_samples`` samples."""
    return 0 if n_samples < window else (n_samples - window) // hop + 1


@dataclass(frozen=True)
class Window:
    """One complete window from :class:`Windower`.

    ``data`` is ``(window, channels)`` float64 in time order; ``first_seq``/``last_seq`` are the
    sample sequence numbers (0-based count of samples pushed) and ``start_ns``/``end_ns`` the
    timestamps of its first and last samples.
    """

    data: Array
    first_seq: int
    last_seq: int
    start_ns: int
    end_ns: int


@dataclass
class Windower:
    """Streaming windows over a ring buffer, with gap detection.

    Push one sample at a time with its *slot*: the index of the sampling tick it belongs to
    (tick ``k`` is due at ``t0 + k * period``). Consecutive samples have consecutive slots; a
    jump (a failed read, a missed tick) is a gap, and so is an explicit :meth:`mark_gap`. Windows
    follow the same hop grid as :func:`sliding_windows` over the samples actually received; a
    window whose samples straddle a gap is skipped and counted in ``skipped_gap`` rather than
    handed to the model.
    """

    window: int
    hop: int
    channels: int
    emitted: int = 0
    skipped_gap: int = 0
    gaps: int = 0
    samples: int = 0
    _buf: Array = field(init=False, repr=False)
    _times: Array = field(init=False, repr=False)
    _last_slot: int | None = field(default=None, init=False, repr=False)
    _last_gap_seq: int = field(default=0, init=False, repr=False)
    _gap_pending: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.window < 1 or self.hop < 1 or self.channels < 1:
            raise ValueError(f"window, hop and channels must be >= 1 (got {self.window}, {self.hop}, {self.channels})")
        self._buf = np.zeros((self.window, self.channels), dtype=np.float64)
        self._times = np.zeros(self.window, dtype=np.int64)

    def mark_gap(self) -> None:
        """Declare that samples were lost before the next one (a failed read, a reset sensor)."""
        self._gap_pending = True

    def push(self, slot: int, t_ns: int, values: Sequence[float] | Array) -> Window | None:
        """Add one sample; return the window it completes, if any (and if it has no gap)."""
        seq = self.samples
        if self._gap_pending or (self._last_slot is not None and slot != self._last_slot + 1):
            if seq > 0:
                self.gaps += 1
                self._last_gap_seq = seq
            self._gap_pending = False
        self._last_slot = slot
        pos = seq % self.window
        self._buf[pos] = values
        self._times[pos] = t_ns
        self.samples = seq + 1
        n = self.samples
        if n < self.window or (n - self.window) % self.hop:
            return None
        first = n - self.window
        if self._last_gap_seq > first:
            self.skipped_gap += 1
            return None
        self.emitted += 1
        order = (np.arange(self.window) + n) % self.window  # oldest first
        return Window(data=self._buf[order].copy(), first_seq=first, last_seq=n - 1,
                      start_ns=int(self._times[order[0]]), end_ns=int(self._times[order[-1]]))


# --------------------------------------------------------------------------------------------
# Normalization and layout
