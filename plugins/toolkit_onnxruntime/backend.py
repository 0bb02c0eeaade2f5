"""ONNX Runtime backend. After creating a session it reads which providers really run, so a silent
fallback to CPU (no GPU, a missing CUDA library) is reported instead of being measured as if it were CUDA."""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any, Callable

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, ModelFileError, PluginOption, Session,
                         TensorSpec, UsageError, library_versions, read_specs)

from . import device

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
        self.input_specs = _with_quantization([TensorSpec.from_dict(d) for d in session.input_specs], artifact, True)
        self.output_specs = _with_quantization([TensorSpec.from_dict(d) for d in session.output_specs], artifact,
                                               False)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.device.run(inputs)

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return self.device.bench_callable(inputs)  # ORT's own run(), bound to its arguments

    def describe(self) -> dict[str, Any]:
        return self.device.describe()


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
