"""The loopback device (tests/support/device.py) itself: a real sshd on 127.0.0.1 whose sessions see the test's
TMPDIR, refuse unknown host keys and unauthorized keys, drop connections on demand, and run a device Python that
has the runtimes but not the toolkit."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device import LoopbackDevice, device_python, loopback_device, make_device_python, openssh_missing  # noqa: F401

pytestmark = pytest.mark.slow  # ssh sessions and a second sshd: with the remote tests, not in the fast tier


def test_the_session_sees_the_device_tmp_and_cache_folders(loopback_device):
    result = loopback_device.ssh('echo "$TMPDIR $XDG_CACHE_HOME $USER"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(loopback_device.tmp_dir), str(loopback_device.cache_dir),
                                     loopback_device.user]
    assert loopback_device.url == f"ssh://{loopback_device.user}@127.0.0.1:{loopback_device.port}"


def test_the_plain_ssh_command_line_works_with_the_config(loopback_device):
    result = subprocess.run(["ssh", "-F", str(loopback_device.ssh_config), loopback_device.alias, "echo $TMPDIR"],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout.strip()) == (0, str(loopback_device.tmp_dir)), result.stderr


def test_the_device_python_has_the_runtimes_but_not_the_toolkit(loopback_device, device_python):
    check = """
import importlib, numpy, ai_edge_litert.interpreter, onnxruntime
for name in ("toolkit", "tensorflow", "keras"):
    try:
        importlib.import_module(name)
        print(name, "imported")
    except ModuleNotFoundError:
        print(name, "missing")
"""
    result = loopback_device.ssh([str(device_python), "-c", shlex.quote(check)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["toolkit missing", "tensorflow missing", "keras missing"]


def test_the_device_python_runs_a_tflite_and_an_onnx_model(device_python, tmp_path):
    from toolkit.testing import tiny_onnx_model

    onnx_path = tiny_onnx_model(tmp_path / "tiny.onnx")
    tflite_path = Path(__file__).parents[1] / "toolkit" / "testdata" / "tiny_int8.tflite"
    code = f"""
import numpy as np, onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter
s = ort.InferenceSession({str(onnx_path)!r}, providers=["CPUExecutionProvider"])
print(s.run(None, {{s.get_inputs()[0].name: np.ones((2, 4), np.float32)}})[0].shape)
i = Interpreter({str(tflite_path)!r}); i.allocate_tensors(); i.invoke()
print(i.get_tensor(i.get_output_details()[0]["index"]).dtype)
"""
    result = subprocess.run([str(device_python), "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["(2, 3)", "int8"]


def test_a_device_without_onnxruntime_or_numpy(tmp_path):
    litert_only = make_device_python(tmp_path / "litert", Path(sys.executable), runtimes=("ai_edge_litert",))
    bare = make_device_python(tmp_path / "bare", Path(sys.executable), runtimes=(), numpy=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def imports(python, module):
        return subprocess.run([str(python), "-c", f"import {module}"], cwd=tmp_path, env=env,
                              capture_output=True).returncode == 0

    assert imports(litert_only, "ai_edge_litert.interpreter") and not imports(litert_only, "onnxruntime")
    assert not imports(bare, "numpy") and not imports(bare, "ai_edge_litert")


def test_an_unknown_host_key_is_refused(loopback_device, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = loopback_device.ssh("true", config=loopback_device.client_config(known_hosts=empty))
    assert result.returncode == 255 and "Host key verification failed" in result.stderr, result.stderr


def test_an_unauthorized_key_is_refused(loopback_device):
    stranger = loopback_device.new_key()
    result = loopback_device.ssh("true", config=loopback_device.client_config(identity=stranger))
    assert result.returncode == 255 and "Permission denied (publickey)" in result.stderr, result.stderr


def test_cutting_the_connections_ends_the_client_and_keeps_the_listener(loopback_device):
    client = subprocess.Popen(["ssh", "-F", str(loopback_device.ssh_config), loopback_device.alias, "sleep 30"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not loopback_device.command_pids() and time.monotonic() < deadline:
            time.sleep(0.02)  # wait for the remote `sleep` to run: the connection is established
        assert loopback_device.session_pids(), loopback_device.log_text()
        started = time.monotonic()
        assert loopback_device.cut_connections()
        assert client.wait(timeout=5) != 0
        assert time.monotonic() - started < 5
        assert loopback_device.command_pids()  # the remote `sleep` lives on, as on a real device
    finally:
        client.kill()
        client.wait()
    assert loopback_device.ssh("echo back").stdout == "back\n"  # the listener still accepts connections


def test_start_stop_as_a_context_manager_with_an_isolated_home(tmp_path):
    if openssh_missing():
        pytest.skip(openssh_missing())
    with LoopbackDevice(tmp_path / "device", start=False, isolated_home=True) as device:
        pid = device.process.pid
        assert device.ssh('echo "$HOME"').stdout == f"{device.home_dir}\n"
    assert not Path(f"/proc/{pid}").exists()
    assert device.process is None and device.session_pids() == []


def test_without_openssh_server_the_fixture_skips_with_the_fix(monkeypatch):
    import device

    monkeypatch.setattr(device, "SSHD", Path("/nonexistent/sshd"))
    assert device.openssh_missing() == "openssh-server is not installed (make test installs it)"
