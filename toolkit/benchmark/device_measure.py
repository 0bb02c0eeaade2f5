"""The measuring process on a remote device: the same protocol as a local benchmark (protocol.py), with the
backend's device module. Shipped to the device beside protocol.py and the backend's module (as backend_device.py)
and run by the device agent as `python -I device_measure.py job.json`; it imports only the standard library,
numpy and the runtime. Written for Python 3.8+, which devices still run.

It prints JSON lines prefixed with MARK to stdout: {"phase": ...} as it goes, then {"result": measured fields}
or {"error": {...}}; the runtime's own chatter goes to stderr, which the agent keeps for --traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

MARK = "\x1etoolkit "


def say(**message) -> None:
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def _die_with_parent() -> None:
    """Linux: be killed when the agent dies, whatever killed it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux, or no libc: the agent's own cleanup still runs
        pass


def merged_specs(got, declared):
    """The runtime's specs, with the quantization the model declares where the runtime does not say (an ONNX
    graph's edge QuantizeLinear), by name."""
    by_name = {d["name"]: d for d in declared or []}
    out = []
    for spec in got:
        spec = dict(spec)
        known = by_name.get(spec["name"])
        if not spec.get("quantization") and known and known.get("quantization"):
            spec["quantization"] = known["quantization"]
        out.append(spec)
    return out


def feed(specs, arrays):
    """Arrays by input name from a dict keyed by full or short names ("" for a single input)."""
    if "" in arrays and len(specs) == 1:
        return {specs[0]["name"]: arrays[""]}
    short = {s["name"].split(":")[0]: s["name"] for s in specs}
    named = {short.get(k, k): v for k, v in arrays.items()}
    missing = [s["name"] for s in specs if s["name"] not in named]
    if missing:
        raise UsageProblem(f"the data gives inputs {', '.join(arrays)}, the model needs {', '.join(missing)}",
                           "Pick the dataset the model was trained on")
    return {s["name"]: named[s["name"]] for s in specs}


class UsageProblem(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


def evaluate(session, protocol, np, job, in_specs, out_specs, check):
    data = job["dataset"]
    x = feed(in_specs, {k: np.load(p) for k, p in data["x"].items()})
    y = np.load(data["y"])
    target = data.get("target_output")
    if target:
        matches = [s for s in out_specs if target in (s["name"], s["name"].split(":")[0])]
        if not matches:
            raise UsageProblem(f"dataset {data['name']} is scored on output '{target}', which this model does not "
                               "have", "Pick the dataset the model was trained on")
        out_spec = matches[0]
    elif len(out_specs) == 1:
        out_spec = out_specs[0]
    else:
        raise UsageProblem(f"the model has {len(out_specs)} outputs and dataset {data['name']} names none to score")
    first = in_specs[0]
    fixed = first["shape"][0] if first["shape"] and first["shape"][0] is not None else None
    chunk = fixed or max(job["batch"], 64)
    sums = {}
    start = time.perf_counter()
    budget = job.get("eval_seconds")
    for lo in range(0, len(y), chunk):
        part = {s["name"]: protocol.quantize(x[s["name"]][lo:lo + chunk], s) for s in in_specs}
        size = len(next(iter(part.values())))
        if fixed is not None and size != fixed:
            break  # a fixed batch cannot take the last partial chunk
        session.resize({k: list(v.shape) for k, v in part.items()})
        outputs = session.run(part)
        check(outputs, part)
        pred = protocol.dequantize(outputs[out_spec["name"]], out_spec)
        protocol.add_sums(sums, protocol.task_metrics(data["task"], pred, y[lo:lo + size]))
        if budget is not None and time.perf_counter() - start > budget:
            break
    return {"dataset": data["name"], "split": "test", "task": data["task"],
            **protocol.finish_metrics(data["task"], sums)}


def measure(job):
    import numpy as np

    import backend_device
    import protocol

    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edge-toolkit")
    peak = protocol.peak_gflops(cache)  # before pinning and before the runtime: the machine's own peak
    try:
        protocol.pin_to(job.get("pin"))  # before the runtime starts its threads, which inherit it
    except protocol.ProtocolError as e:
        raise UsageProblem(str(e), "Pick CPUs from that list") from None
    say(phase="loading")
    t0 = time.perf_counter()
    session = backend_device.open_session(job["model_path"], job.get("threads"), job.get("provider"),
                                          job.get("options") or {}, job.get("precision") or "")
    init_ms = (time.perf_counter() - t0) * 1000.0
    declared = job.get("declared") or {}
    in_specs = merged_specs(session.input_specs, declared.get("inputs"))
    out_specs = merged_specs(session.output_specs, declared.get("outputs"))

    if job.get("inputs"):
        inputs = feed(in_specs, {k: np.load(p) for k, p in job["inputs"].items()})
        shapes = {k: list(v.shape) for k, v in inputs.items()}
    else:
        shapes = {}
        for spec in in_specs:
            shape = job.get("shapes", {}).get(spec["name"])
            if shape is None:
                if any(d is None for d in spec["shape"][1:]):
                    raise UsageProblem(f"input '{spec['name']}' has dynamic dimensions besides the batch",
                                       "Give its full shape with --shape NAME=DIMS")
                shape = [job["batch"] if (i == 0 and d is None) else d for i, d in enumerate(spec["shape"])]
            shapes[spec["name"]] = shape
        try:
            inputs = protocol.make_inputs(in_specs, shapes, seed=job.get("seed", 0))
        except protocol.ProtocolError as e:
            raise UsageProblem(str(e)) from None
    for spec in in_specs:
        if not protocol.shape_fits(spec["shape"], inputs[spec["name"]].shape):
            raise UsageProblem(f"input '{spec['name']}' of shape {list(inputs[spec['name']].shape)} does not fit the "
                               f"model's {protocol.fmt_shape(spec['shape'])}", "Check --shape, --batch or --inputs")

    first = in_specs[0] if in_specs else None
    dim_names = (first.get("dim_names") or [None]) if first else [None]

    def check(outputs, fed):
        batch = None
        if first and first["shape"] and first["shape"][0] is None:
            batch = int(np.shape(fed[first["name"]])[0])
        try:
            protocol.check_outputs(outputs, out_specs, batch, dim_names[0] if dim_names else None)
        except protocol.ProtocolError as e:
            raise WrongOutputs(f"backend {job['backend']} returned wrong outputs: {e}") from None

    say(phase="running")
    session.resize(shapes)
    outputs = session.run(inputs)
    check(outputs, inputs)  # a wrong answer is an error, never a number
    session.resize(shapes)
    first_ns, times = protocol.time_calls(session.bench_callable(inputs), job["runs"], job["warmup"],
                                          job.get("max_seconds"), job.get("min_seconds") or 0.0,
                                          job.get("warmup_seconds") or 0.0)
    first_shape = shapes[first["name"]] if first else []
    batch = first_shape[0] if first_shape else 1
    measured = protocol.summarise(first_ns, times, batch, job.get("windows") or protocol.WINDOWS)
    peak_mb = protocol.peak_rss_mb()
    evaluation = None
    if job.get("dataset"):
        say(phase="evaluating")
        evaluation = evaluate(session, protocol, np, job, in_specs, out_specs, check)
    return dict(measured, batch=batch, provider=session.describe(), inputs=shapes, init_ms=round(init_ms, 3),
                peak_rss_mb=peak_mb, evaluation=evaluation, peak_gflops=peak,
                environment=protocol.environment(backend_device.versions(), None))


class WrongOutputs(Exception):
    hint = "The backend is at fault, not the model: report it to the plugin's author"


def main() -> None:
    _die_with_parent()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I left it out: our own files only
    with open(sys.argv[1]) as f:
        job = json.load(f)
    try:
        say(result=measure(job))
    except Exception as e:  # noqa: BLE001 - every failure goes back as one line, with its kind
        kind = {"UsageProblem": "usage", "WrongOutputs": "check", "LoadError": getattr(e, "kind", "model")}.get(
            type(e).__name__, "runtime")
        text = (str(e).strip().splitlines() or [type(e).__name__])[0]
        # The runtime names the file it was given, the cache's copy: the user knows their own name for it.
        text = text.replace(job["model_path"], job.get("model_name", "")).replace(
            os.path.basename(job["model_path"]), job.get("model_name", ""))
        if kind == "runtime":
            text = f"{type(e).__name__}: {text}"
        say(error={"message": text[:500], "hint": getattr(e, "hint", None), "kind": kind,
                   "traceback": traceback.format_exc()})


if __name__ == "__main__":
    main()
