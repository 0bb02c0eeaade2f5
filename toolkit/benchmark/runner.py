"""The parent side of a benchmark: pick backends for each model, hand every pair to a runner, collect typed records.

Choosing a backend when none is named: the installed backend with the highest priority that can run the model;
ties go to the name first in alphabetical order. Backends with a priority below 0 are never chosen unless named.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from .. import plugins
from ..artifact import Artifact
from ..errors import MissingRuntimeError, ToolkitError, UsageError, debug_enabled, one_line_text
from ..interfaces import Backend
from ..records import BenchFailure, BenchRecord, BenchRequest, Record, record_from_dict

PAIR_TIMEOUT_S = 900.0


def _why_not(backend: Backend, artifact: Artifact) -> str | None:
    """None when `backend` is installed and can run `artifact`, else why not. A plugin's own error counts as no."""
    try:
        av = backend.available()
        if not av.ok:
            return f"{backend.name} is not available: {av.reason}"
        return backend.supports(artifact)
    except ToolkitError as e:  # the plugin's own verdict on the file ("not a valid ONNX file: ..."), as it says it
        return e.one_line().rstrip(".")
    except Exception as e:
        return f"{backend.name} could not tell whether it runs {artifact.path.name} ({type(e).__name__})"


def _by_priority(backends: Iterable[Backend]) -> list[Backend]:
    return sorted(backends, key=lambda b: (-b.priority, b.name))


def default_backend(artifact: Artifact) -> str:
    """The best installed backend for `artifact` (see the module docstring for the rule)."""
    fmt = artifact.format
    candidates = _by_priority(b for b in plugins.registries().backends if fmt in b.formats)
    if not candidates:
        raise UsageError(f"no backend runs {fmt} files", "See `toolkit plugins` for what is installed")
    for backend in candidates:
        if backend.priority >= 0 and _why_not(backend, artifact) is None:
            return backend.name
    named_only = [b.name for b in candidates if b.priority < 0 and _why_not(b, artifact) is None]
    defaults = [b for b in candidates if b.priority >= 0]
    if defaults:
        best = defaults[0]
        av = best.available()
        if not av.ok and not named_only:
            raise MissingRuntimeError(f"the {best.name} runtime", av.extra or best.extra, av.reason)
        why = _why_not(best, artifact)
    else:
        unavailable = plugins.registries().backends.unavailable
        blocked = sorted({why for why in unavailable.values()})
        why = f"no default backend for {fmt} files is loaded" + (f" ({'; '.join(blocked)})" if blocked else "")
    if named_only:
        raise UsageError(f"{why}; {', '.join(named_only)} can run it, but a backend with a priority below 0 is "
                         "never chosen by default", f"Name it: --backend {named_only[0]}")
    raise UsageError(f"{why}", "Try another --backend or convert the model")


def capable_backends(artifact: Artifact, sweep: bool = True) -> tuple[list[str], dict[str, str]]:
    """(backends that can run `artifact`, {left-out backend: why}); with `sweep`, slow backends are left out."""
    able, left_out = [], {}
    for b in plugins.registries().backends:
        if artifact.format not in b.formats:
            continue
        why = _why_not(b, artifact)
        if why is None and sweep and not b.in_sweeps:
            why = f"{b.name} is too slow for sweeps; name it with --backend"
        if why is None:
            able.append(b.name)
        else:
            left_out[b.name] = why
    return able, left_out


def check_backend(name: str, artifact: Artifact, provider: str | None) -> None:
    """Refuse, before any child starts, a backend that is unknown, missing or cannot run this artifact."""
    backend = plugins.registries().backends.get(name)
    av = backend.available()
    if not av.ok:
        raise MissingRuntimeError(f"the {name} runtime", av.extra or backend.extra, av.reason)
    why = _why_not(backend, artifact)  # a supports() that raises is a no, with the reason, not a crash
    if why:
        raise UsageError(why, "Pick another --backend or convert the model")
    if provider and provider not in backend.providers:
        known = ", ".join(backend.providers) or "none"
        raise UsageError(f"backend {name} has no provider '{provider}'", f"Its providers: {known}")


def failure(request: BenchRequest, error: ToolkitError, details: str | None = None,
            status: str = "error") -> BenchFailure:
    """A failed or skipped pair as a record whose one line names the model and the backend."""
    # The model as the user typed it when that was a relative path (data/conv/model.onnx), else its file name.
    shown = request.model if not Path(request.model).is_absolute() else Path(request.model).name
    where = f"{shown} on {request.backend}" if request.backend else shown
    if request.target:
        where += f" at {request.target}"
    return BenchFailure(model=request.model, backend=request.backend, error=one_line_text(f"{where}: {error.one_line()}"),
                        exit_code=error.exit_code, status=status,
                        details=details if details and debug_enabled() else None)


def run_pair(request: BenchRequest, timeout_s: float = PAIR_TIMEOUT_S) -> Record:
    """Run one pair through its runner, in `request.processes` fresh processes one after another (pooled into one
    record). Errors come back as records, so other pairs carry on."""
    if request.processes > 1:
        from .processes import pool

        parts = []
        for _ in range(request.processes):
            record = run_pair(replace(request, processes=1), timeout_s)
            if not isinstance(record, BenchRecord):
                return record
            parts.append(record)
        return pool(parts)
    try:
        runner = plugins.registries().runners.get(request.runner)
    except ToolkitError as e:
        return failure(request, e)
    try:
        record = record_from_dict(runner.run(request.to_dict(), timeout_s))
        fallback = record.provider.get("fallback") if isinstance(record, BenchRecord) else None
        if fallback and request.strict_provider:
            err = ToolkitError(f"--strict-provider: {fallback}", "Fix the provider's installation, or drop "
                               "--strict-provider to measure what runs instead (the result is flagged)")
            err.exit_code = 1
            return failure(request, err)
        return record
    except Exception as e:  # a runner plugin's own bug: this pair fails, the others carry on
        err = ToolkitError(f"runner {request.runner} failed: {type(e).__name__}: {str(e)[:200]}",
                           "Report it to the runner plugin's author")
        err.exit_code = 1
        return failure(request, err, traceback.format_exc())


def plan(models: Iterable[str], backends: list[str], template: BenchRequest,
         every_capable: bool = False) -> tuple[list[BenchRequest], list[BenchFailure]]:
    """Expand models x backends into requests. A pair that cannot run is "skipped" (with the reason) when other
    pairs of that model run; a model no pair can run is an error."""
    requests: list[BenchRequest] = []
    failures: list[BenchFailure] = []
    for model in models:
        base = replace(template, model=str(model))
        try:
            artifact = Artifact.open(model)
            if backends:
                names, left_out = list(backends), {}
            elif every_capable:
                names, left_out = capable_backends(artifact)
                if template.runner != "local":  # only backends that can run on a device without the toolkit
                    for name in [n for n in [*names, *left_out] if not plugins.registries().backends.get(n).device_module]:
                        if name in names:
                            names.remove(name)
                        left_out[name] = f"backend {name} cannot run on a remote device (it has no device module)"
                if not names:
                    raise UsageError(f"no installed backend can run it ({'; '.join(left_out.values()) or 'none'})",
                                     "See `toolkit plugins`")
            else:
                names, left_out = [default_backend(artifact)], {}
        except ToolkitError as e:
            failures.append(failure(replace(base, backend=",".join(backends)), e, traceback.format_exc()))
            continue
        mine: list[BenchRequest] = []
        skipped: list[BenchFailure] = []
        for name in names:
            req = replace(base, backend=name)
            try:
                check_backend(name, artifact, req.provider)
            except MissingRuntimeError as e:
                failures.append(failure(req, e))
                continue
            except ToolkitError as e:
                skipped.append(failure(req, e, status="skipped"))
                continue
            mine.append(req)
        for name, why in left_out.items():
            skipped.append(failure(replace(base, backend=name), UsageError(why), status="skipped"))
        if mine:
            failures.extend(skipped)
        else:  # nothing that was named or chosen can run this model: that is an error, not a skip
            failures.extend(replace(s, status="error") for s in skipped)
        requests.extend(mine)
    return requests, failures


def run_all(requests: list[BenchRequest], on_done: Callable[[Record], None] | None = None,
            records: list[Record] | None = None) -> list[Record]:
    """Run every request, appending to `records` as each finishes (so an interrupted run keeps what finished).

    Requests for one target run in turn (two measurements on one machine would disturb each other); different
    targets run in parallel, each in its own thread, so a slow or dead device holds up only its own results. On
    Ctrl-C the running children and ssh sessions are killed (the janitor tracks them all) and the interrupt is
    raised once every thread has stopped."""
    import threading

    records = [] if records is None else records
    groups: dict[str | None, list[BenchRequest]] = {}
    for req in requests:
        groups.setdefault(req.target, []).append(req)
    lock, stop = threading.Lock(), threading.Event()

    def run_group(group: list[BenchRequest]) -> None:
        for req in group:
            if stop.is_set():
                return
            record = run_pair(req)
            if stop.is_set():  # killed by the interrupt: not a result
                return
            with lock:
                records.append(record)
                if on_done:
                    on_done(record)

    if len(groups) <= 1:  # one target: in this thread, where a Ctrl-C reaches the runner directly
        run_group(requests)
        return records
    threads = [threading.Thread(target=run_group, args=(g,), daemon=True) for g in groups.values()]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except KeyboardInterrupt:
        stop.set()
        from .. import janitor

        janitor.kill_tracked_groups()
        for t in threads:
            t.join(5)
        raise
    return records


def ok_records(records: Iterable[Record]) -> list[BenchRecord]:
    return [r for r in records if isinstance(r, BenchRecord)]
