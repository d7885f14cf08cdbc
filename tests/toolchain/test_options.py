"""ConvertOptions: four groups, each option in exactly one, flat keywords routed to their group."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from device.errors import BadInput
from toolchain.options import ConvertOptions, Meaning, Output, Quantization, Source, check_options


def test_every_option_lives_in_exactly_one_group() -> None:
    names = [f.name for group in (Source, Quantization, Meaning, Output) for f in dataclasses.fields(group)]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_build_routes_flat_keywords_to_their_groups(tmp_path: Path) -> None:
    opts = ConvertOptions.build(model="m.onnx", out=tmp_path / "b", opset=13, per_channel=False, threshold=0.5,
                                task="score", golden_count=3, channels=("a",))
    assert opts.source == Source(model="m.onnx", opset=13)
    assert opts.quantization == Quantization(per_channel=False)
    assert opts.meaning == Meaning(task="score", threshold=0.5, channels=("a",))
    assert opts.output == Output(out=tmp_path / "b", golden_count=3)
    with pytest.raises(TypeError, match="unknown option 'golden'"):
        ConvertOptions.build(model="m.onnx", out=tmp_path / "b", golden=3)


@pytest.mark.parametrize(("options", "message"), [
    ({"formats": ("onnx-fp64",)}, "--formats: unknown 'onnx-fp64'"),
    ({"task": "anomaly"}, "--threshold: an anomaly task needs a threshold"),
    ({"golden_count": 0}, "--golden must be >= 1"),
    ({"channel_units": ("g",)}, "--channel-units needs --channels"),
    ({"norm_mean": (1.0,), "norm_std": (0.0,)}, "--norm-std: must be > 0, got 0.0"),
    ({"task": "bogus"}, "--task: must be one of classification, regression, anomaly, score, features"),
    ({"activation": "softmax"}, "--activation: must be one of logits, probabilities"),
    ({"sample_rate_hz": float("nan")}, "--sample-rate: must be > 0, got nan"),
    ({"norm_mean": (1.0, 2.0), "norm_std": (1.0,)}, "--norm-mean/--norm-std: mean has 2 values but std has 1"),
])
def test_check_options_names_the_flag(tmp_path: Path, options: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        check_options(ConvertOptions.build(model="m.onnx", out=tmp_path / "b", **options))
