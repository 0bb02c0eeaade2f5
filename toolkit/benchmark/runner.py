"""The parent side of a benchmark: pick backends for each model, run every pair in its own child, collect records."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Iterable

from .. import plugins
from ..artifact import Artifact
from ..child import ChildError, run_in_child
from ..errors import ChildCrashedError, MissingRuntimeError, ToolkitError, UsageError
from .measure import BenchRequest

PAIR_TIMEOUT_S = 900.0


def default_backend(artifact: Artifact) -> str:
    """The highest-priority installed backend that can run `artifact`."""
    fmt = artifact.format
    candidates = [b for b in plugins.registries().backends if fmt in b.formats]
    if not candidates:
        raise UsageError(f"no backend runs {fmt} files", "See `toolkit plugins` for what is installed")
    ready = capable_backends(artifact)
    if not ready:
        best = max(candidates, key=lambda b: b.priority)
        av = best.available()
        if av.ok:
            raise UsageError(best.supports(artifact) or f"{best.name} cannot run {artifact.path.name}",
                             "Try another --backend")
        raise MissingRuntimeError(f"the {best.name} runtime", av.extra or best.extra, av.reason)
    registry = plugins.registries().backends
    return max(ready, key=lambda name: registry.get(name).priority)


def capable_backends(artifact: Artifact) -> list[str]:
    """Every installed backend that can run `artifact` (availability first: supports() may need the runtime)."""
    return [b.name for b in plugins.registries().backends if b.available().ok and b.supports(artifact) is None]


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


def error_record(request: BenchRequest, error: ToolkitError) -> dict[str, Any]:
    return {"status": "error", "model": request.model, "backend": request.backend,
            "error": error.one_line(), "exit_code": error.exit_code}


def run_pair(request: BenchRequest, timeout_s: float = PAIR_TIMEOUT_S) -> dict[str, Any]:
    """Run one (model, backend) pair in a child. Errors come back as records, so other pairs carry on."""
    try:
        return run_in_child("toolkit.benchmark.measure:measure", timeout_s=timeout_s, request=request.to_dict())
    except ChildCrashedError as crash:
        phase = getattr(crash, "phase", None) or "starting"
        failure = crash.failure.describe()  # type: ignore[attr-defined]
        what = {"loading": "crashed while loading", "running": "crashed while running",
                "evaluating": "crashed while evaluating"}.get(phase, "crashed while starting on")
        if crash.failure.timed_out:  # type: ignore[attr-defined]
            what = f"timed out after {timeout_s:.0f} s while {phase}"
        err = ChildCrashedError(f"backend {request.backend} {what} {request.model} ({failure})",
                                "Run it alone with --traceback, or try another --backend")
        return error_record(request, err)
    except ChildError as err:
        record = error_record(request, err)
        record["traceback"] = err.child_traceback
        return record


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
            errors.append(error_record(replace(base, backend=",".join(backends) or "auto"), e))
            continue
        for name in names:
            req = replace(base, backend=name)
            try:
                check_backend(name, artifact, req.provider)
            except ToolkitError as e:
                errors.append(error_record(req, e))
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
