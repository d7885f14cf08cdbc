"""The paths into range-sensitive operators: tensors one per-tensor int8 scale cannot hold.

``Log``, ``Sqrt``, ``Reciprocal``, ``Pow`` and a ``Div`` by a computed tensor give their smallest inputs
the largest gain. An int8 step is 1/255 of a tensor's calibrated range, so a tensor spanning many decades
(the power spectrum of a log-power front end: STFT convolution, square, sum, square root or log) loses its
quiet values to rounding, and the log brings that error back at full size. silero VAD lost 2 of 44
detections that way; with the path from its STFT convolution to its log kept float it kept all 44.

The remedy keeps float every node from the nearest weight operator (included: its int8 output is the
tensor at fault) up to and including the range-sensitive node; everything past the log, whose output has
a small range again, stays int8.
"""

from __future__ import annotations

from typing import Any

# Operators whose gain is largest for their smallest inputs (Div only when the divisor is computed).
RANGE_SENSITIVE = ("Log", "Sqrt", "Reciprocal", "Pow", "Div")
# Where a path back from a range-sensitive node stops (kept float with it).
WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _constants(model: Any) -> set[str]:
    """Names of initializers and of Constant nodes' outputs."""
    names = {t.name for t in model.graph.initializer}
    names |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _is_sensitive(node: Any, constants: set[str]) -> bool:
    if node.op_type not in RANGE_SENSITIVE or node.domain not in ("", "ai.onnx"):
        return False
    return node.op_type != "Div" or (len(node.input) > 1 and node.input[1] not in constants)


def _walk(model: Any) -> tuple[list[Any], dict[int, Any]]:
    """The range-sensitive nodes of ``model`` and every node on the paths into them (by ``id``), from the
    nearest weight operator on."""
    constants = _constants(model)
    producer = {out: node for node in model.graph.node for out in node.output}
    sensitive = [node for node in model.graph.node if _is_sensitive(node, constants)]
    stack = list(sensitive)
    found: dict[int, Any] = {}
    while stack:
        node = stack.pop()
        if id(node) in found:
            continue
        found[id(node)] = node
        if node.op_type in WEIGHT_OPS:
            continue
        for name in node.input:
            src = producer.get(name)
            if src is not None and name not in constants and src.op_type != "Constant":
                stack.append(src)
    return sensitive, found


def range_sensitive_paths(model: Any) -> tuple[str, ...]:
    """Names of the nodes on every path into a range-sensitive node, from the nearest weight operator on.

    ``model`` is an ``onnx.ModelProto``. Walks back from each range-sensitive node through the producers of
    its computed inputs, stopping at weight operators (included) and at graph inputs. Unnamed nodes cannot
    be excluded from quantization by name and are left out. Empty when the model has no such node, and when
    the paths hold every weight operator: an "int8" file with no int8 weight op left is a float file (the
    mel-spectrogram front end of openwakeword, STFT convolutions and mel matmul all on its path to the log).
    """
    _, found = _walk(model)
    if all(id(n) in found for n in model.graph.node if n.op_type in WEIGHT_OPS):
        return ()
    order = {id(node): i for i, node in enumerate(model.graph.node)}
    nodes = sorted(found.values(), key=lambda n: order[id(n)])
    return tuple(n.name for n in nodes if n.name)


def unremediable(model: Any) -> tuple[tuple[str, str], ...]:
    """The range-sensitive nodes (name, op type) of ``model`` when the paths into them hold every weight
    operator, so that keeping those paths float leaves no int8 work (the remedy is not offered); else empty."""
    sensitive, found = _walk(model)
    if not sensitive or not all(id(n) in found for n in model.graph.node if n.op_type in WEIGHT_OPS):
        return ()
    return tuple((n.name or n.output[0], n.op_type) for n in sensitive)


# Operators that only move the values they read (their output holds the same values in another layout).
LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten", "Expand", "Cast")
# ... and Pad: onnx2tf adds its own between an input and a conv.
_LAYOUT = (*LAYOUT_OPS, "Pad")


def range_path_tensors(model: Any, paths: tuple[str, ...]) -> tuple[str, ...]:
    """The tensors a TFLite file must keep float for the nodes ``paths`` (from :func:`range_sensitive_paths`) to
    compute in float: their outputs, and the graph inputs they read, with the layout and pad nodes between.

    onnxruntime leaves a graph input float when only float nodes read it; TensorFlow's int8 converter quantizes
    every input on entry, so a front end whose STFT convolution is kept float still read its quiet inputs
    rounded to one int8 scale unless the input's copies are kept float too (the log-power model of the tests:
    relative error 0.37 with only the paths' outputs float, 0.008 with the input's copies as well)."""
    by_name = {n.name: n for n in model.graph.node if n.name}
    nodes = [by_name[name] for name in paths if name in by_name]
    made = {o for n in nodes for o in n.output}
    graph_inputs = {i.name for i in model.graph.input}
    producer = {out: node for node in model.graph.node for out in node.output}
    constants = _constants(model)

    def back_to_input(name: str) -> list[str]:
        """``name`` and the tensors before it back to a graph input through layout nodes; empty when none."""
        if name in graph_inputs:
            return [name]
        src = producer.get(name)
        if src is None or src.op_type not in _LAYOUT or not src.input or src.input[0] in constants:
            return []
        earlier = back_to_input(src.input[0])
        return [name, *earlier] if earlier else []

    entering = [t for n in nodes for i in n.input if i and i not in made and i not in constants
                for t in back_to_input(i)]
    return tuple(dict.fromkeys([o for n in nodes for o in n.output if o] + entering))
