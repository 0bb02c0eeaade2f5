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

PROTOCOL_VERSION = 2
MIN_RUNS_UNDER_BUDGET = 10
# The defaults of the protocol (every one configurable): warm up for at least WARMUP_RUNS and WARMUP_SECONDS, then
# time at least RUNS calls and MIN_SECONDS, in WINDOWS consecutive windows.
WARMUP_RUNS, WARMUP_SECONDS, RUNS, MIN_SECONDS, WINDOWS = 10, 0.5, 100, 1.0, 5
# A measurement is unstable when its robust spread (1.4826 x MAD / median, the CV a normal distribution with the
# same MAD would have) or the disagreement of its windows' medians passes this. The plain CV (std / mean) is
# reported too, but it is no test: a handful of preempted calls among thousands (one 57 us call beside a 15 us
# median) puts it at 20-40 % on an ordinary machine, so it would flag every run and tell nothing.
UNSTABLE_SPREAD = 0.10
# ... or when the mean is this far above the median: rare calls so slow that they carry much of the time, which the
# percentiles hide and the throughput (a mean) does not.
UNSTABLE_MEAN_OVER_MEDIAN = 1.25
SAMPLES_KEPT = 2000  # per record, in time order, for distributions and comparisons
BLOCKS_KEPT = 100  # the mean of each of this many consecutive blocks of calls: the sustained rate, over time
# The ISA features that decide which kernels a runtime picks.
INTERESTING_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                     "avx_vnni", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
                     "fphp", "asimdhp", "avx512_fp16")
# The same features by the names users look for, across x86 and Arm: (name, any of these flags).
FEATURES = (("avx2", ("avx2",)), ("avx512", ("avx512f",)), ("vnni", ("avx512_vnni", "avx_vnni")),
            ("amx", ("amx_int8", "amx_bf16")), ("neon", ("neon", "asimd")), ("dotprod", ("asimddp",)),
            ("i8mm", ("i8mm",)), ("sve", ("sve",)),
            ("fp16", ("avx512_fp16", "fphp", "asimdhp")))  # fp16 arithmetic: x86's f16c only converts


class ProtocolError(ValueError):
    """A measurement that cannot be trusted or made: wrong outputs, inputs that cannot be generated."""


# ---------------------------------------------------------------------------------------------- timing
def time_calls(fn: Callable[[], Any], runs: int, warmup: int, max_seconds: float | None = None,
               min_seconds: float = 0.0, warmup_seconds: float = 0.0) -> tuple[int, list[int]]:
    """Time `fn` alone: one first run; untimed warm-up runs until both `warmup` runs and `warmup_seconds` are
    done; then timed runs (ns each) until both `runs` and `min_seconds` are reached. `max_seconds` stops the timed
    runs early (after at least MIN_RUNS_UNDER_BUDGET of them)."""
    clock = time.perf_counter_ns
    t = clock()
    fn()
    first_ns = clock() - t
    warm_end = clock() + int(warmup_seconds * 1e9)
    done = 0
    while done < warmup or clock() < warm_end:
        fn()
        done += 1
    times: list[int] = []
    append = times.append
    start = clock()
    min_end = start + int(min_seconds * 1e9)
    deadline = start + int(max_seconds * 1e9) if max_seconds else None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call measures Python, not the runtime
    try:
        while True:
            t = clock()
            fn()
            end = clock()
            append(end - t)  # the bookkeeping below is outside the timed call
            n = len(times)
            if n >= runs and end >= min_end:
                break
            if deadline is not None and end > deadline and n >= MIN_RUNS_UNDER_BUDGET:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return first_ns, times


def latency_summary(times_ns: Sequence[int]) -> dict[str, float]:
    """Percentiles, mean, standard deviation, extremes and the median absolute deviation, in microseconds."""
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
        "mad": round(float(np.median(np.abs(us - p50))), 3),
    }


def stability(times_ns: Sequence[int], windows: int = WINDOWS) -> dict[str, Any]:
    """How far the numbers can be trusted: the CV (std / mean), the robust spread (1.4826 x MAD / median), the
    medians of `windows` consecutive windows and how much they disagree ((max - min) / overall median), and the
    reasons the measurement is unstable (none: it is stable)."""
    us = np.asarray(times_ns, dtype=np.float64) / 1000.0
    parts = [p for p in np.array_split(us, max(1, min(windows, len(us)))) if len(p)]
    return judge(us, [float(np.median(p)) for p in parts], len(us), float(us.mean()), float(us.std()))


def judge(us: Any, window_p50: Sequence[float], runs: int, mean: float, std: float) -> dict[str, Any]:
    """The stability figures of timings `us` (all of them, or an even subsample), their windows' medians, and the
    exact run count, mean and standard deviation."""
    median = float(np.median(us))
    cv = std / mean if mean > 0 else 0.0
    robust = float(1.4826 * np.median(np.abs(np.asarray(us) - median)) / median) if median > 0 else 0.0
    spread = (max(window_p50) - min(window_p50)) / median if median > 0 and len(window_p50) > 1 else 0.0
    reasons = []
    if runs < MIN_RUNS_UNDER_BUDGET:
        reasons.append(f"only {runs} run{'s' if runs != 1 else ''}")
    if robust > UNSTABLE_SPREAD:
        reasons.append(f"robust spread {robust:.1%} > {UNSTABLE_SPREAD:.0%}")
    if spread > UNSTABLE_SPREAD:
        reasons.append(f"the {len(window_p50)} windows' medians differ by {spread:.1%} > {UNSTABLE_SPREAD:.0%}")
    if median > 0 and mean > UNSTABLE_MEAN_OVER_MEDIAN * median:
        reasons.append(f"the mean is {mean / median - 1:.0%} above the median (rare, very slow calls)")
    return {"cv": round(cv, 4), "robust_cv": round(robust, 4), "windows_p50_us": [round(w, 3) for w in window_p50],
            "window_spread": round(spread, 4), "reasons": reasons}


def kept_samples(times_ns: Sequence[int], keep: int = SAMPLES_KEPT) -> list[float]:
    """At most `keep` samples in microseconds, evenly spaced in time (every k-th), so a slow phase stays visible."""
    step = max(1, -(-len(times_ns) // keep))
    return [round(t / 1000.0, 3) for t in list(times_ns)[::step]]


def block_means(times_ns: Sequence[int], blocks: int = BLOCKS_KEPT) -> list[float]:
    """The mean latency (us) of each of `blocks` consecutive, near-equal blocks of the timed calls: every call
    counts, the rare long ones included, so these carry the sustained rate that a subsample would miss."""
    us = np.asarray(times_ns, dtype=np.float64) / 1000.0
    return [round(float(p.mean()), 3) for p in np.array_split(us, max(1, min(blocks, len(us)))) if len(p)]


def summarise(first_ns: int, times_ns: Sequence[int], batch: int, windows: int = WINDOWS) -> dict[str, Any]:
    """The measured fields of a record, from one timed series: latency, stability, throughput (samples per second
    over the whole timed series, the sustained rate), first-run time and the kept samples."""
    latency = latency_summary(times_ns)
    stable = stability(times_ns, windows)
    total_s = sum(times_ns) / 1e9
    return {
        "latency_us": latency, "runs": len(times_ns), "stability": stable, "unstable": bool(stable["reasons"]),
        "throughput_per_s": round(batch * len(times_ns) / total_s, 2) if total_s > 0 else None,
        "first_run_ms": round(first_ns / 1e6, 3), "samples_us": kept_samples(times_ns),
        "block_means_us": block_means(times_ns),
    }


def check_cpus(cpus: Sequence[int]) -> None:
    """Raise ProtocolError unless this process may run on every one of `cpus`."""
    if not hasattr(os, "sched_setaffinity"):
        raise ProtocolError("pinning to CPUs needs Linux (sched_setaffinity)")
    allowed = sorted(os.sched_getaffinity(0))
    bad = [c for c in cpus if c not in allowed]
    if bad:
        raise ProtocolError(f"--pin {','.join(map(str, cpus))}: CPU {compact_cpus(bad)} is not available "
                            f"here (this process may use {compact_cpus(allowed)})")


def pin_to(cpus: Sequence[int] | None) -> None:
    """Run this process (and the threads it starts from now on) on `cpus` only."""
    if cpus:
        check_cpus(cpus)
        os.sched_setaffinity(0, set(cpus))


def compact_cpus(cpus: Sequence[int]) -> str:
    """0-3,6 for [0, 1, 2, 3, 6]."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(c)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


# A short single-precision matrix product: what this machine's BLAS does at best, for the cost model's share of
# peak. Measured in every measuring process before pinning and before the runtime loads (no runtime thread
# spinning beside it), briefly; the best figure of the last week for these CPUs is kept beside the caller's
# other cached files and used when it is higher, so a reading taken while the machine was busy never sticks.
CALIBRATION_N = 512
CALIBRATION_KEEP_S = 7 * 86_400


def peak_gflops(cache_dir: str | None = None, seconds: float | None = None) -> float | None:
    """The best GFLOP/s of numpy's float32 matrix product on the CPUs this process may use: measured now for
    `seconds` (default $TOOLKIT_BENCH_PEAK_SECONDS, else 0.2), or the week's best for these CPUs if higher."""
    import json

    if seconds is None:
        try:
            seconds = float(os.environ.get("TOOLKIT_BENCH_PEAK_SECONDS", 0.2))
        except ValueError:
            seconds = 0.2
    cpus = compact_cpus(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else str(os.cpu_count())
    key = f"{cpu_info()['cpu']}|cpus {cpus}|numpy {np.__version__}"
    a = np.random.default_rng(0).random((CALIBRATION_N, CALIBRATION_N), dtype=np.float32)
    flops = 2.0 * CALIBRATION_N ** 3
    best = 0.0
    end = time.perf_counter() + max(0.0, seconds)
    while True:  # at least one product
        t = time.perf_counter()
        a @ a
        best = max(best, flops / (time.perf_counter() - t) / 1e9)
        if time.perf_counter() >= end:
            break
    best = round(best, 1)
    if not cache_dir:
        return best or None
    path = os.path.join(cache_dir, "peak_gflops.json")
    try:
        with open(path) as f:
            cached = json.load(f)
        cached = cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        cached = {}
    kept = cached.get(key) if isinstance(cached.get(key), dict) else {}
    if time.time() - kept.get("at", 0) < CALIBRATION_KEEP_S and (kept.get("gflops") or 0) >= best:
        return kept["gflops"]
    try:
        os.makedirs(cache_dir, exist_ok=True)
        cached[key] = {"gflops": best, "at": time.time()}
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(cached, f)
        os.replace(tmp, path)
    except OSError:
        pass
    return best or None


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
        _CPU_INFO = {"cpu": model, "isa": sorted(f for f in flags if f in INTERESTING_FLAGS),
                     "features": [name for name, any_of in FEATURES if flags.intersection(any_of)]}
    return _CPU_INFO


def _read_first(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def cpu_frequency() -> dict[str, Any]:
    """The frequency governor and the current/maximum frequency of CPU 0, where the kernel lets them be read."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    out: dict[str, Any] = {"governor": _read_first(base + "scaling_governor")}
    for key, name in (("cur_mhz", "scaling_cur_freq"), ("max_mhz", "cpuinfo_max_freq")):
        value = _read_first(base + name)
        out[key] = int(value) // 1000 if value and value.isdigit() else None
    if out["cur_mhz"] is None:  # a virtual machine without cpufreq: /proc/cpuinfo's figure, where there is one
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.lower().startswith("cpu mhz"):
                        out["cur_mhz"] = int(float(line.split(":")[1]))
                        break
        except (OSError, ValueError):
            pass
    return out


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
        "features": info["features"],
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_mb": ram_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "toolkit": toolkit_version,
        "runtime_versions": dict(runtime_versions or {}),
        "cpufreq": cpu_frequency(),
        "affinity": compact_cpus(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else None,
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
