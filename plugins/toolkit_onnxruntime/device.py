"""The ONNX Runtime backend as it runs on a device: this file is shipped there by remote runners (ssh) and imports
only the standard library, numpy and onnxruntime, never the toolkit. The local backend (backend.py) builds its
sessions with the same helpers. The contract: docs/writing-a-runner-plugin.md.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

REQUIREMENTS = [(("numpy",), "numpy"), (("onnxruntime",), "onnxruntime")]

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}

# -o options that only a GPU provider takes: (option, the providers that take it).
GPU_OPTIONS = (("trt_fp16", ("tensorrt",)), ("trt_int8", ("tensorrt",)), ("trt_cache", ("tensorrt",)),
               ("cuda_device", ("cuda", "tensorrt")))

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


def trt_cache_dir(options: Dict[str, Any]) -> str:
    """The TensorRT engine cache folder: -o trt_cache, else $XDG_CACHE_HOME/edge-toolkit/tensorrt, else
    ~/.cache/edge-toolkit/tensorrt (an XDG_CACHE_HOME that is not absolute is ignored, as the XDG spec says)."""
    given = options.get("trt_cache")
    if given:
        return os.path.abspath(os.path.expanduser(str(given)))
    base = os.environ.get("XDG_CACHE_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge-toolkit", "tensorrt")


def provider_list(requested: str, options: Dict[str, Any]) -> List[Any]:
    """The providers argument of ort.InferenceSession for --provider `requested` and the backend's -o options:
    names, or (name, options) tuples for CUDA and TensorRT. A GPU option the provider does not take is refused."""
    if requested not in PROVIDERS:
        raise LoadError(f"onnxruntime has no provider '{requested}'",
                        f"Use --provider {', '.join(PROVIDERS)}", "usage")
    for name, takers in GPU_OPTIONS:
        if options.get(name) not in (None, False, 0, "") and requested not in takers:  # given, not its default
            needs = " or ".join(f"--provider {t}" for t in takers)
            raise LoadError(f"-o {name} is for {needs}, but the provider is {requested}",
                            f"Add {needs}, or drop -o {name}", "usage")
    device = int(options.get("cuda_device") or 0)
    if device < 0:
        raise LoadError(f"-o cuda_device={device} is not a GPU index", "Give 0 for the first GPU, 1 for the second",
                        "usage")
    out: List[Any] = []
    for name in PROVIDERS[requested]:
        if name == "TensorrtExecutionProvider":
            out.append((name, {"device_id": device, "trt_fp16_enable": bool(options.get("trt_fp16")),
                               "trt_int8_enable": bool(options.get("trt_int8")), "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": trt_cache_dir(options)}))
        elif name == "CUDAExecutionProvider":
            out.append((name, {"device_id": device}))
        else:
            out.append(name)
    return out


def provider_options(providers: List[Any]) -> Dict[str, Dict[str, Any]]:
    """The options given to each provider that takes some (CUDA, TensorRT), by provider name."""
    return {p[0]: dict(p[1]) for p in providers if isinstance(p, tuple)}


def create_session(path: str, threads: Optional[int], provider: Optional[str],
                   options: Dict[str, Any], providers: Optional[List[Any]] = None) -> tuple:
    """(InferenceSession, requested provider, fallback text or None); LoadError for a file ORT refuses.
    `providers` is provider_list(provider, options) when the caller already made it."""
    import onnxruntime as ort

    requested = provider or "cpu"
    wanted = providers if providers is not None else provider_list(requested, options)
    first = PROVIDERS[requested][0]
    name = path.rsplit("/", 1)[-1]
    cache = provider_options(wanted).get("TensorrtExecutionProvider", {}).get("trt_engine_cache_path")
    if cache and "TensorrtExecutionProvider" in ort.get_available_providers():
        try:  # created only where TensorRT can use it
            os.makedirs(cache, exist_ok=True)
        except OSError as e:
            raise LoadError(f"the TensorRT engine cache folder '{cache}' cannot be created ({e.strerror})",
                            "Pick a folder you can write to with -o trt_cache=DIR", "usage") from None
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
    if first not in running:
        installed = ort.get_available_providers()
        why = ("this onnxruntime build does not include it: pip install onnxruntime-gpu"
               if first not in installed else "it failed to initialise (drivers, CUDA/cuDNN/TensorRT libraries)")
        fallback = f"{first} is not running, {running[0]} runs instead: {why}"
    return session, requested, fallback


def count_nodes(events: List[Dict[str, Any]]) -> Dict[str, Dict[str, int]]:
    """{provider: {op type: nodes}} from an ONNX Runtime profile: each "Node" event names its node, op_name and
    provider; a node that has several events (fences, a loop body run many times) counts once."""
    ran: Dict[Tuple[str, str], str] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("cat") != "Node":
            continue
        args = event.get("args") or {}
        op, provider = args.get("op_name"), args.get("provider")
        if not op or not provider:
            continue
        node = str(event.get("name", ""))
        for suffix in ("_kernel_time", "_fence_before", "_fence_after"):
            if node.endswith(suffix):
                node = node[:-len(suffix)]
                break
        ran[(str(provider), node)] = str(op)
    out: Dict[str, Dict[str, int]] = {}
    for (provider, _), op in sorted(ran.items()):
        ops = out.setdefault(provider, {})
        ops[op] = ops.get(op, 0) + 1
    return {p: dict(sorted(ops.items())) for p, ops in out.items()}


def profile_nodes(path: str, threads: Optional[int], options: Dict[str, Any], providers: List[Any],
                  inputs: Dict[str, Any]) -> Dict[str, Dict[str, int]]:
    """Which provider ran which nodes, as ONNX Runtime's own profiler reports it: a separate, short-lived session
    with the same providers and session options, run once on `inputs`; its profile file is deleted."""
    import onnxruntime as ort

    folder = tempfile.mkdtemp(prefix="toolkit-ort-profile-")
    try:
        so = session_options(ort, threads, options)
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(path, sess_options=so, providers=providers)
        try:
            session.run(None, inputs)
        finally:
            profile = session.end_profiling()
        del session
        with open(profile, encoding="utf-8") as f:
            events = json.load(f)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if isinstance(events, dict):  # a profile written as {"traceEvents": [...]}
        events = events.get("traceEvents") or []
    return count_nodes(events)


def describe(session: Any, requested: str, fallback: Optional[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"requested": requested, "providers": session.get_providers()}
    if fallback:
        out["fallback"] = fallback
    return out


class DeviceSession:
    def __init__(self, session: Any, requested: str, fallback: Optional[str], path: Optional[str] = None,
                 threads: Optional[int] = None, options: Optional[Dict[str, Any]] = None,
                 providers: Optional[List[Any]] = None):
        self.session, self.requested, self.fallback = session, requested, fallback
        self.input_specs: List[Dict[str, Any]] = [spec_dict(a) for a in session.get_inputs()]
        self.output_specs: List[Dict[str, Any]] = [spec_dict(a, is_input=False) for a in session.get_outputs()]
        self._out_names = [s["name"] for s in self.output_specs]
        self._path, self._threads, self._options = path, threads, dict(options or {})
        self._providers = providers if providers is not None else provider_list(requested, self._options)
        self._last_inputs: Optional[Dict[str, Any]] = None  # what the profiling session runs on
        self._nodes: Optional[Dict[str, Dict[str, int]]] = None
        self._profiled = False

    def resize(self, shapes: Dict[str, Any]) -> None:
        pass  # ONNX Runtime takes any shape its graph allows on every run

    def run(self, inputs: Dict[str, Any]) -> Dict[str, Any]:
        self._last_inputs = inputs
        return dict(zip(self._out_names, self.session.run(self._out_names, inputs)))

    def bench_callable(self, inputs: Dict[str, Any]) -> Callable[[], Any]:
        return functools.partial(self.session.run, self._out_names, inputs)

    def nodes(self) -> Optional[Dict[str, Dict[str, int]]]:
        """{provider: {op type: nodes}} as ONNX Runtime assigned them, profiled once on the last inputs run();
        None when there is nothing to profile or profiling failed (it never fails the benchmark)."""
        if not self._profiled and self._path and self._last_inputs is not None:
            self._profiled = True
            try:
                self._nodes = profile_nodes(self._path, self._threads, self._options, self._providers,
                                            self._last_inputs) or None
            except Exception:  # noqa: BLE001 - the profile is extra information, never a reason to fail
                self._nodes = None
        return self._nodes

    def describe(self) -> Dict[str, Any]:
        out = describe(self.session, self.requested, self.fallback)
        given = provider_options(self._providers)
        if given:
            out["provider_options"] = given
        nodes = self.nodes()
        if nodes:
            out["nodes"] = nodes
        return out


def open_session(path: str, threads: Optional[int], provider: Optional[str], options: Dict[str, Any],
                 precision: str = "") -> DeviceSession:
    providers = provider_list(provider or "cpu", options)
    session, requested, fallback = create_session(path, threads, provider, options, providers)
    return DeviceSession(session, requested, fallback, path, threads, options, providers)
