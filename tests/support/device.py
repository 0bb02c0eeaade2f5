"""A real OpenSSH server on 127.0.0.1 that plays a "remote device", and a device Python with only the runtimes.

    with LoopbackDevice(tmp_path) as dev:        # sshd on a free port, keys, known_hosts, a client config
        subprocess.run(["ssh", "-F", dev.ssh_config, dev.alias, "echo $TMPDIR"])   # -> dev.tmp_dir
        dev.cut_connections()                    # SIGKILL the per-connection sshd processes: a dropped link
    python = make_device_python(tmp_path / "env", Path(sys.executable))   # numpy + LiteRT + ONNX Runtime only

Nothing is mocked: the toolkit's ssh code talks to a real sshd with real keys and real host key checking. The
device's session sets TMPDIR and XDG_CACHE_HOME (sshd's SetEnv) to folders the test can inspect, so a test can
check what the toolkit leaves behind on the device. Tests get it through the `loopback_device` and
`device_python` fixtures (tests/support is on sys.path, as for the other support modules):

    from device import loopback_device, device_python  # noqa: F401
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import pytest

SSHD = Path("/usr/sbin/sshd")
ALIAS = "toolkit-device"
MISSING_REASON = "openssh-server is not installed (make test installs it)"
RUNTIMES = ("ai_edge_litert", "onnxruntime")


def openssh_missing() -> str | None:
    """Why the loopback device cannot run here, or None. ssh and ssh-keygen come with openssh-server."""
    if not SSHD.exists() or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        return MISSING_REASON
    return None


def _q(value: object) -> str:
    """Quote a config argument that holds whitespace (ssh and sshd configs take double-quoted arguments)."""
    text = str(value)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> Path:
    """An ed25519 key pair without passphrase at `path` and `path`.pub (mode 0600: ssh and sshd refuse others)."""
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)  # ssh-keygen would ask whether to overwrite
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return path


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) for every process we can read."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # comm is in parentheses and may itself hold spaces and parentheses: split at the last ")".
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), comm)
    return table


def _descendants(root: int, table: dict[int, tuple[int, str]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _prepare_sshd() -> None:
    """In sshd's process before exec (both settings survive it; Linux only, elsewhere stop() still cleans up)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: sshd dies with the test process (a crashed worker)
        # PR_SET_CHILD_SUBREAPER: the commands of a cut connection stay sshd's descendants (sshd reaps them),
        # so command_pids() still sees them and stop() kills them.
        prctl(36, 1)
    except Exception:
        pass


class LoopbackDevice:
    """An sshd on 127.0.0.1 that accepts only a freshly generated user key, running as the current user.

    Everything (keys, configs, pid file, log, the device's TMPDIR and cache) lives in `folder`.

    isolated_home=True also sets HOME to `folder`/device-home (`.home_dir`): a session then skips the account's
    own ~/.bashrc, which Debian's bash reads for ssh commands (root's here runs pyenv's init: 0.35 s of the
    0.55 s an ssh command takes), and what the toolkit writes under ~ lands in the folder. sshd still starts
    sessions in the account's real home directory, so `pwd` and $HOME then differ.
    """

    alias = ALIAS

    def __init__(self, folder: Path, start: bool = True, isolated_home: bool = False):
        self.folder = Path(folder).resolve()
        self.user = pwd.getpwuid(os.geteuid()).pw_name  # the account sshd can log into without being root
        self.host = "127.0.0.1"
        self.port = 0
        self.host_key = self.folder / "host_ed25519"
        self.user_key = self.folder / "user_ed25519"
        self.authorized_keys = self.folder / "authorized_keys"
        self.known_hosts = self.folder / "known_hosts"
        self.sshd_config = self.folder / "sshd_config"
        self.ssh_config = self.folder / "ssh_config"
        self.log = self.folder / "sshd.log"
        self.tmp_dir = self.folder / "device-tmp"
        self.cache_dir = self.folder / "device-cache"
        self.home_dir = self.folder / "device-home" if isolated_home else None
        self.process: subprocess.Popen | None = None
        self._configs = 0
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def __enter__(self) -> LoopbackDevice:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- starting and stopping --------------------------------------------------------------------------------

    def start(self) -> None:
        reason = openssh_missing()
        if reason:
            raise FileNotFoundError(reason)
        if os.geteuid() == 0:
            # As root, sshd chroots its unprivileged pre-auth child into /run/sshd and refuses to start without it.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.tmp_dir, self.cache_dir, self.home_dir):
            if folder:
                folder.mkdir(exist_ok=True)
        if not self.host_key.exists():
            _keygen(self.host_key, "toolkit-device-host")
            _keygen(self.user_key, "toolkit-test-user")
            self.authorized_keys.write_text(self.user_key.with_suffix(".pub").read_text())
            self.authorized_keys.chmod(0o600)

        # Another process may take the free port between our probe and sshd's bind: then try another one.
        for attempt in range(5):
            self.port = _free_port()
            self._write_sshd_config()
            self.log.write_bytes(b"")
            self._spawn()
            if self._wait_listening(timeout=10.0):
                break
            if "Address already in use" not in self.log_text() or attempt == 4:
                tail = "\n".join(self.log_text().splitlines()[-20:])
                self.stop()
                raise RuntimeError(f"sshd did not start on {self.host}:{self.port}; its log ends:\n{tail}")

        host_pub = self.host_key.with_suffix(".pub").read_text().split()
        self.known_hosts.write_text(f"[{self.host}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self._write_client_config(self.ssh_config, self.known_hosts, self.user_key)

    def _write_sshd_config(self) -> None:
        lines = [
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {_q(self.host_key)}",
            f"AuthorizedKeysFile {_q(self.authorized_keys)}",
            f"PidFile {_q(self.folder / 'sshd.pid')}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the keys live in pytest's tmp folders, whatever their owners and modes
            "PermitRootLogin prohibit-password",
            "MaxStartups 50",  # tests open many connections at once (parallel runs, retries)
            "MaxSessions 50",
            "PrintMotd no",
            "PrintLastLog no",
            "Subsystem sftp internal-sftp",  # scp speaks SFTP since OpenSSH 9.0
            # The session's temporary files and caches land where the test can look at them.
            f"SetEnv {_q(f'TMPDIR={self.tmp_dir}')} {_q(f'XDG_CACHE_HOME={self.cache_dir}')}"
            + (f" {_q(f'HOME={self.home_dir}')}" if self.home_dir else ""),
        ]
        # OpenSSH 9.8+ refuses a while the sources that fail to log in: the tests provoke such failures on purpose.
        optional = ["PerSourcePenalties no"]
        for line in optional:
            self.sshd_config.write_text("\n".join(lines + [line]) + "\n")
            check = subprocess.run([str(SSHD), "-t", "-f", str(self.sshd_config)], capture_output=True, text=True)
            if check.returncode == 0:
                lines.append(line)
        self.sshd_config.write_text("\n".join(lines) + "\n")

    def _spawn(self) -> None:
        with open(self.log, "ab") as log:
            # -D: stay in the foreground (our child), -e: log to stderr (the log file). sshd needs an absolute path
            # to re-execute itself for each connection. Its own session: stop() kills the whole group.
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.sshd_config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_prepare_sshd, close_fds=True)

    def _wait_listening(self, timeout: float) -> bool:
        """Wait for sshd's "Server listening" line: it comes right after listen(), so connections are accepted.
        Probing the port with a connection would leave a pre-auth sshd process that session_pids() would see."""
        deadline = time.monotonic() + timeout
        expected = f"Server listening on {self.host} port {self.port}"
        while time.monotonic() < deadline:
            if expected in self.log_text():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        """Kill the sshd, its connections and the commands they run (also those a cut connection left behind)."""
        if self.process is None:
            return
        deadline = time.monotonic() + 2
        while (pids := _descendants(self.process.pid, _process_table())) and time.monotonic() < deadline:
            for pid in pids:
                self._kill(pid)
            time.sleep(0.01)  # sshd reaps them: no zombie is left to init
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    # -- looking at and breaking connections ------------------------------------------------------------------

    def log_text(self) -> str:
        """sshd's log so far (connections, authentication failures, errors)."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (OpenSSH 9.8+ names them sshd-session and sshd-auth)."""
        if self.process is None:
            return []
        table = _process_table()
        return [pid for pid in _descendants(self.process.pid, table) if table[pid][1].startswith("sshd")]

    def command_pids(self) -> list[int]:
        """The processes the connections run for their clients (shells, commands and their children), also those
        whose connection was cut."""
        if self.process is None:
            return []
        table = _process_table()
        return [pid for pid in _descendants(self.process.pid, table) if not table[pid][1].startswith("sshd")]

    def cut_connections(self) -> list[int]:
        """SIGKILL every connection's sshd processes, as a dropped link would end them; the listener stays up.

        The commands the connections ran live on, as they would on a real device (they see their pipes close):
        command_pids() lists them and stop() kills them. Returns the pids killed."""
        pids = self.session_pids()
        for pid in pids:
            self._kill(pid)
        return pids

    # -- clients ----------------------------------------------------------------------------------------------

    def _write_client_config(self, path: Path, known_hosts: Path, identity: Path) -> Path:
        lines = [
            f"Host {self.alias}",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {self.user}",
            f"  IdentityFile {_q(identity)}",
            "  IdentitiesOnly yes",  # never an agent's keys or ~/.ssh's: only this identity may get in
            f"  UserKnownHostsFile {_q(known_hosts)}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",  # the known_hosts file stays as the test wrote it
            "  BatchMode yes",  # never a prompt: a test fails instead of waiting for a password
            "  LogLevel ERROR",
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    def new_key(self, name: str = "stranger") -> Path:
        """A fresh key pair in the folder that the device does NOT authorize (for "Permission denied")."""
        return _keygen(self.folder / f"{name}_ed25519", f"toolkit-test-{name}")

    def client_config(self, known_hosts: Path | None = None, identity: Path | None = None) -> Path:
        """Another client config for the same alias with another known_hosts file (an empty one provokes "Host key
        verification failed") or another identity (new_key() provokes "Permission denied (publickey)")."""
        self._configs += 1
        path = self.folder / f"ssh_config.{self._configs}"
        return self._write_client_config(path, Path(known_hosts or self.known_hosts).resolve(),
                                         Path(identity or self.user_key).resolve())

    def ssh(self, command: str | Sequence[str], config: Path | None = None, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        """Run `command` on the device through the real ssh client; text output captured, no check."""
        args = [command] if isinstance(command, str) else list(command)
        return subprocess.run(["ssh", "-F", str(config or self.ssh_config), self.alias, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kwargs)


# -- the device's Python ------------------------------------------------------------------------------------------


def _source_layout(source_python: Path) -> tuple[str, list[Path], str]:
    """The base interpreter behind `source_python`, its site-packages folders and its X.Y version."""
    code = ("import sys, sysconfig; p = sysconfig.get_paths(); print(sys._base_executable); "
            "print(p['purelib']); print(p['platlib']); print('%d.%d' % sys.version_info[:2])")
    out = subprocess.run([str(source_python), "-I", "-c", code], check=True, capture_output=True,
                         text=True).stdout.splitlines()
    return out[0], list(dict.fromkeys(Path(p) for p in out[1:3])), out[3]


def make_device_python(base: Path, source_python: Path, runtimes: Iterable[str] = RUNTIMES, numpy: bool = True,
                       extra: Iterable[str] = ()) -> Path:
    """A Python environment at `base` that holds only numpy and the runtimes, as a device would; its python's path.

    Offline and fast (well under a second): a venv without pip whose site-packages links the packages (and their
    .dist-info, for importlib.metadata) from `source_python`'s site-packages. The toolkit, TensorFlow and keras
    are absent. `runtimes` picks among "ai_edge_litert" and "onnxruntime" (leave one out for "the runtime is
    missing on the device"); numpy=False leaves numpy out; `extra` links more top-level packages by import name.
    Both runtimes need only numpy at import time and to run a model (found by trial and `-X importtime`).
    """
    base = Path(base).resolve()
    base_python, source_dirs, version = _source_layout(Path(source_python))
    # The same base interpreter as the source environment: the linked compiled modules need its ABI.
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(base)], check=True, capture_output=True)
    site = base / "lib" / f"python{version}" / "site-packages"

    names = (["numpy", "numpy.libs"] if numpy else []) + list(runtimes) + list(extra)
    for name in names:
        found = [d / name for d in source_dirs if (d / name).exists()]
        if not found:
            if name.endswith(".libs"):  # only wheels that bundle shared libraries have one
                continue
            raise FileNotFoundError(f"{name} is not installed in {source_python}'s environment ({source_dirs[0]})")
        (site / name).symlink_to(found[0], target_is_directory=found[0].is_dir())
        # The distribution's metadata, so importlib.metadata.version() answers on the device as it does here.
        for info in found[0].parent.glob(f"{name}-*.dist-info"):
            (site / info.name).symlink_to(info, target_is_directory=True)
    return base / "bin" / "python"


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def loopback_device(tmp_path_factory):
    """A running LoopbackDevice for the session (per module that imports it, unless conftest imports it)."""
    reason = openssh_missing()
    if reason:
        pytest.skip(reason)
    device = LoopbackDevice(tmp_path_factory.mktemp("loopback-device"))
    yield device
    device.stop()


@pytest.fixture(scope="session")
def device_python(tmp_path_factory) -> Path:
    """The device's python: numpy, ai_edge_litert and onnxruntime only (no toolkit, TensorFlow or keras)."""
    return make_device_python(tmp_path_factory.mktemp("device-python"), Path(sys.executable))
