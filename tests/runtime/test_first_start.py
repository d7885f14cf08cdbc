"""A fast first start: the converter's recorded winner confirmed cheaply, one probe child for all new TFLite files,
and no second probe child for files already read safely on this device (a signature is not such proof)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from device import modelfile
from device.bundle import open_bundle, read_manifest, write_manifest
from device.runtime import RuntimePolicy, autotune, load_model
from device.runtime import select as sel
from device.runtime.autotune import RECORD_KEY, Measurement, measured_on
from device.runtime.cpu import cpu_features

LATENCY = {"model_fp32.tflite": 10.0, "model_fp16.tflite": 30.0, "model_int8.tflite": 20.0,
           "model_int8io.tflite": 40.0, "model_fp32.onnx": 50.0, "model_int8.onnx": 60.0}


def recorded(bundle_dir: Path, tmp_path: Path, **where: Any) -> Path:
    """A copy of the bundle whose report carries the converter's latencies and where it measured them."""
    root = tmp_path / "imu"
    shutil.copytree(bundle_dir, root)
    manifest = read_manifest(root)
    record = {**measured_on(cpu_features(), 1, {"onnx": "onnxruntime", "tflite": "litert"}), **where}
    report = {"artifacts": {a.path: {"latency_us": LATENCY[a.path]} for a in manifest.artifacts}, RECORD_KEY: record}
    write_manifest(root, dataclasses.replace(manifest, report=report))
    return root


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> tuple[list[list[str]], dict[str, float]]:
    """measure_all for real (load, parity, timing), then with the p50s set from a table: deterministic picks."""
    calls: list[list[str]] = []
    p50s: dict[str, float] = {}
    real = autotune.measure_all

    def measure(targets: list[Any], *args: Any) -> list[Measurement]:
        calls.append([t.artifact.path for t in targets])
        out = real(targets, *args)
        for m in out:
            m.p50_us = p50s.get(m.artifact, m.p50_us)
        return out

    monkeypatch.setattr(sel, "measure_all", measure)
    return calls, p50s


def test_the_recorded_winner_is_confirmed_against_one_alternative_then_cached(
        bundle_dir: Path, tmp_path: Path, cache_dir: Path, timed: tuple[list[list[str]], dict[str, float]]) -> None:
    calls, p50s = timed
    root = recorded(bundle_dir, tmp_path)
    p50s.update({"model_fp32.tflite": 10.0, "model_int8.tflite": 20.0})
    policy = RuntimePolicy(threads=1, cache_dir=cache_dir)
    model = load_model(root, policy)
    # The record's winner (fp32 TFLite) against the fastest recorded of another precision (int8 TFLite), only.
    assert calls == [["model_fp32.tflite", "model_int8.tflite"]]
    assert model.selection.mode == "confirmed" and model.info.artifact == "model_fp32.tflite"
    assert all(m.parity is True for m in model.selection.measurements)
    model.close()
    again = load_model(root, policy)
    assert again.selection.mode == "cached" and again.info.artifact == "model_fp32.tflite" and len(calls) == 1
    again.close()


def test_a_winner_not_confirmed_here_means_measuring_everything(
        bundle_dir: Path, tmp_path: Path, cache_dir: Path, timed: tuple[list[list[str]], dict[str, float]]) -> None:
    calls, p50s = timed
    p50s.update({name: 200.0 for name in LATENCY})
    p50s.update({"model_fp32.tflite": 100.0, "model_int8.tflite": 5.0})
    model = load_model(recorded(bundle_dir, tmp_path), RuntimePolicy(threads=1, cache_dir=cache_dir))
    assert len(calls) == 2 and len(calls[0]) == 2 and len(calls[1]) == 6
    assert model.selection.mode == "measured" and model.info.artifact == "model_int8.tflite"
    model.close()


def another_cpu_family() -> str:
    """A CPU family that is not this machine's (the test must not depend on the CPU it runs on)."""
    here = measured_on(cpu_features(), 1, {})["cpu"]
    for family in ("aarch64/Cortex-A72/no-int8dot", "x86_64/AMD EPYC/int8dot"):
        if family != here:
            return family
    raise AssertionError("unreachable: two distinct families")


@pytest.mark.parametrize(("where", "threads"), [({"cpu": "another"}, 1), ({}, 2),
                                                ({"delegate": "gpu"}, 1), ({"runtimes": "litert"}, 1)])
def test_a_record_from_elsewhere_is_not_used(bundle_dir: Path, tmp_path: Path, cache_dir: Path,
                                             timed: tuple[list[list[str]], dict[str, float]],
                                             where: dict[str, Any], threads: int) -> None:
    calls, _ = timed
    if where.get("cpu") == "another":
        where = {"cpu": another_cpu_family()}
    model = load_model(recorded(bundle_dir, tmp_path, **where), RuntimePolicy(threads=threads, cache_dir=cache_dir))
    assert model.selection.mode == "measured" and [len(c) for c in calls] == [6]
    model.close()


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """Every probe child's file names, on a device that has probed nothing yet."""
    monkeypatch.setenv("SPINAL_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setattr(modelfile, "_probed", set())
    seen: list[list[str]] = []
    real = modelfile.probe_tflite_files

    def probe(paths: list[Path], *args: Any, **kwargs: Any) -> Any:
        seen.append(sorted(p.name for p in paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(modelfile, "probe_tflite_files", probe)
    return seen


def test_new_tflite_files_share_one_probe_child(bundle_dir: Path, cache_dir: Path, probes: list[list[str]]) -> None:
    model = load_model(bundle_dir, RuntimePolicy(runtime="litert", threads=1, cache_dir=cache_dir))
    assert probes == [["model_fp16.tflite", "model_fp32.tflite", "model_int8.tflite", "model_int8io.tflite"]]
    model.close()


def test_a_signed_bundle_is_probed_like_any_other_and_files_that_passed_are_not_probed_again(
        bundle_dir: Path, tmp_path: Path, cache_dir: Path, probes: list[list[str]]) -> None:
    pytest.importorskip("cryptography")
    from device.signing import generate_keypair, load_public_key, sign_directory

    root = tmp_path / "signed"
    shutil.copytree(bundle_dir, root)
    key, pub = generate_keypair(tmp_path / "k")
    sign_directory(root, key)
    policy = RuntimePolicy(runtime="litert", threads=1, cache_dir=cache_dir)
    every = ["model_fp16.tflite", "model_fp32.tflite", "model_int8.tflite", "model_int8io.tflite"]
    with open_bundle(root, trusted_keys=[load_public_key(pub)]) as bundle:
        assert bundle.signed_by is not None
        load_model(bundle, policy).close()
    assert probes == [every], "a signed bundle's files are new to this device: probed in a child"
    with open_bundle(root) as bundle:  # measured and cached by the first start
        model = load_model(bundle, policy)
        assert model.selection.mode == "cached"
        model.close()
    assert probes == [every], "files that passed a probe on this device are not probed again"


def scripted_rounds(monkeypatch: pytest.MonkeyPatch, table: dict[int, list[float]]) -> dict[int, int]:
    """time_rounds with each model's per-round median taken from ``table`` (model i is the int ``i``): how many
    rounds each model was timed."""
    timed: dict[int, int] = {}

    def one_round(model: int, feed: Any, seconds: float) -> float:
        timed[model] = timed.get(model, 0) + 1
        return table[model][timed[model] - 1]

    monkeypatch.setattr(autotune, "_one_round", one_round)
    return timed


def fastest(p50s: dict[int, float]) -> int:
    return min(p50s, key=p50s.__getitem__)


def test_a_candidate_that_cannot_be_picked_is_not_timed_again_and_a_steady_pick_stops_timing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 (30 µs) is beyond 1.25 * 1.25 of 0's slowest round after two rounds; 0 is each round's pick.
    timed = scripted_rounds(monkeypatch, {0: [10.0] * 5, 1: [11.0, 12.0, 12.0, 9.0, 9.0], 2: [30.0] * 5})
    live: list[Any] = [(i, {}) for i in range(3)]
    p50s = autotune.time_rounds(live, 0.01, 5, 0.25, fastest)
    assert timed == {0: 3, 1: 3, 2: 2}, "2 dropped after two rounds; three rounds picked 0 alone: stop"
    assert p50s == [10.0, 12.0, 30.0]


def test_without_a_steady_pick_every_round_is_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    timed = scripted_rounds(monkeypatch, {0: [10.0, 12.0, 10.0, 12.0, 10.0], 1: [11.0, 11.0, 11.0, 11.0, 11.0]})
    p50s = autotune.time_rounds([(0, {}), (1, {})], 0.01, 5, 0.25, fastest)  # type: ignore[list-item]
    assert timed == {0: 5, 1: 5} and p50s == [10.0, 11.0]
    timed.clear()
    autotune.time_rounds([(0, {}), (1, {})], 0.01, 5, 0.25)  # type: ignore[list-item]
    assert timed == {0: 5, 1: 5}, "no chooser: all rounds"


def test_one_slow_round_does_not_drop_a_candidate() -> None:
    assert autotune.still_in([[10.0], [40.0]], [0, 1], 0.25) == [0, 1], "one round is not enough"
    assert autotune.still_in([[10.0, 10.0], [40.0, 15.0]], [0, 1], 0.25) == [0, 1], "its fastest round is close"
    assert autotune.still_in([[10.0, 10.0], [40.0, 16.0]], [0, 1], 0.25) == [0]
    assert autotune.still_in([[10.0, 10.0], [40.0, 14.0]], [0, 1], 0.10) == [0], "a smaller margin drops sooner"


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[list[str], Any]]:
    """Every probe child started (its file arguments: none for one started ahead), on a device that has probed
    nothing yet."""
    monkeypatch.setenv("SPINAL_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setattr(modelfile, "_probed", set())
    seen: list[tuple[list[str], Any]] = []
    real = modelfile._spawn_probe

    def spawn(args: list[str], runtime: str | None) -> Any:
        proc = real(args, runtime)
        seen.append(([Path(a).name for a in args], proc))
        return proc

    monkeypatch.setattr(modelfile, "_spawn_probe", spawn)
    return seen


def test_the_probe_child_starts_ahead_and_gets_every_new_file(bundle_dir: Path, tmp_path: Path, cache_dir: Path,
                                                               spawned: list[tuple[list[str], Any]]) -> None:
    from device.bundle import pack_archive

    archive = pack_archive(bundle_dir, tmp_path / "imu.spinal")
    model = load_model(archive, RuntimePolicy(threads=1, cache_dir=cache_dir))
    assert model.selection.mode == "measured"
    assert [args for args, _ in spawned] == [[]], "one child, started before the bundle was unpacked"
    assert not modelfile._warm
    model.close()
    again = load_model(archive, RuntimePolicy(threads=1, cache_dir=tmp_path / "other-cache"))
    assert again.selection.mode == "measured" and len(spawned) == 1, "every file passed here: no child at all"
    again.close()


def test_a_probe_child_started_ahead_and_not_needed_is_stopped(bundle_dir: Path, tmp_path: Path, cache_dir: Path,
                                                               spawned: list[tuple[list[str], Any]]) -> None:
    from device.errors import BundleError

    root = tmp_path / "broken"
    shutil.copytree(bundle_dir, root)
    (root / "model_fp32.onnx").write_bytes(b"changed after the bundle was made")
    with pytest.raises(BundleError, match=r"sha256|size"):
        load_model(root, RuntimePolicy(threads=1, cache_dir=cache_dir))
    assert [args for args, _ in spawned] == [[]]
    assert spawned[0][1].returncode is not None and not modelfile._warm, "stopped and reaped"


def test_no_probe_child_ahead_for_a_policy_without_tflite(bundle_dir: Path, cache_dir: Path,
                                                          spawned: list[tuple[list[str], Any]]) -> None:
    load_model(bundle_dir, RuntimePolicy(runtime="onnxruntime", threads=1, cache_dir=cache_dir)).close()
    assert spawned == []


def test_the_files_open_bundle_verified_are_not_read_again_to_check_the_probe_markers(
        bundle_dir: Path, cache_dir: Path, spawned: list[tuple[list[str], Any]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from device import digests

    read: list[str] = []
    real = digests.file_digest
    with open_bundle(bundle_dir) as bundle:  # hashes every file once, to verify it
        monkeypatch.setattr(digests, "file_digest", lambda path: read.append(Path(path).name) or real(path))
        load_model(bundle, RuntimePolicy(runtime="litert", threads=1, cache_dir=cache_dir)).close()
        assert read == [], "the markers were checked with the digests open_bundle read"
        (bundle.root / "model_int8.tflite").write_bytes((bundle.root / "model_int8.tflite").read_bytes() + b"\0")
        assert digests.known_digest(bundle.root / "model_int8.tflite") != bundle.manifest.artifact(
            "model_int8.tflite").sha256 and read == ["model_int8.tflite"], "a changed file is read again"
