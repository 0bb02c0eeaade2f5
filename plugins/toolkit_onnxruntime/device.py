"""The ONNX Runtime backend as it runs on a device: this file is shipped there by remote runners (ssh) and imports
only the standard library, numpy and onnxruntime, never the toolkit. The local backend (backend.py) builds its
sessions with the same helpers. The contract: docs/writing-a-runner-plugin.md.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

REQUIREMENTS = [(("numpy",), "numpy"), (("onnxruntime",), "onnxruntime")]

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


class LoadError(Exception):
    """The runtime refused the model file; `hint` says what to do, `kind` is "model" or "usage"."""

    def __init__(self, message: str, hint: str, kind: str = "model"):
        super().__init__(message)
        self.hint, self.kind = hint, kind


def versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("onnxruntime", "onnxruntime-gpu", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def spec_dict(arg: Any, is_input: bool = True) -> Dict[str, Any]:
    """A tensor spec (JSON form) from a NodeArg; a non-tensor output (a classifier's seq(map)) keeps ORT's type."""
    dtype = ONNX_DTYPES.get(arg.type)
    if dtype is None:
        if not is_input:
            return {"name": arg.name, "shape": [], "dtype": arg.type, "quantization": None}
        raise LoadError(f"input '{arg.name}' has type {arg.type}, which the toolkit cannot generate or feed",
                        "Only numeric and bool tensor inputs are supported", "usage")
    dims = arg.shape or []
    names = [d if isinstance(d, str) else None for d in dims]
    return {"name": arg.name, "shape": [d if isinstance(d, int) and d > 0 else None for d in dims], "dtype": dtype,
            "quantization": None, "dim_names": names if any(names) else []}


def session_options(ort: Any, threads: Optional[int], options: Dict[str, Any]) -> Any:
    so = ort.SessionOptions()
    so.log_severity_level = 3  # warnings about fallbacks are reported by describe(), not printed by ORT
    if threads:
        so.intra_op_num_threads = threads
    if options.get("inter_op_threads"):
        so.inter_op_num_threads = int(options["inter_op_threads"])
    level = options.get("graph_optimization") or "all"
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    return so


def create_session(path: str, threads: Optional[int], provider: Optional[str],
                   options: Dict[str, Any]) -> tuple:
    """(InferenceSession, requested provider, fallback text or None); LoadError for a file ORT refuses."""
    import onnxruntime as ort

    requested = provider or "cpu"
    wanted = PROVIDERS[requested]
    name = path.rsplit("/", 1)[-1]
    try:
        session = ort.InferenceSession(path, sess_options=session_options(ort, threads, options), providers=wanted)
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf/NotImplemented types
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        text = text if len(text) <= 300 else text[:300] + "..."
        if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
            # A valid file this build of ONNX Runtime has no kernel for: not the file's fault.
            raise LoadError(f"onnxruntime has no kernel for part of '{name}': {text}",
                            "Try another --backend, or re-export the model with a newer opset", "usage") from None
        if "bad_alloc" in text:  # the child's memory limit, or the machine's: not a damaged file
            raise LoadError(f"onnxruntime ran out of memory loading '{name}' ({text})",
                            "Raise the limit with --memory-limit MB if the machine has the memory", "usage") from None
        if "is not a registered function/op" in text:  # a valid file with an operator this build lacks
            raise LoadError(f"onnxruntime cannot load '{name}': {text}",
                            "The model uses a custom operator this onnxruntime does not have: export it without "
                            "the custom operator, or run it where its operator library is registered",
                            "usage") from None
        raise LoadError(f"onnxruntime cannot load '{name}': {text}",
                        "Check the file is a complete, valid .onnx model") from None
    running = session.get_providers()
    fallback = None
    if wanted[0] not in running:
        installed = ort.get_available_providers()
        why = ("this onnxruntime build does not include it: pip install onnxruntime-gpu"
               if wanted[0] not in installed else "it failed to initialise (drivers, CUDA/cuDNN/TensorRT libraries)")
        fallback = f"{wanted[0]} is not running, {running[0]} runs instead: {why}"
    return session, requested, fallback


def describe(session: Any, requested: str, fallback: Optional[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"requested": requested, "providers": session.get_providers()}
    if fallback:
        out["fallback"] = fallback
    return out


class DeviceSession:
    def __init__(self, session: Any, requested: str, fallback: Optional[str]):
        self.session, self.requested, self.fallback = session, requested, fallback
        self.input_specs: List[Dict[str, Any]] = [spec_dict(a) for a in session.get_inputs()]
        self.output_specs: List[Dict[str, Any]] = [spec_dict(a, is_input=False) for a in session.get_outputs()]
        self._out_names = [s["name"] for s in self.output_specs]

    def resize(self, shapes: Dict[str, Any]) -> None:
        pass  # ONNX Runtime takes any shape its graph allows on every run

    def run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        return dict(zip(self._out_names, self.session.run(self._out_names, inputs)))

    def bench_callable(self, inputs: Dict[str, Any]) -> Callable[[], Any]:
        return functools.partial(self.session.run, self._out_names, inputs)

    def describe(self) -> Dict[str, Any]:
        return describe(self.session, self.requested, self.fallback)


def open_session(path: str, threads: Optional[int], provider: Optional[str], options: Dict[str, Any],
                 precision: str = "") -> DeviceSession:
    return DeviceSession(*create_session(path, threads, provider, options))
