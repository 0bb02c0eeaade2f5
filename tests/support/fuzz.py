"""A seeded mutation fuzzer for .tflite and .onnx files: what bad downloads, buggy exporters and hostile files
look like. Case `i` of seed `s` is always the same bytes, so a failure is reproduced from its two numbers.

TFLite files are edited as raw FlatBuffers (the root offset, vtables, offsets, vector lengths, scalars found by
walking the schema); ONNX files as protobufs through the `onnx` package (dims, dtypes, nodes, names, attributes,
opsets, initializers, external data), and both as plain bytes (flips, truncation).

    cases = make_cases(folder, count=100, seed=1)   # [Case(path, fmt, seed_model, mutation)]
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

HUGE_FILE = "huge.bin"  # a sparse 16 GiB file that external data may point at
HUGE_BYTES = 16 << 30


@dataclass(frozen=True)
class Case:
    path: Path
    fmt: str  # onnx or tflite
    seed_model: str  # the file it was made from
    mutation: str  # what was done, in words: enough to tell one case from another


# ---------------------------------------------------------------------------------------------- seed models
def seed_models(folder: Path) -> dict[str, Path]:
    """The valid models mutations start from: the toolkit's tiny test models and a multi-input ONNX."""
    from toolkit.testing import tiny_onnx_model, tiny_onnx_two_inputs, tiny_tflite_model

    from third_party_models import make_onnx_multi_input

    folder.mkdir(parents=True, exist_ok=True)
    return {
        "tiny.onnx": tiny_onnx_model(folder / "tiny.onnx"),
        "tiny_two_inputs.onnx": tiny_onnx_two_inputs(folder / "tiny_two_inputs.onnx"),
        "multi_input.onnx": make_onnx_multi_input(folder / "multi_input.onnx"),
        "tiny_fp32.tflite": tiny_tflite_model(folder, "tiny_fp32.tflite"),
        "tiny_int8.tflite": tiny_tflite_model(folder, "tiny_int8.tflite"),
    }


def make_cases(folder: str | os.PathLike, count: int, seed: int = 0,
               formats: tuple[str, ...] = ("onnx", "tflite")) -> list[Case]:
    """`count` mutated models written into `folder`, alternating between the seed models of `formats`."""
    folder = Path(folder)
    seeds = {name: p.read_bytes() for name, p in seed_models(folder / "seeds").items()
             if p.suffix.lstrip(".") in formats}
    names = sorted(seeds)
    cases = []
    for i in range(count):
        rng = random.Random(f"{seed}:{i}")
        name = names[i % len(names)]
        fmt = name.rsplit(".", 1)[1]
        data, what = (mutate_onnx if fmt == "onnx" else mutate_tflite)(seeds[name], rng, folder)
        path = folder / f"case{i:04d}.{fmt}"
        path.write_bytes(data)
        cases.append(Case(path, fmt, name, what))
    return cases


def onnx_node_models(folder: str | os.PathLike, count: int = 60) -> list[Path]:
    """An evenly spaced, deterministic sample of ONNX's own node test models (the onnx/backend/test/data/node
    models, which the wheel does not ship: made here from the test cases it does ship), written into `folder`."""
    import warnings

    import onnx
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ONNX makes every case, some with overflowing casts
        cases = sorted(collect_testcases(None), key=lambda c: c.name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, len(cases) // count)
    out = []
    for case in cases[::step][:count]:
        path = folder / f"{case.name}.onnx"
        onnx.save(case.model, str(path))
        out.append(path)
    return out


# ---------------------------------------------------------------------------------------------- plain bytes
def flip_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    spots = sorted(rng.randrange(len(out)) for _ in range(rng.choice((1, 1, 2, 4, 16))))
    for at in spots:
        out[at] ^= rng.randrange(1, 256)
    return bytes(out), f"bytes flipped at {spots[:4]}{'...' if len(spots) > 4 else ''}"


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    keep = rng.choice((1, 7, 8, 9, rng.randrange(len(data)), len(data) - 1, len(data) // 2))
    return data[:keep], f"truncated to {keep} of {len(data)} bytes"


def append_garbage(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    extra = bytes(rng.randrange(256) for _ in range(rng.choice((1, 64, 4096))))
    return data + extra, f"{len(extra)} bytes appended"


# ---------------------------------------------------------------------------------------------- TFLite
# Table kind -> {vtable slot: (field kind, child kind or scalar name)}, from LiteRT's schema.fbs.
_TFLITE_SCHEMA: dict[str, dict[int, tuple[str, str | None]]] = {
    "Model": {4: ("u32", "version"), 6: ("tables", "OperatorCode"), 8: ("tables", "SubGraph"), 10: ("string", None),
              12: ("tables", "Buffer"), 14: ("ints", "metadata_buffer"), 16: ("tables", "Metadata"),
              18: ("tables", "SignatureDef")},
    "OperatorCode": {4: ("i8", "deprecated_builtin_code"), 6: ("string", None), 8: ("i32", "version"),
                     10: ("i32", "builtin_code")},
    "SubGraph": {4: ("tables", "Tensor"), 6: ("ints", "inputs"), 8: ("ints", "outputs"), 10: ("tables", "Operator"),
                 12: ("string", None)},
    "Tensor": {4: ("ints", "shape"), 6: ("i8", "type"), 8: ("u32", "buffer"), 10: ("string", None),
               12: ("table", "Quantization"), 14: ("i8", "is_variable"), 18: ("ints", "shape_signature")},
    "Operator": {4: ("u32", "opcode_index"), 6: ("ints", "inputs"), 8: ("ints", "outputs"),
                 10: ("u8", "builtin_options_type"), 12: ("table", "Options"), 14: ("bytes", None)},
    "Buffer": {4: ("bytes", None)},
    "Quantization": {4: ("floats", None), 6: ("floats", None), 8: ("floats", "scale"), 10: ("longs", "zero_point"),
                     16: ("i32", "quantized_dimension")},
    "Metadata": {4: ("string", None), 6: ("u32", "buffer")},
    "SignatureDef": {4: ("tables", "TensorMap"), 6: ("tables", "TensorMap"), 8: ("string", None),
                     12: ("u32", "subgraph_index")},
    "TensorMap": {4: ("string", None), 6: ("u32", "tensor_index")},
    "Options": {},  # an operator's builtin options: a table whose fields depend on the operator
}
_SCALAR = {"u32": "<I", "i32": "<i", "i8": "<b", "u8": "<B"}
_WIDTH = {"tables": 4, "ints": 4, "floats": 4, "longs": 8, "string": 1, "bytes": 1}


@dataclass
class FlatMap:
    """Where things are in a valid .tflite: tables, offsets, vectors, scalars and integer vector elements."""

    tables: list[tuple[str, int]]  # (what, position)
    offsets: list[tuple[str, int]]  # (what, position of a uoffset)
    vectors: list[tuple[str, int, int]]  # (what, position of the length, element width)
    scalars: list[tuple[str, int, str]]  # (name, position, struct format)
    elements: list[tuple[str, int, str]]  # (vector name, position, struct format) of shape dims, tensor indices
    buffers: list[tuple[int, int]]  # (start, length) of weight bytes


def map_tflite(data: bytes) -> FlatMap:
    """Walk a valid .tflite from its root table, following the schema above."""
    m = FlatMap([], [], [], [], [], [])
    seen: set[int] = set()

    def u32(at: int) -> int:
        return struct.unpack_from("<I", data, at)[0]

    def table(kind: str, pos: int, what: str) -> None:
        if pos in seen:
            return
        seen.add(pos)
        m.tables.append((what, pos))
        vtable = pos - struct.unpack_from("<i", data, pos)[0]
        vsize = struct.unpack_from("<H", data, vtable)[0]
        for slot, (field, sub) in _TFLITE_SCHEMA[kind].items():
            off = struct.unpack_from("<H", data, vtable + slot)[0] if slot < vsize else 0
            if not off:
                continue
            at = pos + off
            if field in _SCALAR:
                m.scalars.append((f"{kind}.{sub}", at, _SCALAR[field]))
                continue
            m.offsets.append((f"{kind}@{pos}.slot{slot}", at))
            target = at + u32(at)
            if field == "table":
                table(str(sub), target, f"{sub} of {what}")
                continue
            n = u32(target)
            m.vectors.append((f"{kind}.{sub or field + str(slot)}", target, _WIDTH[field]))
            first = target + 4
            if field == "tables":
                for i in range(n):
                    m.offsets.append((f"{kind}.{sub}[{i}]", first + 4 * i))
                    table(str(sub), first + 4 * i + u32(first + 4 * i), f"{sub}[{i}]")
            elif field in ("ints", "longs"):
                fmt = "<i" if field == "ints" else "<q"
                m.elements += [(f"{kind}.{sub}", first + _WIDTH[field] * i, fmt) for i in range(n)]
            elif kind == "Buffer" and n:
                m.buffers.append((first, n))

    table("Model", u32(0), "model")
    return m


def _put(data: bytearray, fmt: str, at: int, value: int) -> None:
    """Write `value` as `fmt`, wrapped to its width (so -1 as "<I" is 0xFFFFFFFF)."""
    bits = struct.calcsize(fmt) * 8
    value &= (1 << bits) - 1
    if fmt[1].islower() and value >= 1 << (bits - 1):
        value -= 1 << bits
    struct.pack_into(fmt, data, at, value)


def _tflite_edit(data: bytes, rng: random.Random, m: FlatMap) -> tuple[bytes, str]:
    """One structural edit at a place `m` (the map of the valid file `data` came from) names."""
    out = bytearray(data)
    size = len(data)
    kind = rng.choice(("root", "vtable-entry", "vtable-header", "soffset", "uoffset", "vector-length", "scalar",
                       "scalar", "element", "element", "element", "weights"))
    if kind == "weights" and not m.buffers:
        kind = "element"
    if kind == "root":
        value = rng.choice((0, 1, 4, size - 4, size, size + 64, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(size)))
        _put(out, "<I", 0, value)
        return bytes(out), f"root offset = {value}"
    if kind in ("vtable-entry", "vtable-header", "soffset"):
        what, pos = rng.choice(m.tables)
        vtable = pos - struct.unpack_from("<i", data, pos)[0]
        if kind == "soffset":
            value = rng.choice((0, pos + 1, -pos, pos - size, 0x7FFFFFFF, -0x80000000, rng.randrange(-64, 64)))
            _put(out, "<i", pos, value)
            return bytes(out), f"vtable offset of {what} = {value}"
        vsize, tsize = struct.unpack_from("<HH", data, vtable)
        if kind == "vtable-header" or vsize <= 4:
            at = vtable + rng.choice((0, 2))
            value = rng.choice((0, 1, 2, 3, 4, 0xFFFF, rng.randrange(64)))
            _put(out, "<H", at, value)
            return bytes(out), f"vtable {'size' if at == vtable else 'table size'} of {what} = {value}"
        slot = rng.randrange(4, vsize, 2)
        value = rng.choice((0, 1, 3, tsize, tsize + 4, 0xFFFF, rng.randrange(tsize + 8)))
        _put(out, "<H", vtable + slot, value)
        return bytes(out), f"vtable slot {slot} of {what} = {value}"
    if kind == "uoffset":
        what, at = rng.choice(m.offsets)
        old = struct.unpack_from("<I", data, at)[0]
        value = rng.choice((0, 4, size - at, size, 0xFFFFFFFF, 0x80000000, old + 4, old - 4, rng.randrange(size)))
        _put(out, "<I", at, value)
        return bytes(out), f"offset {what} = {value}"
    if kind == "vector-length":
        what, at, width = rng.choice(m.vectors)
        old = struct.unpack_from("<I", data, at)[0]
        value = rng.choice((0, old + 1, old * 2 + 1, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF, max(old - 1, 0)))
        _put(out, "<I", at, value)
        return bytes(out), f"length of {what} = {value} (was {old})"
    if kind == "scalar":
        name, at, fmt = rng.choice(m.scalars)
        value = rng.choice((-1, 0, 1, 2, 4, 9, 17, 25, 63, 127, 200, 255, 9999, 1 << 20, 0x7FFFFFFF,
                            rng.randrange(256)))
        _put(out, fmt, at, value)
        return bytes(out), f"{name} = {value}"
    if kind == "element":
        name, at, fmt = rng.choice(m.elements)
        value = rng.choice((-2, -1, 0, 1, 3, 7, 8, 9, 100, 1 << 16, 1 << 20, 0x7FFFFFFF, -0x80000000))
        _put(out, fmt, at, value)
        return bytes(out), f"an element of {name} = {value}"
    start, n = rng.choice(m.buffers)
    for _ in range(rng.choice((1, 4, 16))):
        out[start + rng.randrange(n)] ^= rng.randrange(1, 256)
    return bytes(out), f"weights at {start} flipped"


def mutate_tflite(data: bytes, rng: random.Random, folder: Path | None = None) -> tuple[bytes, str]:
    """One to three structural edits of a valid .tflite (offsets, vtables, fields), or plain byte damage, or both.
    Structural edits are aimed with the valid file's map, so a damaged file is never walked here."""
    m = map_tflite(data)
    steps = []
    if rng.random() < 0.8:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            data, what = _tflite_edit(data, rng, m)
            steps.append(what)
    if not steps or rng.random() < 0.25:
        data, what = rng.choice((flip_bytes, flip_bytes, truncate, append_garbage))(data, rng)
        steps.append(what)
    return data, "; ".join(steps)


# ---------------------------------------------------------------------------------------------- ONNX
_ONNX_EDITS: list[Callable[[Any, random.Random, Path], str]] = []


def _onnx_edit(fn: Callable[[Any, random.Random, Path], str]) -> Callable[[Any, random.Random, Path], str]:
    _ONNX_EDITS.append(fn)
    return fn


def _value_infos(model: Any) -> list[Any]:
    g = model.graph
    return [*g.input, *g.output, *g.value_info]


_ODD_NAMES = ("", "x\ny", "missing", "a" * 5000, "ünïcødé", "../../etc/passwd", "x\x00y", "\r\n")


@_onnx_edit
def change_dim(model: Any, rng: random.Random, folder: Path) -> str:
    vi = rng.choice(_value_infos(model))
    dims = vi.type.tensor_type.shape.dim
    if not dims or rng.random() < 0.2:
        new = dims.add()
        new.dim_value = rng.choice((1, 3, 1 << 20))
        return f"a dimension added to '{vi.name}'"
    d = rng.choice(dims)
    how = rng.randrange(3)
    if how == 0:
        d.dim_value = rng.choice((0, -1, -7, 1, 2, 5, 1 << 31, 1 << 40, 10 ** 12, 2 ** 63 - 1))
        return f"a dim of '{vi.name}' = {d.dim_value}"
    if how == 1:
        d.dim_param = rng.choice(("", "N", "M\nN", "x" * 3000, "-1", "?"))
        return f"a dim of '{vi.name}' named {d.dim_param[:20]!r}"
    del dims[rng.randrange(len(dims))]
    return f"a dim of '{vi.name}' removed"


@_onnx_edit
def huge_shape(model: Any, rng: random.Random, folder: Path) -> str:
    vi = rng.choice(list(model.graph.input) or _value_infos(model))
    dims = vi.type.tensor_type.shape.dim
    del dims[:]
    for _ in range(rng.choice((2, 4, 8))):
        dims.add().dim_value = rng.choice((1 << 16, 1 << 20, 1 << 31, 10 ** 9))
    return f"'{vi.name}' declared {[d.dim_value for d in dims]}"


@_onnx_edit
def change_dtype(model: Any, rng: random.Random, folder: Path) -> str:
    target = rng.choice((*_value_infos(model), *model.graph.initializer))
    value = rng.choice((0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 16, 17, 21, 23, 24, 99, 12345))
    if hasattr(target, "data_type"):
        target.data_type = value
        return f"initializer '{target.name}' dtype = {value}"
    if not target.type.HasField("tensor_type") or rng.random() < 0.15:
        target.type.Clear()  # no type at all
        return f"'{target.name}' has no type"
    target.type.tensor_type.elem_type = value
    return f"'{target.name}' dtype = {value}"


@_onnx_edit
def drop_node(model: Any, rng: random.Random, folder: Path) -> str:
    nodes = model.graph.node
    i = rng.randrange(len(nodes))
    op = nodes[i].op_type
    del nodes[i]
    return f"node {i} ({op}) dropped"


@_onnx_edit
def duplicate_node(model: Any, rng: random.Random, folder: Path) -> str:
    nodes = model.graph.node
    i = rng.randrange(len(nodes))
    nodes.add().CopyFrom(nodes[i])
    return f"node {i} ({nodes[i].op_type}) duplicated"


@_onnx_edit
def reorder_nodes(model: Any, rng: random.Random, folder: Path) -> str:
    nodes = list(model.graph.node)
    rng.shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return "nodes shuffled"


@_onnx_edit
def rename_value(model: Any, rng: random.Random, folder: Path) -> str:
    g = model.graph
    name = rng.choice(_ODD_NAMES)
    where = rng.randrange(4)
    if where == 0:
        node = rng.choice(g.node)
        if node.input:
            node.input[rng.randrange(len(node.input))] = name
            return f"a {node.op_type} input renamed {name[:12]!r}"
    if where == 1:
        node = rng.choice(g.node)
        node.output[rng.randrange(len(node.output))] = name
        return f"a {node.op_type} output renamed {name[:12]!r}"
    if where == 2 and g.input:
        rng.choice(g.input).name = name
        return f"a graph input renamed {name[:12]!r}"
    rng.choice(g.output).name = name
    return f"a graph output renamed {name[:12]!r}"


@_onnx_edit
def change_op(model: Any, rng: random.Random, folder: Path) -> str:
    node = rng.choice(model.graph.node)
    if rng.random() < 0.3:
        node.domain = rng.choice(("com.bogus", "ai.onnx.ml", "com.microsoft", "x\ny"))
        return f"{node.op_type} moved to domain {node.domain!r}"
    node.op_type = rng.choice(("NoSuchOp", "Conv", "Reshape", "Gather", "Loop", "If", "Softmax", "Concat", "Split",
                               "TopK", "Expand", "Tile", "", "Relu\nRelu", "MaxPool", "Slice"))
    return f"a node became {node.op_type!r}"


@_onnx_edit
def bogus_attribute(model: Any, rng: random.Random, folder: Path) -> str:
    from onnx import AttributeProto, helper

    node = rng.choice(model.graph.node)
    how = rng.randrange(5)
    if how == 0:
        node.attribute.append(helper.make_attribute("bogus", 1))
        return f"{node.op_type} given attribute 'bogus'"
    if how == 1:  # a known attribute name with a wrong type or value
        name = rng.choice(("axis", "perm", "to", "keepdims", "alpha", "kernel_shape", "axes"))
        value = rng.choice((-100, 10 ** 9, 1.5, "text", [1, 2, 3], [-1] * 50))
        node.attribute.append(helper.make_attribute(name, value))
        return f"{node.op_type} given {name}={str(value)[:20]}"
    if how == 2:  # an attribute that says it holds a graph and holds nothing
        attr = node.attribute.add()
        attr.name, attr.type = "body", AttributeProto.GRAPH
        return f"{node.op_type} given an empty graph attribute"
    if how == 3:
        attr = node.attribute.add()
        attr.name, attr.type = "value", rng.choice((0, 99, AttributeProto.TENSOR))
        attr.t.dims.extend([3, 3])
        attr.t.data_type = 1
        attr.t.raw_data = b"\x00" * rng.choice((0, 4, 35))
        return f"{node.op_type} given a malformed tensor attribute"
    node.attribute.append(helper.make_attribute("bogus", "y" * 3000 + "\n" + "z"))
    return f"{node.op_type} given a long multi-line attribute"


def _initializer(model: Any, rng: random.Random) -> Any:
    g = model.graph
    if not g.initializer:
        from onnx import numpy_helper
        import numpy as np

        g.initializer.append(numpy_helper.from_array(np.ones((3,), np.float32), "extra"))
    return rng.choice(g.initializer)


@_onnx_edit
def break_initializer(model: Any, rng: random.Random, folder: Path) -> str:
    t = _initializer(model, rng)
    how = rng.randrange(6)
    if how == 0:
        t.raw_data = t.raw_data[: rng.randrange(max(len(t.raw_data), 1))]
        return f"initializer '{t.name}' bytes cut"
    if how == 1:
        t.dims.append(rng.choice((0, 2, 1 << 20, 1 << 40)))
        return f"initializer '{t.name}' given a dim {t.dims[-1]}"
    if how == 2:
        del model.graph.initializer[:]
        return "every initializer dropped"
    if how == 3:
        model.graph.initializer.add().CopyFrom(t)
        return f"initializer '{t.name}' duplicated"
    if how == 4:
        t.float_data.extend([1.0, 2.0])  # both raw_data and typed data
        return f"initializer '{t.name}' holds raw and typed data"
    t.name = rng.choice(_ODD_NAMES)
    return f"initializer renamed {t.name[:12]!r}"


@_onnx_edit
def external_data(model: Any, rng: random.Random, folder: Path) -> str:
    """An initializer whose bytes live in a file that is missing, huge, elsewhere, or too short."""
    from onnx import TensorProto

    t = _initializer(model, rng)
    location = rng.choice(("missing.bin", HUGE_FILE, HUGE_FILE, "/etc/hostname", "../outside.bin", "sub/../x.bin",
                           "", "a\nb.bin", "short.bin"))
    if location == HUGE_FILE and not (folder / HUGE_FILE).exists():
        with open(folder / HUGE_FILE, "wb") as f:  # sparse: no disk is used
            f.truncate(HUGE_BYTES)
    if location == "short.bin":
        (folder / "short.bin").write_bytes(b"\x00" * 8)
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    entries = {"location": location}
    if rng.random() < 0.7:
        entries["offset"] = str(rng.choice((0, 4096, HUGE_BYTES - 16, 1 << 62, -1)))
        entries["length"] = str(rng.choice((12, 16, 1 << 30, HUGE_BYTES, 1 << 62, -5)))
    if location == HUGE_FILE and rng.random() < 0.5:  # a tensor that really is 16 GiB
        del t.dims[:]
        t.dims.extend([4, 1 << 30])
        t.data_type = TensorProto.FLOAT
        entries["length"] = str(HUGE_BYTES)
        entries.pop("offset", None)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return f"initializer '{t.name}' stored in {location!r} ({', '.join(f'{k}={v}' for k, v in entries.items())})"


@_onnx_edit
def change_opset(model: Any, rng: random.Random, folder: Path) -> str:
    how = rng.randrange(4)
    if how == 0:
        model.opset_import[0].version = rng.choice((0, 1, 6, 10, 23, 99, 10 ** 6, -1))
        return f"opset {model.opset_import[0].version}"
    if how == 1:
        del model.opset_import[:]
        return "no opset"
    if how == 2:
        model.ir_version = rng.choice((0, 1, 2, 3, 11, 99, 2 ** 62))
        return f"ir_version {model.ir_version}"
    o = model.opset_import.add()
    o.domain, o.version = rng.choice((("com.bogus", 1), ("", 13), ("ai.onnx.ml", 99)))
    return f"opset {o.domain!r} {o.version} added"


@_onnx_edit
def empty_parts(model: Any, rng: random.Random, folder: Path) -> str:
    g = model.graph
    part = rng.choice(("node", "input", "output", "graph"))
    if part == "graph":
        model.ClearField("graph")
        model.graph.name = "empty"  # present, and empty
        return "an empty graph"
    g.ClearField(part)
    return f"every graph {part} dropped"


@_onnx_edit
def constant_node(model: Any, rng: random.Random, folder: Path) -> str:
    """A Constant node feeding a node in place of one of its inputs, holding something odd."""
    import numpy as np
    from onnx import helper, numpy_helper

    value = rng.choice((np.array([], np.float32), np.zeros((2, 0, 3), np.float32), np.array([1, 2], np.int64),
                        np.array(["text"], object), np.full((4,), np.nan, np.float32), np.array(True)))
    node = rng.choice(model.graph.node)
    if node.input:
        node.input[rng.randrange(len(node.input))] = "odd_const"
    model.graph.node.insert(0, helper.make_node("Constant", [], ["odd_const"], value=numpy_helper.from_array(value)))
    return f"a Constant {value.dtype}{list(value.shape)} feeds {node.op_type}"


def mutate_onnx(data: bytes, rng: random.Random, folder: Path) -> tuple[bytes, str]:
    """One or two protobuf-level edits of a valid .onnx, sometimes followed by a byte-level one."""
    import onnx

    if rng.random() < 0.12:  # only bytes: what protobuf itself must refuse or survive
        return rng.choice((flip_bytes, truncate, append_garbage))(data, rng)
    model = onnx.load_from_string(data)
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2))):
        try:
            steps.append(rng.choice(_ONNX_EDITS)(model, rng, folder))
        except (IndexError, ValueError, TypeError):  # an earlier edit left nothing to aim at
            continue
    out = model.SerializeToString()
    if rng.random() < 0.08:
        out, what = rng.choice((flip_bytes, truncate))(out, rng)
        steps.append(what)
    return out, "; ".join(steps) or "unchanged"
