"""What the TensorFlow side of the converter shares: the SavedModel it converts from, and keeping TensorFlow quiet."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SavedModel:
    """A SavedModel ready for the TFLite converter, and how its signature names map to the logical ones."""

    path: Path
    input_keys: dict[str, str]  # logical input name -> signature key
    output_keys: dict[str, str]  # logical output name -> signature key
    producer: str  # onnx2tf | keras


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Send stdout/stderr (Python and C level) to a buffer while TF/onnx2tf chatter; restore after.

    ``SPINAL_CONVERT_VERBOSE=1`` in the environment lets everything through (for debugging).
    """
    if os.environ.get("SPINAL_CONVERT_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def quiet_tf_env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    # onnx2tf runs onnxsim through PATH: make this interpreter's bin directory visible.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def import_tf() -> Any:
    """TensorFlow, imported with its start-up chatter (CUDA probing, absl) silenced."""
    quiet_tf_env()
    with quiet_native():
        import tensorflow as tf
    return tf
