"""The x86 CPU features an interpreter sees, in it and in a child started through sys.executable: CPUID (numpy
reads it, as onnxruntime's MLAS and XNNPACK do) and /proc/cpuinfo (spinal's runtime choice reads it). Exits 1
unless both see AVX2 and FMA and neither sees AVX-512F or AVX-512 VNNI: run by tests/emulation/x86-noavx512.sh
under qemu-x86_64 -cpu Haswell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

try:
    from numpy._core._multiarray_umath import __cpu_features__ as FEATURES
except ImportError:  # numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__ as FEATURES

NAMES = ("AVX2", "FMA3", "AVX512F", "AVX512_SKX", "AVX512VNNI", "AVX512_ICL")


def seen() -> dict[str, bool]:
    found = {name: bool(FEATURES.get(name)) for name in NAMES}
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    found |= {f"cpuinfo:{flag}": flag in flags for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni")}
    return found


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(seen()))
        return 0
    here = seen()
    proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=False)
    child = json.loads(proc.stdout) if proc.returncode == 0 else {}
    print(f"cpu features seen: {here}; in a child ({sys.executable}): {child or proc.stderr.strip()}")
    want = {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False, "cpuinfo:avx2": True,
            "cpuinfo:fma": True, "cpuinfo:avx512f": False, "cpuinfo:avx512_vnni": False, "cpuinfo:avx_vnni": False}
    ok = here == child and all(here[name] == value for name, value in want.items())
    if not ok:
        print("error: this interpreter (or its child) is not an AVX2-only x86_64", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
