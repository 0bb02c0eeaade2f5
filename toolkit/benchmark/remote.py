"""What any remote runner needs to measure on a device that has only Python, numpy and a runtime: the job (the
model and data files to ship, the measuring sources, the requirements), the conversation with the device agent
(device_agent.py) over two pipes, and the record made from its answer.

A runner only has to start `bootstrap_command(python)` on the device with its stdin and stdout connected to us
(ssh does it; an adb or serial runner would too) and call `converse()`. Preparing a job reads the model and the
dataset, which is native code and may import a framework: it runs in a local child process.
"""

from __future__ import annotations

import importlib
import json
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from .. import __version__
from ..artifact import sha256_file
from ..errors import ToolkitError, UsageError
from ..records import BenchRecord, BenchRequest

BOOTSTRAP = "import sys;exec(compile(sys.stdin.buffer.read(int(sys.argv[1])),'toolkit-device-agent','exec'),{'__name__':'__main__'})"
_HERE = Path(__file__).parent


class DeviceError(ToolkitError):
    """The device answered with an error, or could not be used: the message says which, the hint what to do."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1, details: str | None = None):
        super().__init__(message, hint)
        self.exit_code = exit_code
        self.details = details


class ConnectionLost(Exception):
    """The pipes to the agent closed before it answered; `phase` says how far it got."""

    def __init__(self, phase: str):
        super().__init__(phase)
        self.phase = phase


@dataclass
class ShippedFile:
    path: str
    sha256: str
    size: int
    suffix: str = ""
    cache: bool = False  # kept on the device by sha256 (models, datasets); --inputs go with the agent's folder


@dataclass
class RemoteJob:
    request: BenchRequest
    job: dict[str, Any]
    files: list[ShippedFile]
    sources: dict[str, str]
    requirements: list[Any]
    facts: dict[str, Any] = field(default_factory=dict)  # the model's format, precision, size, task, notes

    def hello(self) -> dict[str, Any]:
        return {"job": self.job, "sources": self.sources, "requirements": self.requirements,
                "files": [{"sha256": f.sha256, "size": f.size, "suffix": f.suffix, "cache": f.cache}
                          for f in self.files]}


def agent_source() -> bytes:
    return (_HERE / "device_agent.py").read_bytes()


def bootstrap_command(python: str) -> str:
    """The shell command that starts the agent on the device; every part quoted."""
    return f"exec {shlex.quote(python)} -I -c {shlex.quote(BOOTSTRAP)} {len(agent_source())}"


def _ship(path: Path, cache: bool) -> tuple[ShippedFile, dict[str, str]]:
    f = ShippedFile(str(path), sha256_file(path), path.stat().st_size, "".join(path.suffixes[-1:]), cache)
    return f, {"sha256": f.sha256}


def prepare_in_child(request: dict[str, Any], folder: str) -> dict[str, Any]:
    """Child entry point: the model's declared specs and facts, the resolved input shapes, and the inputs and
    dataset as .npy files in `folder` (plain arrays: deterministic bytes, so a dataset's sha256 is stable)."""
    import numpy as np

    from .. import plugins
    from ..inputs import load_npz_inputs, resolve_shapes, short_name
    from .measure import declared_specs, model_macs, open_artifact

    req = BenchRequest.from_dict(request)
    artifact = open_artifact(req.model)
    declared = declared_specs(artifact)
    backend = plugins.registries().backends.get(req.backend)
    out: dict[str, Any] = {
        "declared": {"inputs": [s.to_dict() for s in declared[0]], "outputs": [s.to_dict() for s in declared[1]]}
        if declared else None,
        "facts": {"format": artifact.format, "precision": artifact.precision, "size_bytes": artifact.size_bytes,
                  "task": artifact.task, "source_model": artifact.manifest.model if artifact.manifest else None,
                  "notes": list(artifact.notes), "macs": model_macs(artifact, backend)},
        "shapes": {}, "inputs": None, "dataset": None,
    }
    specs = declared[0] if declared else []
    dataset = plugins.registries().datasets.get(req.dataset) if req.dataset else None
    if dataset is not None:
        dataset.require_available()
    x_test, y_test = dataset.load("test") if dataset is not None else (None, None)
    if dataset is not None:  # refused here, in one line, before anything is shipped or measured
        from types import SimpleNamespace

        from ..text import check_vocabulary
        from .measure import dataset_fits

        check_vocabulary(artifact, dataset)
        if declared:
            dataset_fits(SimpleNamespace(input_specs=declared[0], output_specs=declared[1]), dataset, x_test)
    if req.inputs:
        arrays = load_npz_inputs(req.inputs, specs) if specs else dict(np.load(req.inputs))
        out["inputs"] = {}
        for name, arr in arrays.items():
            path = Path(folder) / f"input-{len(out['inputs'])}.npy"
            np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
            out["inputs"][name] = str(path)
    elif specs:
        overrides = {k: tuple(v) for k, v in req.shapes.items()}
        if x_test is not None:
            for spec in specs:  # a dimension the model leaves open (a sequence length) is the dataset's
                arr = x_test.get(short_name(spec.name), x_test.get(spec.name)) if isinstance(x_test, dict) else x_test
                if arr is not None and any(d is None for d in spec.shape[1:]) and arr.ndim == len(spec.shape):
                    overrides.setdefault(spec.name, (req.batch, *arr.shape[1:]))
        out["shapes"] = {k: list(v) for k, v in resolve_shapes(specs, req.batch, overrides).items()}
    if dataset is not None:
        x, y = x_test, y_test
        xs = x if isinstance(x, dict) else {"": x}
        files = {}
        for i, (name, arr) in enumerate(xs.items()):
            path = Path(folder) / f"x-{i}.npy"
            np.save(path, np.ascontiguousarray(arr), allow_pickle=False)
            files[name] = str(path)
        np.save(Path(folder) / "y.npy", np.ascontiguousarray(y), allow_pickle=False)
        out["dataset"] = {"name": dataset.name, "task": dataset.task, "target_output": dataset.target_output,
                          "x": files, "y": str(Path(folder) / "y.npy")}
    return out


def prepare(request: BenchRequest, folder: Path) -> RemoteJob:
    """The job for one pair, its files written into `folder` (which the caller removes)."""
    from .. import plugins
    from ..child import run_in_child
    from ..options import resolve_options

    backend = plugins.registries().backends.get(request.backend)
    module = backend.device_module
    if not module:
        from .. import formats

        fmt = formats.detect(request.model)
        runnable = sorted({f for b in plugins.registries().backends if b.device_module for f in b.formats})
        if fmt not in runnable:
            raise UsageError(f"a device cannot run {fmt} files (backends that run on devices take "
                             f"{', '.join(runnable)})", f"Convert it first: toolkit convert {request.model} "
                                                        f"--to {runnable[-1] if runnable else 'tflite'}")
        raise UsageError(f"backend {backend.name} cannot run on a remote device (it has no device module)",
                         "Pick a backend that can, e.g. --backend tflite or --backend onnxruntime")
    try:
        device_module = importlib.import_module(module)
    except ImportError:
        raise UsageError(f"backend {backend.name} names the device module {module}, which cannot be imported",
                         "Reinstall the plugin") from None
    prepared = run_in_child("toolkit.benchmark.remote:prepare_in_child", request=request.to_dict(), folder=str(folder))
    files: list[ShippedFile] = []
    model_file, model_ref = _ship(Path(request.model), cache=True)
    files.append(model_file)
    job: dict[str, Any] = {
        "model_path": model_ref, "model_name": Path(request.model).name, "backend": backend.name, "precision": prepared["facts"]["precision"],
        "threads": request.threads, "provider": request.provider,
        "options": resolve_options(backend, dict(request.options)),  # typed, defaults filled in, as locally
        "runs": request.runs, "warmup": request.warmup, "max_seconds": request.max_seconds, "seed": request.seed,
        "min_seconds": request.min_seconds, "warmup_seconds": request.warmup_seconds, "windows": request.windows,
        "pin": request.pin,
        "batch": request.batch, "shapes": prepared["shapes"], "declared": prepared["declared"],
        "eval_seconds": request.eval_seconds, "inputs": None, "dataset": None,
    }
    if prepared["inputs"]:
        job["inputs"] = {}
        for name, path in prepared["inputs"].items():
            f, ref = _ship(Path(path), cache=False)
            files.append(f)
            job["inputs"][name] = ref
    if prepared["dataset"]:
        data = dict(prepared["dataset"])
        xs = {}
        for name, path in data["x"].items():
            f, ref = _ship(Path(path), cache=True)
            files.append(f)
            xs[name] = ref
        f, ref = _ship(Path(data["y"]), cache=True)
        files.append(f)
        data["x"], data["y"] = xs, ref
        job["dataset"] = data
    unique = list({f.sha256: f for f in files}.values())
    sources = {"protocol.py": (_HERE / "protocol.py").read_text(), "device_measure.py":
               (_HERE / "device_measure.py").read_text(), "backend_device.py": Path(device_module.__file__).read_text()}
    requirements = [[list(names), pip] for names, pip in getattr(device_module, "REQUIREMENTS", [])]
    return RemoteJob(request, job, unique, sources, requirements, prepared["facts"])


def converse(to_agent: IO[bytes], from_agent: IO[bytes], job: RemoteJob, python: str,
             on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start the agent (its source first, then the job), ship what it lacks, and return its answer: the
    measured fields. DeviceError for an answer that is an error; ConnectionLost when the pipes close first."""
    phase = "connecting"

    def read() -> dict[str, Any]:
        line = from_agent.readline()
        if not line:
            raise ConnectionLost(phase)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            # Something printed before the agent could (a login banner from the shell's rc files): skip it.
            return {"noise": line[:200].decode("utf-8", "replace")}

    try:
        to_agent.write(agent_source())
        to_agent.write(json.dumps(job.hello()).encode() + b"\n")
        to_agent.flush()
        phase = "starting"
        answer = read()
        while "noise" in answer:
            answer = read()
        if "error" in answer:
            raise _device_error(answer["error"])
        ready = answer["ready"]
        if ready["missing"]:
            raise DeviceError(f"the device's Python ({python}) has no {', '.join(ready['missing'])}",
                              f"Install it there: {python} -m pip install {' '.join(ready['missing'])}", exit_code=2)
        phase = "sending the model"
        by_sha = {f.sha256: f for f in job.files}
        shipped = sum(by_sha[sha].size for sha in ready["need"])
        for sha in ready["need"]:
            f = by_sha[sha]
            to_agent.write(json.dumps({"file": sha, "size": f.size}).encode() + b"\n")
            with open(f.path, "rb") as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    to_agent.write(chunk)
            to_agent.flush()
        phase = "starting the measurement"
        while True:
            message = read()
            if "phase" in message:
                phase = message["phase"]
                if on_phase:
                    on_phase(phase)
            elif "result" in message:
                return {**message["result"], "shipped_bytes": shipped}
            elif "error" in message:
                raise _device_error(message["error"])
            elif "crashed" in message:
                c = message["crashed"]
                how = f"signal {c['signal']}" if c.get("signal") else f"exit code {c.get('exit_code')}"
                raise DeviceError(f"the measuring process on the device died ({how}) while {c.get('phase') or 'starting'}",
                                  "Run it with --traceback for the runtime's output", details=c.get("log"))
    except (BrokenPipeError, ConnectionResetError):
        raise ConnectionLost(phase) from None


def _device_error(e: dict[str, Any]) -> DeviceError:
    code = 2 if e.get("kind") in ("usage", "model", "setup") else 1
    return DeviceError(f"on the device: {e['message']}", e.get("hint"), code, e.get("traceback"))


def failure_record(request: BenchRequest, error: ToolkitError, details: str | None = None) -> dict[str, Any]:
    """A failed pair as the record dict a runner returns: one line naming the model, backend and target."""
    from .runner import failure

    return failure(request, error, details).to_dict()


def record(job: RemoteJob, measured: dict[str, Any], device: dict[str, Any]) -> BenchRecord:
    """The same record a local run makes, with the device's environment and where it ran."""
    req, facts = job.request, job.facts
    env = dict(measured.get("environment") or {})
    env["toolkit"] = __version__  # the measuring side's version: the payload is this toolkit's
    env["device"] = {**device, "shipped_bytes": measured.get("shipped_bytes")}  # 0 when the cache had it all
    from .measure import cost_model

    return BenchRecord(
        model=str(req.model), backend=req.backend, format=facts["format"], precision=facts["precision"],
        latency_us=measured["latency_us"], runs=measured["runs"], warmup=req.warmup, batch=measured["batch"],
        threads=req.threads, provider=measured.get("provider") or {}, inputs=measured.get("inputs") or {},
        throughput_per_s=measured.get("throughput_per_s"), init_ms=measured.get("init_ms"),
        first_run_ms=measured.get("first_run_ms"), peak_rss_mb=measured.get("peak_rss_mb"),
        size_bytes=facts["size_bytes"], evaluation=measured.get("evaluation"), unstable=bool(measured.get("unstable")),
        stability=measured.get("stability") or {}, samples_us=measured.get("samples_us") or [],
        block_means_us=measured.get("block_means_us") or [],
        scenario=req.scenario, pin=req.pin,
        cost=cost_model(facts.get("macs"), measured["batch"], measured["latency_us"]["p50"],
                        measured.get("peak_gflops")),
        task=facts.get("task"), source_model=facts.get("source_model"), runner=req.runner, target=req.target,
        notes=list(facts.get("notes") or []), environment=env)


def scratch_folder() -> Path:
    """A private local folder for a job's files, removed by the caller (or by the janitor if we are killed)."""
    from .. import janitor

    folder = Path(tempfile.mkdtemp(prefix=f"toolkit-remote-{janitor.owner_tag()}-"))
    janitor.track_path(folder)
    return folder
