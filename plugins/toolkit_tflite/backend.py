"""TFLite backend over ai-edge-litert's Interpreter; XNNPACK is applied by default.

tflite-runtime (last release 2023) is a fallback for devices with nothing newer: it fails under numpy 2 and
cannot load dynamic-range int8 models made by TF 2.21, which `available()` says.
"""

from __future__ import annotations

import collections
import importlib.util
import warnings
import math
from typing import Any, Callable

import numpy as np

from toolkit.api import (Artifact, Availability, Backend, BackendOptions, MissingRuntimeError, ModelFileError,
                         PluginOption, Session, TensorSpec, UsageError, dequantize, first_line, library_versions)

from . import device


def _runtime() -> tuple[str, Any]:
    """(distribution name, interpreter module) of the best installed TFLite runtime."""
    try:
        return device.runtime()
    except ImportError:
        raise MissingRuntimeError("a TFLite runtime (ai-edge-litert)", "tflite") from None


class TFLiteSession(Session):
    """The device module's session (device.py, the code that also runs on devices), with the toolkit's specs and
    errors."""

    def __init__(self, session: device.DeviceSession, make_tracer: Callable[[bool], Any] | None = None,
                 xnnpack: bool = True):
        self.device = session
        self.interpreter, self.runtime = session.interpreter, session.runtime
        self.input_specs = [TensorSpec.from_dict(d) for d in session.input_specs]
        self.output_specs = [TensorSpec.from_dict(d) for d in session.output_specs]
        self._make_tracer, self._xnnpack = make_tracer, xnnpack  # (xnnpack) -> an interpreter keeping every tensor
        self._tracer: Any = None

    def trace(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every operator's outputs, from a second interpreter made on the first call with
        experimental_preserve_all_tensors (the benchmarked one is never touched); integer tensors dequantized with
        their own scales and zero points, per channel too."""
        if self._make_tracer is None:
            return super().trace(inputs)
        if self._tracer is None:
            self._tracer = _tracing_interpreter(self._make_tracer, self._xnnpack)
        interpreter = self._tracer
        try:
            device.resize_inputs(interpreter, {k: tuple(v.shape) for k, v in inputs.items()})
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], inputs[detail["name"]])
            interpreter.invoke()
        except (ValueError, RuntimeError) as e:
            raise UsageError(f"{self.runtime} cannot trace the model on these inputs: {first_line(e)}",
                             "Check the inputs against the model's") from None
        return _all_tensors(interpreter)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.device.run(inputs)

    def bench_callable(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return self.device.bench_callable(inputs)  # the interpreter's own invoke(): nothing of ours is timed

    def describe(self) -> dict[str, Any]:
        return self.device.describe()

    def resize(self, shapes: dict[str, tuple[int, ...]]) -> None:
        try:
            self.device.resize(shapes)
        except (ValueError, RuntimeError) as e:
            # The graph cannot take these shapes (a damaged shape signature, a --shape it was not made for).
            wanted = ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
            raise UsageError(f"{self.runtime} cannot resize the inputs to {wanted}: {first_line(e)}",
                             "Check --shape and --batch against the model's inputs, or re-export the model") from None


class TFLiteBackend(Backend):
    name = "tflite"
    formats = ("tflite",)
    extra = "tflite"
    priority = 10
    device_module = "toolkit_tflite.device"
    description = "TFLite models on LiteRT (ai-edge-litert), XNNPACK by default"
    options = (PluginOption("xnnpack", bool, True, "apply the XNNPACK delegate (off: LiteRT's builtin kernels)"),
               PluginOption("reference_kernels", bool, False, "LiteRT's reference kernels (BUILTIN_REF, no XNNPACK): "
                            "slow, the arithmetic the reference backend is held to"))

    def available(self) -> Availability:
        if importlib.util.find_spec("ai_edge_litert"):
            return Availability(True)
        if importlib.util.find_spec("tflite_runtime"):
            if int(np.__version__.split(".")[0]) >= 2:
                return Availability(False, "tflite-runtime (last released 2023) fails under numpy 2; "
                                           "ai-edge-litert is its successor", self.extra)
            return Availability(True)
        return Availability(False, "neither ai-edge-litert nor tflite-runtime is installed", self.extra)

    def versions(self) -> dict[str, str]:
        return library_versions("ai-edge-litert", "tflite-runtime", "numpy")

    def load(self, artifact: Artifact, options: BackendOptions) -> Session:
        runtime, module = _runtime()
        reference = bool(options.extra.get("reference_kernels", False))
        use_xnnpack = bool(options.extra.get("xnnpack", True)) and not reference
        try:
            interpreter = device.make_interpreter(module, runtime, artifact.path.read_bytes(), str(artifact.path),
                                                  options.threads, use_xnnpack, reference)
        except device.LoadError as e:
            raise ModelFileError(str(e), e.hint) from None
        delegate = device.delegate_name(use_xnnpack, artifact.precision, reference)

        def make_tracer(xnnpack: bool) -> Any:
            kwargs: dict[str, Any] = {"num_threads": options.threads, "experimental_preserve_all_tensors": True}
            kwargs.update(device.resolver_kwargs(module, xnnpack, reference))
            tracer = module.Interpreter(model_content=artifact.path.read_bytes(), **kwargs)
            tracer.allocate_tensors()
            return tracer

        return TFLiteSession(device.DeviceSession(interpreter, runtime, delegate), make_tracer, use_xnnpack)

    def inspect(self, artifact: Artifact) -> dict[str, Any]:
        """Operators, weights and multiply-accumulates as LiteRT reads the file, and which operators the XNNPACK
        delegate takes (the rest run on LiteRT's own kernels, usually much slower)."""
        session = self.load(artifact, BackendOptions())
        ops = session.interpreter._get_ops_details()  # noqa: SLF001 - LiteRT has no public per-node API
        tensors = {t["index"]: t for t in session.interpreter.get_tensor_details()}
        model = [op for op in ops if op["op_name"] != "DELEGATE"]
        produced = {t for op in model for t in op["outputs"]}
        graph_inputs = {d["index"] for d in session.interpreter.get_input_details()}
        constants = {t for op in model for t in op["inputs"] if t >= 0 and t not in produced and t not in graph_inputs}
        delegated = _delegated(ops, model)
        shape = lambda t: [max(1, int(d)) for d in tensors[t]["shape"]] if t in tensors else []  # noqa: E731
        count = lambda some: dict(sorted(collections.Counter(op["op_name"] for op in some).items()))  # noqa: E731
        return {
            "ops": count(model),
            "parameters": int(sum(math.prod(shape(t)) for t in constants)),
            "macs": int(sum(_macs(op, shape) for op in model)),
            "delegated": count(op for op in model if op["index"] in delegated),
            "not_delegated": count(op for op in model if op["index"] not in delegated),
        }


def _tracing_interpreter(make: Callable[[bool], Any], xnnpack: bool) -> Any:
    """An interpreter that keeps every tensor, on the session's kernels (XNNPACK takes each operator as a node of
    its own then), unless a delegate took several operators as one node: their tensors in between are never
    written, so the trace is then made on LiteRT's own kernels."""
    with warnings.catch_warnings():  # LiteRT warns that preserving every tensor is for debugging: it is
        warnings.simplefilter("ignore")
        interpreter = make(xnnpack)
        ops = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT has no public per-node API
        model = [op for op in ops if op["op_name"] != "DELEGATE"]
        nodes = sum(op["op_name"] == "DELEGATE" for op in ops)
        if xnnpack and len(_delegated(ops, model)) > nodes:
            interpreter = make(False)
    return interpreter


def _all_tensors(interpreter: Any) -> dict[str, np.ndarray]:
    """Every operator's outputs in execution order, by tensor name, integer ones with quantization parameters
    as real numbers."""
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    out: dict[str, np.ndarray] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - in execution order
        if op["op_name"] == "DELEGATE":
            continue
        for index in op["outputs"]:
            detail = details.get(int(index))
            if detail is None or detail["name"] in out:
                continue
            try:
                value = np.array(interpreter.get_tensor(int(index)))
            except ValueError:  # a tensor the runtime freed or never filled
                continue
            qp = detail.get("quantization_parameters") or {}
            if len(qp.get("scales", ())) and not np.issubdtype(value.dtype, np.floating):
                value = dequantize(value, qp["scales"], qp["zero_points"], int(qp.get("quantized_dimension", 0)))
            out[detail["name"]] = value
    return out


def _delegated(ops: list[dict[str, Any]], model: list[dict[str, Any]]) -> set[int]:
    """Indices of the model's operators that a DELEGATE node replaced: walking back from each delegate node's
    outputs through the operators that produce them, up to its inputs."""
    producer = {t: op for op in model for t in op["outputs"]}
    taken: set[int] = set()
    for node in (op for op in ops if op["op_name"] == "DELEGATE"):
        boundary, todo = set(node["inputs"]), list(node["outputs"])
        while todo:
            op = producer.get(todo.pop())
            if op is None or op["index"] in taken:
                continue
            taken.add(op["index"])
            todo.extend(t for t in op["inputs"] if t not in boundary)
    return taken


def _macs(op: dict[str, Any], shape: Callable[[int], list[int]]) -> int:
    """Multiply-accumulates of one operator per sample, for the operators that do nearly all of them."""
    name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])  # numpy arrays in LiteRT's details
    if not outs or len(ins) < 2:
        return 0
    out, weight = shape(outs[0]), shape(ins[1])
    if out and out[0] > 1:
        out = [1, *out[1:]]  # per sample
    if name == "CONV_2D" and len(weight) == 4:
        return math.prod(out) * math.prod(weight[1:])
    if name == "DEPTHWISE_CONV_2D" and len(weight) == 4:
        return math.prod(out) * weight[1] * weight[2]
    if name == "FULLY_CONNECTED" and weight:
        return math.prod(out) * weight[-1]
    if name == "BATCH_MATMUL":
        return math.prod(out) * (shape(ins[0]) or [0])[-1]
    return 0
