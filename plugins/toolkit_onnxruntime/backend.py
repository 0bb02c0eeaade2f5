"""ONNX Runtime backend. After creating a session it reads which providers really run, so a silent
fallback to CPU (no GPU, a missing CUDA library) is reported instead of being measured as if it were CUDA."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, Callable

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, MissingRuntimeError, ModelFileError,
                         PluginOption, Session, TensorSpec, UsageError, dequantize, first_line, library_versions,
                         onnx_output_quantization, read_specs)

from . import device

# Operators whose integer output keeps the scale and zero point of their first input.
_SAME_QUANTIZATION = {"MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather",
                      "Identity", "Resize", "Split", "DepthToSpace", "SpaceToDepth", "Pad"}


def _with_quantization(specs: list[TensorSpec], artifact: Artifact, inputs: bool) -> list[TensorSpec]:
    """ONNX Runtime does not say what an integer input or output means; the graph does (its edge Quantize/
    DequantizeLinear), as the manifest records it or, without one, as the onnx format plugin reads it."""
    if not any(s.dtype in ("int8", "uint8", "int16", "uint16") for s in specs):
        return specs
    declared = (artifact.manifest.inputs if inputs else artifact.manifest.outputs) if artifact.manifest else []
    if not any(s.quantization for s in declared):
        try:
            declared = read_specs(artifact.path)[0 if inputs else 1]
        except Exception:  # noqa: BLE001 - no onnx package on a device: the values are fed as they are
            return specs
    by_name = {s.name: s.quantization for s in declared if s.quantization}
    return [dataclasses.replace(s, quantization=by_name.get(s.name)) if s.name in by_name else s for s in specs]


class OrtSession(Session):
    """The device module's session (device.py, the code that also runs on devices), with the toolkit's specs:
    integer inputs and outputs carry the quantization the graph declares."""

    def __init__(self, session: device.DeviceSession, artifact: Artifact):
        self.device = session
        self._tracer: _Tracer | None = None
        self.input_specs = _with_quantization([TensorSpec.from_dict(d) for d in session.input_specs], artifact, True)
        self.output_specs = _with_quantization([TensorSpec.from_dict(d) for d in session.output_specs], artifact,
                                               False)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.device.run(inputs)

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return self.device.bench_callable(inputs)  # ORT's own run(), bound to its arguments

    def describe(self) -> dict[str, Any]:
        return self.device.describe()

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every value the graph computes from its inputs, from a second session made on the first call over a
        copy of the graph whose intermediate values are graph outputs (the benchmarked session is never
        touched). In a QDQ graph the DequantizeLinear outputs are the real values each layer hands on; integer
        tensors are dequantized with the scale and zero point their operator declares."""
        if self._tracer is None:
            d = self.device
            self._tracer = _Tracer(d._path, d._threads, d._options, d._providers)  # noqa: SLF001 - same plugin
        return self._tracer.run(inputs)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"
    priority = 10
    providers = tuple(device.PROVIDERS)
    device_module = "toolkit_onnxruntime.device"
    description = "ONNX models on ONNX Runtime (cpu, cuda, tensorrt providers)"
    options = (
        PluginOption("graph_optimization", str, "all", "ORT graph optimisation level",
                     ("disabled", "basic", "extended", "all")),
        PluginOption("inter_op_threads", int, None, "threads between independent nodes (None: ORT's own)"),
        PluginOption("trt_fp16", bool, False, "let TensorRT use fp16 kernels (--provider tensorrt)"),
        PluginOption("trt_int8", bool, False, "let TensorRT use int8 kernels (--provider tensorrt)"),
        PluginOption("trt_cache", str, None, "TensorRT engine cache folder (None: $XDG_CACHE_HOME/edge-toolkit/"
                     "tensorrt, else ~/.cache/edge-toolkit/tensorrt)"),
        PluginOption("cuda_device", int, 0, "GPU index (--provider cuda or tensorrt)"),
    )

    def available(self) -> Availability:
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnxruntime is not installed", self.extra)
        return Availability(True)

    def versions(self) -> dict[str, str]:
        return library_versions("onnxruntime", "onnxruntime-gpu", "numpy")

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        try:  # a GPU option the provider does not take (-o trt_fp16=true on cpu) is refused here, as UsageError
            session = device.open_session(str(artifact.path), options.threads, options.provider, options.extra)
        except device.LoadError as e:  # a file ORT refuses, or an input type nothing can feed
            raise (ModelFileError if e.kind == "model" else UsageError)(str(e), e.hint) from None
        return OrtSession(session, artifact)


class _Tracer:
    """A session over the model with every computed value as an output, and how to read its integer ones."""

    def __init__(self, path: str | None, threads: int | None, options: dict[str, Any], providers: list[Any]):
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise MissingRuntimeError("the onnx package (ONNX Runtime's per-layer tensors need it)", "onnx") from None
        if not path:
            raise UsageError("this session has no model file to trace", "Load the model from a file")
        model = onnx.load(path)
        graph = model.graph
        self.constants = {t.name: t for t in graph.initializer}
        fixed = set(self.constants) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        self.names: list[str] = []  # in execution (topological) order
        self.quantization: dict[str, tuple[str, str, int | None]] = {}  # tensor -> (scale, zero point, axis)
        for node in graph.node:
            if all(i in fixed for i in node.input if i):  # weights and what is folded from them: no activation
                fixed.update(node.output)
                continue
            self.names.extend(o for o in node.output if o)
            self._note_quantization(node)
        declared = {o.name for o in graph.output}
        graph.output.extend(onnx.ValueInfoProto(name=n) for n in self.names if n not in declared)
        try:
            self.session = ort.InferenceSession(model.SerializeToString(),
                                                sess_options=device.session_options(ort, threads, options),
                                                providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT's own error types
            raise UsageError(f"onnxruntime cannot expose the intermediate tensors of '{path}': {first_line(e)}",
                             "Use another --backend to trace it") from None
        tensors = {o.name for o in self.session.get_outputs() if o.type.startswith("tensor(")}
        self.names = [n for n in self.names if n in tensors]

    def _note_quantization(self, node: Any) -> None:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        where = onnx_output_quantization(node.op_type, node.input, node.output, axis)
        if where is not None:
            self.quantization[node.output[0]] = where
        elif node.op_type in _SAME_QUANTIZATION and node.input and node.input[0] in self.quantization:
            for out in node.output:
                self.quantization[out] = self.quantization[node.input[0]]

    def _value(self, name: str, got: dict[str, np.ndarray]) -> np.ndarray | None:
        if not name:
            return None
        if name in got:
            return got[name]
        if name in self.constants:
            from onnx import numpy_helper

            return numpy_helper.to_array(self.constants[name])
        return None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            got = dict(zip(self.names, self.session.run(self.names, inputs)))
        except Exception as e:  # noqa: BLE001 - ORT's own error types
            raise UsageError(f"onnxruntime cannot trace the model on these inputs: {first_line(e)}",
                             "Check the inputs against the model's") from None
        out: dict[str, np.ndarray] = {}
        for name in self.names:
            value = got[name]
            if name in self.quantization and not np.issubdtype(value.dtype, np.floating):
                scale_name, zero_name, axis = self.quantization[name]
                scale, zero = self._value(scale_name, got), self._value(zero_name, got)
                if scale is None:
                    continue  # an integer tensor whose meaning the graph does not say: nothing to compare
                value = dequantize(value, scale, zero if zero is not None else [0], axis if axis is not None else 1)
            out[name] = value
        return out
