"""A watchdog process that cleans up after this one, however it ends.

Converting and quantizing leave working files beside the output and temporary folders for their children, and
children that may have started processes of their own (tf2onnx). A SIGKILL of the CLI runs no `finally`, so
cleanup cannot live in this process alone. The janitor is a tiny stdlib-only interpreter that reads what to
clean from a pipe: the kernel closes the pipe when this process dies, for any reason, and on that end-of-file
the janitor kills the registered process groups and removes the registered paths, then exits. On a normal exit
nothing is left registered and it simply goes away.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

# Runs with -I -S: no site, no current folder, nothing but the standard library.
_SCRIPT = r"""
import json, os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
paths, groups = set(), set()
for line in sys.stdin.buffer:
    op, arg = json.loads(line)
    {"+path": paths.add, "-path": paths.discard, "+group": groups.add, "-group": groups.discard}[op](arg)
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
def running(g):  # a member of group g that is not yet a zombie (zombies write nothing, and may never be reaped)
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return False
    for e in entries:
        try:
            with open(f"/proc/{e}/stat") as f:
                state, _, pgrp = f.read().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and int(pgrp) == g:
            return True
    return False
deadline = time.monotonic() + 2
while groups and time.monotonic() < deadline and any(running(g) for g in groups):
    time.sleep(0.01)
for p in paths:
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            os.unlink(p)
        except OSError:
            pass
"""

_lock = threading.Lock()
_proc: subprocess.Popen | None = None
_owner_pid: int | None = None


def _pipe() -> IO[bytes]:
    """The janitor's stdin, starting it on first use (and again in a forked process, which needs its own)."""
    global _proc, _owner_pid
    if _proc is None or _owner_pid != os.getpid():
        # Its own session: a Ctrl-C or a kill of the terminal's process group must not take it down with us.
        _proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SCRIPT], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _owner_pid = os.getpid()
        atexit.register(_stop)
    assert _proc.stdin is not None
    return _proc.stdin


def _send(op: str, arg: str | int) -> None:
    with _lock:
        pipe = _pipe()
        try:
            pipe.write(json.dumps([op, arg]).encode("utf-8") + b"\n")
            pipe.flush()
        except (BrokenPipeError, ValueError):  # the janitor was killed: cleanup falls back to our own finally
            pass


def _stop() -> None:
    """At a normal exit: close the pipe and wait, so the janitor never outlives us."""
    global _proc
    if _proc is not None and _owner_pid == os.getpid():
        try:
            _proc.stdin.close()  # type: ignore[union-attr]
            _proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _proc = None


def track_path(path: str | os.PathLike) -> None:
    _send("+path", os.path.abspath(path))


def untrack_path(path: str | os.PathLike) -> None:
    _send("-path", os.path.abspath(path))


_groups: set[int] = set()  # the same groups, known here too: kill_tracked_groups() ends them on a Ctrl-C


def track_group(pgid: int) -> None:
    _groups.add(pgid)
    _send("+group", pgid)


def untrack_group(pgid: int) -> None:
    _groups.discard(pgid)
    _send("-group", pgid)


def kill_tracked_groups() -> None:
    """Kill every process group this process still tracks (children, ssh sessions): their owners' threads then
    see them gone and clean up."""
    import signal

    for pgid in list(_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def owner_tag() -> str:
    """Names this process in the names of its temporary files: a host tag and the pid."""
    host = hashlib.sha256(os.uname().nodename.encode()).hexdigest()[:6]
    return f"{host}-{os.getpid()}"


def _is_stale(tag: str) -> bool:
    """Whether the process a tag names is gone: only for tags of this host (another machine or container sharing
    the folder has its own pids), and only when that pid no longer exists."""
    host, _, pid = tag.partition("-")
    if host != owner_tag().partition("-")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def sweep(folder: str | os.PathLike, prefix: str, suffix: str = "") -> list[Path]:
    """Remove what processes of this host that no longer exist left in `folder`: names `PREFIX<tag>-...SUFFIX`.
    The janitor cleans up after a killed command; this catches what it could not (the janitor killed too, as an
    out-of-memory kill of a whole container does)."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if not (p.name.startswith(prefix) and p.name.endswith(suffix)):
            continue
        rest = p.name[len(prefix):].split("-")
        if len(rest) >= 3 and _is_stale(f"{rest[0]}-{rest[1]}"):
            remove(p)
            removed.append(p)
    return removed


def remove(path: str | os.PathLike) -> None:
    """Remove a file or folder if it is there."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


@contextmanager
def temporary(path: str | os.PathLike) -> Iterator[Path]:
    """`path` is removed when the block ends, and by the janitor if this process dies inside it."""
    track_path(path)
    try:
        yield Path(path)
    finally:
        remove(path)
        untrack_path(path)
