"""Importers and data readers without the TFLite stage (fast: ONNX artifacts only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import toolchain_models as tm
import torch

from device.bundle import open_bundle
from device.errors import BadInput
from toolchain.calibration import CsvOptions, InputSpec, read_dataset
from toolchain.convert import ConvertOptions, convert
from toolchain.quantize import QuantConfig, quantize_onnx, sensitive_nodes

pytestmark = pytest.mark.host


def test_csv_windows_channels_last(tmp_path: Path) -> None:
    rows = ["t,imu.accel_x,imu.accel_y,imu.accel_z,label"]
    rows += [f"{i},{i},{i * 10},{i * 100},{i // 4}" for i in range(16)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    spec = InputSpec("x", (1, 4, 3))
    data = read_dataset(tmp_path / "s.csv", (spec,), CsvOptions(hop=2))
    assert data.arrays["x"].shape == (7, 4, 3)
    assert data.arrays["x"][1, 0].tolist() == [2.0, 20.0, 200.0]
    assert data.labels is not None and data.labels.tolist()[0] == 0 and data.labels.tolist()[1] == 1
    assert "7 windows of 4 steps, hop 2" in data.notes[0]


def test_csv_windows_channels_first_and_selected_columns(tmp_path: Path) -> None:
    rows = ["a,b,c"] + [f"{i},{-i},{2 * i}" for i in range(10)]
    (tmp_path / "s.csv").write_text("\n".join(rows))
    spec = InputSpec("x", (1, 2, 5))
    data = read_dataset(tmp_path / "s.csv", (spec,), CsvOptions(channels=("c", "a")))
    assert data.arrays["x"].shape == (2, 2, 5)
    assert data.arrays["x"][1, 0].tolist() == [10.0, 12.0, 14.0, 16.0, 18.0]
    assert data.arrays["x"][1, 1].tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]


@pytest.mark.parametrize(("text", "options", "needle"), [
    ("a,b\n1,2\n", CsvOptions(channels=("z",)), "no column 'z'"),
    ("a,b\n1,x\n", CsvOptions(), "not numeric"),
    ("a,b,c\n1,2,3\n", CsvOptions(), "3 channels do not fit"),
    ("a,b\n1,2\n", CsvOptions(), "fewer than one window"),
    ("a,b\n1,2\n", CsvOptions(window=7), "--window 7"),
])
def test_csv_errors(tmp_path: Path, text: str, options: CsvOptions, needle: str) -> None:
    (tmp_path / "s.csv").write_text(text)
    with pytest.raises(BadInput, match=needle):
        read_dataset(tmp_path / "s.csv", (InputSpec("x", (1, 4, 2)),), options)


def test_data_hash_is_recorded_and_stable(tmp_path: Path) -> None:
    x = np.arange(2 * 3 * 20, dtype=np.float32).reshape(2, 3, 20)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x)
    spec = (InputSpec("x", (1, 3, 20)),)
    a = read_dataset(tmp_path / "a.npy", spec)
    b = read_dataset(tmp_path / "b.npz", spec)
    assert a.sha256() == b.sha256()
    x[0, 0, 0] = 1.5
    np.save(tmp_path / "c.npy", x)
    assert read_dataset(tmp_path / "c.npy", spec).sha256() != a.sha256()
    assert read_dataset(tmp_path / "a.npy", spec, limit=1).count == 1


def test_npy_needs_single_input(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 6), np.float32))
    with pytest.raises(BadInput, match="single-input"):
        read_dataset(tmp_path / "a.npy", (InputSpec("x", (1, 6)), InputSpec("z", (1, 4))))


def test_exported_program_pt2(tmp_path: Path) -> None:
    program = torch.export.export(tm.conv1d(), (torch.randn(1, 3, 20),))
    torch.export.save(program, tmp_path / "conv.pt2")
    res = convert(ConvertOptions.build(model=str(tmp_path / "conv.pt2"), out=tmp_path / "b", formats=("onnx-fp32",),
                                       latency_runs=3))
    assert res.manifest.inputs[0].shape == (1, 3, 20)  # from the program's example inputs
    assert res.report["source"]["parity_vs_fp32_onnx"]["max_abs"] < 1e-5
    with open_bundle(res.out) as b:
        assert b.load_golden()["input/input"].shape == (8, 1, 3, 20)


def test_calibration_methods_and_keep_float(tmp_path: Path) -> None:
    """Each calibration method gives a working int8 model; kept-float nodes stay float."""
    path = tmp_path / "conv.onnx"
    torch.onnx.export(tm.conv1d(), (torch.randn(1, 3, 20),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"])
    spec = (InputSpec("x", (1, 3, 20)),)
    np.save(tmp_path / "cal.npy", tm.imu_windows(32, t=20).transpose(0, 2, 1).copy())
    data = read_dataset(tmp_path / "cal.npy", spec)
    import onnx

    conv_name = next(n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")
    for method in ("minmax", "entropy", "percentile"):
        out = tmp_path / f"{method}.onnx"
        result = quantize_onnx(path, out, spec, data, QuantConfig(method=method), tmp_path)
        assert result.quantized_nodes > 0
    kept = quantize_onnx(path, tmp_path / "kept.onnx", spec, data, QuantConfig(keep_float=(conv_name,)), tmp_path)
    assert any(conv_name in n for n in kept.float_nodes)
    ranked = sensitive_nodes(path, tmp_path / "minmax.onnx", spec, data, tmp_path)
    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    assert ranked and all(ops[r.node] == r.op_type for r in ranked)  # named nodes of the model, with their ops
    assert [r.sqnr_db for r in ranked] == sorted(r.sqnr_db for r in ranked)  # noisiest (lowest SQNR) first
