"""Start-up cost of ``spinal --help`` against the interpreter doing nothing (``python -c pass``).

Both commands run as fresh processes, interleaved round by round so that load on the machine hits both alike;
the median wall time of each, their ratio, and (when valgrind is installed and ``--callgrind`` is given) the
instructions each executes, which load does not blur.

    python benchmarks/bench_cli_startup.py [--rounds 10] [--callgrind] [--root TREE]

``--root`` measures another checkout (an older one without ``device/cli/__main__.py`` is run as
``python -c "from device.cli import main; main()" --help``). Modules are compiled to bytecode first, as an
installed package is: with PYTHONDONTWRITEBYTECODE set every start would compile them again.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = [sys.executable, "-c", "pass"]


def _help(root: Path) -> list[str]:
    if (root / "device" / "cli" / "__main__.py").exists():
        return [sys.executable, "-m", "device.cli", "--help"]
    return [sys.executable, "-c", "from device.cli import main; main()", "--help"]


def _env(root: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["PYTHONPATH"] = str(root)
    return env


def _wall(cmd: list[str], root: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=_env(root), cwd=root)
    return time.perf_counter() - start


def _instructions(cmd: list[str], root: Path) -> int:
    """Instructions executed by ``cmd`` under callgrind (the ``summary:`` line of its output file)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(root), cwd=root)
        match = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
        if match is None:
            raise SystemExit(f"{out}: no 'summary:' line; is this valgrind's callgrind output?")
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="Interleaved rounds (default 10).")
    parser.add_argument("--callgrind", action="store_true", help="Also count instructions with valgrind.")
    parser.add_argument("--root", type=Path, default=ROOT, help="The checkout to measure (default: this one).")
    args = parser.parse_args()
    root = args.root.resolve()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "device"), str(root / "toolchain")],
                   check=True, env=_env(root))
    cmd = _help(root)
    _wall(cmd, root), _wall(BARE, root)  # warm the page cache
    help_s, bare_s = [], []
    for _ in range(args.rounds):
        help_s.append(_wall(cmd, root))
        bare_s.append(_wall(BARE, root))
    h, b = statistics.median(help_s), statistics.median(bare_s)
    print(f"{root}: python {' '.join(cmd[1:])}")
    print(f"{os.uname().machine}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; median of {args.rounds} interleaved rounds")
    print(f"spinal --help    {h * 1000:7.1f} ms   (min {min(help_s) * 1000:.1f}, max {max(help_s) * 1000:.1f})")
    print(f"python -c pass   {b * 1000:7.1f} ms   (min {min(bare_s) * 1000:.1f}, max {max(bare_s) * 1000:.1f})")
    print(f"ratio {h / b:.2f}x; spinal's own share {(h - b) * 1000:.1f} ms")
    if args.callgrind:
        if shutil.which("valgrind") is None:
            raise SystemExit("--callgrind: valgrind is not installed (apt-get install valgrind)")
        hi, bi = _instructions(cmd, root), _instructions(BARE, root)
        print(f"instructions: spinal --help {hi / 1e6:.0f} M, python -c pass {bi / 1e6:.0f} M, ratio {hi / bi:.2f}x")


if __name__ == "__main__":
    main()
