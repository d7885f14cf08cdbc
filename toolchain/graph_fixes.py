"""Rewrites of the fp32 ONNX graph that leave its function unchanged, so that quantization and TFLite export see
plain graphs (issue 14).

``If`` nodes: onnxruntime quantizes nothing inside a branch and onnx2tf fails on branches that read outer-scope
tensors. A top-level ``If`` is inlined:

- its condition is **static** (it depends on the graph's inputs only through ``Shape``/``Size``, so it is
  fixed once the dynamic axes are): the taken branch replaces it;
- otherwise, when both branches give plain tensors: both branches are inlined and ``Where(cond, then, else)``
  selects (the branch not taken is computed too: the price of a graph without control flow).

Branch names are prefixed with the ``If`` node's name, so they cannot clash; names a branch reads from the outer
scope stay as they are. Every rewrite is checked: the new graph must run in onnxruntime and give the old graph's
outputs on two random feeds, else that ``If`` is left as it was (and said so).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

_SHAPE_READERS = {"Shape", "Size"}
# ops whose output shape depends on the data they read: a Shape of them is not fixed by the input shapes
_DATA_SHAPED = {"NonZero", "Unique", "Compress", "Loop", "If", "Scan", "NonMaxSuppression", "StringNormalizer"}
# ops whose output shape depends on the values of their inputs after the first (a Shape of them is fixed when
# those values are); ConstantOfShape and Range: on the values of every input
_ARG_SHAPED = {"Reshape", "Expand", "Tile", "Slice", "Pad", "Resize", "Upsample", "Squeeze", "Unsqueeze", "Split",
               "OneHot", "TopK", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"}
_ALL_ARGS_SHAPED = {"ConstantOfShape", "Range"}


def fold_ifs(path: Path, max_rounds: int = 256) -> list[str]:
    """Inline every top-level ``If`` of the ONNX file at ``path`` (rewritten in place); notes for the report."""
    import onnx

    model = onnx.load(str(path))
    if not any(n.op_type == "If" for n in model.graph.node):
        return []
    feeds = _random_feeds(model)
    reference = _run(model, feeds)
    inlined: list[str] = []
    kept: dict[str, str] = {}
    for _ in range(max_rounds):  # inlined branches may hold Ifs of their own
        todo = [n for n in model.graph.node if n.op_type == "If" and (n.name or n.output[0]) not in kept]
        if not todo:
            break
        node = todo[0]
        label = node.name or node.output[0]
        candidate, how = _inline_one(model, node, feeds)
        error = "" if candidate is None else _same_function(candidate, feeds, reference)
        if candidate is None or error:
            kept[label] = how if candidate is None else f"inlining it {error}"
            continue
        model = candidate
        inlined.append(label + f" ({how})")
    if inlined:
        error = _same_function(model, feeds, reference, optimize=True)
        if error:
            return [f"If nodes kept: inlining them {error} with onnxruntime's graph optimizations"]
        onnx.save(model, str(path), save_as_external_data=False)
    notes = []
    if inlined:
        notes.append(f"{len(inlined)} If node(s) inlined so that they can be quantized and exported to TFLite: "
                     + "; ".join(inlined))
    notes += [f"If {label!r} kept: {why}" for label, why in kept.items()]
    return notes


def _random_feeds(model: Any) -> list[dict[str, np.ndarray]]:
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    feeds: list[dict[str, np.ndarray]] = [{}, {}]
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        for k, seed in enumerate((1, 2)):
            rng = np.random.default_rng(seed)
            if np.issubdtype(dtype, np.floating):
                feeds[k][inp.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype == np.bool_:
                feeds[k][inp.name] = rng.random(shape) > 0.5
            else:
                feeds[k][inp.name] = rng.integers(0, 3, shape).astype(dtype)
    return feeds


def _session(model: Any, optimize: bool = False) -> Any:
    """A CPU session; the graph optimizers off unless asked (onnxruntime 1.23's mis-resolve the outer-scope
    reads of nested Ifs while an inlining is half done)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"])


def _run(model: Any, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]] | None:
    try:
        sess = _session(model, optimize=True)
        return [sess.run(None, f) for f in feeds]
    except Exception:  # a model with random inputs may legitimately refuse them (e.g. an index input)
        return None


def _same_function(model: Any, feeds: list[dict[str, np.ndarray]], reference: list[list[np.ndarray]] | None,
                   optimize: bool = False) -> str:
    """'' when ``model`` runs and (when the old one ran) gives the old outputs; else why not."""
    try:
        sess = _session(model, optimize)
        got = [sess.run(None, f) for f in feeds]
    except Exception as exc:
        return f"does not run in onnxruntime ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if reference is None:
        return ""
    for old, new in zip(reference, got, strict=True):
        for a, b in zip(old, new, strict=True):
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True):
                return "changes the outputs"
    return ""


def _static(graph: Any, tensor: str) -> bool:
    """Whether ``tensor`` depends on the graph inputs only through the shapes of shape-fixed tensors."""
    producers = {o: n for n in graph.node for o in n.output}
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    seen: set[str] = set()

    def walk(name: str, through_shape: bool) -> bool:
        key = f"{name}|{through_shape}"
        if not name or key in seen:
            return True
        seen.add(key)
        if name in inputs:
            return through_shape
        node = producers.get(name)
        if node is None:
            return True  # an initializer
        if node.op_type in _SHAPE_READERS:
            return all(walk(i, True) for i in node.input)
        if not through_shape:
            return all(walk(i, False) for i in node.input)
        if node.op_type in _DATA_SHAPED:
            return False
        if node.op_type in _ALL_ARGS_SHAPED:
            return all(walk(i, False) for i in node.input)
        by_value = node.op_type in _ARG_SHAPED
        return all(walk(i, not (by_value and k > 0)) for k, i in enumerate(node.input))

    return walk(tensor, False)


def _condition_value(model: Any, cond: str, feed: dict[str, np.ndarray]) -> bool | None:
    """The value of ``cond`` on one feed, from a copy of the model that outputs it; None if it cannot run."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(cond))
    keep = _ancestors(probe.graph, cond)
    nodes = [n for n in probe.graph.node if n.output and any(o in keep for o in n.output)]
    del probe.graph.node[:]
    probe.graph.node.extend(nodes)
    try:
        (value,) = _session(probe).run(None, feed)
    except Exception:
        return None
    return bool(np.asarray(value).reshape(-1)[0])


def _ancestors(graph: Any, tensor: str) -> set[str]:
    producers = {o: n for n in graph.node for o in n.output}
    todo, seen = [tensor], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producers.get(name)
        if node is not None:
            todo.extend(i for i in node.input if i)
    return seen


def _inline_one(model: Any, node: Any, feeds: list[dict[str, np.ndarray]]) -> tuple[Any | None, str]:
    """A copy of ``model`` with ``node`` inlined, and how; or None and why not."""
    import onnx

    branches = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch")}
    cond = node.input[0]
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", node.name or node.output[0])
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    if _static(model.graph, cond):
        values = {_condition_value(model, cond, feed) for feed in feeds}
        if None in values or len(values) != 1:
            return None, "its condition, fixed by the input shapes, could not be computed"
        value = values.pop()
        taken = "then_branch" if value else "else_branch"
        outs = _inline_branch(branches[taken], f"{prefix}_{taken[:4]}_", new_nodes, new_inits)
        for branch_out, if_out in zip(outs, node.output, strict=True):
            new_nodes.append(onnx.helper.make_node("Identity", [branch_out], [if_out], name=f"{prefix}_out_{if_out}"))
        how = f"condition fixed by the input shapes: always {'then' if value else 'else'}"
    else:
        if any(o.type.WhichOneof("value") != "tensor_type" for g in branches.values() for o in g.output):
            return None, "a branch gives a sequence or optional, not a tensor"
        then_outs = _inline_branch(branches["then_branch"], f"{prefix}_then_", new_nodes, new_inits)
        else_outs = _inline_branch(branches["else_branch"], f"{prefix}_else_", new_nodes, new_inits)
        for t, e, if_out in zip(then_outs, else_outs, node.output, strict=True):
            new_nodes.append(onnx.helper.make_node("Where", [cond, t, e], [if_out], name=f"{prefix}_where_{if_out}"))
        how = "condition depends on the data: both branches computed, Where selects"
    out = onnx.ModelProto()
    out.CopyFrom(model)
    index = next(i for i, n in enumerate(model.graph.node) if n is node or n == node)
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes[:index] + new_nodes + nodes[index + 1:])
    out.graph.initializer.extend(new_inits)
    return out, how


def _inline_branch(branch: Any, prefix: str, nodes: list[Any], inits: list[Any]) -> list[str]:
    """Append ``branch``'s nodes (and initializers) renamed with ``prefix``; its output names, renamed.

    Every name the branch defines, in its nested subgraphs too, gets the prefix (onnxruntime wants names unique
    across the model, and the other branch defines the same ones); outer-scope reads keep their names.
    """
    import onnx

    rename = {name: prefix + name for name in _defined(branch)}
    for init in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = rename[init.name]
        inits.append(copy)
    for n in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        copy.name = prefix + (n.name or n.output[0])
        _rename_node(copy, rename, prefix)
        nodes.append(copy)
    return [rename.get(o.name, o.name) for o in branch.output]


def _defined(graph: Any) -> set[str]:
    """Every name ``graph`` defines (initializers, node outputs), and those of its subgraphs with their inputs."""
    names = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output if o}
    for n in graph.node:
        for g in _subgraphs(n):
            names |= {i.name for i in g.input} | _defined(g)
    return names


def _subgraphs(node: Any) -> list[Any]:
    return [g for a in node.attribute for g in ([a.g] if a.HasField("g") else list(a.graphs))]


def _rename_node(node: Any, rename: dict[str, str], prefix: str) -> None:
    """Rename ``node``'s inputs, outputs and, recursively, everything in its subgraphs."""
    for i, name in enumerate(node.input):
        node.input[i] = rename.get(name, name)
    for i, name in enumerate(node.output):
        node.output[i] = rename.get(name, name)
    for g in _subgraphs(node):
        for t in [*g.input, *g.output, *g.value_info]:
            t.name = rename.get(t.name, t.name)
        for init in g.initializer:
            init.name = rename.get(init.name, init.name)
        for sub in g.node:
            sub.name = prefix + sub.name if sub.name else sub.name
            _rename_node(sub, rename, prefix)


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_ERF_P = 0.3275911


def replace_erf(model: Any) -> int:
    """Rewrite every top-level ``Erf`` of ``model`` (in place) into TFLite builtins; how many were rewritten.

    erf(x) = sign(x)·(1 − t·(a1 + t·(a2 + t·(a3 + t·(a4 + t·a5))))·exp(−x²)), t = 1/(1 + p·|x|). TensorFlow's
    converter cannot lower ``tf.math.erf``; onnx2tf's own pseudo Erf divides x by |x| + 1e-11, which is NaN at
    x = 0 once the constant is stored in fp16.
    """
    from onnx import helper, numpy_helper

    count = 0
    nodes: list[Any] = []
    for node in model.graph.node:
        if node.op_type != "Erf":
            nodes.append(node)
            continue
        count += 1
        x, out = node.input[0], node.output[0]
        k = f"{re.sub(r'[^A-Za-z0-9_]', '_', node.name or out)}_erf{count}_"
        consts = {"one": 1.0, "p": _ERF_P, **{f"a{i + 1}": a for i, a in enumerate(_ERF_A)}}
        model.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), k + n)
                                       for n, v in consts.items())

        def op(kind: str, inputs: list[str], name: str, prefix: str = k) -> str:
            nodes.append(helper.make_node(kind, inputs, [prefix + name], name=prefix + name))
            return prefix + name

        ax = op("Abs", [x], "abs")
        t = op("Div", [k + "one", op("Add", [k + "one", op("Mul", [k + "p", ax], "pax")], "den")], "t")
        poly = k + "a5"
        for i in (4, 3, 2, 1):
            poly = op("Add", [op("Mul", [poly, t], f"m{i}"), k + f"a{i}"], f"s{i}")
        poly = op("Mul", [poly, t], "poly")
        e = op("Exp", [op("Neg", [op("Mul", [ax, ax], "sq")], "neg")], "exp")
        y = op("Sub", [k + "one", op("Mul", [poly, e], "tail")], "y")
        nodes.append(helper.make_node("Mul", [op("Sign", [x], "sign"), y], [out], name=k + "out"))
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


_COMMUTATIVE = frozenset({"Add", "Mul", "Max", "Min", "Sum"})


def constants_last(model: Any) -> int:
    """Put the constant operand of every top-level two-input commutative op (Add, Mul, Max, Min, Sum) of ``model``
    second, in place; how many were swapped.

    onnx2tf 1.29 mis-converts some ``Add(constant, tensor)`` on channels-last tensors: in ``1 / (1 + p·|x|)`` (the
    Erf rewrite in PP-OCRv6 det and rec) the fp32 TFLite file's quotient held other values than ONNX's (every
    tensor after it lost; cosine 0.35 at the output), while ``Add(tensor, constant)`` converts right.
    """
    constant = {t.name for t in model.graph.initializer}
    constant |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    count = 0
    for node in model.graph.node:
        if node.op_type in _COMMUTATIVE and len(node.input) == 2 and node.input[0] in constant \
                and node.input[1] not in constant:
            node.input[0], node.input[1] = node.input[1], node.input[0]
            count += 1
    return count
