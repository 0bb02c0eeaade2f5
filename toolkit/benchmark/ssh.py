"""The built-in `ssh` runner: measures on a device through the user's own OpenSSH client, so their keys, agent,
~/.ssh/config (Host aliases, ProxyJump) and known_hosts apply, with host key checking left on.

One ssh command per pair starts the device agent (remote.py, device_agent.py) and talks to it over stdin/stdout:
nothing is copied with scp, nothing is left behind, and BatchMode keeps ssh from ever waiting for a password or a
host-key question. The ssh process is in its own process group, tracked by the janitor, so a Ctrl-C, a timeout or
our own death ends it, and the agent, seeing its stdin close, removes its files on the device.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import traceback
from typing import Any

from .. import janitor
from ..errors import ToolkitError, UsageError
from ..hookspecs import hookimpl
from ..interfaces import Availability, Runner
from ..records import BenchRequest
from . import remote

CONNECT_TIMEOUT_S = 15
# A device that stops answering is noticed within about 3 x 5 s, even in the middle of a long measurement.
KEEPALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")


def ssh_argv(connection: dict[str, Any]) -> list[str]:
    """The ssh command line (without the remote command) for a target's connection."""
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", *KEEPALIVE]
    if connection.get("ssh_config"):
        argv += ["-F", str(connection["ssh_config"])]
    if connection.get("port"):
        argv += ["-p", str(int(connection["port"]))]
    if connection.get("user"):
        argv += ["-l", str(connection["user"])]
    host = str(connection.get("host") or "")
    if not host or host.startswith("-"):
        raise UsageError(f"'{host}' is not a host to connect to", "Give ssh://[user@]host[:port] or a Host alias")
    return [*argv, "--", host]


def where(connection: dict[str, Any]) -> str:
    user = f"{connection['user']}@" if connection.get("user") else ""
    port = f":{connection['port']}" if connection.get("port") else ""
    return f"{user}{connection.get('host')}{port}"


def ssh_error(stderr: str, connection: dict[str, Any], phase: str, python: str, code: int | None) -> ToolkitError:
    """One line for what went wrong with the connection, from what ssh and the remote shell said."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else ""
    host = where(connection)
    bare = str(connection.get("host"))
    port = f"-p {connection['port']} " if connection.get("port") else ""
    if connection.get("ssh_config"):  # the user's commands must use the same config as ours
        port = f"-F {connection['ssh_config']} {port}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return remote.DeviceError(f"the host key of {host} has changed since you last connected",
                                  f"If the device was reinstalled, remove the old key (ssh-keygen -R {bare}) and "
                                  f"connect once with `ssh {port}{bare}` to check the new one", 2)
    if "Host key verification failed" in text or "No ED25519 host key is known" in text:
        return remote.DeviceError(f"the host key of {host} is not in your known_hosts, and host key checking is on",
                                  f"Connect once with `ssh {port}{bare}`, check the fingerprint and accept it", 2)
    if code == 126 or (code != 255 and "cannot execute" in text):
        return remote.DeviceError(f"the device's Python at {python} cannot be run ({last.split(': ')[-1]})",
                                  "Point --remote-python (or the profile's `python`) at the interpreter itself, "
                                  "e.g. /home/pi/venv/bin/python", 2)
    if "Permission denied (" in text:
        return remote.DeviceError(f"{host} refused the login ({last.split(': ', 1)[-1]})",
                                  f"Install your key there: ssh-copy-id {port}{host.rsplit(':', 1)[0]}; or set "
                                  "IdentityFile for it in your ssh config (--ssh-config FILE)", 2)
    if "Could not resolve hostname" in text:
        return remote.DeviceError(f"cannot resolve the host name {bare}",
                                  "Check the name, or add a Host alias to your ssh config (--ssh-config FILE)", 2)
    if "Connection refused" in text:
        return remote.DeviceError(f"{host} refused the connection: no ssh server listens there",
                                  "Check the host and port, and that sshd runs on the device")
    if any(s in text for s in ("timed out", "No route to host", "Network is unreachable", "Connection timed out")):
        return remote.DeviceError(f"{host} is unreachable ({last})",
                                  "Check that the device is on and on your network")
    if code in (126, 127) and ("not found" in text or "No such file" in text):
        return remote.DeviceError(f"the device has no Python at {python}",
                                  "Install python3 there, or give its path with --remote-python PATH (or the "
                                  "profile's `python`)", 2)
    if phase in ("connecting", "starting") and code != 255:  # ssh exits 255 for its own errors only
        return remote.DeviceError(f"the device's Python at {python} did not start the toolkit's agent "
                                  f"({last or f'exit code {code}'})",
                                  "Point --remote-python (or the profile's `python`) at a Python 3.8 or newer", 2)
    if phase in ("connecting", "starting"):
        return remote.DeviceError(f"ssh to {host} failed: {last or f'exit code {code}'}",
                                  "Check that `ssh " + f"{port}{bare}` works from this machine")
    return remote.DeviceError(f"the connection to {host} was lost while {phase}"
                              + (f" ({last})" if last else ""),
                              "Check the device and the network, then run it again; the other results are kept",
                              1, text or None)


class SshRunner(Runner):
    name = "ssh"
    description = "a device over OpenSSH (ssh://[user@]host[:port] or a Host alias): needs python3, numpy and " \
                  "the runtime there"

    def available(self) -> Availability:
        if shutil.which("ssh") is None:
            return Availability(False, "the OpenSSH client (ssh) is not on PATH: install openssh-client")
        return Availability(True)

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        from .runner import failure

        req = BenchRequest.from_dict(request)
        conn = dict(req.connection)
        python = conn.get("python") or "python3"
        folder = remote.scratch_folder()
        try:
            argv = ssh_argv(conn)
            job = remote.prepare(req, folder)
            measured = self._converse(argv, job, conn, python, timeout_s)
            device = {"runner": "ssh", "host": where(conn), "python": python}
            return remote.record(job, measured, device).to_dict()
        except remote.DeviceError as e:
            return failure(req, e, e.details).to_dict()
        except ToolkitError as e:
            return failure(req, e, getattr(e, "child_traceback", None) or traceback.format_exc()).to_dict()
        finally:
            janitor.remove(folder)
            janitor.untrack_path(folder)

    def _converse(self, argv: list[str], job: remote.RemoteJob, conn: dict[str, Any], python: str,
                  timeout_s: float) -> dict[str, Any]:
        command = [*argv, remote.bootstrap_command(python)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                process_group=0, env=dict(os.environ, LC_ALL="C"))
        janitor.track_group(proc.pid)
        stderr: list[bytes] = []
        reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)  # type: ignore
        reader.start()
        timed_out = threading.Event()

        def on_timeout() -> None:
            timed_out.set()
            _kill(proc)

        timer = threading.Timer(timeout_s, on_timeout)
        timer.daemon = True
        timer.start()
        finished = False
        try:
            measured = remote.converse(proc.stdin, proc.stdout, job, python)  # type: ignore[arg-type]
            finished = True
            return measured
        except remote.ConnectionLost as lost:
            try:
                code = proc.wait(timeout=CONNECT_TIMEOUT_S)  # ssh is exiting: its status says why
            except subprocess.TimeoutExpired:
                _kill(proc)
                code = proc.wait()
            reader.join(timeout=5)
            if timed_out.is_set():
                raise remote.DeviceError(f"timed out after {timeout_s:.0f} s while {lost.phase} on {where(conn)}",
                                         "Give it more time with fewer --runs, or check the device") from None
            text = b"".join(stderr).decode("utf-8", "replace")
            raise ssh_error(text, conn, lost.phase, python, code) from None
        finally:
            timer.cancel()
            if finished:  # the agent has answered: let ssh close the session cleanly
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                    proc.wait(timeout=CONNECT_TIMEOUT_S)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            # Anything else (an error, Ctrl-C, a device that stopped answering): end ssh now. The agent sees its
            # stdin close and removes its files on the device.
            _kill(proc)
            proc.wait()
            janitor.untrack_group(proc.pid)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass


@hookimpl
def register_runners(register):
    register(SshRunner())
