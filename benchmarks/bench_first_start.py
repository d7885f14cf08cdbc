"""First start of a new bundle with ``runtime = "auto"``: process start → first inference, against a raw LiteRT script.

Each case is a fresh Python process on a device that has never seen the bundle (an empty cache directory: no
probe markers, no measurements), except "second start", which reuses the cache of the case before it. Rounds
interleave the cases; the table gives each case's median over the rounds.

- raw LiteRT: import the interpreter, load the artifact auto picked, one inference on zeros;
- spinal, no record: ``load_model`` on the reference imu-activity bundle (6 artifacts): every candidate probed,
  checked against the golden vectors and timed (the micro-benchmark);
- spinal, converter's record: the same bundle with ``report.latency_measured_on`` as ``spinal convert`` now
  writes it for this machine (the report's ``latency_us`` are the converter's), so the device confirms the
  recorded winner against one alternative;
- second start: the record case again with its cache.

``SPINAL_BASE=/path/to/other/checkout`` adds that tree's "no record" case (e.g. the code before a change).
Both trees' ``device/`` are byte-compiled first (``compileall``), as a pip install on a device leaves them.

    python benchmarks/bench_first_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.bundle import open_bundle, pack_archive, write_manifest  # noqa: E402
from device.runtime.autotune import RECORD_KEY, converter_record  # noqa: E402

SOURCE = ROOT / "models" / "imu-activity" / "imu-activity.spinal"
RECORD_CASE = "spinal, converter's record (confirm)"

SPINAL = """
import sys, time
from pathlib import Path
import numpy as np
from device.runtime import RuntimePolicy, load_model
policy = RuntimePolicy(threads=1, cache_dir=Path(sys.argv[2]))
m = load_model(Path(sys.argv[1]), policy)
m.run({s.name: np.zeros(s.shape, np.float32) for s in m.inputs})
print(time.time(), m.selection.mode, m.info.artifact)
"""

RAW = """
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
print(time.time(), "raw", sys.argv[1].rsplit("/", 1)[-1])
"""


def bundles(tmp: Path) -> tuple[Path, Path]:
    """The reference bundle as it is, and with the converter's record of where its latencies were measured."""
    with open_bundle(SOURCE) as bundle:
        root = tmp / "recorded"
        shutil.copytree(bundle.root, root)
        m = bundle.manifest
    write_manifest(root, dataclasses.replace(m, report={**m.report, RECORD_KEY: converter_record()}))
    return SOURCE, pack_archive(root, tmp / "recorded.spinal")


def timed(code: str, args: list[str], cache: Path, tree: Path = ROOT) -> tuple[float, str]:
    """Seconds from spawning the process to its first inference, and what it said it ran."""
    env = {**os.environ, "PYTHONPATH": str(tree), "SPINAL_CACHE_DIR": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=tree,
                         check=True).stdout.split()
    return float(out[0]) - t0, " ".join(out[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base = os.environ.get("SPINAL_BASE")
    times: dict[str, list[float]] = {}
    said: dict[str, str] = {}
    for tree in filter(None, [ROOT, base and Path(base)]):
        # bytecode, as pip writes it when it installs spinal on a device (PYTHONDONTWRITEBYTECODE would
        # otherwise leave every start compiling Spinal's modules while numpy and LiteRT have theirs)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "device")], check=True)
    with tempfile.TemporaryDirectory(prefix="spinal-first-") as d:
        tmp = Path(d)
        plain, recorded = bundles(tmp)
        with open_bundle(plain) as b:
            model_file = tmp / "model.int8.tflite"
            shutil.copy(b.path_of("model.int8.tflite"), model_file)
        for r in range(args.rounds):
            cases = [("raw LiteRT script", RAW, [str(model_file)], ROOT),
                     ("spinal, no record (micro-benchmark)", SPINAL, [str(plain)], ROOT),
                     (RECORD_CASE, SPINAL, [str(recorded)], ROOT),
                     ("spinal, second start (cached)", SPINAL, [str(recorded)], ROOT)]
            if base:
                cases.insert(1, ("before: spinal, no record", SPINAL, [str(plain)], Path(base)))
            for i, (name, code, argv, tree) in enumerate(cases):
                # the second start reuses the cache of the record case (the same bundle); the others start empty
                cache = tmp / f"cache-{r}-{i}"
                if name.startswith("spinal, second"):
                    cache = tmp / f"cache-{r}-{[c[0] for c in cases].index(RECORD_CASE)}"
                seconds, what = timed(code, [*argv, str(cache)] if code is SPINAL else argv, cache, tree)
                times.setdefault(name, []).append(seconds)
                said[name] = what
    raw = statistics.median(times["raw LiteRT script"])
    print(f"process start → first inference, median of {args.rounds} interleaved rounds "
          f"(load average {os.getloadavg()[0]:.1f} at the end)\n")
    print("| case | median s | min s | × raw | mode, artifact |")
    print("|---|---:|---:|---:|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {min(values):.3f} | {med / raw:.1f} | {said[name]} |")
    print()
    print(json.dumps(times))


if __name__ == "__main__":
    main()
