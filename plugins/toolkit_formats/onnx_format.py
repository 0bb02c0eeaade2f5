"""The ONNX format: a ModelProto. Specs come from the graph with the `onnx` package; external data is never
loaded (a small file can declare gigabytes of it), so reading specs costs what the graph costs."""

from __future__ import annotations

import collections
import importlib.util
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toolkit.api import Availability, ModelFileError, ModelFormat, Quantization, TensorSpec

from .parse_once import parse_once

# Operators that only appear in quantized graphs (QDQ and QOperator forms).
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                 "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul",
                 # ONNX Runtime's contrib operators (com.microsoft), written by its QOperator quantization
                 "QGemm", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid",
                 "QLinearLeakyRelu", "QLinearSoftmax"}


@parse_once
def load_graph(path: Path) -> Any:
    """The ModelProto without external data; ModelFileError for anything protobuf cannot parse."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, RuntimeWarning-turned-errors, EOF
        raise ModelFileError(f"'{path.name}' is not a valid ONNX file ({type(e).__name__})",
                             "Re-export the model, or check that the download finished") from None
    if not model.HasField("graph"):
        raise ModelFileError(f"'{path.name}' is not a valid ONNX file (it has no graph)", "Re-export the model")
    if not all(isinstance(name, str) for name in _names(model)):
        # protobuf hands back bytes for a string that is not UTF-8: a damaged file, and names nobody can match
        raise ModelFileError(f"'{path.name}' is not a valid ONNX file (a name in its graph is not UTF-8 text)",
                             "Re-export the model, or check that the download finished")
    return model


def _names(model: Any) -> Iterator[Any]:
    """Every name and type string of the main graph that readers and backends look up or print."""
    g = model.graph
    yield from (o.domain for o in model.opset_import)
    for n in g.node:
        yield from (n.op_type, n.domain, n.name, *n.input, *n.output)
    for v in (*g.input, *g.output, *g.value_info):
        yield v.name
        if v.type.HasField("tensor_type"):
            yield from (d.dim_param for d in v.type.tensor_type.shape.dim)
    yield from (t.name for t in g.initializer)


def specs_of(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs that are not initializers, and graph outputs, as TensorSpecs."""
    import onnx

    inits = {i.name for i in model.graph.initializer}

    def spec(vi: Any) -> TensorSpec:
        if not vi.type.HasField("tensor_type"):
            return TensorSpec(vi.name, (), str(vi.type).split("{")[0].strip() or "non-tensor")
        tt = vi.type.tensor_type
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"tensor '{vi.name}' has an unknown element type {tt.elem_type}",
                                 "Re-export the model with a standard ONNX type") from None
        dims = tt.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
        names = tuple(d.dim_param if d.HasField("dim_param") else None for d in dims)
        quant = edge_quantization(model, vi.name) if dtype in ("int8", "uint8", "int16", "uint16") else None
        return TensorSpec(vi.name, shape, dtype, quant, names if any(names) else ())

    outputs = list(model.graph.output)
    if any(v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape") for v in outputs):
        # An output declared without any shape (not even its rank): ONNX's shape inference fills it in where it
        # can, rather than the spec saying "a scalar" and every backend's correct answer being refused.
        outputs = [_inferred(model, v) for v in outputs]
    return ([spec(v) for v in model.graph.input if v.name not in inits], [spec(v) for v in outputs])


def _inferred(model: Any, value: Any) -> Any:
    """`value` (a graph output) with the shape ONNX's shape inference gives it, when it declares none."""
    import onnx

    if not value.type.HasField("tensor_type") or value.type.tensor_type.HasField("shape"):
        return value
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # a graph inference cannot follow: the output keeps what it declares
        return value
    return next((v for v in graph.output if v.name == value.name and v.type.tensor_type.HasField("shape")), value)


LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten")


def edge_quantization(model: Any, name: str) -> Quantization | None:
    """The scale and zero point of an integer graph input that only feeds DequantizeLinear nodes, or of an integer
    output that a QuantizeLinear makes (a converted int8 TFLite file): the graph's own constants, per tensor."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    def users(tensor: str) -> list[Any]:
        return [n for n in model.graph.node if tensor in n.input]

    def makers(tensor: str) -> list[Any]:
        return [n for n in model.graph.node if tensor in n.output]

    edge: list[Any] = []
    tensor, seen = name, 0
    while not edge and seen < 8:  # through layout-only operators (tf2onnx reshapes an int8 input first)
        after = users(tensor)
        if len(after) == 1 and after[0].op_type in LAYOUT_OPS and after[0].input[0] == tensor:
            tensor, seen = after[0].output[0], seen + 1
            continue
        if after and all(n.op_type == "DequantizeLinear" and n.input[0] == tensor for n in after):
            edge = after
        break
    tensor, seen = name, 0
    while not edge and seen < 8:
        before = makers(tensor)
        if len(before) == 1 and before[0].op_type in LAYOUT_OPS:
            tensor, seen = before[0].input[0], seen + 1
            continue
        edge = [n for n in before if n.op_type == "QuantizeLinear"]
        break
    if not edge or len(edge[0].input) < 3:
        return None
    values = []
    for arg in edge[0].input[1:3]:
        tensor = inits.get(arg) or consts.get(arg)
        if tensor is None:
            return None
        values.append(numpy_helper.to_array(tensor).reshape(-1))
    scale, zero = values
    if scale.size != 1 or zero.size != 1:
        return None
    return Quantization((float(scale[0]),), (int(zero[0]),))


class OnnxFormat(ModelFormat):
    name = "onnx"
    suffixes = (".onnx",)
    description = "ONNX ModelProto (read with the onnx package, external data left on disk)"

    def available(self) -> Availability:
        if importlib.util.find_spec("onnx") is None:
            return Availability(False, "the onnx package is not installed", "onnx")
        return Availability(True)

    def sniff(self, head: bytes, path: Path) -> bool:
        # A ModelProto starts with field 1 (ir_version) as a varint: tag byte 0x08, then a small version number.
        return len(head) >= 2 and head[0] == 0x08 and 0 < head[1] < 64

    def read_specs(self, path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return specs_of(load_graph(path))

    def describe(self, path: Path) -> dict[str, Any]:
        model = load_graph(path)
        ops = {n.op_type for n in model.graph.node}
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        out: dict[str, Any] = {"opset": opset, "ops": sorted(ops)}
        if "DynamicQuantizeLinear" in ops:
            out["precision"] = "dynamic"
        elif ops & QUANTIZED_OPS:
            out["precision"] = "int8"
        else:
            # Weights are the float initializers; int64 ones are shapes and indices, which say nothing.
            floats = {i.data_type for i in model.graph.initializer} & {1, 10, 11, 16}  # float, fp16, double, bf16
            if floats == {10}:
                out["precision"] = "fp16"
            elif floats == {1}:
                out["precision"] = "fp32"
        return out

    def footprint(self, path: Path) -> dict[str, Any]:
        return footprint(load_graph(path), path)

    def inspect(self, path: Path) -> dict[str, Any]:
        model = load_graph(path)
        ops = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                                  for n in model.graph.node)
        params = sum(math.prod(i.dims) for i in model.graph.initializer)
        return {"ops": dict(sorted(ops.items())), "parameters": int(params), "macs": _macs(model)}


# Multiply-accumulates of the operators that do nearly all of them: (which input holds the weights).
_WEIGHTED = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "QGemm"}


def _inner_size(node: Any, shapes: dict[str, list[int]]) -> int:
    """K of an (M x K) @ (K x N) product: from the weight's shape where it is an initializer (shape inference
    often loses the other operand's after a Reshape), else from the first operand's."""
    weight_at = 3 if node.op_type in ("QLinearMatMul", "QGemm") else 1
    attrs = {a.name: a.i for a in node.attribute}
    b = shapes.get(node.input[weight_at]) if len(node.input) > weight_at else None
    if b and len(b) >= 2:
        return b[-1] if attrs.get("transB") else b[-2]
    a = shapes.get(node.input[0]) or [0]
    return a[-2] if attrs.get("transA") and len(a) > 1 else a[-1]


def _macs(model: Any) -> int | None:
    """Per sample (a dynamic batch counts as 1, a fixed batch is divided out), from ONNX's shape inference; None
    when shapes are unknown."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot follow: no count rather than a wrong one
        return None
    shapes: dict[str, list[int]] = {}
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if out is None:
            continue
        if node.op_type in _WEIGHTED and len(node.input) > _WEIGHTED[node.op_type]:
            weight = shapes.get(node.input[_WEIGHTED[node.op_type]])
            if weight and len(weight) > 2:
                total += math.prod(out) * math.prod(weight[1:])  # out elements x (Cin/group x kernel)
        elif node.op_type in _MATMUL:
            total += math.prod(out) * _inner_size(node, shapes)
    constants = {i.name for i in model.graph.initializer}
    first = next((v for v in model.graph.input if v.name not in constants), None)
    dims = first.type.tensor_type.shape.dim if first is not None else []
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 1 else 1
    return int(total // batch)


def footprint(model: Any, path: Path) -> dict[str, Any]:
    """Weight bytes (initializers, external data by its declared length) and the peak of activation bytes alive
    at once when the nodes run in graph order, from ONNX's shape inference with a dynamic dimension counted as
    1; a tensor whose shape inference cannot tell is left out (counted in `unknown_shapes`). Operators are the
    main graph's (a Loop's or If's body is not counted)."""
    import onnx

    weights = 0
    for init in model.graph.initializer:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize if init.data_type else 4
        weights += math.prod(init.dims) * itemsize
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot follow: weights only
        inferred = model
    sizes: dict[str, int] = {}
    unknown = 0
    for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        t = v.type.tensor_type
        if not v.type.HasField("tensor_type") or not t.HasField("shape") or not t.elem_type:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim]
        sizes[v.name] = math.prod(dims) * onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize
    constants = {i.name for i in model.graph.initializer}
    nodes = list(model.graph.node)
    end = len(nodes)
    first = {v.name: -1 for v in model.graph.input if v.name not in constants}
    last = {v.name: end for v in model.graph.output}
    for i, node in enumerate(nodes):
        for name in node.output:
            first.setdefault(name, i)
        for name in node.input:
            if name:
                last[name] = max(last.get(name, i), i)
    for name in first:
        if name not in sizes:
            unknown += 1
    peak = 0
    for step in range(-1, end + 1):
        peak = max(peak, sum(sizes.get(n, 0) for n, f in first.items() if f <= step <= last.get(n, f)))
    counts = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                                 for n in nodes)
    dynamic = any(not d.HasField("dim_value") for v in model.graph.input if v.name not in constants
                  for d in v.type.tensor_type.shape.dim)
    return {"weights_bytes": int(weights), "peak_activation_bytes": int(peak), "ops": dict(sorted(counts.items())),
            "dynamic_shapes": dynamic, "unknown_shapes": unknown}
