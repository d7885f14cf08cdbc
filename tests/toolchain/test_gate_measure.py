"""The gate judges the task when the user names it (issue 14): probability maps and CTC sequences.

PP-OCR's detector (a text-probability map) was refused at drop 1.6 by cosine while its thresholded maps had
IoU 0.955; a recognizer's per-timestep scores may move while the decoded text stays. ``--gate-measure``
(``ConvertOptions.gate_measure``) makes the drop 100 − the agreement on the task's own measure.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.errors import BadInput
from toolchain.calibration import DataSet
from toolchain.validate import TaskMeasure, parse_gate_measure, score, task_agreement

pytestmark = pytest.mark.host


def _data(count: int) -> DataSet:
    return DataSet({"x": np.zeros((count, 1), np.float32)}, "val.npz")


def test_map_iou_counts_pixel_decisions_not_cosine() -> None:
    """A map scaled towards 0.5 keeps every pixel decision (drop 0) though its cosine and RMS move."""
    rng = np.random.default_rng(0)
    ref = {"maps": rng.uniform(0, 1, (4, 1, 8, 8)).astype(np.float32)}
    squeezed = {"maps": (0.5 + 0.2 * (ref["maps"] - 0.5)).astype(np.float32)}
    measure = parse_gate_measure("map-iou:0.5")
    base = score(ref, ref, _data(4), "maps", None, measure=measure)
    m = score(squeezed, ref, _data(4), "maps", base, measure=measure)
    assert m.kind == "task" and m.drop == pytest.approx(0.0)
    assert m.values["rel_rms"] > 0.3  # the old fidelity drop would have refused it
    flipped = {"maps": ref["maps"].copy()}
    flipped["maps"][0] = 1.0 - flipped["maps"][0]  # sample 0: every decision flips, IoU 0
    m = score(flipped, ref, _data(4), "maps", base, measure=measure)
    assert m.drop == pytest.approx(25.0)


def test_map_iou_of_partial_overlap() -> None:
    ref = np.zeros((1, 10, 10), np.float32)
    ref[0, :4] = 1.0  # 40 pixels on
    art = np.zeros_like(ref)
    art[0, 2:6] = 1.0  # 40 on, 20 shared: IoU 20/60
    got = task_agreement({"m": art}, {"m": ref}, "m", TaskMeasure("map-iou", threshold=0.3))
    assert got == pytest.approx(100 / 3)


def _onehot(steps: list[int], classes: int = 5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    x = np.full((len(steps), classes), 0.01, np.float32) + noise * np.random.default_rng(seed).random(
        (len(steps), classes)).astype(np.float32)
    x[np.arange(len(steps)), steps] = 0.9
    return x


def test_ctc_agreement_judges_the_decoded_sequence() -> None:
    """'aa_b' and 'a__b' decode alike (repeats collapse, blank 0 dropped); 'a_bb_b' differs from 'a_b__'."""
    ref = np.stack([_onehot([1, 1, 0, 2, 0, 0]), _onehot([1, 0, 2, 2, 0, 2])])
    art = np.stack([_onehot([1, 0, 0, 2, 2, 0], noise=0.3), _onehot([1, 0, 2, 0, 0, 0])])
    measure = parse_gate_measure("ctc")
    assert task_agreement({"p": art}, {"p": ref}, "p", measure) == pytest.approx(50.0)
    m = score({"p": art}, {"p": ref}, _data(2), "p", score({"p": ref}, {"p": ref}, _data(2), "p", None,
                                                          measure=measure), measure=measure)
    assert m.kind == "task" and m.drop == pytest.approx(50.0)
    # '1_2' and '122' agree with blank 0; with blank 4, class 0 is a symbol and they differ
    ref, art = _onehot([1, 0, 2])[None], _onehot([1, 2, 2])[None]
    assert task_agreement({"p": art}, {"p": ref}, "p", parse_gate_measure("ctc")) == pytest.approx(100.0)
    assert task_agreement({"p": art}, {"p": ref}, "p", parse_gate_measure("ctc:4")) == pytest.approx(0.0)


def test_ctc_needs_timesteps_and_classes() -> None:
    with pytest.raises(BadInput, match="--gate-measure ctc: output 'y' has shape \\[3\\]"):
        task_agreement({"y": np.zeros((2, 3))}, {"y": np.zeros((2, 3))}, "y", TaskMeasure("ctc"))


@pytest.mark.parametrize("text", ["map-iou", "map-iou:x", "iou:0.3", "ctc:b", "map-iou:nan", "detections:x"])
def test_bad_gate_measure_is_one_line(text: str) -> None:
    with pytest.raises(BadInput, match=r"--gate-measure .*map-iou:THRESHOLD") as err:
        parse_gate_measure(text)
    assert "\n" not in str(err.value)


def test_convert_gates_a_probability_map_on_iou(tmp_path: Path) -> None:
    """End to end: a Conv → Sigmoid map model; the report's metric is the task's and drop = 100 − IoU."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from toolchain.convert import ConvertOptions, convert

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((1, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["z"], ["maps"])]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 1, 16, 16])], [w])
    model = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    data = rng.standard_normal((24, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=data[:12])
    np.savez(tmp_path / "val.npz", x=data[12:])
    res = convert(ConvertOptions.build(model=str(model), out=tmp_path / "b", formats=("onnx-fp32", "onnx-int8"),
                                 calibration=tmp_path / "cal.npz", validation=tmp_path / "val.npz",
                                 task="features", gate_measure="map-iou:0.3", max_drop=100.0))
    assert res.report["metric"] == "task"
    assert "--gate-measure" in res.report["drop_meaning"]
    entry = res.report["artifacts"]["model.int8.onnx"]
    assert entry["drop"] == pytest.approx(100.0 - entry["task_agreement"])
    assert 50.0 < entry["task_agreement"] <= 100.0


def _wake_scores(count: int, events: tuple[int, ...]) -> np.ndarray:
    """A wake-word head's scores: near 0 on most windows, high on the few with the phrase."""
    scores = np.random.default_rng(1).uniform(0.0, 0.05, (count, 1)).astype(np.float32)
    scores[list(events), 0] = (0.95, 0.8, 0.7)[:len(events)]
    return scores


def test_detections_keeps_a_file_whose_scores_move_but_fire_alike() -> None:
    """hey_mycroft's int8 TFLite: every detection kept, its scores lower: the default gate refused it."""
    ref = {"score": _wake_scores(128, (10, 50, 90))}
    moved = {"score": (ref["score"] * 0.75 + 0.01).astype(np.float32)}  # 0.7 → 0.535: still above 0.5
    measure = parse_gate_measure("detections", task_threshold=0.5)
    base = score(ref, ref, _data(128), "score", None, measure=measure)
    m = score(moved, ref, _data(128), "score", base, measure=measure)
    assert m.kind == "task" and m.drop == pytest.approx(0.0)
    from toolchain.validate import fidelity_drop

    assert fidelity_drop(m.values) > 1.0  # the default gate (max drop 1) would refuse the same file


def test_detections_refuses_a_deaf_file_that_agrees_on_most_windows() -> None:
    """Missing all 3 events of 128 windows is 97.7 % decisions equal, but 0 % of the detections kept."""
    ref = {"score": _wake_scores(128, (10, 50, 90))}
    deaf = {"score": np.minimum(ref["score"], 0.4)}
    got = task_agreement(deaf, ref, "score", parse_gate_measure("detections:0.5"))
    assert got == pytest.approx(0.0)
    one_missed = {"score": ref["score"].copy()}
    one_missed["score"][90, 0] = 0.3
    assert task_agreement(one_missed, ref, "score", TaskMeasure("detections", threshold=0.5)) == \
        pytest.approx(200 / 3)
    false_alarms = {"score": ref["score"].copy()}
    false_alarms["score"][:8, 0] = 0.9  # 8 of 128 windows fire where fp32 does not
    assert task_agreement(false_alarms, ref, "score", TaskMeasure("detections", threshold=0.5)) == \
        pytest.approx(100 * 120 / 128)


def test_detections_needs_events_in_the_validation_data() -> None:
    quiet = {"score": _wake_scores(16, ())}
    with pytest.raises(BadInput, match=r"fp32 scores no validation sample above 0\.5 on output 'score'") as err:
        task_agreement(quiet, quiet, "score", TaskMeasure("detections", threshold=0.5))
    assert "\n" not in str(err.value)


def test_detections_threshold_comes_from_the_task_or_the_measure() -> None:
    assert parse_gate_measure("detections", task_threshold=0.7) == TaskMeasure("detections", threshold=0.7)
    assert parse_gate_measure("detections:0.3", task_threshold=0.7) == TaskMeasure("detections", threshold=0.3)
    with pytest.raises(BadInput, match="--gate-measure detections: give the score's --threshold"):
        parse_gate_measure("detections")


def test_convert_refuses_detections_without_a_threshold(tmp_path: Path) -> None:
    from toolchain.convert import ConvertOptions
    from toolchain.options import check_options

    opts = ConvertOptions.build(model=str(tmp_path / "m.onnx"), out=tmp_path / "b", task="score",
                                gate_measure="detections")
    with pytest.raises(BadInput, match="--threshold"):
        check_options(opts)
