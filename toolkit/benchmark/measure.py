"""What runs inside a local benchmark child: load the model with its backend, then apply the protocol (protocol.py):
preload inputs, warm up, time only the runtime's call, check the outputs, evaluate on a dataset.

This module imports no framework; the backend imports its runtime when it loads the model.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from .. import __version__, formats, metrics, plugins
from ..artifact import Artifact
from ..child import report_phase
from ..errors import CheckFailedError, ToolkitError, UsageError, first_line
from ..inputs import check_shapes, load_npz_inputs, resolve_shapes, short_name
from ..interfaces import BackendOptions, Session
from ..options import resolve_options
from ..records import BenchRecord, BenchRequest
from ..specs import TensorSpec
from . import protocol


def spec_dicts(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in specs]


def batch_of(session: Session, inputs: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(rows fed along a dynamic batch dimension, its name), or (None, None) when the first input has a fixed one."""
    if not session.input_specs:
        return None, None
    first = session.input_specs[0]
    if not first.shape or first.shape[0] is not None:
        return None, None
    names = first.dim_names or ()
    return int(np.shape(inputs[first.name])[0]), (names[0] if names else None)


def check_outputs(outputs: Mapping[str, Any], session: Session, backend: str,
                  inputs: Mapping[str, Any] | None = None) -> None:
    """The protocol's output check, as a CheckFailedError that names the backend."""
    batch, dim_name = batch_of(session, inputs) if inputs is not None else (None, None)
    try:
        protocol.check_outputs(outputs, spec_dicts(session.output_specs), batch, dim_name)
    except protocol.ProtocolError as e:
        raise CheckFailedError(f"backend {backend} returned wrong outputs: {e}",
                               "The backend is at fault, not the model: report it to the plugin's author") from None


def declared_specs(artifact: Artifact) -> tuple[list[TensorSpec], list[TensorSpec]] | None:
    """What the model itself declares: its manifest, else its format's reader; None when neither can tell."""
    if artifact.manifest and artifact.manifest.outputs:
        return artifact.manifest.inputs, artifact.manifest.outputs
    fmt = formats.get(artifact.format)
    if not fmt.available().ok:
        return None
    try:
        return fmt.read_specs(artifact.path)
    except NotImplementedError:
        return None


def check_session_specs(session: Session, artifact: Artifact, backend: str) -> None:
    """A backend must describe the model as the model describes itself: the same input and output names, dtypes
    and ranks (dimensions may differ only where one side leaves them dynamic)."""
    declared = declared_specs(artifact)
    if declared is None:
        return
    for what, ours, theirs_list in (("input", declared[0], session.input_specs),
                                    ("output", declared[1], session.output_specs)):
        theirs = {s.name: s for s in theirs_list}
        for spec in ours:
            got = theirs.get(spec.name)
            problem = None
            if got is None:
                problem = f"has no {what} '{spec.name}' (it declares {', '.join(theirs) or 'none'})"
            elif got.dtype != spec.dtype and protocol.tensor_dtype(got.dtype) and protocol.tensor_dtype(spec.dtype):
                problem = f"declares {what} '{spec.name}' as {got.dtype}, the model file says {spec.dtype}"
            elif len(got.shape) != len(spec.shape) or not all(
                    a is None or b is None or a == b for a, b in zip(got.shape, spec.shape)):
                problem = (f"declares {what} '{spec.name}' with shape {protocol.fmt_shape(got.shape)}, the model "
                           f"file says {protocol.fmt_shape(spec.shape)}")
            if problem:
                raise CheckFailedError(f"backend {backend} {problem}",
                                       "The backend is at fault, not the model: report it to the plugin's author")


def _feed(session: Session, x: Any) -> dict[str, np.ndarray]:
    """A dataset's inputs (one array, or a dict by input name) as the session's named inputs."""
    specs = session.input_specs
    if isinstance(x, Mapping):
        by_short = {short_name(s.name): s.name for s in specs}
        named = {by_short.get(k, k): v for k, v in x.items()}
        missing = [s.name for s in specs if s.name not in named]
        if missing:
            raise UsageError(f"the dataset gives inputs {', '.join(x)}, the model needs {', '.join(missing)}",
                             "Pick the dataset the model was trained on")
        return {s.name: named[s.name] for s in specs}
    if len(specs) != 1:
        raise UsageError(f"the dataset gives one input, the model has {len(specs)}",
                         "Use a dataset that names each input, or --inputs FILE.npz")
    return {specs[0].name: x}


def target_output(session: Session, dataset: Any) -> TensorSpec:
    outs = session.output_specs
    if dataset.target_output:
        for s in outs:
            if dataset.target_output in (s.name, short_name(s.name)):
                return s
        raise UsageError(f"dataset {dataset.name} is scored on output '{dataset.target_output}', which this model "
                         f"does not have ({', '.join(s.name for s in outs)})", "Pick the dataset the model was trained on")
    if len(outs) != 1:
        raise UsageError(f"the model has {len(outs)} outputs and dataset {dataset.name} names none to score",
                         "Evaluate it with a dataset that sets target_output")
    return outs[0]


def fitting_inputs(session: Any, dataset_name: str, x: Any,
                   hint: str = "Pick the dataset the model was trained on") -> dict[str, np.ndarray]:
    """The dataset's inputs by the model's input names, each checked to fit its input (`session` needs only
    input_specs)."""
    fed_all = _feed(session, x)
    for spec in session.input_specs:
        arr = fed_all[spec.name]
        if not spec.accepts((spec.shape[0] or len(arr), *arr.shape[1:])):
            raise UsageError(f"dataset '{dataset_name}' gives '{short_name(spec.name)}' of shape {list(arr.shape[1:])}"
                             f" per sample, the model wants {list(spec.shape[1:])}", hint)
    return fed_all


def dataset_fits(session: Any, dataset: Any, x: Any) -> tuple[dict[str, np.ndarray], TensorSpec]:
    """The dataset's inputs, each checked to fit its input, and the output it is scored on (`session` needs only
    input_specs and output_specs: a remote runner checks against the model's declared specs before it ships)."""
    return fitting_inputs(session, dataset.name, x), target_output(session, dataset)


def evaluate(session: Session, dataset_name: str, batch: int, budget_s: float | None, backend: str) -> dict:
    """The dataset's task metrics on its held-out split, in input order, within about `budget_s` seconds."""
    dataset = plugins.registries().datasets.get(dataset_name)
    dataset.require_available()
    x, y = dataset.load("test")
    fed_all, out_spec = dataset_fits(session, dataset, x)
    first = session.input_specs[0]
    fixed = first.shape[0] if first.shape and first.shape[0] is not None else None
    chunk = fixed or max(batch, 64)
    sums: dict[str, float] = {}
    start = time.perf_counter()
    n = len(y)
    for lo in range(0, n, chunk):
        part = {s.name: s.quantize(fed_all[s.name][lo:lo + chunk]) for s in session.input_specs}
        size = len(next(iter(part.values())))
        if fixed is not None and size != fixed:
            break  # a fixed batch cannot take the last partial chunk
        session.resize({k: tuple(v.shape) for k, v in part.items()})
        outputs = session.run(part)
        check_outputs(outputs, session, backend, part)
        pred = out_spec.dequantize(outputs[out_spec.name])
        metrics.add_sums(sums, metrics.task_metrics(dataset.task, pred, y[lo:lo + size]))
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    return {"dataset": dataset_name, "split": "test", "task": dataset.task, **metrics.finish_metrics(dataset.task, sums)}


def memory_limit_bytes() -> int:
    """What this process may allocate: its address-space limit (the child's memory limit), else the machine's RAM."""
    import os
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        return soft
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_input_sizes(specs: list[TensorSpec], shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse inputs too large to make, before making them: a model may declare an input of [2^31, 2^31], and
    numpy would fail with its own words ("array is too big") or take all the memory there is."""
    total, largest = 0, ("", (), 0)
    for spec in specs:
        try:
            itemsize = np.dtype(spec.dtype).itemsize
        except (TypeError, ValueError):
            continue  # protocol.make_inputs says what is wrong with the dtype
        size = int(np.prod([int(d) for d in shapes[spec.name]], dtype=object)) * itemsize
        total += size
        largest = max(largest, (spec.name, shapes[spec.name], size), key=lambda t: t[2])
    limit = memory_limit_bytes()
    if total > limit // 2:  # the runtime needs room too, for the outputs and its own buffers
        name, shape, size = largest
        raise UsageError(f"the inputs would take {total / 2**30:.1f} GiB (input '{short_name(name)}' of shape "
                         f"{list(shape)} alone {size / 2**30:.1f} GiB), more than this process may use "
                         f"({limit / 2**30:.1f} GiB)",
                         "Give smaller shapes with --shape or --batch, or raise --memory-limit")


def load_session(artifact: Artifact, backend_name: str, threads: int | None, provider: str | None,
                 options: Mapping[str, Any]) -> tuple[Any, Session]:
    backend = plugins.registries().backends.get(backend_name)
    extra = resolve_options(backend, dict(options))
    session = backend.load(artifact, BackendOptions(threads=threads, provider=provider, extra=extra))
    check_session_specs(session, artifact, backend.name)
    return backend, session


def _dataset_shapes(session: Session, dataset: str, batch: int) -> dict[str, tuple[int, ...]]:
    """Shapes for the inputs with open dimensions besides the batch, from the dataset's samples."""
    open_inputs = [s for s in session.input_specs if any(d is None for d in s.shape[1:])]
    if not open_inputs:
        return {}
    try:
        fed = _feed(session, plugins.registries().datasets.get(dataset).load("test")[0])
    except ToolkitError:
        return {}  # the evaluation says what does not fit
    return {s.name: (batch, *fed[s.name].shape[1:]) for s in open_inputs if fed[s.name].ndim == len(s.shape)}


def open_artifact(model: str) -> Artifact:
    """The artifact, with the precision its format plugin reads from the file when no manifest records it."""
    artifact = Artifact.open(model)
    fmt = formats.get(artifact.format)
    if artifact.manifest is None and fmt.available().ok:
        artifact.precision_hint = fmt.describe(artifact.path).get("precision")
    return artifact


def measure(request: dict[str, Any]) -> dict[str, Any]:
    """Child entry point: one (model, backend) pair, returned as a BenchRecord dict."""
    req = BenchRequest.from_dict(request)
    peak = protocol.peak_gflops(cache_dir())  # before pinning and before the runtime: the machine's own peak
    try:
        protocol.pin_to(req.pin)  # before the runtime starts its threads, which inherit it
    except protocol.ProtocolError as e:
        raise UsageError(str(e), "Pick CPUs from that list") from None
    artifact = open_artifact(req.model)
    report_phase("loading")
    t0 = time.perf_counter()
    backend, session = load_session(artifact, req.backend, req.threads, req.provider, req.options)
    init_ms = (time.perf_counter() - t0) * 1000.0

    if req.inputs:
        inputs = load_npz_inputs(req.inputs, session.input_specs)
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
    else:
        overrides = {k: tuple(v) for k, v in req.shapes.items()}
        if req.dataset:  # a dimension the model leaves open (a sequence length) is the dataset's
            for name, shape in _dataset_shapes(session, req.dataset, req.batch).items():
                overrides.setdefault(name, shape)
        shapes = resolve_shapes(session.input_specs, req.batch, overrides)
        check_input_sizes(session.input_specs, shapes)
        try:
            inputs = protocol.make_inputs(spec_dicts(session.input_specs), shapes, seed=req.seed)
        except protocol.ProtocolError as e:
            raise UsageError(str(e)) from None
    check_shapes(session.input_specs, inputs)  # before native code sees a shape it cannot take
    report_phase("running")
    session.resize(shapes)
    try:
        outputs = session.run(inputs)
    except ToolkitError:
        raise
    except Exception as e:  # the runtime may have refused made-up values (a shape tensor, indices): say so
        if req.inputs:
            raise
        err = ToolkitError(f"{type(e).__name__}: {first_line(e)[:300]}",
                           "The inputs were generated (uniform floats, 0/1 integers); if the model needs real "
                           "values (shapes, indices), pass them with --inputs FILE.npz")
        err.exit_code = 1
        raise err from e
    check_outputs(outputs, session, backend.name, inputs)  # a wrong answer is an error, never a number
    session.resize(shapes)
    first_ns, times = protocol.time_calls(session.bench_callable(inputs), req.runs, req.warmup, req.max_seconds,
                                          req.min_seconds, req.warmup_seconds)
    first_shape = shapes[session.input_specs[0].name] if session.input_specs else ()
    batch = first_shape[0] if first_shape else 1
    measured = protocol.summarise(first_ns, times, batch, req.windows)
    macs = model_macs(artifact, backend)

    peak_mb = protocol.peak_rss_mb()  # before the dataset is loaded: the runtime's memory, not the evaluation's
    evaluation = None
    if req.dataset:
        report_phase("evaluating")
        from ..text import check_vocabulary

        check_vocabulary(artifact, plugins.registries().datasets.get(req.dataset))
        evaluation = evaluate(session, req.dataset, req.batch, req.eval_seconds, backend.name)

    manifest = artifact.manifest
    return BenchRecord(
        model=str(req.model),
        backend=backend.name,
        format=artifact.format,
        precision=artifact.precision,
        warmup=req.warmup,
        batch=batch,
        threads=req.threads,
        provider=session.describe(),
        inputs={k: list(v) for k, v in shapes.items()},
        init_ms=round(init_ms, 3),
        peak_rss_mb=peak_mb,
        size_bytes=artifact.size_bytes,
        evaluation=evaluation,
        scenario=req.scenario,
        pin=req.pin,
        cost=cost_model(macs, batch, measured["latency_us"]["p50"], peak),
        **measured,
        task=artifact.task,
        source_model=manifest.model if manifest else None,
        runner=req.runner,
        target=req.target,
        notes=artifact.notes,
        environment=protocol.environment(backend.versions(), __version__),
    ).to_dict()


def cache_dir() -> str:
    """The toolkit's per-user cache folder (XDG_CACHE_HOME, else ~/.cache)."""
    import os

    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-toolkit")


def model_macs(artifact: Artifact, backend: Any) -> int | None:
    """Multiply-accumulates per sample, from the format's reader, else the backend's view of the loaded model."""
    fmt = formats.get(artifact.format)
    try:
        macs = fmt.inspect(artifact.path).get("macs") if fmt.available().ok else None
        if not macs:
            macs = (backend.inspect(artifact) or {}).get("macs")
    except Exception:  # noqa: BLE001 - a cost model is extra: a model it cannot count is measured all the same
        return None
    return int(macs) if macs else None


def cost_model(macs: int | None, batch: int, p50_us: float, peak: float | None) -> dict[str, Any] | None:
    """FLOPs (2 per multiply-accumulate) per sample, the GFLOP/s achieved at the median latency and their share
    of the machine's measured peak."""
    if not macs or not p50_us:
        return None
    achieved = 2.0 * macs * batch / (p50_us * 1e3)  # flops per ns = GFLOP/s
    return {"macs": macs, "flops": 2 * macs, "gflops_per_s": round(achieved, 3), "peak_gflops": peak,
            "share_of_peak": round(achieved / peak, 4) if peak else None}


def predict(model: str, backend: str, arrays: dict[str, np.ndarray] | list[np.ndarray], provider: str | None = None,
            threads: int | None = None, options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Child entry point: run a model once on real-valued inputs (by name, or in input order); every output,
    dequantized to float32 and checked against the declared specs first."""
    artifact = Artifact.open(model)
    be, session = load_session(artifact, backend, threads, provider, options or {})
    if isinstance(arrays, list):
        if len(arrays) != len(session.input_specs):
            raise UsageError(f"the model has {len(session.input_specs)} inputs, {len(arrays)} were given")
        arrays = {s.name: a for s, a in zip(session.input_specs, arrays)}
    fed_real = _feed(session, arrays)
    fed = {s.name: s.quantize(fed_real[s.name]) for s in session.input_specs}
    first = session.input_specs[0] if session.input_specs else None
    fixed = first.shape[0] if first is not None and first.shape and first.shape[0] is not None else None
    n = len(next(iter(fed.values()))) if fed else 0
    if not fixed or fixed == n:
        session.resize({k: tuple(v.shape) for k, v in fed.items()})
        out = session.run(fed)
        check_outputs(out, session, be.name, fed)
        return {s.name: s.dequantize(out[s.name]) for s in session.output_specs}
    # A file made for a fixed batch: run it batch by batch, the last one padded with its own first sample.
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in session.output_specs}
    for lo in range(0, n, fixed):
        chunk = {k: v[lo:lo + fixed] for k, v in fed.items()}
        size = len(next(iter(chunk.values())))
        if size < fixed:
            chunk = {k: np.concatenate([v, np.repeat(v[:1], fixed - size, axis=0)]) for k, v in chunk.items()}
        out = session.run(chunk)
        check_outputs(out, session, be.name, chunk)
        for spec in session.output_specs:
            parts[spec.name].append(spec.dequantize(out[spec.name])[:size])
    return {k: np.concatenate(v) for k, v in parts.items()}
