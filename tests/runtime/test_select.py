"""Selection: CPU features, the pick rule, auto's cached micro-benchmark, explicit policies and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.errors import BadInput, MissingDependency
from device.runtime import RuntimePolicy, cpu, load_model
from device.runtime import select as sel
from device.runtime.select import Measurement, cpu_features, pick

PI4 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08
processor\t: 1
Features\t: fp asimd evtstrm crc32 cpuid
CPU part\t: 0xd08
Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI5 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU part\t: 0xd0b
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
XEON = """processor\t: 0
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni
"""


def test_cpu_features_from_cpuinfo() -> None:
    pi4 = cpu_features(PI4, arch="aarch64")
    assert pi4.model == "Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)" and pi4.cores == 2 and not pi4.int8_dot
    pi5 = cpu_features(PI5, arch="aarch64")
    assert pi5.model.startswith("Cortex-A76") and pi5.int8_dot
    xeon = cpu_features(XEON, arch="x86_64")
    assert xeon.model.startswith("Intel(R) Xeon") and xeon.int8_dot
    assert not cpu_features("flags: sse2 avx2\n", arch="x86_64").int8_dot
    here = cpu_features()
    assert here.cores >= 1 and here.arch
    assert sel.device_key(pi4, {}) != sel.device_key(pi5, {})


def m(runtime: str, precision: str, p50: float | None, parity: bool | None = True) -> Measurement:
    return Measurement(runtime, f"model_{precision}", precision, p50, parity)


def test_pick_prefers_accuracy_within_the_cpu_margin() -> None:
    a72, a76 = cpu_features(PI4, "aarch64"), cpu_features(PI5, "aarch64")
    measured = [m("litert", "fp32", 100.0), m("litert", "int8", 85.0), m("onnxruntime", "fp32", 300.0)]
    # On a CPU without dot-product instructions, int8 must beat fp32 by more than 25%.
    assert pick(measured, a72).precision == "fp32"
    # With them, 10% is enough.
    assert pick(measured, a76).precision == "int8"
    # A candidate that failed parity never wins, however fast.
    assert pick([m("litert", "fp32", 100.0), m("litert", "int8", 10.0, parity=False)], a76).precision == "fp32"
    assert pick([m("litert", "fp32", None)], a76) is None


def test_auto_measures_once_then_uses_the_cache(bundle_dir: Path, cache_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_model(bundle_dir, RuntimePolicy(threads=1, cache_dir=cache_dir))
    assert first.selection.mode == "measured"
    runs = {(x.runtime, x.artifact) for x in first.selection.measurements}
    assert ("litert", "model_int8io.tflite") in runs and ("onnxruntime", "model_int8.onnx") in runs
    assert all(x.parity is True and x.p50_us and x.p50_us > 0 for x in first.selection.measurements)
    cache = json.loads((cache_dir / "autotune.json").read_text())
    (key,) = cache
    assert key.startswith(sel.device_key()) and ":threads=1:delegate=cpu" in key

    calls = []
    monkeypatch.setattr(sel, "measure_all", lambda *a, **k: calls.append(a))
    second = load_model(bundle_dir, RuntimePolicy(threads=1, cache_dir=cache_dir))
    assert second.selection.mode == "cached" and not calls
    assert (second.info.runtime, second.info.artifact) == (first.info.runtime, first.info.artifact)
    # Another thread count is another measurement.
    third = load_model(bundle_dir, RuntimePolicy(threads=2, cache_dir=cache_dir, autotune=False))
    assert third.selection.mode == "prior"


def test_auto_skips_candidates_that_fail_parity(bad_golden_bundle: Path, cache_dir: Path) -> None:
    model = load_model(bad_golden_bundle, RuntimePolicy(artifact="int8", cache_dir=cache_dir))
    measured = {x.artifact: x.parity for x in model.selection.measurements}
    assert measured == {"model_int8.tflite": False, "model_int8.onnx": True}
    assert model.info.artifact == "model_int8.onnx"


def test_auto_uses_the_cpu_prior_without_measurements(bundle_dir: Path, cache_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sel, "cpu_features", lambda: cpu_features(PI5, "aarch64"))
    model = load_model(bundle_dir, RuntimePolicy(autotune=False, cache_dir=cache_dir))
    assert model.selection.mode == "prior" and (model.info.runtime, model.info.precision) == ("litert", "int8")
    monkeypatch.setattr(sel, "cpu_features", lambda: cpu_features(PI4, "aarch64"))
    model = load_model(bundle_dir, RuntimePolicy(autotune=False, cache_dir=cache_dir))
    assert (model.info.runtime, model.info.precision) == ("litert", "fp32")


@pytest.mark.parametrize(("flags", "precision"), [("fpu sse4_2 avx2 fma", "fp32"),
                                                   ("fpu sse4_2 avx2 fma avx512f avx512_vnni", "int8")])
def test_explicit_artifact_by_path_or_precision(bundle_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                flags: str, precision: str) -> None:
    """Without a measurement the CPU decides: int8 first only where it has int8 dot products (not this machine's
    CPU: both kinds are pretended, so the test holds on any)."""
    monkeypatch.setattr(sel, "cpu_features", lambda: cpu_features(f"processor\t: 0\nflags\t: {flags}\n", "x86_64"))
    assert load_model(bundle_dir, RuntimePolicy(artifact="model_fp16.tflite")).info.precision == "fp16"
    model = load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime", cache_dir=cache_dir, autotune=False))
    assert model.info.runtime == "onnxruntime" and model.info.precision == precision
    with pytest.raises(BadInput, match=r"artifact 'bf16' is not in the bundle \(it has model_fp32.tflite \(fp32\)"):
        load_model(bundle_dir, RuntimePolicy(artifact="bf16"))


def test_missing_runtimes_say_what_to_install(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sel, "installed_runtimes", lambda: {"litert": "2.1.0"})
    with pytest.raises(MissingDependency, match=r"runtime onnxruntime is not installed; install it with: pip install "
                                                r"'spinal\[onnx-runtime\]'"):
        load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime"))
    monkeypatch.setattr(sel, "installed_runtimes", lambda: {})
    with pytest.raises(MissingDependency, match=r"no runtime here can run the bundle's onnx/tflite artifacts"):
        load_model(bundle_dir, RuntimePolicy())


def test_unwritable_cache_still_loads(bundle_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    model = load_model(bundle_dir, RuntimePolicy(artifact="fp32", cache_dir=blocker / "cache"))
    assert model.selection.mode == "measured"


def test_a_damaged_cache_entry_is_measured_again_not_a_crash(bundle_dir: Path, cache_dir: Path) -> None:
    policy = RuntimePolicy(threads=1, cache_dir=cache_dir)
    load_model(bundle_dir, policy).close()
    path = cache_dir / "autotune.json"
    cache = json.loads(path.read_text())
    (key,) = cache
    cache[key]["candidates"][0]["p50_us"] = "fast"  # an edited file: pick() compared str with float (TypeError)
    cache.update({f"junk{i}": "not an entry" for i in range(sel.CACHE_ENTRIES)})  # pruning called .get on a str
    path.write_text(json.dumps(cache))
    model = load_model(bundle_dir, policy)
    assert model.selection.mode == "measured"
    model.close()
    rewritten = json.loads(path.read_text())
    assert len(rewritten) == sel.CACHE_ENTRIES and isinstance(rewritten[key]["candidates"][0]["p50_us"], float)
    assert not list(cache_dir.glob(".autotune.*"))


def test_auto_passes_over_a_candidate_that_cannot_load(bundle_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    # One artifact this device cannot load (here: cut short, re-sealed so the bundle still verifies). auto used to
    # let that ModelFileError end load_model, although the other candidates run fine.
    import dataclasses
    import shutil

    from device.bundle import file_digest, read_manifest, write_manifest

    root = tmp_path / "imu"
    shutil.copytree(bundle_dir, root)
    broken = root / "model_fp16.tflite"
    broken.write_bytes(broken.read_bytes()[:200])
    manifest = read_manifest(root)
    sha, size = file_digest(broken)
    arts = tuple(dataclasses.replace(a, sha256=sha, bytes=size) if a.path == broken.name else a
                 for a in manifest.artifacts)
    write_manifest(root, dataclasses.replace(manifest, artifacts=arts))
    model = load_model(root, RuntimePolicy(runtime="litert", threads=1, cache_dir=cache_dir))
    errors = {m.artifact: m.error for m in model.selection.measurements}
    assert errors.pop("model_fp16.tflite").startswith(str(broken))
    assert set(errors) == {"model_fp32.tflite", "model_int8.tflite", "model_int8io.tflite"}
    assert not any(errors.values()) and model.info.artifact != "model_fp16.tflite"
    model.close()


def test_int8_dot_from_the_auxiliary_vector_without_proc_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    # The systemd unit's ProcSubset=pid hides /proc/cpuinfo: a Pi 5 then looked like a CPU without asimddp.
    assert sel.arm_hwcap_flags(1 << 20, 0) == {"asimddp"} and sel.arm_hwcap_flags(0, 1 << 13) == {"i8mm"}
    assert sel.arm_hwcap_flags(0b11, 0) == set()
    monkeypatch.setattr(cpu, "_auxv_flags", lambda arch: sel.arm_hwcap_flags(1 << 20, 0) if arch == "aarch64"
                        else set())
    real_read = Path.read_text

    def hidden(self: Path, *a: object, **k: object) -> str:
        if str(self) == "/proc/cpuinfo":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", hidden)
    assert cpu_features(arch="aarch64").int8_dot and not cpu_features(arch="x86_64").int8_dot


def test_auxv_flags_reads_getauxval_here() -> None:
    import platform

    # The real call (libc's getauxval through ctypes) runs on any Linux; only aarch64 bits are interpreted.
    assert cpu._auxv_flags("x86_64") == set()
    flags = cpu._auxv_flags("aarch64")
    assert flags <= {"asimddp", "i8mm"}
    if platform.machine() == "aarch64":
        assert ("asimddp" in flags) == ("asimddp" in Path("/proc/cpuinfo").read_text())
