"""Run native work in a child process with a timeout and a memory limit.

Loading, converting, calibrating and benchmarking go through native code that can crash the interpreter.
The child is a fresh interpreter (`python -P -m toolkit.child`), so a segfault there becomes a clear error
here, TensorFlow loaded in one child never meets a runtime loaded in another, and scripts that call the
toolkit need no `if __name__ == "__main__"` guard. Safe-path mode (-P) keeps the current folder off sys.path,
so a numpy.py or toolkit/ beside the user's model is never imported. Requests and answers are JSON (numpy
arrays inside travel as .npy bytes, never pickles) over a private pipe; the child's stdout and stderr
(runtime logs) are kept in a file and shown only when something goes wrong.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

from . import janitor
from .errors import ChildCrashedError, ToolkitError, UsageError, first_line

DEFAULT_TIMEOUT_S = 900.0
MEMORY_LIMIT_ENV = "TOOLKIT_CHILD_MEMORY_MB"
# Address space, not resident memory: TensorFlow's converter peaks near 4 GB of it, a runtime near 2 GB.
MIN_DEFAULT_MEMORY_MB = 4096
MAX_MEMORY_MB = 1 << 24  # 16 TiB: more is no limit at all, and overflows the kernel's limit
# How native code reports an allocation the address-space limit refused.
_OUT_OF_MEMORY = ("failed to map segment", "Cannot allocate memory", "pthread_create() failed", "bad_alloc",
                  "Unable to allocate")
_FD_ENV = "TOOLKIT_CHILD_FD"
SCRATCH_PREFIX = "toolkit-child-"
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_PARENT_ENV = "TOOLKIT_CHILD_PARENT"
_HEADER = struct.Struct("!Q")


@dataclass
class ChildFailure:
    """How a child ended when it did not return a result."""

    signal: int | None = None
    exit_code: int | None = None
    timed_out: bool = False

    def describe(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = "signal"
            return f"signal {self.signal}, {name}"
        return f"exit code {self.exit_code}"


class ChildError(ToolkitError):
    """An error raised inside the child, carried back with its exit code and traceback."""

    def __init__(self, message: str, hint: str | None, exit_code: int, child_traceback: str):
        super().__init__(message, hint)
        self.exit_code = exit_code
        self.child_traceback = child_traceback


def _encode(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, obj, allow_pickle=False)
        return {"__ndarray__": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot send a value of type {type(obj).__name__} across the process boundary")


def _decode(d: dict[str, Any]) -> Any:
    if len(d) == 1 and "__ndarray__" in d:
        import numpy as np

        return np.load(io.BytesIO(base64.b64decode(d["__ndarray__"])), allow_pickle=False)
    return d


def dumps(obj: Any) -> bytes:
    """JSON for the process boundary: numpy arrays as base64 .npy, nothing that unpickles."""
    return json.dumps(obj, default=_encode).encode("utf-8")


def loads(data: bytes) -> Any:
    return json.loads(data, object_hook=_decode)


# ---------------------------------------------------------------------------------------------- child side
_channel: BinaryIO | None = None


def _send(kind: str, payload: Any) -> None:
    data = dumps([kind, payload])
    assert _channel is not None
    _channel.write(_HEADER.pack(len(data)) + data)
    _channel.flush()


def report_phase(name: str) -> None:
    """Called from code running in a child: tells the parent what it is doing, so a crash can be placed."""
    if _channel is not None:
        _send("phase", name)


def report_progress(payload: Any) -> None:
    """Called from code running in a child: hands `payload` to the parent's on_progress callback."""
    if _channel is not None:
        _send("progress", payload)


def _die_with_parent() -> None:
    """Linux: the kernel kills this child when the process that started it dies, so no orphan keeps running.
    A parent that died before this ran is caught by comparing with the pid it handed down."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.environ.get(_PARENT_ENV) and os.getppid() != int(os.environ[_PARENT_ENV]):
        os._exit(1)


def _child_main() -> None:
    global _channel
    _die_with_parent()
    _channel = os.fdopen(int(os.environ.pop(_FD_ENV)), "wb")
    target, kwargs, memory_mb = loads(sys.stdin.buffer.read())
    if memory_mb:
        import resource

        limit = int(memory_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        module_name, _, func_name = target.partition(":")
        result = getattr(importlib.import_module(module_name), func_name)(**kwargs)
        _send("ok", result)
    except ToolkitError as exc:
        _send("error", [exc.message, exc.hint, exc.exit_code, traceback.format_exc()])
    except BaseException as exc:  # a runtime's own error or a bug: keep its text and traceback
        # One line, bounded: some runtimes put a whole model or a multi-line log into their messages.
        text = first_line(exc)
        text = text if len(text) <= 300 else text[:300] + "..."
        if isinstance(exc, MemoryError) or any(sign in text for sign in _OUT_OF_MEMORY):
            detail = "" if text == type(exc).__name__ else f" ({type(exc).__name__}: {text})"
            _send("error", [f"ran out of memory under the limit of {memory_mb} MB{detail}",
                            "Raise it with --memory-limit MB", 1, traceback.format_exc()])
        else:
            _send("error", [f"{type(exc).__name__}: {text}", memory_hint(memory_mb), 1, traceback.format_exc()])
    finally:
        _channel.close()


# ---------------------------------------------------------------------------------------------- parent side
def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def memory_limit_mb() -> int:
    """The child memory limit: $TOOLKIT_CHILD_MEMORY_MB (set by --memory-limit) or the machine's default; 0 is
    none. A value that is not a size fails here, with the fix, rather than as a child that cannot start."""
    value = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not value:
        return default_memory_mb()
    if not value.isdigit() or not (int(value) == 0 or 256 <= int(value) <= MAX_MEMORY_MB):
        raise UsageError(f"{MEMORY_LIMIT_ENV}={value!r} is not a memory limit",
                         f"Set a whole number of MB from 256 to {MAX_MEMORY_MB}, or 0 for none")
    return int(value)


def memory_hint(memory_mb: int | None) -> str | None:
    """A limit below what TensorFlow and the runtimes need to start is the likely cause of an odd failure."""
    if memory_mb and memory_mb < MIN_DEFAULT_MEMORY_MB:
        return (f"The memory limit is {memory_mb} MB; TensorFlow and the runtimes may need "
                f"{MIN_DEFAULT_MEMORY_MB} MB to start: raise --memory-limit")
    return None


def child_pythonpath(value: str) -> str:
    """PYTHONPATH for a child: an empty entry (`:/app`, as `PYTHONPATH=$PYTHONPATH:/app` leaves it) means the
    current folder to Python, which -P exists to keep out, so it is dropped; relative entries are made absolute,
    so that they name the folders the user meant."""
    return os.pathsep.join(os.path.abspath(p) for p in value.split(os.pathsep) if p)


def default_memory_mb() -> int:
    """Three quarters of this machine's memory (at least 4 GiB of address space): a hostile model that asks for
    more fails in its child with a clear error instead of pushing the machine into swap or the OOM killer."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (ValueError, OSError):
        return MIN_DEFAULT_MEMORY_MB * 2
    return max(MIN_DEFAULT_MEMORY_MB, total * 3 // 4)


def run_in_child(target: str, /, *, timeout_s: float | None = DEFAULT_TIMEOUT_S, memory_mb: int | None = None,
                 on_progress: Callable[[Any], None] | None = None, **kwargs: Any) -> Any:
    """Call `module:function(**kwargs)` in a fresh interpreter and return its (JSON-able) result.

    Raises ChildError for an error the function raised, and ChildCrashedError (with `.failure`, `.phase` and
    `.log`) when the process died: a signal, a timeout, or an exit without a result.
    """
    if memory_mb is None:
        memory_mb = memory_limit_mb()
    read_fd, write_fd = os.pipe()
    # A private temporary folder (TensorFlow's SavedModels, tf.autograph's files): removed whatever happens.
    scratch = _scratch_folder()
    janitor.track_path(scratch)
    env = dict(os.environ, **{_FD_ENV: str(write_fd), _PARENT_ENV: str(os.getpid()), "TMPDIR": scratch})
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = child_pythonpath(env["PYTHONPATH"])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    message, phase, timed_out, closed = None, None, False, False
    with tempfile.TemporaryFile() as log:
        try:
            # Its own process group: a Ctrl-C reaches only us (we stop it), and one kill takes the child together
            # with anything it started (tf2onnx), here or from the janitor if we are killed.
            proc = subprocess.Popen([sys.executable, "-P", "-m", "toolkit.child"], stdin=subprocess.PIPE, stdout=log,
                                    stderr=log, pass_fds=(write_fd,), env=env, process_group=0)
        except BaseException:
            janitor.remove(scratch)
            raise
        finally:
            os.close(write_fd)
        janitor.track_group(proc.pid)
        try:
            assert proc.stdin is not None
            try:
                proc.stdin.write(dumps([target, kwargs, memory_mb]))
                proc.stdin.close()
            except BrokenPipeError:
                pass
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                ready, _, _ = select.select([read_fd], [], [], left)
                if not ready:
                    timed_out = True
                    break
                header = _read_exact(read_fd, _HEADER.size)
                body = _read_exact(read_fd, _HEADER.unpack(header)[0]) if header else None
                if body is None:  # the child died before it could say more
                    closed = True
                    break
                kind, payload = loads(body)
                if kind == "phase":
                    phase = payload
                    continue
                if kind == "progress":
                    if on_progress is not None:
                        on_progress(payload)
                    continue
                message = (kind, payload)
                break
        except BaseException:  # Ctrl-C, SIGTERM turned exception: the child must not outlive this moment
            _kill_group(proc.pid)
            raise
        finally:
            os.close(read_fd)
            if closed and proc.poll() is None:  # it closed the pipe: give it time to exit, for its exit status
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            # A second Ctrl-C must not cut the cleanup short: it is held until the child is gone, then raised.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                _kill_group(proc.pid)  # also whatever the child started and left running
                proc.wait()
                janitor.untrack_group(proc.pid)
                janitor.remove(scratch)
                janitor.untrack_path(scratch)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            log.seek(0)
            log_text = log.read().decode("utf-8", "replace")
    if message is None:
        code = proc.returncode
        failure = ChildFailure(signal=-code if code is not None and code < 0 and not timed_out else None,
                               exit_code=code, timed_out=timed_out)
        while_ = f" while {phase}" if phase else ""
        hint = memory_hint(memory_mb) or (
            "Something killed it, often the kernel's out-of-memory killer; --memory-limit MB makes it fail "
            "cleanly instead" if failure.signal == signal.SIGKILL else
            "Run it again with --traceback for the process's output")
        what = "timed out" if timed_out else f"died ({failure.describe()})"
        err = ChildCrashedError(f"its process {what}{while_}", None if timed_out else hint)
        err.failure, err.phase, err.log = failure, phase, log_text  # type: ignore[attr-defined]
        raise err
    kind, payload = message
    if kind == "ok":
        return payload
    text, hint, exit_code, tb = payload
    raise ChildError(text, hint, exit_code, tb + ("\n--- child output ---\n" + log_text[-4000:] if log_text else ""))


_swept = False


def _scratch_folder() -> str:
    """A new private temporary folder for a child; the first call also removes those of dead processes."""
    global _swept
    if not _swept:
        janitor.sweep(tempfile.gettempdir(), SCRATCH_PREFIX)
        _swept = True
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{janitor.owner_tag()}-")


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    # Run as toolkit.child, not __main__: the code this calls reports through toolkit.child's channel.
    from toolkit import child

    child._child_main()
