"""The agent a remote runner starts on the device, through one ssh command: `PYTHON -I -c BOOTSTRAP N`, where the
bootstrap reads these N bytes from stdin and runs them. Only the standard library; Python 3.8+.

Conversation over stdin/stdout, one JSON line per message (a file's bytes follow its header line):
  parent -> {"job": ..., "files": [{"sha256", "size", "name", "cache"}], "sources": {file name: text},
             "requirements": [[[import names], "pip name"], ...]}
  agent  -> {"ready": {"python", "machine", "missing": [pip names], "need": [sha256...]}}
  parent -> for each needed file: {"file": sha256, "size": n} then n bytes
  agent  -> {"phase": ...} ... then {"result": ...} | {"error": ...} | {"crashed": ...}

Everything it writes goes into one private temporary folder, removed whatever happens: the measurement ends,
fails or crashes (it runs in a child process), the parent closes the connection or it is cut (stdin reaches its
end), or a signal arrives. Model files are kept in a cache by sha256 (XDG_CACHE_HOME or ~/.cache), so a second run
ships nothing; each lands there complete or not at all.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

MARK = "\x1etoolkit "
PREFIX = "toolkit-device-"
_state = {"folder": None, "child": None}
_lock = threading.Lock()


def send(**message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def cleanup():
    with _lock:
        child = _state["child"]
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
        folder, _state["folder"] = _state["folder"], None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def sweep(tmp):
    """Folders of agents that died without cleaning up (a power cut): their pid is in the name."""
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            pid = int(name[len(PREFIX):].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
        except (ValueError, OSError):
            pass


def read_line(stream):
    line = stream.readline()
    if not line:
        raise SystemExit(3)  # the parent went away
    return json.loads(line.decode("utf-8"))


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge-toolkit", "device")


def receive(stream, header, folder):
    """A file's bytes into `folder`, checked against its sha256 while they arrive."""
    sha, size = header["file"], int(header["size"])
    part = os.path.join(folder, sha + ".part")
    digest = hashlib.sha256()
    left = size
    with open(part, "wb") as out:
        while left:
            chunk = stream.read(min(left, 1 << 20))
            if not chunk:
                raise SystemExit(3)  # cut mid-transfer: the folder goes, the cache never saw it
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    if digest.hexdigest() != sha:
        send(error={"message": f"a file arrived damaged (sha256 {digest.hexdigest()[:12]}, expected {sha[:12]})",
                    "hint": "Run it again; check the connection", "kind": "transfer"})
        raise SystemExit(4)
    return part


def intact(path, sha, size):
    """Whether the cache holds this file, whole: a copy damaged on the device's disk is sent again."""
    try:
        if os.path.getsize(path) != size:
            return False
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha
    except OSError:
        return False


def watch_parent(stream):
    """After the transfer the parent sends nothing: end of stdin means it is gone, or the connection is."""
    while stream.read(4096):
        pass
    cleanup()
    os._exit(3)


def main():
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _stop)
    # SIGPIPE stays ignored (Python's default): a write to a cut connection raises, and `finally` cleans up.
    stream = sys.stdin.buffer
    if sys.version_info < (3, 8):
        send(error={"message": f"the device's Python is {sys.version.split()[0]}; the toolkit's payload needs 3.8 or "
                               "newer", "hint": "Install python3.8+ there, or point --remote-python at one",
                    "kind": "setup"})
        return
    hello = read_line(stream)
    tmp = tempfile.gettempdir()
    sweep(tmp)
    folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=tmp)
    _state["folder"] = folder
    import importlib.util

    missing = [pip for names, pip in hello["requirements"]
               if not any(importlib.util.find_spec(n) is not None for n in names)]
    cache = cache_dir()
    paths, need = {}, []
    for f in hello["files"]:
        cached = os.path.join(cache, f["sha256"] + f.get("suffix", ""))
        if f.get("cache") and intact(cached, f["sha256"], f["size"]):
            paths[f["sha256"]] = cached
        else:
            need.append(f["sha256"])
    import platform

    send(ready={"python": platform.python_version(), "machine": platform.machine(), "missing": missing,
                "need": [] if missing else need})
    if missing:
        return
    by_sha = {f["sha256"]: f for f in hello["files"]}
    for _ in need:
        header = read_line(stream)
        part = receive(stream, header, folder)
        f = by_sha[header["file"]]
        if f.get("cache"):
            os.makedirs(cache, exist_ok=True)
            final = os.path.join(cache, f["sha256"] + f.get("suffix", ""))
            os.replace(part, final)  # atomic: another agent reading it sees all of it or nothing
        else:
            final = os.path.join(folder, f["sha256"] + f.get("suffix", ""))
            os.replace(part, final)
        paths[f["sha256"]] = final
    threading.Thread(target=watch_parent, args=(stream,), daemon=True).start()

    for name, text in hello["sources"].items():
        with open(os.path.join(folder, name), "w") as out:
            out.write(text)
    job = resolve_paths(hello["job"], paths)
    with open(os.path.join(folder, "job.json"), "w") as out:
        json.dump(job, out)
    log_path = os.path.join(folder, "child.log")
    # Whatever the runtime writes to a temporary folder goes with ours.
    child_env = dict(os.environ, TMPDIR=os.path.join(folder, "tmp"))
    os.mkdir(child_env["TMPDIR"])
    with open(log_path, "wb") as log:
        with _lock:
            _state["child"] = subprocess.Popen(
                [sys.executable, "-I", os.path.join(folder, "device_measure.py"), os.path.join(folder, "job.json")],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=folder, env=child_env,
                start_new_session=True)
        child = _state["child"]
        answered, phase = False, None
        for raw in child.stdout:
            line = raw.decode("utf-8", "replace")
            if not line.startswith(MARK):
                log.write(raw)  # a runtime that prints to stdout: kept with its other output
                continue
            message = json.loads(line[len(MARK):])
            if "phase" in message:
                phase = message["phase"]
            answered = answered or "result" in message or "error" in message
            send(**message)
        code = child.wait()
    if not answered:
        with open(log_path, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        send(crashed={"exit_code": code, "signal": -code if code < 0 else None, "phase": phase, "log": tail})


def resolve_paths(job, paths):
    """The job with each {"sha256": ...} placeholder replaced by where that file now is on the device."""
    if isinstance(job, dict):
        if set(job) == {"sha256"}:
            return paths[job["sha256"]]
        return {k: resolve_paths(v, paths) for k, v in job.items()}
    if isinstance(job, list):
        return [resolve_paths(v, paths) for v in job]
    return job


if __name__ == "__main__":  # the bootstrap runs it so; the toolkit only reads this file, to ship it
    try:
        main()
    finally:
        cleanup()
