"""Run model files through the toolkit's real code paths and sort what happens into outcome classes.

Parent side (in this process): format detection, the format's reader, Artifact.open and the benchmark's plan on
every backend of the format, as `toolkit bench` does before any child starts. Runtime side: the child's own
entry point (toolkit.benchmark.measure:measure) on each accepted (model, backend) pair. Starting a child per pair
costs about a second, so one child imports the runtimes once and forks a grandchild per pair; a grandchild that
dies is a contained crash, one that outlives its time is a hang.

An outcome is fine when it is a result, a ToolkitError whose line is one bounded line, or a crash contained in a
child. Anything else (another exception, a message of several lines or of unbounded length, a hang) is a DEFECT.
"""

from __future__ import annotations

import os
import select
import signal
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

OK, MODEL_FILE, RUNTIME, CRASH, DEFECT = "ok", "model-file error", "runtime error", "contained crash", "DEFECT"
CLASSES = (OK, MODEL_FILE, RUNTIME, CRASH, DEFECT)
MAX_MESSAGE = 400  # an error's message; the printed line adds the model, the backend and the hint
MAX_LINE = 700
CASE_TIMEOUT_S = 30.0
BACKENDS = ("onnxruntime", "tflite", "reference")  # the built-in ones: the code this harness may hold to account
# The child's address-space limit here: the smallest default a machine gets (toolkit.child), so that a model
# declaring gigabytes fails in seconds on any machine instead of being read for minutes.
MEMORY_MB = 4096


@dataclass
class Outcome:
    model: str  # the file's name
    side: str  # "parent", or the backend that ran it
    cls: str  # one of CLASSES
    detail: str  # the error line, or what the defect is
    seconds: float = 0.0

    @property
    def defect(self) -> bool:
        return self.cls == DEFECT


def line_problem(message: str, line: str, path: str | os.PathLike) -> str | None:
    """What is wrong with an error's `message` and the `line` a user sees, or None when both are one bounded
    line. The model's path is counted as a short name: it is the user's, not the toolkit's, length."""
    for text in (message, line):
        if "Traceback (most recent call last)" in text:
            return "a traceback in the message"
        if "\n" in text or "\r" in text:
            return f"a message of {len(text.splitlines())} lines"
    short = str(message).replace(str(path), "M").replace(Path(path).name, "M")
    if len(short) > MAX_MESSAGE:
        return f"a message of {len(short)} characters"
    if len(line.replace(str(path), "M").replace(Path(path).name, "M")) > MAX_LINE:
        return f"an error line of {len(line)} characters"
    return None


def error_outcome(model: str, side: str, err: BaseException, line: str | None = None) -> Outcome:
    """The class of an exception raised by the toolkit's code; `line` is what the CLI would print."""
    from toolkit.errors import ModelFileError, ToolkitError

    if not isinstance(err, ToolkitError):
        tb = traceback.extract_tb(err.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return Outcome(model, side, DEFECT, f"uncaught {type(err).__name__} at {where}: {str(err)[:200]!r}")
    line = err.one_line() if line is None else line
    problem = line_problem(err.message, line, model)
    if problem:
        return Outcome(model, side, DEFECT, f"{problem}: {line[:300]!r}")
    return Outcome(model, side, MODEL_FILE if isinstance(err, ModelFileError) else RUNTIME, line)


# ---------------------------------------------------------------------------------------------- parent side
def bench_request(path: str | os.PathLike, backend: str) -> Any:
    from toolkit.records import BenchRequest

    return BenchRequest(model=str(path), backend=backend, runs=3, warmup=1)


def parent_outcome(path: str | os.PathLike) -> tuple[Outcome, list[str]]:
    """What the CLI's process does with `path` before a child starts, and the backends its plan accepts."""
    from toolkit import formats, plugins
    from toolkit.artifact import Artifact
    from toolkit.benchmark.runner import plan

    name = str(path)
    try:
        fmt = formats.detect(path)
        formats.read_specs(path, fmt)
        formats.get(fmt).describe(Path(path))
        Artifact.open(path)
        accepted, refusals = [], []
        backends = [b.name for b in plugins.registries().backends
                    if b.name in BACKENDS and fmt in b.formats and b.available().ok]
        for backend in [None, *backends]:  # None: the default backend, as `toolkit bench MODEL` picks it
            requests, problems = plan([name], [backend] if backend else [], bench_request(path, ""))
            for p in problems:
                problem = line_problem(p.error, p.error, path)
                if problem:
                    return Outcome(name, "parent", DEFECT, f"{problem} from the plan: {p.error[:300]!r}"), []
                refusals.append(p.error)
            if backend and requests:
                accepted.append(backend)
    except Exception as e:
        return error_outcome(name, "parent", e), []
    if not accepted:
        return Outcome(name, "parent", RUNTIME, refusals[0] if refusals else "no backend"), []
    return Outcome(name, "parent", OK, ""), accepted


# ---------------------------------------------------------------------------------------------- runtime side
def runtime_outcomes(pairs: list[tuple[str, str]], case_timeout_s: float = CASE_TIMEOUT_S) -> list[Outcome]:
    """Each (model, backend) pair through measure(), in one child that forks a grandchild per pair."""
    from toolkit.child import run_in_child

    if not pairs:
        return []
    found = run_in_child("fuzz_harness:measure_each", timeout_s=60 + len(pairs) * (case_timeout_s + 1),
                         memory_mb=MEMORY_MB,
                         pairs=[list(p) for p in pairs], case_timeout_s=case_timeout_s)
    return [Outcome(**o) for o in found]


def measure_each(pairs: list[list[str]], case_timeout_s: float) -> list[dict[str, Any]]:
    """Child entry point: import the runtimes once, then measure each pair in a forked grandchild."""
    import importlib

    from toolkit import plugins

    plugins.registries()
    for module in ("onnx", "onnxruntime", "ai_edge_litert.interpreter", "tflite"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    out = []
    for model, backend in pairs:
        start = time.monotonic()
        outcome = _measure_forked(model, backend, case_timeout_s)
        outcome.seconds = round(time.monotonic() - start, 3)
        out.append(vars(outcome))
    return out


def _measure_forked(model: str, backend: str, timeout_s: float) -> Outcome:
    from toolkit import child

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the grandchild: speaks the child protocol on its own pipe, never on its parent's
        os.close(read_fd)
        try:
            _grandchild(model, backend, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    phase, message, timed_out = "starting", None, False
    deadline = time.monotonic() + timeout_s
    try:
        while message is None:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                timed_out = True
                break
            header = child._read_exact(read_fd, child._HEADER.size)
            body = child._read_exact(read_fd, child._HEADER.unpack(header)[0]) if header else None
            if body is None:
                break
            kind, payload = child.loads(body)
            if kind == "phase":
                phase = payload
            else:
                message = (kind, payload)
    finally:
        os.close(read_fd)
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return Outcome(model, backend, DEFECT, f"hang: no answer within {timeout_s:.0f} s while {phase}")
    if message is None:
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            return Outcome(model, backend, CRASH, f"{sig} while {phase}")
        return Outcome(model, backend, DEFECT, f"exited {os.WEXITSTATUS(status)} without an answer while {phase}")
    kind, payload = message
    if kind == "ok":
        return Outcome(model, backend, OK, payload)
    if kind == "uncaught":
        return Outcome(model, backend, DEFECT, payload)
    return _error_line(model, backend, payload)


def _error_line(model: str, backend: str, payload: dict[str, Any]) -> Outcome:
    """The line the CLI prints for an error the child raised: the local runner's failure record."""
    from toolkit.benchmark.runner import failure
    from toolkit.child import ChildError

    err = ChildError(payload["message"], payload["hint"], payload["exit_code"], "")
    line = failure(bench_request(model, backend), err).error
    problem = line_problem(payload["message"], line, model)  # the message as raised, before any repair on the way
    if problem:
        return Outcome(model, backend, DEFECT, f"{problem}: {payload['message'][:300]!r}")
    out = error_outcome(model, backend, err, line)
    if out.cls != DEFECT and payload["model_file"]:
        out.cls = MODEL_FILE
    return out


def _grandchild(model: str, backend: str, fd: int) -> None:
    from toolkit import child
    from toolkit.benchmark.measure import measure
    from toolkit.errors import ModelFileError, ToolkitError

    child._channel = os.fdopen(fd, "wb")  # report_phase() in measure() now reaches this process's parent
    try:
        record = measure(bench_request(model, backend).to_dict())
        child._send("ok", f"p50 {record['latency_us']['p50']:.0f} us")
    except ToolkitError as e:
        child._send("error", {"message": e.message, "hint": e.hint, "exit_code": e.exit_code,
                              "model_file": isinstance(e, ModelFileError)})
    except MemoryError:  # the child's own answer to it (toolkit.child): a one-line error
        child._send("error", {"message": "ran out of memory", "hint": None, "exit_code": 1, "model_file": False})
    except BaseException as e:  # the child would turn it into one line, but it is a bug where it was raised
        child._send("uncaught", error_outcome(model, backend, e).detail)
    child._channel.flush()


# ---------------------------------------------------------------------------------------------- the CLI
STDERR_LABELS = ("Error: ", "Skipped: ", "Note: ", "Warning: ")


def cli_outcome(path: str | os.PathLike, timeout_s: float = 120.0) -> Outcome:
    """`toolkit bench PATH` on every built-in backend of its format, as a user runs it: a fresh process whose
    stderr must be labelled one-line messages, one "Error:" line per failed pair, and whose exit code is 0, 1 or 2.
    A crash in a child counts as contained when the CLI reports it that way."""
    import json
    import subprocess
    import sys

    from toolkit import plugins

    name = str(path)
    fmt = Path(path).suffix.lstrip(".")
    backends = [b.name for b in plugins.registries().backends if b.name in BACKENDS and fmt in b.formats]
    args = [str(Path(sys.executable).with_name("toolkit")), "bench", name, *(f"--backend={b}" for b in backends),
            "--runs", "3", "--warmup", "1", "--format", "json"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Outcome(name, "cli", DEFECT, f"hang: the CLI did not finish within {timeout_s:.0f} s")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in proc.stderr:
        return Outcome(name, "cli", DEFECT, f"a traceback on stderr: {lines[-1][:200]!r}")
    if proc.returncode not in (0, 1, 2):
        return Outcome(name, "cli", DEFECT, f"the CLI died with exit code {proc.returncode}: {proc.stderr[-200:]!r}")
    stray = [ln for ln in lines if not ln.startswith(STDERR_LABELS)]
    if stray:
        return Outcome(name, "cli", DEFECT, f"{len(stray)} unlabelled stderr lines, e.g. {stray[0][:200]!r}")
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        return Outcome(name, "cli", DEFECT, f"no JSON results on stdout: {proc.stdout[:200]!r}")
    errors = [r["error"] for r in results if r["status"] == "error"]
    error_lines = [ln for ln in lines if ln.startswith("Error: ")]
    if len(error_lines) != len(errors):
        return Outcome(name, "cli", DEFECT, f"{len(error_lines)} Error lines for {len(errors)} failed pairs")
    for line in error_lines:
        problem = line_problem("", line, path)  # the message inside was bounded by the child's side already
        if problem:
            return Outcome(name, "cli", DEFECT, f"{problem}: {line[:300]!r}")
    if not errors and proc.returncode == 0:
        return Outcome(name, "cli", OK, "")
    if any("crashed" in e or "timed out" in e for e in errors):
        return Outcome(name, "cli", CRASH, error_lines[0])
    if not error_lines:  # every pair skipped: a non-zero exit, the reasons as Skipped lines
        return Outcome(name, "cli", RUNTIME, lines[0] if lines else f"exit {proc.returncode}")
    return Outcome(name, "cli", MODEL_FILE if proc.returncode == 2 else RUNTIME, error_lines[0])


# ---------------------------------------------------------------------------------------------- reports
def run_cases(paths: Iterable[str | os.PathLike], runtime: bool = True,
              case_timeout_s: float = CASE_TIMEOUT_S) -> tuple[list[Outcome], list[Outcome]]:
    """(parent-side outcomes, runtime-side outcomes) of every file; the runtime side runs each pair the
    parent side accepted."""
    parent, pairs = [], []
    for path in paths:
        outcome, backends = parent_outcome(path)
        parent.append(outcome)
        pairs += [(str(path), b) for b in backends]
    return parent, (runtime_outcomes(pairs, case_timeout_s) if runtime else [])


def counts(outcomes: Iterable[Outcome]) -> Counter:
    return Counter(o.cls for o in outcomes)


def table(columns: dict[str, list[Outcome]]) -> str:
    """A plain-text table: one row per outcome class, one column per group of outcomes."""
    heads = list(columns)
    tallies = {h: counts(columns[h]) for h in heads}
    width = max(len(c) for c in CLASSES) + 2
    rows = ["outcome".ljust(width) + "".join(h.rjust(max(len(h), 6) + 2) for h in heads)]
    for cls in (*CLASSES, "total"):
        cells = [str(len(columns[h]) if cls == "total" else tallies[h][cls]).rjust(max(len(h), 6) + 2)
                 for h in heads]
        rows.append(cls.ljust(width) + "".join(cells))
    return "\n".join(rows)


def defects(outcomes: Iterable[Outcome]) -> list[str]:
    return [f"{Path(o.model).name} on {o.side}: {o.detail}" for o in outcomes if o.defect]
