"""SavedModel signature keys matched to the model's outputs (issue 14: silero VAD after its Ifs were inlined).

onnx2tf named the signature outputs output_0, output_1, output_2 (the ONNX order); the ONNX output named
"output" was matched by prefix to output_2, a [1, 2, 64] state, and every TFLite artifact failed.
"""

from __future__ import annotations

import pytest

from device.errors import ModelFileError
from toolchain.tflite import match_keys

pytestmark = pytest.mark.host


def test_positional_keys_are_matched_by_their_number() -> None:
    got = match_keys(["output", "hn", "cn"], ["output_2", "output_1", "output_0"], "outputs", "vad.onnx")
    assert got == {"output": "output_0", "hn": "output_1", "cn": "output_2"}


def test_names_still_win_over_positions() -> None:
    assert match_keys(["b", "a"], ["a", "b"], "outputs", "m") == {"b": "b", "a": "a"}
    assert match_keys(["onnx::Flatten_0"], ["onnx__flatten_0"], "inputs", "m") == {"onnx::Flatten_0": "onnx__flatten_0"}
    assert match_keys(["output_1", "x"], ["output_1", "output_0"], "outputs", "m") == {"output_1": "output_1",
                                                                                       "x": "output_0"}


def test_unmatched_names_are_refused_in_one_line() -> None:
    with pytest.raises(ModelFileError, match=r"m: cannot match outputs \['a'\]"):
        match_keys(["a", "b"], ["b"], "outputs", "m")
