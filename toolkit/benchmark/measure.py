"""What runs inside a benchmark child: load, preload inputs, warm up, time only the runtime's call, evaluate.

This module imports no framework; the backend imports its runtime when it loads the model.
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..artifact import Artifact
from ..child import report_phase
from ..errors import UsageError
from ..inputs import check_shapes, load_npz_inputs, make_inputs, resolve_shapes
from ..interfaces import BackendOptions, Session
from .environment import environment
from .stats import is_unstable, latency_summary


@dataclass
class BenchRequest:
    model: str
    backend: str
    provider: str | None = None
    threads: int | None = None
    batch: int = 1
    shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs: str | None = None  # an .npz of real inputs
    runs: int = 100
    warmup: int = 10
    max_seconds: float | None = None  # stop timing early once this much time is spent (at least 10 runs)
    dataset: str | None = None
    eval_seconds: float | None = None  # stop accuracy evaluation after about this long
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MIN_RUNS_UNDER_BUDGET = 10


def time_calls(fn, runs: int, warmup: int, max_seconds: float | None = None) -> tuple[int, list[int]]:
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


def evaluate_accuracy(session: Session, dataset_name: str, batch: int, budget_s: float | None) -> dict[str, Any]:
    """Top-1 accuracy on the dataset's held-out split, in input order, within about `budget_s` seconds."""
    from .. import plugins

    dataset = plugins.registries().datasets.get(dataset_name)
    dataset.require_available()
    x, y = dataset.load("test")
    if len(session.input_specs) != 1:
        raise UsageError(f"--dataset needs a model with one input; this one has {len(session.input_specs)}",
                         "Use --inputs FILE.npz for multi-input models")
    spec, out_spec = session.input_specs[0], session.output_specs[0]
    if not spec.accepts((spec.shape[0] or len(x), *x.shape[1:])):
        raise UsageError(f"dataset '{dataset_name}' gives inputs of shape {list(x.shape[1:])}, the model wants "
                         f"{list(spec.shape[1:])}", "Pick the dataset the model was trained on")
    chunk = spec.shape[0] if spec.shape[0] is not None else max(batch, 64)
    correct = seen = 0
    start = time.perf_counter()
    for lo in range(0, len(x), chunk):
        xb = x[lo:lo + chunk]
        if spec.shape[0] is not None and len(xb) != spec.shape[0]:
            break  # a fixed batch cannot take the last partial chunk
        if spec.shape[0] is None:
            session.resize({spec.name: tuple(xb.shape)})
        out = session.run({spec.name: spec.quantize(xb)})[out_spec.name]
        pred = out_spec.dequantize(out).reshape(len(xb), -1).argmax(axis=1)
        correct += int((pred == y[lo:lo + len(xb)]).sum())
        seen += len(xb)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {"dataset": dataset_name, "split": "test", "samples": seen, "top1": correct / seen if seen else None}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Child entry point: one (model, backend) pair, returned as a result record (a dict)."""
    from .. import plugins

    req = BenchRequest(**request)
    backend = plugins.registries().backends.get(req.backend)
    artifact = Artifact.open(req.model)
    report_phase("loading")
    t0 = time.perf_counter()
    session = backend.load(artifact, BackendOptions(threads=req.threads, provider=req.provider))
    init_ms = (time.perf_counter() - t0) * 1000.0

    if req.inputs:
        inputs = load_npz_inputs(req.inputs, session.input_specs)
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
    else:
        overrides = {k: tuple(v) for k, v in req.shapes.items()}
        shapes = resolve_shapes(session.input_specs, req.batch, overrides)
        inputs = make_inputs(session.input_specs, shapes, seed=req.seed)
    check_shapes(session.input_specs, inputs)  # before native code sees a shape it cannot take
    report_phase("running")
    session.resize(shapes)
    first_ns, times = time_calls(session.bench_callable(inputs), req.runs, req.warmup, req.max_seconds)
    latency = latency_summary(times)
    first_shape = shapes[session.input_specs[0].name] if session.input_specs else ()
    batch = first_shape[0] if first_shape else 1

    peak_mb = peak_rss_mb()  # before the dataset is loaded: the runtime's memory, not the evaluation's
    accuracy = None
    if req.dataset:
        report_phase("evaluating")
        accuracy = evaluate_accuracy(session, req.dataset, req.batch, req.eval_seconds)

    manifest = artifact.manifest
    return {
        "status": "ok",
        "model": str(req.model),
        "format": artifact.format,
        "precision": artifact.precision,
        "backend": backend.name,
        "provider": session.describe(),
        "batch": batch,
        "threads": req.threads,
        "inputs": {k: list(v) for k, v in shapes.items()},
        "latency_us": latency,
        "runs": len(times),
        "warmup": req.warmup,
        "throughput_per_s": round(batch * 1e6 / latency["p50"], 2) if latency["p50"] else None,
        "init_ms": round(init_ms, 3),
        "first_run_ms": round(first_ns / 1e6, 3),
        "peak_rss_mb": peak_mb,
        "size_bytes": artifact.size_bytes,
        "accuracy": accuracy,
        "unstable": is_unstable(latency, len(times)),
        "source_model": manifest.model if manifest else None,
        "notes": artifact.notes,
        "environment": environment(backend.versions()),
    }


def predict(model: str, backend: str, arrays: list[np.ndarray], provider: str | None = None,
            threads: int | None = None) -> list[np.ndarray]:
    """Child entry point: run a model once on real-valued inputs given in input order; outputs dequantized."""
    from .. import plugins

    be = plugins.registries().backends.get(backend)
    session = be.load(Artifact.open(model), BackendOptions(threads=threads, provider=provider))
    if len(arrays) != len(session.input_specs):
        raise UsageError(f"the model has {len(session.input_specs)} inputs, {len(arrays)} were given")
    fed = {s.name: s.quantize(a) for s, a in zip(session.input_specs, arrays)}
    session.resize({k: tuple(v.shape) for k, v in fed.items()})
    out = session.run(fed)
    return [s.dequantize(out[s.name]) for s in session.output_specs]
