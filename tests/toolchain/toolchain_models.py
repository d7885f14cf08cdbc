"""Small real models the converter tests build (importable as ``toolchain_models:factory``)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

GRU_T = 12


class DigitsCNN(torch.nn.Module):
    """A small CNN for scikit-learn's 8x8 digits (NCHW input)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc = torch.nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
        return self.fc(x.flatten(1))


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images[:, None] / 16.0).astype(np.float32), d.target.astype(np.int64)


@functools.cache
def digits_cnn() -> DigitsCNN:
    """The CNN trained for a few seconds on the first 1400 digits (test accuracy ~95%)."""
    torch.manual_seed(0)
    x, y = digits_arrays()
    xt, yt = torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400])
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        for i in range(0, 1400, 200):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[i:i + 200]), yt[i:i + 200])
            loss.backward()
            opt.step()
    return model.eval()


def digits_files(workdir: Path) -> dict[str, Path]:
    x, y = digits_arrays()
    cal, val = workdir / "digits_cal.npz", workdir / "digits_val.npz"
    np.savez(cal, input=x[:200])
    np.savez(val, input=x[1400:], labels=y[1400:])
    return {"calibration": cal, "validation": val}


class GRUNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = torch.nn.GRU(3, 16, batch_first=True)
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


def gru_model() -> GRUNet:
    torch.manual_seed(1)
    return GRUNet().eval()


def imu_windows(n: int, t: int = GRU_T, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 3))
    steps = np.arange(t)[None, :, None]
    return (np.sin(0.5 * steps + phase) + 0.1 * rng.standard_normal((n, t, 3))).astype(np.float32)


class TwoHeads(torch.nn.Module):
    """Two inputs, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(6, 16)
        self.b = torch.nn.Linear(4, 16)
        self.cls = torch.nn.Linear(16, 3)
        self.reg = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.a(x) + self.b(z))
        return self.cls(h), self.reg(h)


def two_heads() -> TwoHeads:
    torch.manual_seed(2)
    return TwoHeads().eval()


class Conv1dNet(torch.nn.Module):
    """NCW input: the layout onnx2tf would turn channels-last if not told to keep it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv1d(3, 8, 5)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=2))


def conv1d() -> Conv1dNet:
    return Conv1dNet().eval()


class OutlierNet(torch.nn.Module):
    """A huge weight that only ever meets a zero input channel.

    Per-tensor int8 weights get a scale so coarse that every other weight rounds to zero;
    per-channel confines the damage to output channel 0, which the head ignores.
    """

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = torch.nn.Conv1d(4, 8, 5)
        self.fc = torch.nn.Linear(8, 4)
        with torch.no_grad():
            self.conv.weight[0, 3, :] = 200.0
            self.fc.weight[:, 0] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=2))


def outlier() -> OutlierNet:
    return OutlierNet().eval()


def outlier_windows(n: int, t: int = 20) -> np.ndarray:
    """NCW windows whose 4th channel is always zero."""
    x = imu_windows(n, t=t).transpose(0, 2, 1)
    return np.concatenate([x, np.zeros((n, 1, t), np.float32)], axis=1).copy()


class SegNet(torch.nn.Module):
    """A 4-D (NCHW) output, which onnx2tf may hand back channels-last."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.c1 = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.c2 = torch.nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x)))


def segnet() -> SegNet:
    return SegNet().eval()


def keras_model(workdir: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 3), name="imu")
    x = keras.layers.Conv1D(8, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inp, out)
    path = workdir / "imu.keras"
    model.save(path)
    return path


def sklearn_model(workdir: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    model = RandomForestClassifier(n_estimators=8, random_state=0).fit(x, y)
    path = workdir / "iris_rf.joblib"
    joblib.dump(model, path)
    return path, x.astype(np.float32), y.astype(np.int64)
