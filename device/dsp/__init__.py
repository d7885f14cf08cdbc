"""The preprocessing chain: ordered DSP blocks between a raw sensor window and the model input.

A bundle declares its chain in the manifest, on its first input (``inputs[0].preprocessing``)::

    "preprocessing": [{"block": "highpass", "cutoff_hz": 0.3},
                      {"block": "band_energies", "bands": [[0.5, 2], [2, 5]], "log": true}]

The device (the daemon, the canary, ``spinal verify``) and the host (``spinal convert``, the training
scripts in ``models/``) run the very same code on the very same raw window, so features are computed
once, the same way, everywhere. Numpy only.

**Per window, stateless.** Every block sees one complete window ``(T, C)`` and nothing else: no filter
state is carried from one window to the next. Windows overlap by ``window - hop`` samples and may be
separated by gaps; a stateless block gives a window the same features whatever came before it, so
the host (which cuts windows from a recording) and the device (which cuts them from a live stream)
agree bit for bit. The price is the start of each window: an IIR filter starts from the steady state
of the window's first sample (a constant signal passes a low-pass unchanged and a high-pass as exactly
0), which removes a constant offset (gravity on a still-mounted accelerometer, a zero-g or zero-rate
offset) exactly and leaves a short transient for anything else.

Blocks (``BLOCKS``, one registry): ``highpass``, ``lowpass``, ``detrend``, ``resample``,
``band_energies``, ``features`` and ``logmel``. Each is a frozen dataclass of its parameters; a
block maps a :class:`Stage` (length, channels, sample rate, channel names) to the next one and,
compiled for its input stage, a ``(T, C)`` float64 array to the next array.

Modules: ``base`` (:class:`Stage`, :class:`Block`, :class:`ChainError`), ``filters`` (time domain),
``spectral`` (frequency domain and statistics), ``chain`` (the registry, parsing, compiling).
"""

from device.dsp.base import Array, Block, ChainError, Fn, Stage
from device.dsp.chain import (
    BLOCKS,
    BlockInfo,
    Compiled,
    Step,
    chain_to_list,
    compile_chain,
    describe,
    parse_block,
    parse_block_text,
    parse_chain,
)
from device.dsp.filters import Detrend, HighPass, LowPass, Resample
from device.dsp.spectral import FEATURES, BandEnergies, Features, LogMel

__all__ = [
    "BLOCKS", "FEATURES", "Array", "BandEnergies", "Block", "BlockInfo", "ChainError", "Compiled",
    "Detrend", "Features", "Fn", "HighPass", "LogMel", "LowPass", "Resample", "Stage", "Step", "chain_to_list",
    "compile_chain", "describe", "parse_block", "parse_block_text", "parse_chain",
]
