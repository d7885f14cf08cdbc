"""What is installed and what the CPU can do: the runtimes importable here, the CPU's model and int8 features,
and the device key that measurements are cached under."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from device.runtime.base import RUNTIMES


def installed_runtimes() -> dict[str, str]:
    """The runtimes importable here, with their versions (without importing them)."""
    import importlib.util

    found = {}
    for name, record in RUNTIMES.items():
        if importlib.util.find_spec(record.module) is None:
            continue
        try:
            found[name] = record.version()
        except ImportError:  # importlib.metadata.PackageNotFoundError, without importing it here
            found[name] = "unknown"
    return found


@dataclass(frozen=True)
class CpuFeatures:
    """What matters about this CPU for choosing int8 or float artifacts."""

    arch: str
    model: str
    flags: frozenset[str]
    cores: int

    @property
    def int8_dot(self) -> bool:
        """Whether the CPU has int8 dot-product instructions (int8 then reliably beats fp32)."""
        return bool(self.flags & {"asimddp", "avx512_vnni", "avx_vnni", "amx_int8", "i8mm"})


_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
              "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C", "0xd0c": "Neoverse-N1", "0xd40": "Neoverse-V1"}


# aarch64 AT_HWCAP / AT_HWCAP2 bits (linux/arch/arm64/include/uapi/asm/hwcap.h) of the flags that matter here.
_HWCAP_ASIMDDP = 1 << 20
_HWCAP2_I8MM = 1 << 13


def arm_hwcap_flags(hwcap: int, hwcap2: int) -> set[str]:
    """The int8 dot-product flags in aarch64's auxiliary vector (what /proc/cpuinfo's Features would say)."""
    return {name for name, present in (("asimddp", hwcap & _HWCAP_ASIMDDP), ("i8mm", hwcap2 & _HWCAP2_I8MM))
            if present}


def _auxv_flags(arch: str) -> set[str]:
    """CPU flags from ``getauxval`` where /proc/cpuinfo cannot be read (systemd's ProcSubset=pid hides it)."""
    if arch not in ("aarch64", "arm64"):
        return set()
    try:
        import ctypes

        getauxval = ctypes.CDLL(None).getauxval
        getauxval.restype, getauxval.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
        return arm_hwcap_flags(getauxval(16), getauxval(26))  # AT_HWCAP, AT_HWCAP2
    except (OSError, AttributeError):
        return set()


def cpu_features(cpuinfo: str | None = None, arch: str | None = None) -> CpuFeatures:
    """Parse ``/proc/cpuinfo`` (or the given text) for the CPU model and feature flags."""
    auxv: set[str] = set()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
            auxv = _auxv_flags(arch or platform.machine())
    flags: set[str] = set(auxv)
    names: dict[str, str] = {}
    cores = 0
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            cores += 1
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "cpu part", "model", "hardware") and value:
            names.setdefault(key, value)
    model = names.get("model name") or ""
    if not model and "cpu part" in names:  # ARM: the core, and the board when the kernel says (Raspberry Pi)
        part = names["cpu part"].lower()
        model = _ARM_PARTS.get(part, f"ARM part {part}")
        board = names.get("model", "")
        model = f"{model} ({board})" if board and not board.isdigit() else model
    return CpuFeatures(arch=arch or platform.machine(), model=model or names.get("hardware", "unknown"),
                       flags=frozenset(flags), cores=cores or os.cpu_count() or 1)


def device_key(features: CpuFeatures | None = None, runtimes: dict[str, str] | None = None) -> str:
    """A short id of this device for the measurement cache: CPU, its features, cores and runtime versions."""
    features = features or cpu_features()
    runtimes = installed_runtimes() if runtimes is None else runtimes
    data = json.dumps([features.arch, features.model, sorted(features.flags), features.cores, runtimes])
    return hashlib.sha256(data.encode()).hexdigest()[:16]
