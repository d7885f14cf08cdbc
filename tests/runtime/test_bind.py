"""Pairing the manifest's logical tensors with a file's tensors (pure: no runtime needed)."""

from __future__ import annotations

import numpy as np
import pytest

from device.errors import BundleError
from device.runtime.base import RawTensor
from device.runtime.model import LogicalTensor, bind

F32 = np.dtype("float32")


def test_each_logical_tensor_binds_to_its_own_file_tensor() -> None:
    logical = (LogicalTensor("a", (1, 4), F32), LogicalTensor("b", (1, 4), F32))
    raws = (RawTensor("b", (1, 4), F32), RawTensor("a", (1, 4), F32))
    adapters = bind(logical, (), raws, "manifest.json artifacts[0].inputs")
    assert [(a.name, a.index) for a in adapters] == [("a", 1), ("b", 0)]


def test_two_logical_tensors_on_one_file_tensor_are_refused() -> None:
    # 'a' is not in the file, so it falls back to position 0, which is where 'b' is: the file's second
    # input would never be fed and 'a' would go to 'b'. A clear error instead of a silent mis-feed.
    logical = (LogicalTensor("a", (1, 4), F32), LogicalTensor("b", (1, 4), F32))
    raws = (RawTensor("b", (1, 4), F32), RawTensor("c", (1, 4), F32))
    with pytest.raises(BundleError, match=r"inputs\[1\]: logical 'b' and 'a' both bind to the file's tensor 'b'"):
        bind(logical, (), raws, "manifest.json artifacts[0].inputs")


def test_a_manifest_scale_of_another_length_than_the_files_is_refused() -> None:
    # Two scales in the manifest, three in the file: np.allclose raised a broadcasting ValueError.
    from device.manifest import ArtifactTensor, Quantization

    i8 = np.dtype("int8")
    raw = RawTensor("x", (1, 3), i8, Quantization((0.1, 0.2, 0.3), (0, 0, 0), axis=1))
    declared = (ArtifactTensor("x", (1, 3), "int8", quantization=Quantization((0.1, 0.2), (0, 0), axis=1)),)
    with pytest.raises(BundleError, match=r"inputs\[0\]\.quantization: the manifest says scale \(0\.1, 0\.2\)"):
        bind((LogicalTensor("x", (1, 3), F32),), declared, (raw,), "manifest.json artifacts[0].inputs")
