"""The parent side of a benchmark: pick backends for each model, run every pair in its own child, collect records."""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any, Callable, Iterable

from .. import plugins
from ..artifact import Artifact
from ..child import ChildError, run_in_child
from ..errors import ChildCrashedError, MissingRuntimeError, ToolkitError, UsageError, debug_enabled
from .measure import BenchRequest

PAIR_TIMEOUT_S = 900.0


def _can_run(backend: Any, artifact: Artifact) -> bool:
    """Installed and able to run `artifact`; a plugin's supports() that raises counts as no."""
    try:
        return backend.available().ok and backend.supports(artifact) is None
    except Exception:
        return False


def default_backend(artifact: Artifact) -> str:
    """The highest-priority installed backend that can run `artifact` (tried in priority order)."""
    fmt = artifact.format
    candidates = sorted((b for b in plugins.registries().backends if fmt in b.formats), key=lambda b: -b.priority)
    if not candidates:
        raise UsageError(f"no backend runs {fmt} files", "See `toolkit plugins` for what is installed")
    for backend in candidates:
        if _can_run(backend, artifact):
            return backend.name
    best = candidates[0]
    av = best.available()
    if av.ok:
        raise UsageError(best.supports(artifact) or f"{best.name} cannot run {artifact.path.name}",
                         "Try another --backend")
    raise MissingRuntimeError(f"the {best.name} runtime", av.extra or best.extra, av.reason)


def capable_backends(artifact: Artifact, sweep: bool = True) -> list[str]:
    """Every installed backend that can run `artifact`; with `sweep`, only those that take part in sweeps."""
    return [b.name for b in plugins.registries().backends if (b.in_sweeps or not sweep) and _can_run(b, artifact)]


def check_backend(name: str, artifact: Artifact, provider: str | None) -> None:
    """Refuse, before any child starts, a backend that is unknown, missing or cannot run this artifact."""
    backend = plugins.registries().backends.get(name)
    av = backend.available()
    if not av.ok:
        raise MissingRuntimeError(f"the {name} runtime", av.extra or backend.extra, av.reason)
    why = backend.supports(artifact)
    if why:
        raise UsageError(f"{why} ({artifact.path.name})", "Pick another --backend or convert the model")
    if provider and provider not in backend.providers:
        known = ", ".join(backend.providers) or "none"
        raise UsageError(f"backend {name} has no provider '{provider}'", f"Its providers: {known}")


def error_record(request: BenchRequest, error: ToolkitError, details: str | None = None) -> dict[str, Any]:
    """A failed pair as a record. `details` (the child's traceback or output) only in debug mode."""
    record = {"status": "error", "model": request.model, "backend": request.backend,
              "error": error.one_line(), "exit_code": error.exit_code}
    if details and debug_enabled():
        record["details"] = details
    return record


def run_pair(request: BenchRequest, timeout_s: float = PAIR_TIMEOUT_S) -> dict[str, Any]:
    """Run one (model, backend) pair in a child. Errors come back as records, so other pairs carry on."""
    # GPU runtimes map far more address space than they use: an RLIMIT_AS would stop CUDA from starting.
    memory_mb = 0 if request.provider not in (None, "cpu") else None
    try:
        return run_in_child("toolkit.benchmark.measure:measure", timeout_s=timeout_s, memory_mb=memory_mb,
                            request=request.to_dict())
    except ChildCrashedError as crash:
        phase = getattr(crash, "phase", None) or "starting"
        failure = crash.failure.describe()  # type: ignore[attr-defined]
        what = {"loading": "crashed while loading", "running": "crashed while running",
                "evaluating": "crashed while evaluating"}.get(phase, "crashed while starting on")
        if crash.failure.timed_out:  # type: ignore[attr-defined]
            what = f"timed out after {timeout_s:.0f} s while {phase}"
        err = ChildCrashedError(f"backend {request.backend} {what} {request.model} ({failure})",
                                "Run it with --traceback for the runtime's output, or try another --backend")
        return error_record(request, err, getattr(crash, "log", None))
    except ChildError as err:
        return error_record(request, err, err.child_traceback)


def plan(models: Iterable[str], backends: list[str], template: BenchRequest,
         every_capable: bool = False) -> tuple[list[BenchRequest], list[dict[str, Any]]]:
    """Expand models x backends into requests; a model or backend that cannot work becomes an error record."""
    requests: list[BenchRequest] = []
    errors: list[dict[str, Any]] = []
    for model in models:
        base = replace(template, model=str(model))
        try:
            artifact = Artifact.open(model)
            names = backends or (capable_backends(artifact) if every_capable else [default_backend(artifact)])
        except ToolkitError as e:
            errors.append(error_record(replace(base, backend=",".join(backends) or "auto"), e,
                                       traceback.format_exc()))
            continue
        for name in names:
            req = replace(base, backend=name)
            try:
                check_backend(name, artifact, req.provider)
            except ToolkitError as e:
                errors.append(error_record(req, e, traceback.format_exc()))
                continue
            requests.append(req)
    return requests, errors


def run_all(requests: list[BenchRequest], on_done: Callable[[dict[str, Any]], None] | None = None) -> list[dict]:
    records = []
    for req in requests:
        record = run_pair(req)
        records.append(record)
        if on_done:
            on_done(record)
    return records
