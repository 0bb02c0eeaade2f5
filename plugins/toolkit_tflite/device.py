"""The TFLite backend as it runs on a device: this file is shipped there by remote runners (ssh) and imports only
the standard library, numpy and the runtime (ai-edge-litert, or tflite-runtime), never the toolkit.

The contract every backend's device module follows (docs/writing-a-runner-plugin.md): REQUIREMENTS, versions(),
open_session(path, threads, provider, options) returning an object with input_specs/output_specs (spec dicts),
resize(), run(), bench_callable() and describe(). The local backend (backend.py) uses the same helpers.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Dict, List, Optional

import numpy as np

# Import names the device needs, any one of each group, with what to pip install for it.
REQUIREMENTS = [(("numpy",), "numpy"), (("ai_edge_litert", "tflite_runtime"), "ai-edge-litert")]


class LoadError(Exception):
    """The runtime refused the model file; `hint` says what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


def runtime() -> tuple:
    """(distribution name, interpreter module) of the best installed TFLite runtime; ImportError when none."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert import interpreter

        return "ai-edge-litert", interpreter
    if importlib.util.find_spec("tflite_runtime") is not None:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]

        return "tflite-runtime", interpreter
    raise ImportError("neither ai-edge-litert nor tflite-runtime is installed")


def versions() -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("ai-edge-litert", "tflite-runtime", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def spec_dict(detail: Dict[str, Any]) -> Dict[str, Any]:
    """A tensor spec (JSON form) from an interpreter's get_input_details()/get_output_details() entry."""
    signature = detail.get("shape_signature", detail["shape"])
    qp = detail.get("quantization_parameters") or {}
    scales, zeros = qp.get("scales", np.array([])), qp.get("zero_points", np.array([]))
    quant = None
    if len(scales):
        quant = {"scale": [float(s) for s in scales], "zero_point": [int(z) for z in zeros],
                 "axis": int(qp.get("quantized_dimension", 0)) if len(scales) > 1 else None}
    return {"name": detail["name"], "shape": [None if int(d) < 0 else int(d) for d in signature],
            "dtype": np.dtype(detail["dtype"]).name, "quantization": quant}


def resolver_kwargs(module: Any, xnnpack: bool, reference: bool = False) -> Dict[str, Any]:
    """The Interpreter's kernels: XNNPACK (LiteRT's default), LiteRT's optimised builtin kernels, or its reference
    kernels (BUILTIN_REF: slow, plain C++, the arithmetic the TFLite spec describes)."""
    if not hasattr(module, "OpResolverType"):
        return {}
    if reference:
        return {"experimental_op_resolver_type": module.OpResolverType.BUILTIN_REF}
    if not xnnpack:
        return {"experimental_op_resolver_type": module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    return {}


def make_interpreter(module: Any, runtime_name: str, data: bytes, name: str, threads: Optional[int],
                     xnnpack: bool, reference: bool = False) -> Any:
    kwargs: Dict[str, Any] = {"num_threads": threads}
    kwargs.update(resolver_kwargs(module, xnnpack, reference))
    try:
        # model_content runs the flatbuffer verifier; model_path would skip it.
        interpreter = module.Interpreter(model_content=data, **kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        hint = "Check the file is a complete .tflite model made for this runtime"
        if "Select TensorFlow op" in str(e) or "Flex" in str(e):
            hint = ("The model needs TensorFlow's Flex delegate (Select TF ops), which edge runtimes do not ship: "
                    "convert it again without -o allow_flex=true, replacing the layers that need it")
        elif runtime_name == "tflite-runtime":  # it predates the op versions TF 2.21 writes (FULLY_CONNECTED v12)
            hint = "tflite-runtime 2.14 cannot run ops newer TensorFlow writes: pip install ai-edge-litert"
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LoadError(f"{runtime_name} cannot load '{name}': {text}", hint) from None
    return interpreter


def resize_inputs(interpreter: Any, shapes: Dict[str, Any]) -> None:
    """Resize the inputs named in `shapes` that differ, then reallocate; ValueError/RuntimeError when it can't."""
    changed = False
    for detail in interpreter.get_input_details():
        want = shapes.get(detail["name"])
        if want is not None and tuple(detail["shape"]) != tuple(want):
            interpreter.resize_tensor_input(detail["index"], list(want))
            changed = True
    if changed:
        interpreter.allocate_tensors()


class DeviceSession:
    def __init__(self, interpreter: Any, runtime_name: str, delegate: str):
        self.interpreter = interpreter
        self.runtime, self.delegate = runtime_name, delegate
        self._in = interpreter.get_input_details()
        self._out = interpreter.get_output_details()
        self.input_specs: List[Dict[str, Any]] = [spec_dict(d) for d in self._in]
        self.output_specs: List[Dict[str, Any]] = [spec_dict(d) for d in self._out]

    def resize(self, shapes: Dict[str, Any]) -> None:
        resize_inputs(self.interpreter, shapes)

    def _set_inputs(self, inputs: Dict[str, np.ndarray]) -> None:
        for detail in self._in:
            self.interpreter.set_tensor(detail["index"], inputs[detail["name"]])

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self._set_inputs(inputs)
        self.interpreter.invoke()
        return {d["name"]: self.interpreter.get_tensor(d["index"]).copy() for d in self._out}

    def bench_callable(self, inputs: Dict[str, np.ndarray]) -> Callable[[], Any]:
        self._set_inputs(inputs)  # inputs stay in the interpreter's buffers: only invoke() is timed
        return self.interpreter.invoke

    def describe(self) -> Dict[str, Any]:
        return {"runtime": self.runtime, "delegate": self.delegate}


def open_session(path: str, threads: Optional[int], provider: Optional[str], options: Dict[str, Any],
                 precision: str = "") -> DeviceSession:
    runtime_name, module = runtime()
    reference = bool(options.get("reference_kernels", False))
    xnnpack = bool(options.get("xnnpack", True)) and not reference
    with open(path, "rb") as f:
        data = f.read()
    interpreter = make_interpreter(module, runtime_name, data, path.rsplit("/", 1)[-1], threads, xnnpack, reference)
    return DeviceSession(interpreter, runtime_name, delegate_name(xnnpack, precision, reference))


def delegate_name(xnnpack: bool, precision: str, reference: bool = False) -> str:
    """What runs the model: XNNPACK takes no int16x8 operators, which stay on LiteRT's own kernels."""
    if reference:
        return "reference kernels"
    return "xnnpack" if xnnpack and precision != "int16x8" else "builtin kernels"
