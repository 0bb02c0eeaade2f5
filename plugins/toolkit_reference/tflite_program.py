"""A .tflite flatbuffer compiled into a numpy program: tensors, constant buffers, quantization parameters and
operators with their builtin options are read once (through the `tflite` schema package, after
read_tflite() has validated the file), each operator's kernel is built once by tflite_kernels, and run()
walks a flat list of (kernel, input slots, output slots). No TensorFlow, no LiteRT."""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
from typing import Any

import numpy as np
from flatbuffers import number_types
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.Model import Model

from toolkit.api import ModelFileError, TensorSpec, UsageError, model_format

from .refusals import refusal
from .tflite_kernels import KERNELS, Node, Quant, TensorInfo

_OPTION_TABLES = {v: k for k, v in vars(BuiltinOptions).items() if isinstance(v, int) and v}
_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if isinstance(v, int)}
_SKIP = ("Init", "GetRootAs")
# TensorType codes -> numpy (the sub-byte and 8-bit float types have no numpy kernel here: object)
_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
           10: "float64", 12: "uint64", 15: "uint32", 16: "uint16"}


def _specs(path: pathlib.Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs as LiteRT reports them; the format reader validates every offset first."""
    return model_format("tflite").read_specs(path)


def _options(op: Any) -> dict[str, Any]:
    """The operator's builtin options as {accessor name: value} (vectors through their *AsNumpy accessor)."""
    kind = op.BuiltinOptionsType()
    if not kind or kind not in _OPTION_TABLES:
        return {}
    name = _OPTION_TABLES[kind]
    cls = getattr(importlib.import_module(f"tflite.{name}"), name)
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    values: dict[str, Any] = {}
    for attr in dir(cls):
        if attr.startswith("_") or attr.startswith(_SKIP) or attr.endswith(("Length", "IsNone")) \
                or "BufferHasIdentifier" in attr:
            continue
        try:
            values[attr] = getattr(options, attr)()
        except TypeError:  # an element accessor that takes an index: its *AsNumpy twin is read instead
            continue
    return values


def _op_name(model: Any, index: int) -> str:
    code = model.OperatorCodes(index)
    at = code._tab.Offset(10)  # builtin_code, the int32 field (the accessor prefers the deprecated int8 one)
    builtin = code._tab.Get(number_types.Int32Flags, code._tab.Pos + at) if at else 0
    value = max(builtin, code.DeprecatedBuiltinCode())
    if value == 32:  # CUSTOM
        return (code.CustomCode() or b"CUSTOM").decode("utf-8", "replace")
    return _OP_NAMES.get(value, f"BUILTIN_{value}")


def _buffer(model: Any, data: bytes, index: int) -> bytes | None:
    if index <= 0 or index >= model.BuffersLength():
        return None
    buf = model.Buffers(index)
    offset, size = buf.Offset(), buf.Size()
    if offset > 1:  # large models keep buffers after the flatbuffer
        return data[offset:offset + size]
    return buf.DataAsNumpy().tobytes() if buf.DataLength() else None


def _tensor(model: Any, data: bytes, sub: Any, index: int) -> TensorInfo:
    t = sub.Tensors(index)
    dtype_name = _DTYPES.get(t.Type(), "unknown")
    dtype = np.dtype(object) if dtype_name == "unknown" else np.dtype(dtype_name)
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    quant = None
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        quant = Quant(q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64),
                      int(q.QuantizedDimension()))
    raw = _buffer(model, data, t.Buffer())
    value = None
    if raw is not None:
        if dtype == object:  # strings, int4, bfloat16, ...
            raise UsageError(f"tensor '{(t.Name() or b'').decode()}' holds type-{t.Type()} data, which the "
                             "reference backend does not read", "Use the tflite backend for this model")
        value = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        value.flags.writeable = False
    return TensorInfo(index, (t.Name() or b"").decode("utf-8", "replace"), dtype, shape, quant, value)


class _Graph:
    """Subgraph 0 of a model: its tensors and operators, as read from the flatbuffer."""

    def __init__(self, path: pathlib.Path):
        data = path.read_bytes()
        model = Model.GetRootAs(data, 0)
        sub = model.Subgraphs(0)
        self.tensors = [_tensor(model, data, sub, i) for i in range(sub.TensorsLength())]
        self.inputs = [int(i) for i in sub.InputsAsNumpy()] if sub.InputsLength() else []
        self.outputs = [int(i) for i in sub.OutputsAsNumpy()] if sub.OutputsLength() else []
        self.nodes: list[tuple[Any, int, str]] = []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            self.nodes.append((op, i, _op_name(model, op.OpcodeIndex())))

    def node(self, op: Any, index: int, name: str) -> Node:
        ins = [self.tensors[int(t)] if t >= 0 else None for t in (op.InputsAsNumpy() if op.InputsLength() else [])]
        outs = [self.tensors[int(t)] for t in (op.OutputsAsNumpy() if op.OutputsLength() else [])]
        return Node(index, name, ins, outs, _options(op))


def _fold(kernel: Any, node: Node) -> None:
    """Constant folding: an operator whose inputs are all constants (fp16 weights' DEQUANTIZE) is computed once;
    its outputs become constants that later kernels see."""
    result = kernel(*[t.data if t is not None else None for t in node.inputs])
    for t, value in zip(node.outputs, result if len(node.outputs) > 1 else (result,)):
        value = np.array(value)
        value.flags.writeable = False
        t.data = value


def _build(graph: _Graph) -> tuple[list[tuple[Node, Any]], str | None]:
    """Every operator's node and kernel, built once; and, when some cannot run, one line naming each operator
    with its nodes: those with no kernel, and those whose kernel refuses this use (say, a quantized LEAKY_RELU)."""
    built: list[tuple[Node, Any]] = []
    missing: dict[tuple[str, str | None], list[str]] = {}
    for op, index, name in graph.nodes:
        node = graph.node(op, index, name)
        label = node.outputs[0].name if node.outputs and node.outputs[0].name else f"#{index}"
        if name not in KERNELS:
            missing.setdefault((name, None), []).append(label)
            continue
        if any(t is not None and t.data is None and t.dtype == np.int16 for t in node.inputs + node.outputs):
            # int16x8 files: the kernels do int8 arithmetic only, and would run int16 values wrongly.
            missing.setdefault((name, "int16 activations"), []).append(label)
            continue
        try:
            kernel = KERNELS[name](node)
        except UsageError as e:  # the kernel's own refusal: "... operator #i (OP): why"
            missing.setdefault((name, e.message.rsplit("): ", 1)[-1]), []).append(label)
            continue
        if not missing and bool(node.inputs) and all(t is None or t.data is not None for t in node.inputs):
            _fold(kernel, node)  # before later kernels are built: they pre-pack what it computes (fp16 weights)
        built.append((node, kernel))
    return built, refusal(missing)


def unsupported_ops(path: str | pathlib.Path) -> str | None:
    """None when the reference kernels implement every operator of the model's main subgraph; otherwise one
    line naming each missing operator with its nodes (first output tensor name, or '#index')."""
    p = pathlib.Path(path)
    _specs(p)  # validates the file before the schema accessors touch it
    return _build(_Graph(p))[1]


class TFLiteProgram:
    """A compiled .tflite model: run() feeds inputs by name and returns outputs by name, as LiteRT would."""

    def __init__(self, path: pathlib.Path, threads: int | None = None):
        path = pathlib.Path(path)
        self.input_specs, self.output_specs = _specs(path)
        graph = _Graph(path)
        built, why = _build(graph)
        if why:
            raise ModelFileError(f"{why} (in '{path.name}')", "Use the tflite backend for this model")
        self._tensors = graph.tensors
        self._inputs, self._outputs = graph.inputs, graph.outputs
        self._slots: list[Any] = [t.data for t in graph.tensors]  # constants in place, the rest filled per run
        self._steps = []
        for node, kernel in built:
            ins = tuple(t.index if t is not None else -1 for t in node.inputs)
            outs = tuple(t.index for t in node.outputs)
            folded = bool(node.inputs) and all(t is None or t.data is not None for t in node.inputs)
            self._steps.append((kernel, ins, outs, node.op, node.index, folded))
        self._shapes = {s.name: tuple(graph.tensors[i].shape) for s, i in zip(self.input_specs, self._inputs)}
        self._limits = None
        if threads and importlib.util.find_spec("threadpoolctl"):
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=threads)  # held for the program's lifetime

    # -- running ------------------------------------------------------------------------------------------

    def resize(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Later runs take these input shapes; only dimensions the file declares dynamic (-1) may change."""
        specs = {s.name: s for s in self.input_specs}
        for name, shape in shapes.items():
            if name not in specs:
                raise UsageError(f"the model has no input '{name}'", f"Inputs: {', '.join(specs)}")
            declared = specs[name].shape
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(declared) or any(d is not None and d != s for d, s in zip(declared, shape)):
                raise UsageError(f"input '{name}' cannot take shape {list(shape)}: the model declares "
                                 f"{[-1 if d is None else d for d in declared]}", "Change only the -1 dimensions")
            self._shapes[name] = shape

    def _values(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        values = list(self._slots)
        for spec, index in zip(self.input_specs, self._inputs):
            if spec.name not in feeds:
                raise UsageError(f"no value for input '{spec.name}'",
                                 f"Feed every input: {', '.join(s.name for s in self.input_specs)}")
            x = np.asarray(feeds[spec.name])
            if x.dtype != np.dtype(spec.dtype):
                if not np.can_cast(x.dtype, spec.dtype, "same_kind"):
                    raise UsageError(f"input '{spec.name}' takes {spec.dtype}, not {x.dtype}",
                                     f"Convert the array to {spec.dtype}")
                x = x.astype(spec.dtype)
            if x.shape != self._shapes[spec.name]:
                raise UsageError(f"input '{spec.name}' has shape {list(x.shape)}, the model is set for "
                                 f"{list(self._shapes[spec.name])}", "Call resize() first for another batch size")
            values[index] = x
        return values

    def _execute(self, feeds: dict[str, np.ndarray], trace: dict[str, np.ndarray] | None) -> list[Any]:
        values = self._values(feeds)
        for kernel, ins, outs, name, index, folded in self._steps:
            if folded:
                if trace is not None:
                    trace.update((self._tensors[slot].name, values[slot]) for slot in outs)
                continue
            try:
                result = kernel(*[values[i] if i >= 0 else None for i in ins])
            except (UsageError, ModelFileError):
                raise
            except IndexError as e:  # an index out of range: a token id beyond the vocabulary, say
                raise UsageError(f"the reference backend could not run operator #{index} ({name}) on these "
                                 f"inputs: {e}", "Check the inputs are what the model takes (token ids within "
                                 "its vocabulary, values in range)") from None
            except (ValueError, TypeError) as e:  # a shape the graph cannot take, said in one line
                raise UsageError(f"operator #{index} ({name}) failed: {type(e).__name__}: {e}",
                                 "Check the input shapes against the model's") from None
            if len(outs) == 1:
                result = (result,)
            for slot, value in zip(outs, result):
                values[slot] = value
                if trace is not None:
                    trace[self._tensors[slot].name] = value
        return values

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._execute(feeds, None)
        return {spec.name: np.asarray(values[i]) for spec, i in zip(self.output_specs, self._outputs)}

    def trace(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every operator's output tensors by TFLite tensor name, in execution order."""
        seen: dict[str, np.ndarray] = {}
        self._execute(feeds, seen)
        return seen

    def quantization(self, tensor_name: str) -> tuple[np.ndarray, np.ndarray, int] | None:
        for t in self._tensors:
            if t.name == tensor_name:
                if t.quant is None:
                    return None
                return t.quant.scales.copy(), t.quant.zero_points.copy(), t.quant.axis
        raise UsageError(f"the model has no tensor '{tensor_name}'", "Use a name that trace() returns")
