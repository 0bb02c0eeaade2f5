"""The measuring protocol, self-contained: timing, statistics, peak memory, environment, generated inputs and
output checks. It imports only the Python standard library and numpy, never the rest of the toolkit, so the
same file can be shipped to a device that has nothing but python3, numpy and a runtime.

Tensor specs here are their JSON form: {"name", "shape" (None for a dynamic dimension), "dtype",
"quantization": {"scale", "zero_point", "axis"} or None}.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

PROTOCOL_VERSION = 1
MIN_RUNS_UNDER_BUDGET = 10
# A run is flagged unstable when its tail is far from its median: noisy neighbours, throttling, too few runs.
UNSTABLE_P90_OVER_P50 = 1.3
# The ISA features that decide which kernels a runtime picks.
INTERESTING_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                     "avx_vnni", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
                     "fphp", "asimdhp")


class ProtocolError(ValueError):
    """A measurement that cannot be trusted or made: wrong outputs, inputs that cannot be generated."""


# ---------------------------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], runs: int, warmup: int,
               max_seconds: float | None = None) -> tuple[int, list[int]]:
    """Time `fn` alone: one first run, `warmup` untimed runs, then up to `runs` timed ones (ns each)."""
    clock = time.perf_counter_ns
    t = clock()
    fn()
    first_ns = clock() - t
    for _ in range(warmup):
        fn()
    deadline = clock() + int(max_seconds * 1e9) if max_seconds else None
    times = [0] * runs
    done = runs
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call measures Python, not the runtime
    try:
        for i in range(runs):
            t = clock()
            fn()
            end = clock()
            times[i] = end - t
            if deadline is not None and end > deadline and i + 1 >= MIN_RUNS_UNDER_BUDGET:
                done = i + 1
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return first_ns, times[:done]


def latency_summary(times_ns: Sequence[int]) -> dict[str, float]:
    us = np.asarray(times_ns, dtype=np.float64) / 1000.0
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return {
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(us.mean()), 3),
        "std": round(float(us.std()), 3),
        "min": round(float(us.min()), 3),
        "max": round(float(us.max()), 3),
    }


def is_unstable(summary: Mapping[str, float], runs: int) -> bool:
    return runs < MIN_RUNS_UNDER_BUDGET or summary["p90"] > UNSTABLE_P90_OVER_P50 * summary["p50"]


# ---------------------------------------------------------------------------------------------- memory, machine
def peak_rss_mb() -> float | None:
    """This process's own peak resident memory (VmHWM). ru_maxrss is not used: Linux carries it across fork and
    exec, so a child would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None


_CPU_INFO: dict[str, Any] | None = None


def cpu_info() -> dict[str, Any]:
    global _CPU_INFO
    if _CPU_INFO is None:
        model, flags = platform.processor() or platform.machine(), set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    if key in ("model name", "hardware", "cpu model") and value.strip():
                        model = value.strip()
                    elif key in ("flags", "features"):
                        flags.update(value.split())
        except OSError:
            pass
        _CPU_INFO = {"cpu": model, "isa": sorted(f for f in flags if f in INTERESTING_FLAGS)}
    return _CPU_INFO


def ram_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def environment(runtime_versions: Mapping[str, str] | None = None, toolkit_version: str | None = None) -> dict:
    info = cpu_info()
    return {
        "cpu": info["cpu"],
        "isa": info["isa"],
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_mb": ram_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "toolkit": toolkit_version,
        "runtime_versions": dict(runtime_versions or {}),
    }


# ---------------------------------------------------------------------------------------------- inputs, outputs
def make_inputs(specs: Sequence[Mapping[str, Any]], shapes: Mapping[str, Sequence[int]],
                seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic inputs per declared dtype. Integers are 0/1 (valid as token ids, masks and indices alike);
    quantized integer inputs span their whole range."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(shapes[spec["name"]])
        try:
            dtype = np.dtype(spec["dtype"])
        except (TypeError, ValueError):
            raise ProtocolError(f"input '{spec['name']}' has dtype {spec['dtype']}, which numpy cannot make; "
                                "pass real inputs with --inputs FILE.npz") from None
        if dtype == np.bool_:
            out[spec["name"]] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.floating):
            out[spec["name"]] = rng.random(shape, dtype=np.float32).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            if spec.get("quantization"):
                info = np.iinfo(dtype)
                out[spec["name"]] = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
            else:
                out[spec["name"]] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            raise ProtocolError(f"input '{spec['name']}' has dtype {spec['dtype']}, which cannot be made up; "
                                "pass real inputs with --inputs FILE.npz")
        out[spec["name"]] = np.asarray(out[spec["name"]])  # a 0-d input comes back from numpy as a scalar
    return out


def shape_fits(declared: Sequence[int | None], actual: Sequence[int]) -> bool:
    """Same rank, and every fixed dimension equal (None is a dynamic dimension)."""
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


def fmt_shape(shape: Sequence[int | None]) -> str:
    """[?, 10] for a shape with a dynamic first dimension."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def anonymous_dim(dim_name: str | None) -> bool:
    """Whether a dimension is unnamed, or named by a converter that knew nothing about it (tf2onnx: unk__48):
    such a name ties nothing together and means nothing to a user."""
    return dim_name is None or dim_name.startswith("unk__")


def tensor_dtype(dtype: str) -> np.dtype | None:
    """The numpy dtype of a tensor spec's dtype; None for sequences and maps (an ONNX classifier's), whose type
    names differ from runtime to runtime."""
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError):
        return None


def follows_batch(spec: Mapping[str, Any], batch_dim_name: str | None) -> bool:
    """Whether an output's dynamic first dimension is the batch: it carries the inputs' batch dimension name, or
    it is unnamed (or anonymously named) while the batch is too. A differently named one (num_boxes) is not."""
    shape = spec.get("shape") or ()
    if not shape or shape[0] is not None:
        return False
    names = spec.get("dim_names") or ()
    name = names[0] if names else None
    return name == batch_dim_name or (anonymous_dim(name) and anonymous_dim(batch_dim_name))


def check_outputs(outputs: Mapping[str, Any], specs: Sequence[Mapping[str, Any]], batch: int | None = None,
                  batch_dim_name: str | None = None) -> None:
    """Raise ProtocolError unless `outputs` has every declared output, each an array of the declared dtype and
    a shape that fits the declared one (dynamic dimensions allowed). Extra outputs are an error too. With
    `batch` (the size fed along the inputs' dynamic batch dimension), an output whose dynamic first dimension
    follows the batch must have exactly that many rows: a backend that answers for part of a batch is wrong."""
    names = [s["name"] for s in specs]
    if not isinstance(outputs, Mapping):
        raise ProtocolError(f"run() returned a {type(outputs).__name__}, not a dict of outputs by name")
    missing = [n for n in names if n not in outputs]
    extra = [n for n in outputs if n not in names]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"undeclared {', '.join(map(str, extra))}"]
                                                                          if extra else [])
        raise ProtocolError(f"outputs do not match the declared ones ({'; '.join(parts)}); declared: "
                            f"{', '.join(names)}")
    for spec in specs:
        value = outputs[spec["name"]]
        want = tensor_dtype(spec["dtype"])
        if want is None:
            continue  # non-tensor outputs (an ONNX classifier's seq(map)) are returned as the runtime gives them
        if not isinstance(value, np.ndarray):
            raise ProtocolError(f"output '{spec['name']}' is a {type(value).__name__}, not a numpy array")
        if value.dtype != want:
            raise ProtocolError(f"output '{spec['name']}' has dtype {value.dtype}, the model declares {spec['dtype']}")
        if not shape_fits(spec["shape"], value.shape):
            raise ProtocolError(f"output '{spec['name']}' has shape {list(value.shape)}, the model declares "
                                f"{fmt_shape(spec['shape'])}")
        if batch is not None and follows_batch(spec, batch_dim_name) and value.shape[0] != batch:
            raise ProtocolError(f"output '{spec['name']}' has {value.shape[0]} rows for a batch of {batch}")


# ---------------------------------------------------------------------------------------------- task metrics
def per_sample(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)


def task_metrics(task: str, output: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Sums over one batch, to be combined by finish_metrics: classification counts correct top-1 answers;
    regression sums absolute and squared errors."""
    out = per_sample(np.asarray(output, dtype=np.float64))
    if len(out) != len(targets):
        raise ValueError(f"{len(out)} answers for {len(targets)} samples")
    if task == "classification":
        return {"correct": float((out.argmax(axis=1) == np.asarray(targets).reshape(-1)).sum()), "n": float(len(out))}
    y = per_sample(np.asarray(targets, dtype=np.float64))
    if y.shape != out.shape:
        raise ValueError(f"targets of shape {list(y.shape)} do not fit outputs of shape {list(out.shape)}")
    err = out - y
    return {"abs": float(np.abs(err).sum()), "sq": float((err ** 2).sum()), "count": float(err.size),
            "n": float(len(out))}


def finish_metrics(task: str, sums: Mapping[str, float]) -> dict[str, Any]:
    n = int(sums.get("n", 0))
    if task == "classification":
        return {"top1": sums["correct"] / n if n else None, "samples": n}
    count = sums.get("count", 0)
    return {"mae": sums["abs"] / count if count else None,
            "rmse": float(np.sqrt(sums["sq"] / count)) if count else None, "samples": n}


def add_sums(total: dict[str, float], part: Mapping[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


# ---------------------------------------------------------------------------------------------- quantization
def quantize(real: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """Real values in a tensor spec's dtype: through its scale and zero point when it is a quantized integer."""
    q = spec.get("quantization")
    if not q or np.issubdtype(np.dtype(spec["dtype"]), np.floating):
        return np.asarray(real).astype(spec["dtype"], copy=False)
    info = np.iinfo(np.dtype(spec["dtype"]))
    values = np.round(np.asarray(real) / q["scale"][0]) + q["zero_point"][0]
    return np.clip(values, info.min, info.max).astype(spec["dtype"])


def dequantize(values: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """A tensor's values as real numbers (float32)."""
    q = spec.get("quantization")
    if not q or np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float32) - q["zero_point"][0]) * np.float32(q["scale"][0])
