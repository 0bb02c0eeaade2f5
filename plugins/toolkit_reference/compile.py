"""Compile an ONNX graph once into a list of numpy steps: the reference backend's fast path.

What happens once, at load:
- weights and constant sub-graphs (e.g. the DequantizeLinear of int8 weights) are folded into arrays;
- every node gets its kernel: the readable ones in ops.py, or for the operators that carry the work a packed one
  (kernels.py): convolutions as one im2col matrix product with the weight matrix pre-packed, bias and Relu fused;
  matrix products with the weight pre-transposed and a following bias Add and Relu fused; pooling by kernel
  offset; a QuantizeLinear -> DequantizeLinear pair as one fake-quantisation step;
- values are numbered slots, so a run is a loop over closures with no name lookups.

Values that depend only on the input shapes (tf2onnx's Shape -> Gather -> Concat chains that build a Flatten's
target shape) are computed on the first run with a new input shape and reused by later runs with that shape.

trace() runs the same graph node by node with the readable kernels only, and returns every value: it is the
second opinion the fast path is tested against, and what per-layer diffs read.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import kernels
from .kernels import run_readable
from .ops import op

# Operators whose output shape follows from their inputs' shapes and attributes alone: a Shape of their output
# is the same on every run with the same input shapes.
SHAPE_FROM_SHAPES = frozenset({
    "Abs", "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Conv", "DequantizeLinear", "Div",
    "Equal", "Erf", "Exp", "Flatten", "Gelu", "Gemm", "GlobalAveragePool", "Greater", "HardSigmoid", "Identity",
    "LayerNormalization", "LeakyRelu", "Less", "Log", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Pow",
    "QuantizeLinear", "Relu", "Sigmoid", "Softmax", "Sqrt", "Sub", "Tanh", "Transpose", "Where",
})
# Operators whose output shape follows from the first input's shape and the *values* of the others.
SHAPE_FROM_VALUES = frozenset({"Reshape", "Expand", "Tile", "Slice", "Pad", "Squeeze", "Unsqueeze", "Gather",
                               "ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"})
SHAPE_CACHE_SIZE = 8  # input shapes whose shape-only values are kept
# Operators whose outputs are values of their first input: a value on a quantisation grid stays on it.
KEEPS_GRID = frozenset({"MaxPool", "Transpose", "Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze"})


@dataclass
class Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]
    name: str


Step = Callable[[list], None]


def _generic(node: Node, ins: list[int], outs: list[int]) -> Step:
    def step(v: list) -> None:
        for o, r in zip(outs, run_readable(node, [v[i] for i in ins])):
            v[o] = r

    return step


class Program:
    """A graph compiled for repeated runs. `inputs` are the names a run is fed (a subgraph's formal inputs
    followed by the outer values it reads); `outputs` the names it returns."""

    def __init__(self, nodes: list[Node], constants: dict[str, np.ndarray], inputs: list[str], outputs: list[str]):
        self.input_names, self.output_names = list(inputs), list(outputs)
        self.nodes = nodes
        self.constants = dict(constants)
        _fold_constants(self.nodes, self.constants)
        live = [n for n in self.nodes if not all(o in self.constants for o in n.outputs)]
        names: dict[str, int] = {"": 0}
        for name in list(self.constants) + self.input_names + [o for n in live for o in n.outputs]:
            names.setdefault(name, len(names))
        self.slots = names
        self.template: list[Any] = [None] * len(names)
        for name, value in self.constants.items():
            self.template[names[name]] = value
        self.input_slots = [names[n] for n in self.input_names]
        self.output_slots = [names[n] for n in self.output_names]
        static = _shape_only(live, set(self.constants), set(self.input_names))
        # The first run with new input shapes runs every step and remembers the shape-only values.
        layouts: dict[int, np.ndarray] = {}  # packed weights, shared by the two step lists
        self.all_steps = _steps(live, names, self.constants, set(self.output_names), layouts)
        self.dynamic_steps = self.all_steps if not static else _steps(
            [n for n in live if not static.get(id(n))], names, self.constants, set(self.output_names), layouts)
        self.static_slots = [names[o] for n in live if static.get(id(n)) for o in n.outputs]
        self.shape_values: OrderedDict[tuple, list[tuple[int, Any]]] = OrderedDict()

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        v = list(self.template)
        for slot, value in zip(self.input_slots, feeds):
            v[slot] = value
        key = tuple((a.shape, a.dtype.str) if isinstance(a, np.ndarray) else id(a) for a in feeds)
        known = self.shape_values.get(key)
        if known is None:
            for step in self.all_steps:
                step(v)
            if self.static_slots:
                self.shape_values[key] = [(s, v[s]) for s in self.static_slots]
                if len(self.shape_values) > SHAPE_CACHE_SIZE:
                    self.shape_values.popitem(last=False)
        else:
            for slot, value in known:
                v[slot] = value
            for step in self.dynamic_steps:
                step(v)
        # Outputs never alias the kernels' reusable buffers.
        return [np.array(v[s]) if isinstance(v[s], (np.ndarray, np.generic)) else v[s] for s in self.output_slots]

    def trace(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every value the graph computes, node by node with the readable kernels, in execution order."""
        values: dict[str, Any] = dict(self.constants)
        values.update(feeds)
        values[""] = None
        traced: dict[str, np.ndarray] = {}
        for node in self.nodes:
            if all(o in self.constants for o in node.outputs):
                continue
            for name, value in zip(node.outputs, run_readable(node, [values[i] for i in node.inputs])):
                values[name] = value
                if name and isinstance(value, (np.ndarray, np.generic)):  # a 0-d result may be a numpy scalar
                    traced[name] = np.array(value)
        for name in self.output_names:
            traced.setdefault(name, np.array(values[name]))
        return traced


def _fold_constants(nodes: list[Node], constants: dict[str, np.ndarray]) -> None:
    """Evaluate, once, every node whose inputs are all constants (weights' DequantizeLinear, Constant nodes)."""
    for node in nodes:
        if node.op_type in ("If", "Loop") or any(i and i not in constants for i in node.inputs):
            continue
        for name, value in zip(node.outputs, run_readable(node, [constants.get(i) for i in node.inputs])):
            constants[name] = value


def _shape_only(nodes: list[Node], constants: set[str], inputs: set[str]) -> dict[int, bool]:
    """Which nodes compute values that depend only on the input shapes (and constants): id(node) -> True."""
    stable_shape = set(inputs) | set(constants)  # names whose shape is fixed by the input shapes
    static = set(constants) | {""}  # names whose value is fixed by the input shapes
    result: dict[int, bool] = {}
    for node in nodes:
        if node.op_type in ("Shape", "Size") and node.inputs[0] in stable_shape:
            value_static = True
        else:
            value_static = all(i in static for i in node.inputs) and node.op_type not in ("If", "Loop")
        if value_static:
            static.update(node.outputs)
            result[id(node)] = True
        shapes_known = all(i in stable_shape or i == "" for i in node.inputs)
        if value_static or (shapes_known and (node.op_type in SHAPE_FROM_SHAPES or (
                node.op_type in SHAPE_FROM_VALUES and all(i in static for i in node.inputs[1:])))):
            stable_shape.update(node.outputs)
    return result


def _consumers(nodes: list[Node]) -> dict[str, list[Node]]:
    users: dict[str, list[Node]] = {}
    for node in nodes:
        for name in node.inputs:
            users.setdefault(name, []).append(node)
    return users


def _steps(nodes: list[Node], slots: dict[str, int], constants: dict[str, np.ndarray], graph_outputs: set[str],
           layouts: dict[int, np.ndarray]) -> list[Step]:
    """Kernels for `nodes`, fusing what a packed kernel can absorb: a fused node's own outputs are never
    materialised, so fusion stops at values something else reads (another node, or the graph's outputs)."""
    users = _consumers(nodes)

    def only_user(name: str) -> Node | None:
        readers = users.get(name, [])
        return readers[0] if len(readers) == 1 and name not in graph_outputs else None

    steps: list[Step] = []
    absorbed: set[int] = set()
    # Values known to lie on a quantisation grid (scale, zero point, type): a QuantizeLinear -> DequantizeLinear
    # pair onto the same grid returns them unchanged (bit for bit), so it is skipped.
    grids: dict[str, tuple] = {}
    for node in nodes:
        if id(node) in absorbed:
            continue
        packed = kernels.pack(node, constants, only_user, layouts)
        if packed is None:
            steps.append(_generic(node, [slots[i] for i in node.inputs], [slots[o] for o in node.outputs]))
            if node.op_type in KEEPS_GRID and node.inputs[0] in grids:
                grids[node.outputs[0]] = grids[node.inputs[0]]
            continue
        # Absorb the followers the packed kernel applies in place: a bias Add, Relu or Relu6, then Q -> DQ.
        while (follower := only_user(packed.covers[-1].outputs[0])) is not None:
            if not packed.absorb(follower, constants, only_user):
                break
        absorbed.update(id(n) for n in packed.covers)
        source, result = slots[node.inputs[0]], slots[packed.covers[-1].outputs[0]]
        pair = packed.fake_quant
        if pair is not None:
            grids[packed.covers[-1].outputs[0]] = pair.grid
            if node.op_type in KEEPS_GRID | {"QuantizeLinear"} and grids.get(node.inputs[0]) == pair.grid:
                if node.op_type == "QuantizeLinear":
                    steps.append(_alias(source, result))
                    continue
                packed.fake_quant = None
        steps.append(packed.step(source, result))
    return steps


def _alias(source: int, result: int) -> Step:
    def step(v: list) -> None:
        v[result] = v[source]

    return step


# ---------------------------------------------------------------------------------------------- from ONNX
# Operators whose meaning changed with the opset: their kernels are told the model's (attribute "opset").
OPSET_DEPENDENT = frozenset({"Softmax", "Dropout"})


def from_onnx(graph: Any, inputs: list[str], outputs: list[str], opset: int | None = None) -> Program:
    """Compile an ONNX GraphProto whose runs are fed `inputs` (by name, in order) and return `outputs`; `opset`
    is the model's default-domain opset."""
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    return Program([_node(n, opset) for n in graph.node], constants, inputs, outputs)


def _node(proto: Any, opset: int | None = None) -> Node:
    from onnx import helper, numpy_helper

    attrs: dict[str, Any] = {}
    for a in proto.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto (Constant's value)
            value = numpy_helper.to_array(value)
        attrs[a.name] = value
    inputs = list(proto.input)
    if proto.op_type in OPSET_DEPENDENT and opset is not None:
        attrs["opset"] = opset
    if proto.op_type == "Split" and "split" not in attrs:
        attrs.setdefault("num_outputs", len(proto.output))  # the kernel sees no outputs: how many parts
    if proto.op_type in ("If", "Loop"):
        # A subgraph may read any value of the graphs around it: those become extra inputs of the node.
        branches = ("then_branch", "else_branch") if proto.op_type == "If" else ("body",)
        outer = sorted({name for b in branches for name in free_names(attrs[b])})
        for b in branches:
            formal = [i.name for i in attrs[b].input]
            attrs[b] = from_onnx(attrs[b], formal + outer, [o.name for o in attrs[b].output], opset)
        attrs["outer_count"] = len(outer)
        inputs += outer
    return Node(proto.op_type, inputs, list(proto.output), attrs, proto.name)


def free_names(graph: Any) -> set[str]:
    """The names `graph`'s nodes (and their subgraphs') read but that the graph itself does not define."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    free: set[str] = set()
    for node in graph.node:
        read = set(node.input)
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                read |= free_names(sub)
        free |= read - defined
        defined |= set(node.output)
    return free


@op("If")
def if_(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    outer = inputs[len(inputs) - attrs["outer_count"]:]
    branch = attrs["then_branch"] if bool(np.asarray(inputs[0]).reshape(-1)[0]) else attrs["else_branch"]
    return branch.run(outer)


@op("Loop")
def loop(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    body: Program = attrs["body"]
    outer = inputs[len(inputs) - attrs["outer_count"]:]
    carried = list(inputs[2:len(inputs) - attrs["outer_count"]])
    limit = None if inputs[0] is None else int(np.asarray(inputs[0]).reshape(-1)[0])
    go = True if inputs[1] is None else bool(np.asarray(inputs[1]).reshape(-1)[0])
    scans: list[list[np.ndarray]] = []
    i = 0
    while go and (limit is None or i < limit):
        results = body.run([np.array(i, np.int64), np.array(go)] + carried + outer)
        go = bool(np.asarray(results[0]).reshape(-1)[0])
        carried = results[1:1 + len(carried)]
        scans.append(results[1 + len(carried):])
        i += 1
    n_scans = len(body.output_names) - 1 - len(carried)
    stacked = [np.stack([s[k] for s in scans]) if scans else np.empty((0,), np.float32) for k in range(n_scans)]
    return carried + stacked
