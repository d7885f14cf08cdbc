"""The whole imu-activity build (data, seeded training, export, spinal convert, scoring) reproduces its card.

The fastest of the three builds (~30 s): it proves that training is reproducible and that the
converter, as it is today, still turns the model into a bundle that meets the committed card.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.bundle import open_bundle
from models.build import MODELS, ROOT
from tests.models.conftest import REFERENCES


@pytest.mark.slow
def test_imu_activity_rebuild_matches_the_committed_card(tmp_path: Path) -> None:
    for module in ("torch", "onnx2tf", "tensorflow"):
        pytest.importorskip(module, reason="the build needs the host and dev extras")
    ref = REFERENCES["imu-activity"]
    result = subprocess.run([sys.executable, str(MODELS / "imu-activity" / "train.py"), "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = tmp_path / "imu-activity"
    new = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    old = ref.metrics
    assert new["normalization"] == old["normalization"]
    assert new["parameters"] == old["parameters"]
    for key, tolerance in ref.tolerances.items():
        assert abs(new["torch_fp32"][key] - old["torch_fp32"][key]) <= tolerance, key
    assert set(new["artifacts"]) == set(old["artifacts"])
    for path, art in new["artifacts"].items():
        for key, tolerance in ref.tolerances.items():
            assert abs(art["metrics"][key] - old["artifacts"][path]["metrics"][key]) <= tolerance, (path, key)
    for csv in (MODELS / "imu-activity" / "replay").iterdir():
        assert (out / "replay" / csv.name).read_bytes() == csv.read_bytes(), csv.name
    with open_bundle(out / "imu-activity.spinal") as bundle:
        assert bundle.manifest.task.labels == ("badminton", "running", "standing", "walking")
    assert (out / "MODEL_CARD.md").is_file()
