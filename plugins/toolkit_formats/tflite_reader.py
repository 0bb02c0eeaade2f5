"""Read a .tflite model's input/output specs and operator names without TensorFlow or LiteRT, so a machine with
neither can still inspect a model; the results match what LiteRT's Interpreter reports for the same file."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from flatbuffers import number_types
from tflite.BuiltinOperator import BuiltinOperator
from tflite.Model import Model
from tflite.Operator import Operator
from tflite.SubGraph import SubGraph

from toolkit.api import ModelFileError, Quantization, TensorSpec

_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3  # the only one LiteRT loads
_HINT = "Re-export the model, or check that the download finished"

# TensorType -> the numpy dtype LiteRT's Python wrapper gives it (TfLiteTypeToPyArrayType): strings come back
# as bytes, resources and variants as objects, and the sub-byte integer types as int8. Codes 19-22 are newer
# than the `tflite` package's schema but already written by LiteRT's converter.
_DTYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "bytes", 6: "bool", 7: "int16",
    8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64", 13: "object", 14: "object",
    15: "uint32", 16: "uint16", 17: "int8", 18: "bfloat16", 19: "int8", 20: "int8", 21: "float8_e4m3fn",
    22: "float8_e5m2",
}

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if isinstance(v, int)}
_OP_NAMES.setdefault(209, "STABLEHLO_CASE")  # in LiteRT's schema, not yet in the `tflite` package's
_CUSTOM = BuiltinOperator.CUSTOM

# vtable slots (4 + 2 * field index in schema.fbs), the same ones the `tflite` accessors read. They are
# spelled out because every field is bounds-checked here before an accessor is allowed to touch it.
_MODEL_VERSION, _MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS = 4, 6, 8
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 4, 6, 8, 10
_OPERATOR_OPCODE_INDEX, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS = 4, 6, 8
_OPCODE_DEPRECATED_BUILTIN, _OPCODE_CUSTOM, _OPCODE_BUILTIN = 4, 6, 10
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_QUANTIZATION, _TENSOR_SHAPE_SIGNATURE = 4, 6, 10, 12, 18
_QUANT_SCALE, _QUANT_ZERO_POINT, _QUANT_DIMENSION = 8, 10, 16


@dataclass(frozen=True)
class TFLiteInfo:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: list[str]  # sorted unique operator names
    # Element types of every tensor of the main subgraph (weights included): what the precision is inferred from.
    tensor_dtypes: tuple[str, ...] = field(default=(), compare=False)


def read_tflite(path: str | os.PathLike) -> TFLiteInfo:
    """Inputs, outputs and operators of the .tflite file at `path`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file '{p}' does not exist", "Check the path") from None
    except OSError as e:
        raise ModelFileError(f"cannot read '{p}': {e.strerror or type(e).__name__}",
                             "Check the path and its permissions") from None
    return read_tflite_bytes(data, str(p))


def read_tflite_bytes(data: bytes, name: str = "model") -> TFLiteInfo:
    """Inputs, outputs and operators of a .tflite model held in memory; `name` is only used in error messages.

    Inputs and outputs are subgraph 0's, in its order, as LiteRT's get_input_details()/get_output_details()
    list them (which is not necessarily the order of a SignatureDef). `ops` covers every subgraph, so the
    bodies of WHILE/IF and other control flow count too."""
    reader = _Reader(bytes(data), name)
    if len(reader.data) < 8:
        reader.fail(f"{len(reader.data)} bytes is too short to be a model")
    if reader.data[4:8] != _IDENTIFIER:
        reader.fail(f"it lacks the {_IDENTIFIER.decode()} identifier (bytes 4-8 are {reader.data[4:8]!r})")
    try:
        return reader.read()
    except ModelFileError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as e:
        # A backstop: the checks below should leave the accessors nothing to trip over.
        reader.fail(f"it is damaged ({type(e).__name__} while reading it)")


class _Reader:
    """Checks each table, field, vector and string against the buffer before a `tflite` accessor reads it: the
    accessors trust every offset, so a damaged file would otherwise read garbage (Python's negative indexing
    wraps around), silently truncate names, or loop over a 4-billion-entry vector.

    Offsets may also make many entries share one table, vector or name. Shared tables are read once, and
    every vector element or string byte costs one unit of a budget in proportion to the file's size, so that
    time and memory stay linear in it rather than quadratic."""

    def __init__(self, data: bytes, name: str):
        self.data, self.size, self.name = data, len(data), name
        self.budget = 4 * len(data) + 4096
        self.table_sizes: dict[int, int] = {}

    def fail(self, why: str) -> NoReturn:
        raise ModelFileError(f"'{self.name}' is not a valid TFLite file: {why}", _HINT)

    def read(self) -> TFLiteInfo:
        model = self.table(Model.GetRootAs(self.data, 0), "model")
        self.field(model, _MODEL_VERSION, 4, "model")
        if model.Version() != _SCHEMA_VERSION:
            self.fail(f"it declares schema version {model.Version()}, and TFLite models are version {_SCHEMA_VERSION}")
        n_codes = self.vector(model, _MODEL_OPERATOR_CODES, 4, "operator code list")
        if self.vector(model, _MODEL_SUBGRAPHS, 4, "subgraph list") == 0:
            self.fail("it has no subgraphs")
        main = self.table(model.Subgraphs(0), "subgraph")
        n_tensors = self.vector(main, _SUBGRAPH_TENSORS, 4, "tensor list")
        specs: dict[int, TensorSpec] = {}

        def spec(index: int, role: str) -> TensorSpec:
            if index not in specs:
                specs[index] = self.tensor_spec(main, index, n_tensors, role)
            return specs[index]

        inputs = [spec(i, "input")
                  for i in self.int_vector(main, _SUBGRAPH_INPUTS, main.InputsAsNumpy, "input list")]
        outputs = [spec(i, "output")
                   for i in self.int_vector(main, _SUBGRAPH_OUTPUTS, main.OutputsAsNumpy, "output list")]

        names: dict[int, str] = {}
        seen_operators: set[int] = set()
        for s, subgraph_pos in enumerate(self.table_positions(model, _MODEL_SUBGRAPHS, "subgraph list")):
            subgraph = SubGraph()
            subgraph.Init(self.data, subgraph_pos)
            self.table(subgraph, "subgraph")
            n_sub_tensors = n_tensors if s == 0 else self.vector(subgraph, _SUBGRAPH_TENSORS, 4, "tensor list")
            for pos in self.table_positions(subgraph, _SUBGRAPH_OPERATORS, "operator list"):
                if pos in seen_operators:
                    continue
                seen_operators.add(pos)
                index = self.operator_code_index(pos, s, n_sub_tensors, n_codes)
                if index not in names:
                    names[index] = self.op_name(model.OperatorCodes(index), index)
        dtypes = set()
        for index in range(n_tensors):
            tensor = self.table(main.Tensors(index), "tensor")
            self.field(tensor, _TENSOR_TYPE, 1, "tensor")
            dtypes.add(_DTYPES.get(tensor.Type(), "unknown"))
        return TFLiteInfo(inputs, outputs, sorted(set(names.values())), tuple(sorted(dtypes)))

    def operator_code_index(self, pos: int, subgraph: int, n_tensors: int, n_codes: int) -> int:
        op = Operator()
        op.Init(self.data, pos)
        self.table(op, "operator")
        self.field(op, _OPERATOR_OPCODE_INDEX, 4, "operator")
        index = op.OpcodeIndex()
        if index >= n_codes:
            self.fail(f"an operator of subgraph {subgraph} uses operator code {index}, but there are {n_codes}")
        # LiteRT's Python Interpreter quietly loads such a model with no operators at all (and older builds
        # crashed running it), so a bad tensor index is caught here, where it is still one clear error.
        for slot, accessor, role in ((_OPERATOR_INPUTS, op.InputsAsNumpy, "input"),
                                     (_OPERATOR_OUTPUTS, op.OutputsAsNumpy, "output")):
            if self.vector(op, slot, 4, f"operator {role} list"):
                tensors = accessor()
                bad = tensors[(tensors < -1) | (tensors >= n_tensors)]  # -1 marks an omitted optional input
                if bad.size:
                    self.fail(f"an operator of subgraph {subgraph} has {role} tensor {int(bad[0])}, "
                              f"but the subgraph has {n_tensors} tensors")
        return index

    def tensor_spec(self, subgraph: Any, index: int, n_tensors: int, role: str) -> TensorSpec:
        if not 0 <= index < n_tensors:
            self.fail(f"an {role} of subgraph 0 is tensor {index}, but the subgraph has {n_tensors} tensors")
        tensor = self.table(subgraph.Tensors(index), "tensor")

        self.vector(tensor, _TENSOR_NAME, 1, "tensor name")
        name = self.text(tensor.Name() or b"", "tensor name")

        self.field(tensor, _TENSOR_TYPE, 1, "tensor")
        code = tensor.Type()
        if code not in _DTYPES:
            self.fail(f"tensor '{name}' has unknown element type {code}")

        # LiteRT reports shape_signature (-1 for a dynamic dimension) when the file has a non-empty one,
        # and the static shape otherwise.
        dims = self.int_vector(tensor, _TENSOR_SHAPE, tensor.ShapeAsNumpy, "tensor shape")
        signature = self.int_vector(tensor, _TENSOR_SHAPE_SIGNATURE, tensor.ShapeSignatureAsNumpy,
                                    "tensor shape signature")
        shape = tuple(None if d < 0 else d for d in (signature or dims))
        return TensorSpec(name, shape, _DTYPES[code], self.quantization(tensor, name, dims))

    def quantization(self, tensor: Any, name: str, dims: list[int]) -> Quantization | None:
        """The tensor's affine quantization, with the consistency checks LiteRT's InterpreterBuilder makes
        (it refuses a model that fails them)."""
        if not self.field(tensor, _TENSOR_QUANTIZATION, 4, "tensor"):
            return None
        q = self.table(tensor.Quantization(), "quantization")
        n_scales = self.vector(q, _QUANT_SCALE, 4, "quantization scales")
        if n_scales == 0:
            return None  # min/max only, or custom details: LiteRT reports no quantization either
        n_zeros = self.vector(q, _QUANT_ZERO_POINT, 8, "quantization zero points")
        if n_zeros != n_scales:
            self.fail(f"tensor '{name}' has {n_scales} quantization scales but {n_zeros} zero points")
        self.field(q, _QUANT_DIMENSION, 4, "quantization")
        axis = q.QuantizedDimension()
        if axis < 0 or (dims and axis >= len(dims)):
            self.fail(f"tensor '{name}' is quantized along dimension {axis}, but its rank is {len(dims)}")
        if n_scales != 1 and dims and n_scales != dims[axis]:
            self.fail(f"tensor '{name}' has {n_scales} quantization scales for {dims[axis]} channels")
        scales = tuple(float(s) for s in q.ScaleAsNumpy())
        zeros = tuple(int(z) for z in q.ZeroPointAsNumpy())
        # The file stores int64 zero points but LiteRT keeps int32 ones: a larger one is corruption.
        if any(not -2**31 <= z < 2**31 for z in zeros):
            self.fail(f"tensor '{name}' has a zero point outside the int32 range")
        return Quantization(scales, zeros, axis if n_scales > 1 else None)

    def op_name(self, opcode: Any, index: int) -> str:
        code = self.table(opcode, "operator code")
        self.field(code, _OPCODE_DEPRECATED_BUILTIN, 1, "operator code")
        self.field(code, _OPCODE_BUILTIN, 4, "operator code")
        # LiteRT takes max(builtin_code, deprecated_builtin_code): files from before the int32 field carry
        # only the int8 one, newer ones carry 127 in the int8 field for codes above it. The `tflite`
        # accessor BuiltinCode() instead returns the int8 field whenever the int32 one is below 127, so the
        # int32 field is read directly.
        at = code._tab.Offset(_OPCODE_BUILTIN)
        builtin = code._tab.Get(number_types.Int32Flags, code._tab.Pos + at) if at else 0
        value = max(builtin, code.DeprecatedBuiltinCode())
        if value < 0:
            self.fail(f"operator code {index} has the invalid builtin code {value}")
        if value != _CUSTOM:
            return _OP_NAMES.get(value, f"BUILTIN_{value}")
        self.vector(code, _OPCODE_CUSTOM, 1, "custom operator name")
        custom = self.text(code.CustomCode() or b"", "custom operator name")
        if not custom:
            self.fail(f"operator code {index} is a custom operator without a name")
        return custom

    # -- bounds checks ------------------------------------------------------------------------------------

    def spend(self, units: int, what: str) -> None:
        self.budget -= units
        if self.budget < 0:
            self.fail(f"its offsets point at the same {what} over and over")

    def table(self, obj: Any, what: str) -> Any:
        """`obj` (a `tflite` table) after checking that its vtable and inline fields lie within the buffer."""
        self.table_size(obj._tab.Pos, what)
        return obj

    def table_size(self, pos: int, what: str) -> int:
        if pos in self.table_sizes:
            return self.table_sizes[pos]
        if not 0 <= pos <= self.size - 4:
            self.fail(f"the {what} table at byte {pos} lies outside the file")
        vtable = pos - struct.unpack_from("<i", self.data, pos)[0]
        if not 0 <= vtable <= self.size - 4:
            self.fail(f"the {what} table at byte {pos} has its field list outside the file")
        vtable_size, table_size = struct.unpack_from("<HH", self.data, vtable)
        if vtable_size < 4 or vtable_size % 2 or vtable + vtable_size > self.size:
            self.fail(f"the {what} table at byte {pos} has a corrupt field list")
        if table_size < 4 or pos + table_size > self.size:
            self.fail(f"the {what} table at byte {pos} runs past the end of the file")
        self.table_sizes[pos] = table_size
        return table_size

    def field(self, obj: Any, slot: int, width: int, what: str) -> int:
        """The field's offset in its table (0 when absent), after checking it lies inside the table."""
        offset = obj._tab.Offset(slot)
        if offset and offset + width > self.table_size(obj._tab.Pos, what):
            self.fail(f"a field of the {what} table at byte {obj._tab.Pos} lies outside the table")
        return offset

    def vector(self, obj: Any, slot: int, width: int, what: str) -> int:
        """Length of the vector (or string) in `slot`, 0 when absent, after checking it fits in the buffer."""
        return self.span(obj, slot, width, what)[1]

    def span(self, obj: Any, slot: int, width: int, what: str) -> tuple[int, int]:
        """Where the vector in `slot` starts (its length field) and its length; (0, 0) when absent."""
        offset = self.field(obj, slot, 4, what)
        if not offset:
            return 0, 0
        at = obj._tab.Pos + offset
        start = at + struct.unpack_from("<I", self.data, at)[0]
        if start + 4 > self.size:
            self.fail(f"the {what} at byte {start} lies outside the file")
        length = struct.unpack_from("<I", self.data, start)[0]
        if length > (self.size - start - 4) // width:
            self.fail(f"the {what} at byte {start} is longer ({length} entries) than the file")
        self.spend(length, what)
        return start, length

    def table_positions(self, obj: Any, slot: int, what: str) -> list[int]:
        """Distinct positions of the tables a vector of offsets points at, in order of first appearance.
        Computed in bulk rather than through the accessors, as the vector may hold millions of entries."""
        start, length = self.span(obj, slot, 4, what)
        if not length:
            return []
        slots = start + 4 + 4 * np.arange(length, dtype=np.int64)
        positions = slots + np.frombuffer(self.data, "<u4", length, start + 4).astype(np.int64)
        unique, first = np.unique(positions, return_index=True)
        return [int(p) for p in unique[np.argsort(first)]]

    def int_vector(self, obj: Any, slot: int, accessor: Any, what: str) -> list[int]:
        if not self.vector(obj, slot, 4, what):
            return []
        return [int(v) for v in accessor()]

    def text(self, raw: bytes, what: str) -> str:
        # LiteRT hands names to C as NUL-terminated strings, so it sees only what precedes a NUL.
        try:
            return raw.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"a {what} is not UTF-8 text")


def footprint_bytes(data: bytes, name: str = "model") -> dict[str, Any]:
    """What running the model costs in memory, from the file alone: weight bytes (constant buffers), and the
    peak of activation bytes alive at once when the main subgraph's operators run in order (a tensor lives from
    the operator that makes it to the last one that reads it; inputs, outputs and variables throughout), with
    a dynamic dimension counted as 1. Also operator counts over every subgraph."""
    info = read_tflite_bytes(data, name)  # every offset checked before the accessors below read them
    model = Model.GetRootAs(data, 0)
    buffer_sizes = [model.Buffers(i).DataLength() if not model.BuffersIsNone() else 0
                    for i in range(model.BuffersLength())]
    names = [_OP_NAMES.get(max(_builtin(model.OperatorCodes(i)), model.OperatorCodes(i).DeprecatedBuiltinCode()),
                           "CUSTOM") for i in range(model.OperatorCodesLength())]
    counts: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        for o in range(sub.OperatorsLength()):
            op_name = names[sub.Operators(o).OpcodeIndex()]
            if op_name == "CUSTOM":
                op_name = model.OperatorCodes(sub.Operators(o).OpcodeIndex()).CustomCode().decode("utf-8", "replace")
            counts[op_name] = counts.get(op_name, 0) + 1
    main = model.Subgraphs(0)
    n = main.TensorsLength()
    size = [0] * n
    constant = [False] * n
    dynamic = False
    for t in range(n):
        tensor = main.Tensors(t)
        dims = [int(d) for d in (tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else
                                 tensor.ShapeAsNumpy() if tensor.ShapeLength() else [])]
        dynamic |= any(d < 0 for d in dims)
        itemsize = np.dtype(_DTYPES[tensor.Type()]).itemsize if _DTYPES[tensor.Type()] not in ("bytes", "object") \
            else 8
        elements = int(np.prod([max(1, d) for d in dims], dtype=np.int64)) if dims else 1
        buffer = tensor.Buffer()
        constant[t] = 0 < buffer < len(buffer_sizes) and buffer_sizes[buffer] > 0
        size[t] = buffer_sizes[buffer] if constant[t] else elements * itemsize
        if tensor.IsVariable():
            constant[t] = False
    ops = [main.Operators(o) for o in range(main.OperatorsLength())]
    end = len(ops)
    first = {int(t): -1 for t in main.InputsAsNumpy()} if main.InputsLength() else {}
    last = {int(t): end for t in main.OutputsAsNumpy()} if main.OutputsLength() else {}
    for t in range(n):
        if main.Tensors(t).IsVariable():
            first[t], last[t] = -1, end
    for i, op in enumerate(ops):
        for t in (op.OutputsAsNumpy() if op.OutputsLength() else []):
            first.setdefault(int(t), i)
        for t in (op.InputsAsNumpy() if op.InputsLength() else []):
            if t >= 0:
                last[int(t)] = max(last.get(int(t), i), i)
    weights = sum(size[t] for t in range(n) if constant[t])
    peak = 0
    activations = [t for t in first if not constant[t]]
    for step in range(-1, end + 1):
        live = sum(size[t] for t in activations if first[t] <= step <= last.get(t, first[t]))
        peak = max(peak, live)
    return {"weights_bytes": int(weights), "peak_activation_bytes": int(peak), "ops": dict(sorted(counts.items())),
            "dynamic_shapes": bool(dynamic or any(d is None for s in info.inputs for d in s.shape)),
            "subgraphs": model.SubgraphsLength(), "tensor_dtypes": list(info.tensor_dtypes)}


def _builtin(code: Any) -> int:
    at = code._tab.Offset(_OPCODE_BUILTIN)
    return code._tab.Get(number_types.Int32Flags, code._tab.Pos + at) if at else 0
