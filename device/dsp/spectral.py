"""Frequency-domain and summary blocks: band energies, window statistics, log-mel spectrograms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from device.dsp.base import Array, Block, ChainError, Fn, Stage, need_rate


def _taper(kind: str, n: int) -> Array:
    return np.hanning(n) if kind == "hann" else np.ones(n)


@dataclass(frozen=True)
class BandEnergies(Block):
    """Power in frequency bands (``[[lo, hi], ...]`` Hz, lo inclusive, hi exclusive) of each channel's
    spectrum: output ``(bands, channels)``, mean power per band, optionally ``log`` (natural, +1e-12)."""

    name: ClassVar[str] = "band_energies"
    description: ClassVar[str] = "FFT power per frequency band"
    bands: tuple[tuple[float, float], ...] = ()
    window: str = "hann"
    log: bool = False

    def check(self) -> None:
        if not self.bands:
            raise ChainError("give at least one [low_hz, high_hz] band", "bands")
        for i, band in enumerate(self.bands):
            if len(band) != 2 or not 0 <= band[0] < band[1]:
                raise ChainError(f"{list(band)} is not [low_hz, high_hz] with 0 <= low < high", f"bands[{i}]")
        if self.window not in ("hann", "none"):
            raise ChainError(f"{self.window!r} is not hann or none", "window")

    def _bins(self, stage: Stage) -> list[Array]:
        rate = need_rate(stage, self.name)
        freqs = np.fft.rfftfreq(stage.length, 1.0 / rate)
        out = []
        for i, (lo, hi) in enumerate(self.bands):
            sel = np.flatnonzero((freqs >= lo) & (freqs < hi))
            if not len(sel):
                raise ChainError(f"[{lo:g}, {hi:g}) Hz holds no FFT bin of a {stage.length}-sample window at "
                                 f"{rate:g} Hz (bins are {rate / stage.length:g} Hz apart)", f"bands[{i}]")
            out.append(sel)
        return out

    def out(self, stage: Stage) -> Stage:
        self._bins(stage)
        return Stage(len(self.bands), stage.channels, None, stage.names)

    def compile(self, stage: Stage) -> Fn:
        bins = self._bins(stage)
        taper = _taper(self.window, stage.length)[:, None]
        scale = 1.0 / stage.length
        log = self.log

        def run(x: Array) -> Array:
            power = np.abs(np.fft.rfft(np.asarray(x, np.float64) * taper, axis=0)) ** 2 * scale
            out = np.stack([power[sel].mean(axis=0) for sel in bins])
            result: Array = np.log(out + 1e-12) if log else out
            return result
        return run


FEATURES = ("mean", "std", "rms", "min", "max", "peak_hz", "peak_power", "zero_crossings")


@dataclass(frozen=True)
class Features(Block):
    """Per-channel window statistics: output ``(features, channels)`` in the order given.

    ``mean``, ``std``, ``rms``, ``min``, ``max``; ``peak_hz`` (frequency of the largest FFT bin above
    DC) and ``peak_power``; ``zero_crossings`` (sign changes of the mean-removed signal per second)."""

    name: ClassVar[str] = "features"
    description: ClassVar[str] = "window statistics: mean, std, RMS, min, max, peak frequency..."
    features: tuple[str, ...] = ("rms", "peak_hz")

    def check(self) -> None:
        if not self.features:
            raise ChainError("name at least one feature", "features")
        for i, f in enumerate(self.features):
            if f not in FEATURES:
                raise ChainError(f"{f!r} is not one of {', '.join(FEATURES)}", f"features[{i}]")

    def out(self, stage: Stage) -> Stage:
        if any(f in ("peak_hz", "peak_power", "zero_crossings") for f in self.features):
            need_rate(stage, self.name)
        return Stage(len(self.features), stage.channels, None, stage.names)

    def compile(self, stage: Stage) -> Fn:
        rate = stage.rate_hz or 1.0
        freqs = np.fft.rfftfreq(stage.length, 1.0 / rate)
        taper = np.hanning(stage.length)[:, None]
        names = self.features
        seconds = stage.length / rate

        def run(x: Array) -> Array:
            x = np.asarray(x, np.float64)
            rows = []
            power = None
            for f in names:
                if f == "mean":
                    rows.append(x.mean(axis=0))
                elif f == "std":
                    rows.append(x.std(axis=0))
                elif f == "rms":
                    rows.append(np.sqrt(np.mean(x * x, axis=0)))
                elif f == "min":
                    rows.append(x.min(axis=0))
                elif f == "max":
                    rows.append(x.max(axis=0))
                elif f in ("peak_hz", "peak_power"):
                    if power is None:
                        centred = x - x.mean(axis=0, keepdims=True)
                        power = np.abs(np.fft.rfft(centred * taper, axis=0)) ** 2 / stage.length
                    k = 1 + np.argmax(power[1:], axis=0) if len(power) > 1 else np.zeros(x.shape[1], np.int64)
                    rows.append(freqs[k] if f == "peak_hz" else power[k, np.arange(x.shape[1])])
                else:
                    s = np.signbit(x - x.mean(axis=0, keepdims=True))
                    rows.append(np.count_nonzero(s[1:] != s[:-1], axis=0) / seconds)
            result: Array = np.stack(rows).astype(np.float64)
            return result
        return run


def _mel(hz: Array | float) -> Array:
    out: Array = 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)
    return out


def _mel_filters(n_mels: int, n_fft: int, rate: float, fmin: float, fmax: float) -> Array:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters, equally spaced on the HTK mel scale."""
    edges = 700.0 * (10 ** (np.linspace(_mel(fmin), _mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-12)
    down = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-12)
    filters: Array = np.maximum(0.0, np.minimum(up, down)).T
    return filters


@dataclass(frozen=True)
class LogMel(Block):
    """Log-mel spectrogram of an audio-like window: frames of ``n_fft`` samples every ``hop`` samples
    (Hann), power spectrum, ``n_mels`` triangular mel filters from ``fmin_hz`` to ``fmax_hz`` (default
    Nyquist), ``log(x + 1e-6)``. Output ``(frames, n_mels * channels)`` (channel-major)."""

    name: ClassVar[str] = "logmel"
    description: ClassVar[str] = "log-mel spectrogram (frames x mel bands)"
    n_fft: int = 512
    hop: int = 256
    n_mels: int = 40
    fmin_hz: float = 0.0
    fmax_hz: float | None = None

    def check(self) -> None:
        for key in ("n_fft", "hop", "n_mels"):
            if getattr(self, key) < 1:
                raise ChainError(f"must be >= 1, got {getattr(self, key)}", key)
        if self.fmin_hz < 0 or (self.fmax_hz is not None and self.fmax_hz <= self.fmin_hz):
            raise ChainError("needs 0 <= fmin_hz < fmax_hz", "fmax_hz" if self.fmax_hz is not None else "fmin_hz")

    def _fmax(self, rate: float) -> float:
        return self.fmax_hz if self.fmax_hz is not None else rate / 2

    def out(self, stage: Stage) -> Stage:
        rate = need_rate(stage, self.name)
        if self.n_fft > stage.length:
            raise ChainError(f"{self.n_fft} is longer than the {stage.length}-sample window", "n_fft")
        if self._fmax(rate) > rate / 2:
            raise ChainError(f"{self.fmax_hz} Hz is above the Nyquist frequency {rate / 2:g} Hz", "fmax_hz")
        frames = 1 + (stage.length - self.n_fft) // self.hop
        return Stage(frames, self.n_mels * stage.channels, rate / self.hop, ())

    def compile(self, stage: Stage) -> Fn:
        rate = stage.rate_hz or 1.0
        filters = _mel_filters(self.n_mels, self.n_fft, rate, self.fmin_hz, self._fmax(rate))
        frames = 1 + (stage.length - self.n_fft) // self.hop
        index = (np.arange(frames) * self.hop)[:, None] + np.arange(self.n_fft)[None, :]
        taper = np.hanning(self.n_fft)[None, :]

        def run(x: Array) -> Array:
            x = np.asarray(x, np.float64)
            out = []
            for c in range(x.shape[1]):
                spec = np.abs(np.fft.rfft(x[:, c][index] * taper, axis=1)) ** 2 / self.n_fft
                out.append(np.log(spec @ filters + 1e-6))
            return np.concatenate(out, axis=1)
        return run
