"""The x86 CPU features an interpreter sees (numpy reads CPUID, as onnxruntime's MLAS and XNNPACK do), in it and
in a child started through sys.executable. Exits 1 unless both see AVX2 and FMA and neither sees AVX-512F or
AVX-512 VNNI: run by tests/emulation/x86-noavx512.sh under qemu-x86_64 -cpu Haswell."""

from __future__ import annotations

import json
import subprocess
import sys

try:
    from numpy._core._multiarray_umath import __cpu_features__ as FEATURES
except ImportError:  # numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__ as FEATURES

NAMES = ("AVX2", "FMA3", "AVX512F", "AVX512_SKX", "AVX512VNNI", "AVX512_ICL")


def seen() -> dict[str, bool]:
    return {name: bool(FEATURES.get(name)) for name in NAMES}


def main() -> int:
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(seen()))
        return 0
    here = seen()
    proc = subprocess.run([sys.executable, __file__, "--child"], capture_output=True, text=True, check=False)
    child = json.loads(proc.stdout) if proc.returncode == 0 else {}
    print(f"cpu features seen: {here}; in a child ({sys.executable}): {child or proc.stderr.strip()}")
    ok = here == child and here["AVX2"] and here["FMA3"] and not here["AVX512F"] and not here["AVX512VNNI"]
    if not ok:
        print("error: this interpreter (or its child) is not an AVX2-only x86_64", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
