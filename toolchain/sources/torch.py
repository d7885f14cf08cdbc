"""PyTorch importer: an ``nn.Module`` to one fp32 ONNX file.

The model is given as ``package.module:factory`` (a callable returning a module, or a module
attribute), a saved ExportedProgram (``.pt2``), a TorchScript file or a pickled module
(``.pt``/``.pth``). It is exported with the TorchScript exporter (``dynamo=False``), which writes
one file with no external data; torch 2.13's default dynamo exporter would need onnxscript and
writes external data.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import BadInput, ModelFileError
from toolchain.sources import SourceModel, SourceOptions
from toolchain.sources.onnx import finalize


def load_module(spec: str) -> tuple[Any, tuple[Any, ...] | None]:
    """The ``nn.Module`` named by ``spec`` (in eval mode) and example inputs when the file carries them."""
    path = Path(spec)
    if path.suffix in (".pt2", ".pt", ".pth", ".ts"):
        if not path.is_file():
            raise BadInput(f"{path}: no such PyTorch file")
        if path.suffix == ".pt2":
            return _load_exported(path)
        return _load_saved(path), None
    return _load_factory(spec), None


def _load_exported(path: Path) -> tuple[Any, tuple[Any, ...] | None]:
    """A saved ExportedProgram (``.pt2``) and the example inputs it carries."""
    import logging
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a PyTorch ExportedProgram (a .pt2 file is a zip archive written "
                             "by torch.export.save)")
    export_log = logging.getLogger("torch.export")
    level = export_log.level
    export_log.setLevel(logging.CRITICAL)  # torch logs a whole traceback before raising
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable ExportedProgram ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    finally:
        export_log.setLevel(level)
    example = getattr(program, "example_inputs", None)
    args = tuple(example[0]) if example else None
    return _unregistered(program.module()), args


def _load_saved(path: Path) -> Any:
    """A TorchScript file, or else a pickled ``nn.Module``."""
    import torch

    try:
        return torch.jit.load(str(path)).eval()
    except Exception:
        pass
    try:
        module = torch.load(str(path), weights_only=False, map_location="cpu")
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable PyTorch model ({type(exc).__name__}: {exc})") from None
    if not isinstance(module, torch.nn.Module):
        raise BadInput(f"{path}: holds a {type(module).__name__}, not an nn.Module (a state_dict needs the model "
                       "class: give 'package.module:factory' instead)")
    return module.eval()


def _load_factory(spec: str) -> Any:
    """``package.module:factory``: a module attribute that is an ``nn.Module`` or a callable returning one."""
    import torch

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise BadInput(f"{spec}: expected 'package.module:factory'")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        mod = importlib.import_module(module_name)
    except Exception as exc:
        raise BadInput(f"{spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); is it on PYTHONPATH?") \
            from None
    target: Any = mod
    for part in attr.split("."):
        if not hasattr(target, part):
            raise BadInput(f"{spec}: {module_name!r} has no attribute {part!r}")
        target = getattr(target, part)
    if not isinstance(target, torch.nn.Module):
        if not callable(target):
            raise BadInput(f"{spec}: {attr!r} is neither an nn.Module nor a callable returning one")
        try:
            target = target()
        except Exception as exc:
            raise BadInput(f"{spec}: calling {attr}() failed ({type(exc).__name__}: {exc})") from None
        if not isinstance(target, torch.nn.Module):
            raise BadInput(f"{spec}: {attr}() returned a {type(target).__name__}, not an nn.Module")
    return target.eval()


def _unregistered_class() -> Any:
    import torch

    class Unregistered(torch.nn.Module):
        """Calls an ExportedProgram's module without registering it: its ``train()`` raises, and
        ``torch.onnx.export`` calls ``train()`` on every registered submodule."""

        _inner: Any  # set past nn.Module's registry (see __init__), so typed here

        def __init__(self, inner: Any) -> None:
            super().__init__()
            for param in inner.parameters():
                param.requires_grad_(False)  # traced as constants
            object.__setattr__(self, "_inner", inner)

        def forward(self, *args: Any) -> Any:
            return self._inner(*args)

    return Unregistered


def _unregistered(inner: Any) -> Any:
    return _unregistered_class()(inner).eval()


def _flatten(outputs: Any) -> list[Any]:
    import torch

    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for v in outputs.values() for t in _flatten(v)]
    if isinstance(outputs, list | tuple):
        return [t for v in outputs for t in _flatten(v)]
    return []


def _shapes_from_data(spec: str, opts: SourceOptions, notes: list[str]) -> SourceOptions:
    """The input shapes taken from the calibration data: N samples of one input each, so a batch of one is
    ``(1, *sample)``; said in ``notes``."""
    hints = {k: v for k, v in opts.hint_shapes.items() if k not in ("labels", "targets")}
    if opts.input_names and "" not in hints:
        missing = [n for n in opts.input_names if n not in hints]
        if missing:
            raise BadInput(f"{spec}: --input-name {missing[0]!r} has no array in the calibration data (it has "
                           f"{', '.join(hints)}); give --input-shape")
        hints = {n: hints[n] for n in opts.input_names}
    opts = replace(opts, input_shapes={name: (1, *shape[1:]) for name, shape in hints.items()})
    notes.append("input shape(s) from the calibration data: " + "; ".join(
        f"{name or 'input'} {list(shape)}" for name, shape in opts.input_shapes.items()) +
        (" (in the data file's order)" if len(hints) > 1 and not opts.input_names else "") +
        "; --input-shape overrides")
    return opts


def _examples(spec: str, opts: SourceOptions, example: tuple[Any, ...] | None) -> tuple[tuple[Any, ...], list[str]]:
    """The example inputs the export traces with, and their names."""
    import torch

    if example is None:
        if not opts.input_shapes:
            raise BadInput(f"{spec}: a PyTorch model needs --input-shape (e.g. --input-shape 1,3,64, or "
                           "--input-shape NAME:1,3,64 once per input) or --calibration data to take it from")
        shapes = list(opts.input_shapes.values())
        example = tuple(torch.randn(*shape) for shape in shapes)
        names = [n for n in opts.input_shapes if n] if all(opts.input_shapes) else []
    else:
        names = []
    input_names = list(opts.input_names) or names or (
        ["input"] if len(example) == 1 else [f"input_{i}" for i in range(len(example))])
    if len(input_names) != len(example):
        raise BadInput(f"{spec}: {len(input_names)} input names for {len(example)} inputs")
    return example, input_names


def _export(spec: str, module: Any, example: tuple[Any, ...], input_names: list[str], output_names: list[str],
            opset: int, raw: Path) -> None:
    """``torch.onnx.export`` with the TorchScript exporter into ``raw``."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, example, str(raw), dynamo=False, input_names=input_names,
                              output_names=output_names, opset_version=opset, do_constant_folding=True)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelFileError(f"{spec}: torch.onnx.export failed ({type(exc).__name__}: {message})") from None


def load_torch(spec: str, workdir: Path, opts: SourceOptions) -> SourceModel:
    """Export the module to ``workdir/model.fp32.onnx``; the reference runs the module itself."""
    import torch

    module, example = load_module(spec)
    notes: list[str] = []
    if example is None and not opts.input_shapes and set(opts.hint_shapes) - {"labels", "targets"}:
        opts = _shapes_from_data(spec, opts, notes)
    example, input_names = _examples(spec, opts, example)
    with torch.no_grad():
        try:
            outputs = _flatten(module(*example))
        except Exception as exc:
            shapes_txt = ", ".join(str(list(t.shape)) for t in example)
            raise BadInput(f"{spec}: the module fails on inputs of shape {shapes_txt} ({type(exc).__name__}: "
                           f"{exc}); check --input-shape") from None
    if not outputs:
        raise BadInput(f"{spec}: the module returned no tensors")
    output_names = list(opts.output_names) or (
        ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))])
    raw = workdir / "torch_export.onnx"
    _export(spec, module, example, input_names, output_names, opts.opset, raw)
    import onnx

    notes.insert(0, f"exported with torch {torch.__version__} (TorchScript exporter, opset {opts.opset})")
    out = workdir / "model.fp32.onnx"
    finalize(onnx.load(str(raw)), out, SourceOptions(opset=opts.opset), label=spec, notes=notes)
    raw.unlink()

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in input_names]
        with torch.no_grad():
            result = _flatten(module(*args))
        return {name: t.detach().cpu().numpy() for name, t in zip(output_names, result, strict=True)}

    return SourceModel(kind="torch", onnx_path=out, reference=reference, notes=notes)
