"""The task kinds `score` and `features` (issue 14): the manifest takes them and post-processing publishes them."""

from __future__ import annotations

import numpy as np
import pytest

from device.errors import BadInput
from device.manifest import Task, TensorSpec
from device.pipeline import FEATURES_IN_FULL, PostprocessConfig, PostProcessor


def test_score_with_and_without_a_threshold() -> None:
    out = TensorSpec(name="p", shape=(1, 1))
    with_threshold = PostProcessor(Task(kind="score", output="p", threshold=0.5, score="p"), out, PostprocessConfig())
    assert with_threshold(np.array([[0.9]])).to_dict() == {"label": "detected", "score": 0.9, "values": {"p": 0.9}}
    assert with_threshold(np.array([[0.1]])).label == "clear"
    bare = PostProcessor(Task(kind="score", output="p", score="p"), out, PostprocessConfig())
    assert bare(np.array([[0.7]])).to_dict() == {"score": 0.7, "values": {"p": 0.7}}
    with pytest.raises(BadInput, match="a score model outputs one score"):
        PostProcessor(Task(kind="score", output="p"), TensorSpec(name="p", shape=(1, 3)), PostprocessConfig())


def test_features_publish_the_vector_or_its_summary() -> None:
    small = PostProcessor(Task(kind="features", output="e"), TensorSpec(name="e", shape=(1, 3)), PostprocessConfig())
    pred = small(np.array([[1.0, -2.0, 0.5]]))
    assert pred.label is None and pred.score is None and pred.values == {"f0": 1.0, "f1": -2.0, "f2": 0.5}
    big = FEATURES_IN_FULL + 32
    mel = PostProcessor(Task(kind="features", output="mel"), TensorSpec(name="mel", shape=(1, 1, big)),
                        PostprocessConfig())
    values = mel(np.arange(big, dtype=np.float32)).values
    assert set(values) == {"mean", "std", "min", "max", "l2", "size"} and values["size"] == big
    assert values["max"] == big - 1
    with pytest.raises(BadInput, match="threshold: has no meaning for a features model"):
        PostProcessor(Task(kind="features", output="e"), TensorSpec(name="e", shape=(1, 3)),
                      PostprocessConfig(threshold=0.5))


def test_the_manifest_takes_the_new_kinds(make_bundle) -> None:
    import dataclasses
    import json

    from device.manifest import parse_manifest

    root = make_bundle()
    data = json.loads((root / "manifest.json").read_text())
    for task in ({"kind": "features", "output": "logits"}, {"kind": "score", "output": "logits", "threshold": 0.5}):
        data["task"] = task
        manifest = parse_manifest(json.dumps(data))
        assert dataclasses.asdict(manifest.task)["kind"] == task["kind"]
