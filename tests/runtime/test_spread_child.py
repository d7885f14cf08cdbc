"""A parity bound's TFLite kernel paths run in a child: one that aborts the process (LiteRT's reference kernels
on PP-OCRv6's int8 recognizer: SIGABRT, no message, `spinal convert` died with exit 134) is skipped and named,
and the paths after it are still measured."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.host


def aborting_paths(path: Path, fmt: str) -> list:
    """The real kernel paths with one that aborts the process in between (the test's seam: SpreadRequest.paths)."""
    from toolchain.bounds import KernelPath, kernel_paths

    real = kernel_paths(path, fmt)
    return [real[0], KernelPath("aborts", os.abort), *real[1:]]


@contextlib.contextmanager
def _request(bundle_dir: Path, paths: str):  # type: ignore[no-untyped-def]
    from device.bundle import open_bundle
    from device.runtime import RuntimePolicy, load_model  # type: ignore[attr-defined]
    from device.runtime.parity import golden_feeds
    from toolchain.spread_child import SpreadRequest

    with open_bundle(bundle_dir) as bundle:
        art = next(a for a in bundle.manifest.artifacts if a.format == "tflite" and a.precision == "int8")
        golden = bundle.load_golden()
        policy = RuntimePolicy(runtime="litert", artifact=art.path, threads=1, autotune=False)
        with load_model(bundle, policy) as model:
            feeds = golden_feeds(golden, bundle.manifest, model.inputs, 2)
            outs = [{o.name: golden[f"output/{art.path}/{o.name}"][i] for o in model.outputs} for i in range(2)]
            like = (model.inputs, model.outputs, model.artifact, model.info.precision)
            yield SpreadRequest(bundle.path_of(art.path), "tflite", like, feeds, outs, paths=paths)


def test_a_kernel_path_that_aborts_is_skipped_and_the_rest_measured(bundle_dir: Path) -> None:
    from toolchain.bounds import kernel_paths
    from toolchain.spread_child import measure_in_children

    with _request(bundle_dir, "tests.runtime.test_spread_child:aborting_paths") as request:
        spread, skipped = measure_in_children(request)
        measured = [k.label for k in kernel_paths(request.path, "tflite") if k.label not in skipped]
    assert skipped["aborts"].startswith("crashed the process (SIGABRT)")
    assert set(spread) == set(measured) and "litert reference kernels" in spread  # after the abort, too
    for errors in spread.values():
        assert all(value < 1.0 for value in errors.values())  # golden outputs, up to kernel differences


def test_measure_spread_of_a_tflite_file_runs_in_children(bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter's own call (``toolchain.bounds.measure_spread``) goes through the children: every kernel
    path accounted for, measured or skipped with its reason."""
    from toolchain import bounds

    calls: list[object] = []
    through = bounds.measure_in_children

    def spy(request):  # type: ignore[no-untyped-def]
        calls.append(request)
        return through(request)

    monkeypatch.setattr(bounds, "measure_in_children", spy)
    with _request(bundle_dir, "toolchain.bounds:kernel_paths") as request:
        inputs, outputs, artifact, precision = request.like
        like = type("Like", (), {"inputs": inputs, "outputs": outputs, "artifact": artifact,
                                 "info": type("Info", (), {"precision": precision})})()
        spread, skipped = bounds.measure_spread(request.path, "tflite", like, request.feeds, request.golden)
        labels = {k.label for k in bounds.kernel_paths(request.path, "tflite")}
    assert len(calls) == 1
    assert set(spread) | set(skipped) == labels
    assert "litert xnnpack 1 thread" in spread
