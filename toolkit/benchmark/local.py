"""The built-in `local` runner: each pair in a fresh child process on this machine. The core registers it, and the
`ssh` runner (ssh.py), through the same register_runners hook a plugin uses, so they are there whatever plugins
are allowed or blocked."""

from __future__ import annotations

from typing import Any

from ..child import ChildError, run_in_child
from ..errors import ChildCrashedError
from ..hookspecs import hookimpl
from ..interfaces import Runner
from ..records import BenchRequest


class LocalRunner(Runner):
    name = "local"
    description = "this machine: each (model, backend) pair in its own child process"

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        from .runner import failure

        req = BenchRequest.from_dict(request)
        # GPU runtimes map far more address space than they use: an RLIMIT_AS would stop CUDA from starting.
        memory_mb = 0 if req.provider not in (None, "cpu") else None
        try:
            return run_in_child("toolkit.benchmark.measure:measure", timeout_s=timeout_s, memory_mb=memory_mb,
                                request=request)
        except ChildCrashedError as crash:
            phase = getattr(crash, "phase", None) or "starting"
            how = crash.failure.describe()  # type: ignore[attr-defined]
            what = {"loading": "crashed while loading the model", "running": "crashed while running",
                    "evaluating": "crashed while evaluating"}.get(phase, "crashed while starting")
            if crash.failure.timed_out:  # type: ignore[attr-defined]
                what = f"timed out after {timeout_s:.0f} s while {phase}"
            err = ChildCrashedError(f"{what} ({how})",
                                    "Run it with --traceback for the runtime's output, or try another --backend")
            return failure(req, err, getattr(crash, "log", None)).to_dict()
        except ChildError as err:
            return failure(req, err, err.child_traceback).to_dict()


@hookimpl
def register_runners(register):
    from .ssh import SshRunner

    register(LocalRunner())
    register(SshRunner())
