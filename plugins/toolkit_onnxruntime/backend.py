"""ONNX Runtime backend. After creating a session it reads which providers really run, so a silent
fallback to CPU (no GPU, a missing CUDA library) is reported instead of being measured as if it were CUDA."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from typing import Any, Callable

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, ModelFileError, PluginOption, Session,
                         TensorSpec, UsageError, first_line, library_versions, read_specs)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

ONNX_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(uint16)": "uint16",
    "tensor(int32)": "int32", "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def _spec(arg: Any, is_input: bool = True) -> TensorSpec:
    dtype = ONNX_DTYPES.get(arg.type)
    if dtype is None:
        if not is_input:  # e.g. a classifier's seq(map(...)) output: it is returned as ORT gives it
            return TensorSpec(arg.name, (), arg.type)
        raise UsageError(f"input '{arg.name}' has type {arg.type}, which the toolkit cannot generate or feed",
                         "Only numeric and bool tensor inputs are supported")
    dims = arg.shape or []
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)
    names = tuple(d if isinstance(d, str) else None for d in dims)
    return TensorSpec(arg.name, shape, dtype, None, names if any(names) else ())


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
    def __init__(self, session: Any, requested: str, fallback: str | None, artifact: Artifact):
        self.session = session
        self.requested = requested
        self.fallback = fallback
        self.input_specs = _with_quantization([_spec(a) for a in session.get_inputs()], artifact, True)
        self.output_specs = _with_quantization([_spec(a, is_input=False) for a in session.get_outputs()], artifact,
                                               False)
        self._out_names = [s.name for s in self.output_specs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._out_names, self.session.run(self._out_names, inputs)))

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return functools.partial(self.session.run, self._out_names, inputs)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requested": self.requested, "providers": self.session.get_providers()}
        if self.fallback:
            out["fallback"] = self.fallback
        return out


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = ("onnx",)
    extra = "onnx"
    priority = 10
    providers = tuple(PROVIDERS)
    description = "ONNX models on ONNX Runtime (cpu, cuda, tensorrt providers)"
    options = (
        PluginOption("graph_optimization", str, "all", "ORT graph optimisation level",
                     ("disabled", "basic", "extended", "all")),
        PluginOption("inter_op_threads", int, None, "threads between independent nodes (None: ORT's own)"),
    )

    def available(self) -> Availability:
        if importlib.util.find_spec("onnxruntime") is None:
            return Availability(False, "onnxruntime is not installed", self.extra)
        return Availability(True)

    def versions(self) -> dict[str, str]:
        return library_versions("onnxruntime", "onnxruntime-gpu", "numpy")

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        import onnxruntime as ort

        requested = options.provider or "cpu"
        wanted = PROVIDERS[requested]
        so = ort.SessionOptions()
        so.log_severity_level = 3  # warnings about fallbacks are reported by describe(), not printed by ORT
        if options.threads:
            so.intra_op_num_threads = options.threads
        if options.extra.get("inter_op_threads"):
            so.inter_op_num_threads = int(options.extra["inter_op_threads"])
        level = options.extra.get("graph_optimization") or "all"
        so.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        try:
            session = ort.InferenceSession(str(artifact.path), sess_options=so, providers=wanted)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf/NotImplemented types
            text = first_line(e)
            text = text if len(text) <= 300 else text[:300] + "..."
            if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
                # A valid file this build of ONNX Runtime has no kernel for: not the file's fault.
                raise UsageError(f"onnxruntime has no kernel for part of '{artifact.path.name}': {text}",
                                 "Try another --backend, or re-export the model with a newer opset") from None
            if "bad_alloc" in text:  # the child's memory limit, or the machine's: not a damaged file
                raise UsageError(f"onnxruntime ran out of memory loading '{artifact.path.name}' ({text})",
                                 "Raise the limit with --memory-limit MB if the machine has the memory") from None
            raise ModelFileError(f"onnxruntime cannot load '{artifact.path.name}': {text}",
                                 "Check the file is a complete, valid .onnx model") from None
        running = session.get_providers()
        fallback = None
        if wanted[0] not in running:
            installed = ort.get_available_providers()
            why = ("this onnxruntime build does not include it: pip install onnxruntime-gpu"
                   if wanted[0] not in installed else "it failed to initialise (drivers, CUDA/cuDNN/TensorRT libraries)")
            fallback = f"{wanted[0]} is not running, {running[0]} runs instead: {why}"
        return OrtSession(session, requested, fallback, artifact)
