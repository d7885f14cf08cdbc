"""imu-activity: MPU-6050 accel + gyro (6 channels, 10 Hz, 5 s windows) -> badminton/running/standing/walking.

Seeded and single-threaded: ``python models/imu-activity/train.py`` (or ``make models``) trains the
1D CNN on BasicMotions (shipped in sktime), exports one fp32 ONNX file, converts it with
``spinal convert``'s engine into ``imu-activity.spinal``, scores every artifact and writes
``metrics.json``, ``MODEL_CARD.md`` and the replay recordings under ``replay/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models import build, datasets, evaluate, prepare, training  # noqa: E402

SEED = 0
EPOCHS = 60
SPEC = build.BuildSpec(
    name="imu-activity",
    description="Activity from a wrist IMU (MPU-6050 accel+gyro, 10 Hz, 5 s windows): "
                "badminton, running, standing, walking. 1D CNN trained on UEA BasicMotions.",
    task="classification", output_name="logits",
    channels=datasets.IMU_CHANNELS, units=datasets.IMU_UNITS, sample_rate_hz=datasets.IMU_RATE_HZ,
    window=prepare.IMU_WINDOW, hop=prepare.IMU_HOP, labels=datasets.ACTIVITIES, validation_kind="labels",
    preprocess=prepare.IMU_PREPROCESS,
)


def make_model(width: int = 24) -> object:
    """Three conv blocks over time, global average pooling, a linear head. Input NTC, output logits."""
    from torch import nn

    class ActivityCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = len(datasets.IMU_CHANNELS)
            self.features = nn.Sequential(
                nn.Conv1d(c, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(width, 2 * width, 5, padding=2), nn.BatchNorm1d(2 * width), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm1d(2 * width), nn.ReLU(),
                nn.AdaptiveAvgPool1d(1),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(2 * width, len(datasets.ACTIVITIES)))

        def forward(self, x):  # x: [batch, time, channels]
            return self.head(self.features(x.transpose(1, 2)))

    return ActivityCNN()


def write_replay(spec: build.BuildSpec, data: prepare.Prepared) -> list[dict[str, object]]:
    """The first TEST-split recording of each class, in SI units, for the simulated MPU-6050."""
    replay = spec.directory / "replay"
    for old in replay.glob("*.csv"):
        old.unlink()
    raw, labels = data.extra["test_raw"], data.extra["test_labels"]
    entries = []
    for cls, name in enumerate(datasets.ACTIVITIES):
        rec = int(next(i for i, y in enumerate(labels) if y == cls))
        file = f"{name}-test{rec:02d}.csv"
        datasets.write_replay_csv(replay / file, raw[rec], datasets.IMU_CHANNELS, datasets.IMU_RATE_HZ)
        entries.append({"file": file, "label": name, "split": "test", "recording": rec,
                        "samples": int(raw[rec].shape[0]),
                        "windows": len(datasets.sliding_windows(raw[rec], spec.window, spec.hop))})
    index = {
        "dataset": "UEA BasicMotions (sktime 1.2.0, BasicMotions_TEST.ts)",
        "sensor": "mpu6050",
        "sample_rate_hz": datasets.IMU_RATE_HZ,
        "columns": ["time_s", *datasets.IMU_CHANNELS],
        "units": ["s", *datasets.IMU_UNITS],
        "gravity": "removed (the watch recorded linear acceleration; a still sensor reads ~0 on every axis)",
        "mpu6050_ranges": {"accel_g": datasets.IMU_ACCEL_RANGE_G, "gyro_dps": datasets.IMU_GYRO_RANGE_DPS},
        "bundle": spec.bundle.name,
        "recordings": entries,
    }
    (replay / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return entries


CARD = """
# imu-activity — model card

**Task.** Recognise what the wearer of a wrist IMU is doing from 5 s of accelerometer and gyroscope
readings: `badminton`, `running`, `standing` or `walking` (classification, logits out).

**Sensor and input.** An MPU-6050 sampled at 10 Hz: `accel_x, accel_y, accel_z` in m/s² (gravity
removed, as in the data) and `gyro_x, gyro_y, gyro_z` in rad/s. Input `window`: `[1, 50, 6]`, layout
NTC (50 samples = 5 s); the device emits a window every 25 samples (2.5 s). Each channel is
standardised `(x - mean) / std` with the training-set statistics recorded in the manifest
(`inputs[0].normalization`); the device pipeline applies it. The MPU-6050 must be set to ±8 g
and ±2000 °/s: BasicMotions reaches 29.4 m/s² (3 g) and 34.87 rad/s (the watch's own ±2000 °/s limit).

## Data
- UEA *BasicMotions*, shipped in sktime 1.2.0 (`sktime/datasets/data/BasicMotions/*.ts`; read by
  `models/datasets.py` without importing sktime). Four students wore a smart watch and performed each
  activity; 80 recordings of 100 samples (10 s) × 6 channels at 10 Hz, 20 per class.
- Units: the accelerometer is stored in m/s² with gravity already removed (standing reads
  ≈ (−0.1, 0.1, 0.0) m/s², not 9.81 on one axis), the gyroscope in rad/s (running: std ≈ 2–5 rad/s).
  Both are used as stored; no conversion.
- Split: the archive's fixed split. **Train** = the {train_recordings} TRAIN recordings
  ({train_windows} windows, hop 5 — shifting is the only augmentation). **Calibration** (int8) = the
  {calibration_windows} TRAIN windows at the device hop 25. **Validation** = every window of the
  {test_recordings} TEST recordings at the device hop ({validation_windows} windows). No
  hyper-parameter was tuned on the TEST split beyond one look at a three-seed run.
- Normalization (TRAIN split): mean {norm_mean}, std {norm_std}.

## Model
1D CNN: three Conv1d blocks (kernel 5/5/3, 24/48/48 channels, BatchNorm folded at export, ReLU,
max-pool 2), global average pooling, dropout 0.2, linear head → 4 logits. {parameters} parameters.
Adam (lr 3e-3, weight decay 1e-4, cosine schedule), batch 32, {epochs} epochs, cross-entropy,
seed {seed}, `torch.use_deterministic_algorithms(True)`, 1 thread; {train_seconds:.0f} s on this CPU.
Exported with `torch.onnx.export(..., dynamo=False)` (opset 17, one file) and converted by
`spinal convert` (`toolchain.convert`) with the calibration and validation sets above.

## Results (validation = BasicMotions TEST split)
`accuracy` is window top-1 accuracy (%); `recording accuracy` is the majority vote over a recording's
three windows (%). Every artifact is scored through the device's own runtime layer
(`device.runtime.load_model`, onnxruntime or LiteRT, one thread). Latency: median single-window
inference measured by `spinal convert` on this
machine ({machine}, one thread, shared with other jobs — indicative only).

{table}

Artifacts not shipped:

{not_shipped}

Converter notes: {notes}

## Limitations
- 40 TEST recordings from the same four students as TRAIN: 100 % says the task is easy for this
  data, not that the model generalises to other people, wrist placements or watches.
- Trained on gravity-free acceleration. A raw MPU-6050 reports gravity (9.81 m/s² on the axis that
  points up); a real deployment must high-pass or subtract gravity before the model (the simulated
  sensor replays the gravity-free recordings as they are).
- Only four activities; anything else is forced into one of them.

## Reproduce
`make models` (all three) or `python models/imu-activity/train.py` — data preparation, training,
export, conversion, scoring, this card. `pytest tests/models` re-scores the committed bundle
`imu-activity.spinal` ({bundle_bytes} bytes, sha256 `{bundle_sha}`) against `metrics.json`.
Replay recordings for the simulated MPU-6050: `replay/` (one TEST recording per class; `index.json`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-convert", action="store_true", help="train and export only")
    parser.add_argument("--out", type=Path, default=build.MODELS,
                        help="write <out>/imu-activity/ instead of models/imu-activity/")
    args = parser.parse_args(argv)
    spec = dataclasses.replace(SPEC, root=args.out)

    import torch.nn.functional as F

    data = prepare.imu_activity()
    training.seed_everything(SEED)
    model = make_model()
    print(f"[imu-activity] training on {len(data.train_x)} windows", flush=True)
    t0 = time.perf_counter()
    training.train(model, data.train_x, data.train_y, F.cross_entropy, epochs=EPOCHS, batch_size=32, lr=3e-3,
                   seed=SEED, weight_decay=1e-4, log=print)
    train_seconds = time.perf_counter() - t0
    torch_metrics = evaluate.score_classification(training.predict(model, data.val_x), data)
    print(f"[imu-activity] torch fp32: {torch_metrics}")
    onnx_path = training.export_onnx(model, data.val_x[:1], spec.build_dir / "imu-activity.onnx", build.INPUT_NAME,
                                     spec.output_name)
    write_replay(spec, data)
    calib, val = build.write_data(spec, data)
    if args.skip_convert:
        return 0
    report = build.convert(spec, onnx_path, calib, val, data)
    artifacts = build.score_bundle(spec.bundle, data, evaluate.score_classification)
    mean, std = data.norm.as_lists()
    metrics = build.save_metrics(spec, torch_metrics, artifacts, report, {
        "data": data.info, "parameters": training.count_parameters(model), "epochs": EPOCHS, "seed": SEED,
        "train_seconds": round(train_seconds, 1), "normalization": {"mean": mean, "std": std},
    })
    table = build.artifact_table(metrics, (("accuracy", "accuracy (%)", 2),
                                           ("recording_accuracy", "recording accuracy (%)", 2)))
    build.write_card(spec, CARD.format(
        **data.info, norm_mean=[round(v, 3) for v in mean], norm_std=[round(v, 3) for v in std],
        parameters=metrics["parameters"], epochs=EPOCHS, seed=SEED, train_seconds=train_seconds,
        machine=metrics["machine"], table=table, not_shipped=build.not_shipped(metrics),
        notes="; ".join(metrics["converter_notes"]) or "none", bundle_bytes=metrics["bundle_bytes"],
        bundle_sha=metrics["bundle_sha256"][:16],
    ))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
