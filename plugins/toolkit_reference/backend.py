"""The reference backend: ONNX graphs and .tflite files in numpy, a second opinion on what a model computes on
any machine with numpy (and onnx, for .onnx files).

A graph is compiled once at load (compile.py: packed, fused kernels from kernels.py for the work, the readable
kernels of ops.py for everything else); trace() runs it node by node with the readable kernels and returns
every value. A .tflite file runs through tflite_program.py with TFLite's own integer arithmetic. --threads
limits the BLAS thread pool numpy's matrix products use (through threadpoolctl).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from typing import Any, Callable, Iterator

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, ModelFileError, Session, TensorSpec,
                         UsageError, dequantize, first_line, library_versions, model_format,
                         onnx_output_quantization)

from .compile import from_onnx
from .kernels import KernelError, NodeFailure
from .ops import OPS
from .refusals import refusal


def _load_graph(path: str, external_data: bool) -> Any:
    import onnx

    try:
        model = onnx.load(path, load_external_data=external_data)
    except Exception as e:  # DecodeError and friends
        raise ModelFileError(f"onnx cannot parse '{path}': {type(e).__name__}", "Check the file is a valid .onnx") from None
    return model


def _load_external_data(model: Any, path: Any) -> None:
    """Weights stored beside the graph, read into the already parsed model (not a second parse of the file),
    after checking what they declare: a tiny file can point at gigabytes, or at a file that is not there."""
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    external = [t for t in model.graph.initializer if uses_external_data(t)]
    if not external:
        return
    total = sum(_external_bytes(t, path) for t in external)
    limit = _memory_limit()
    if limit is not None and total > limit // 2:  # the bytes are held twice: in the protobuf, then as arrays
        raise ModelFileError(f"'{path.name}' declares {total / 2**30:.1f} GiB of external data, more than this "
                             f"process may hold ({limit / 2**30:.1f} GiB of address space)",
                             "Raise it with --memory-limit MB, or use the onnxruntime backend")
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # OSError, and onnx's ValidationError for a location outside the model's folder
        raise ModelFileError(f"cannot read the external data of '{path.name}': {type(e).__name__}: "
                             f"{first_line(e)[:200]}", "Keep the data files beside the model") from None


def _external_bytes(tensor: Any, path: Any) -> int:
    """How many bytes reading `tensor`'s external data would take; ModelFileError for an entry that cannot be
    right (no file, a length its values do not need)."""
    from onnx import helper
    from onnx.external_data_helper import ExternalDataInfo

    where = f"initializer '{tensor.name}' of '{path.name}'"
    try:
        info = ExternalDataInfo(tensor)
        offset, length = int(info.offset or 0), info.length
        file = path.parent / info.location
        folder = path.parent.resolve()
        if info.location and folder not in file.resolve().parents:  # never read (or size up) files elsewhere
            raise ModelFileError(f"{where} keeps its data in '{info.location}', outside the model's folder",
                                 "Keep the data files beside the model")
        size = file.stat().st_size if info.location and file.is_file() else None
    except (ValueError, TypeError, OSError) as e:
        raise ModelFileError(f"{where} has malformed external data entries ({type(e).__name__})",
                             "Re-export the model") from None
    if size is None:
        raise ModelFileError(f"{where} keeps its data in '{info.location}', which is not a file beside the model",
                             "Keep the data files beside the model") from None
    wanted = size - offset if length is None else int(length)
    if offset < 0 or wanted < 0 or offset + wanted > size:
        raise ModelFileError(f"{where} reads bytes {offset}..{offset + wanted} of '{info.location}', which has "
                             f"{size}", "Keep the data files beside the model, complete") from None
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = None
    if itemsize and tensor.data_type not in _PACKED_TYPES:
        needed = int(np.prod([int(d) for d in tensor.dims], dtype=object)) * itemsize
        if wanted > needed:
            raise ModelFileError(f"{where} declares {wanted} bytes of external data for {needed} bytes of values",
                                 "Re-export the model")
    return wanted


# Sub-byte element types (int4, uint4, float4e2m1): several values share a byte, so bytes per value is not fixed.
_PACKED_TYPES = {21, 22, 23}


def _memory_limit() -> int | None:
    """This process's address-space limit in bytes (the child's memory limit), or None when it has none."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def _check_wiring(model: Any, inputs: list[TensorSpec]) -> None:
    """Every node reads only values that exist before it runs: otherwise a malformed graph, said as such."""
    known = {i.name for i in model.graph.initializer} | {s.name for s in inputs} | {""}
    for index, node in enumerate(model.graph.node):
        for name in node.input:
            if name not in known:
                raise ModelFileError(f"node {index} ({node.op_type} '{node.name}') reads '{name}', which no graph "
                                     "input, initializer or earlier node provides",
                                     "The graph is malformed or not topologically sorted: re-export the model")
        known.update(node.output)
    for out in model.graph.output:
        if out.name not in known:
            raise ModelFileError(f"graph output '{out.name}' is produced by no node", "Re-export the model")


class ReferenceSession(Session):
    def __init__(self, model: Any, inputs: list[TensorSpec], outputs: list[TensorSpec], threads: int | None):
        try:
            opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
            self.program = from_onnx(model.graph, [s.name for s in inputs], [s.name for s in outputs], opset)
        except KernelError as e:  # a constant sub-graph the kernels refuse, found while folding it
            raise UsageError(f"the reference backend has no kernel for this use of {e.op_type}: {e.reason}",
                             "Use the onnxruntime backend for this model") from None
        except Exception as e:  # a tensor whose bytes do not fit its shape, an unknown attribute type
            cause = e.error if isinstance(e, NodeFailure) else e  # (NodeFailure: while folding constants)
            raise ModelFileError(f"the graph's weights or attributes are malformed ({type(cause).__name__})",
                                 "Re-export the model") from None
        self.input_specs, self.output_specs = inputs, outputs
        self._limits = None
        if threads and importlib.util.find_spec("threadpoolctl"):
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=threads)  # held for the session's lifetime

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = [inputs[s.name] for s in self.input_specs]
        with _explained():
            results = self.program.run(feeds)
        return {s.name: r for s, r in zip(self.output_specs, results)}

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        feeds = [inputs[s.name] for s in self.input_specs]
        return functools.partial(self.program.run, feeds)

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with _explained():
            traced = self.program.trace({s.name: inputs[s.name] for s in self.input_specs})
        # Quantized tensors as the real numbers they stand for, with the scale and zero point their operator
        # declares (as the other backends' traces give them).
        known = {**self.program.constants, **traced}
        for node in self.program.nodes:
            where = onnx_output_quantization(node.op_type, node.inputs, node.outputs, node.attrs.get("axis", 1))
            if where is None or node.outputs[0] not in traced or known.get(where[0]) is None:
                continue
            zero = known.get(where[1])
            traced[node.outputs[0]] = dequantize(traced[node.outputs[0]], known[where[0]],
                                                 [0] if zero is None else zero, where[2])
        return traced

    def describe(self) -> dict[str, Any]:
        return {"runtime": "numpy", "numpy": np.__version__, "blas_threads_limited": self._limits is not None,
                "blas": blas_info()}


@contextlib.contextmanager
def _explained() -> Iterator[None]:
    """A kernel's refusal or failure as one line that names the operator."""
    try:
        yield
    except KernelError as e:  # a use of the operator the kernel does not cover: never a guess
        raise UsageError(f"the reference backend has no kernel for this use of {e.op_type}: {e.reason}",
                         "Use the onnxruntime backend for this model") from None
    except NodeFailure as e:
        raise UsageError(f"the reference backend could not run {e.op_type} node {e.name!r} on these inputs: "
                         f"{first_line(e.error)}",
                         "Check the inputs are what the model takes (token ids within its vocabulary, "
                         "values in range)") from None


def blas_info() -> list[dict[str, Any]]:
    """Which BLAS numpy's matrix products call, and its kernel and threads (threadpoolctl), when known."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return []
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "version", "architecture", "num_threads")
    return [{k: i.get(k) for k in keys} for i in threadpool_info() if i.get("user_api") == "blas"]


SPATIAL_OPS = ("Conv", "MaxPool", "AveragePool")
# supports() runs in the CLI process, which must stay small: a graph file bigger than this is judged in load().
SUPPORTS_PARSE_LIMIT = 32 * 1024 * 1024


def _limits(node: Any, weight_ranks: dict[str, int], opset: int | None) -> str | None:
    """What the kernel of `node` does not cover (the numpy kernels do 2-D convolution and pooling only)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type in SPATIAL_OPS:
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else None
        rank = len(kernel) if kernel else (weight_ranks.get(node.input[1], 4) - 2 if len(node.input) > 1 else 2)
        if rank != 2:
            return f"{rank}-D"
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return "its Indices output"
    if node.op_type == "Slice" and opset is not None and opset < 10:
        return "before opset 10"
    return None


def _all_nodes(graph: Any) -> Any:
    """The graph's nodes, each followed by those of its subgraphs (If branches, Loop bodies)."""
    for node in graph.node:
        yield node
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _all_nodes(sub)


def _unsupported(model: Any) -> str | None:
    """Why the numpy kernels cannot run `model`, or None: in one line, every operator it does not implement and
    every use of one that its kernel does not cover (a 3-D Conv), each with how many nodes and their names."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    ranks = {t.name: len(t.dims) for t in model.graph.initializer}
    missing: dict[tuple[str, str | None], list[str]] = {}
    for i, n in enumerate(_all_nodes(model.graph)):
        if n.op_type not in OPS or n.domain not in ("", "ai.onnx"):
            op_name = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
            missing.setdefault((op_name, None), []).append(n.name or f"#{i}")
        elif (why := _limits(n, ranks, opset)) is not None:
            missing.setdefault((n.op_type, why), []).append(n.name or f"#{i}")
    return refusal(missing)


class ReferenceTFLiteSession(Session):
    """A .tflite file run by the numpy TFLite program (tflite_program.py): TFLite's integer arithmetic, no
    TensorFlow and no LiteRT."""

    def __init__(self, program: Any):
        self.program = program
        self.input_specs, self.output_specs = program.input_specs, program.output_specs

    def resize(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.program.resize(shapes)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.program.run(inputs)

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        traced = {}
        for name, value in self.program.trace(inputs).items():
            quant = self.program.quantization(name) if not np.issubdtype(value.dtype, np.floating) else None
            traced[name] = dequantize(value, quant[0], quant[1], quant[2]) if quant is not None else np.array(value)
        return traced

    def describe(self) -> dict[str, Any]:
        return {"runtime": "numpy (TFLite reference kernels)", "numpy": np.__version__, "blas": blas_info()}


class ReferenceBackend(Backend):
    name = "reference"
    formats = ("onnx", "tflite")
    extra = "reference"
    priority = -10  # never the default: it is the second opinion
    description = ("numpy, a second opinion: ONNX graphs compiled to numpy kernels (CNN, recurrent, transformer, "
                   "integer and control-flow operators); .tflite files with TFLite's integer arithmetic")

    def available(self) -> Availability:
        return Availability(True)  # numpy and the tflite schema package come with the toolkit; onnx: supports()

    def versions(self) -> dict[str, str]:
        return library_versions("onnx", "numpy", "tflite", "threadpoolctl")

    def supports(self, artifact: Artifact) -> str | None:
        why = super().supports(artifact)
        if why:
            return why
        if artifact.path.stat().st_size > SUPPORTS_PARSE_LIMIT:
            return None  # this runs in the CLI process: a big model is checked by load(), in a child
        if artifact.format == "tflite":
            if importlib.util.find_spec("tflite") is None:
                return "the tflite schema package is not installed (pip install tflite)"
            from .tflite_program import unsupported_ops  # the schema package: only where .tflite files run

            return unsupported_ops(artifact.path)
        if importlib.util.find_spec("onnx") is None:
            return f"onnx is not installed (pip install 'edge-toolkit[{self.extra}]')"
        # The graph only: external data (possibly gigabytes) stays on disk.
        return _unsupported(_load_graph(str(artifact.path), external_data=False))

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        why = Backend.supports(self, artifact)
        if why:
            raise ModelFileError(f"{why} (in '{artifact.path.name}')", "Use another backend for this model")
        if artifact.format == "tflite":
            from .tflite_program import TFLiteProgram

            return ReferenceTFLiteSession(TFLiteProgram(artifact.path, threads=options.threads))
        if importlib.util.find_spec("onnx") is None:
            raise UsageError("the reference backend needs onnx to read .onnx files",
                             f"pip install 'edge-toolkit[{self.extra}]'")
        inputs, outputs = model_format("onnx").read_specs(artifact.path)  # first: it refuses a damaged graph
        graph = _load_graph(str(artifact.path), external_data=False)
        why = _unsupported(graph)
        if why:
            raise ModelFileError(f"{why} (in '{artifact.path.name}')", "Use the onnxruntime backend for this model")
        _check_wiring(graph, inputs)
        _load_external_data(graph, artifact.path)  # in the child, under its memory limit
        return ReferenceSession(graph, inputs, outputs, options.threads)
