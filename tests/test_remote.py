"""Benchmarks on a remote device over ssh: a real OpenSSH server on 127.0.0.1 (tests/support/device.py) whose
"device" Python holds only numpy and the runtimes, no toolkit and no TensorFlow. Failure paths are real too: a
closed port, a key the server refuses, an unknown host key, a runtime missing there, a connection cut mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import TOOLKIT, bench_json, run_cli
from device import device_python, loopback_device, make_device_python  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow  # each benchmark starts ssh, a device agent and a measuring process

TESTDATA = Path(__file__).parents[1] / "toolkit" / "testdata"
INT8 = str(TESTDATA / "tiny_int8.tflite")
FP32 = str(TESTDATA / "tiny_fp32.tflite")


def remote(device, python, *more: str) -> list[str]:
    return ["--target", f"ssh://{device.alias}", "--ssh-config", str(device.ssh_config), "--remote-python",
            str(python), *more]


def leftovers(device) -> list[Path]:
    """What the device's temporary folder still holds (the agent removes its folder when it is done)."""
    return list(Path(device.tmp_dir).iterdir())


def wait_clean(device, seconds: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + seconds
    while leftovers(device) and time.monotonic() < deadline:
        time.sleep(0.1)
    return leftovers(device)


def test_a_remote_record_has_the_fields_of_a_local_one_and_the_device_environment(loopback_device, device_python):
    proc, local = bench_json(INT8, "--runs", "200", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    proc, results = bench_json(INT8, "--runs", "200", "--threads", "1", *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    (record,) = results
    assert set(record) == set(local[0])
    assert record["status"] == "ok" and record["runner"] == "ssh" and record["target"] == "ssh://toolkit-device"
    assert record["runs"] == 200 and record["threads"] == 1 and record["precision"] == "int8"
    assert record["provider"] == local[0]["provider"] == {"runtime": "ai-edge-litert", "delegate": "xnnpack"}
    env = record["environment"]
    assert env["device"]["python"] == str(device_python) and env["device"]["runner"] == "ssh"
    assert env["runtime_versions"]["ai-edge-litert"] and env["numpy"]
    assert wait_clean(loopback_device) == []


def test_the_device_python_has_no_toolkit_and_no_tensorflow(loopback_device, device_python):
    for module in ("toolkit", "tensorflow", "keras"):
        result = loopback_device.ssh(f"{device_python} -c 'import {module}'")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module


def test_a_model_is_shipped_once_then_taken_from_the_device_cache(loopback_device, device_python, tmp_path):
    model = tmp_path / "fresh.tflite"
    model.write_bytes(Path(FP32).read_bytes())  # its own copy: the cache is keyed by content, not name
    first = bench_json(str(model), "--runs", "20", *remote(loopback_device, device_python))[1][0]
    second = bench_json(str(model), "--runs", "20", *remote(loopback_device, device_python))[1][0]
    assert first["environment"]["device"]["shipped_bytes"] == model.stat().st_size
    assert second["environment"]["device"]["shipped_bytes"] == 0
    cached = list(Path(loopback_device.cache_dir).glob("edge-toolkit/device/*.tflite"))
    assert any(p.read_bytes() == model.read_bytes() for p in cached)


@pytest.fixture(scope="module")
def features_npz(tmp_path_factory) -> Path:
    """A user's own data for the tiny models: 4 features per row, 3 classes (labels from a fixed rule)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 4)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "features.npz"
    np.savez(path, x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5))
    return path


def test_accuracy_on_the_device_matches_the_local_run(loopback_device, device_python, features_npz):
    proc, local = bench_json(INT8, "--runs", "20", "--dataset", str(features_npz))
    assert proc.returncode == 0, proc.stderr
    proc, results = bench_json(INT8, "--runs", "20", "--dataset", str(features_npz),
                               *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    assert results[0]["evaluation"] == local[0]["evaluation"]
    assert results[0]["evaluation"]["samples"] == 60  # the 20% held out of 300 rows


def test_onnx_runs_on_the_device(loopback_device, device_python, tmp_path):
    from third_party_models import make_onnx_multi_input

    onnx = make_onnx_multi_input(tmp_path / "multi.onnx")
    shapes = ("--shape", "ids=2x8", "--shape", "mask=2x8")
    proc, local = bench_json(str(onnx), "--runs", "20", *shapes)
    proc, results = bench_json(str(onnx), "--runs", "20", *shapes, *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    assert results[0]["backend"] == "onnxruntime" and results[0]["inputs"] == local[0]["inputs"]
    assert results[0]["provider"]["providers"] == ["CPUExecutionProvider"]


def test_several_targets_run_and_each_record_is_tagged(loopback_device, device_python):
    proc, results = bench_json(INT8, "--runs", "20", "--target", "host", *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["target"] for r in results) == ["host", "ssh://toolkit-device"]
    assert {r["runner"] for r in results} == {"local", "ssh"}


def test_a_closed_port_is_one_line_and_the_other_targets_results_are_kept(loopback_device, device_python):
    closed = f"ssh://127.0.0.1:{_free_port()}"
    proc, results = bench_json(INT8, "--runs", "20", "--target", "host", "--target", closed,
                               "--remote-python", str(device_python))
    assert proc.returncode == 1
    ok = [r for r in results if r["status"] == "ok"]
    assert [r["target"] for r in ok] == ["host"]
    assert "refused the connection" in proc.stderr and "sshd runs on the device" in proc.stderr


def test_a_refused_key_says_how_to_install_one(loopback_device, device_python):
    config = loopback_device.client_config(identity=loopback_device.new_key())
    proc = run_cli("bench", INT8, "--runs", "5", "--target", f"ssh://{loopback_device.alias}", "--ssh-config",
                   str(config), "--remote-python", str(device_python))
    assert proc.returncode == 2
    assert "refused the login" in proc.stderr and "ssh-copy-id" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unknown_host_key_is_refused_not_accepted(loopback_device, device_python, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = loopback_device.client_config(known_hosts=empty)
    proc = run_cli("bench", INT8, "--runs", "5", "--target", f"ssh://{loopback_device.alias}", "--ssh-config",
                   str(config), "--remote-python", str(device_python))
    assert proc.returncode == 2
    assert "not in your known_hosts" in proc.stderr and "check the fingerprint" in proc.stderr
    assert empty.read_text() == ""  # nothing was added behind the user's back


def test_a_runtime_missing_on_the_device_names_what_to_install_there(loopback_device, tmp_path):
    no_ort = make_device_python(tmp_path / "no-ort", Path(sys.executable), runtimes=("ai_edge_litert",))
    proc = run_cli("bench", str(TESTDATA / "tiny_int8.tflite"), "--runs", "5",
                   *remote(loopback_device, no_ort))
    assert proc.returncode == 0, proc.stderr  # the TFLite runtime is there
    onnx = tmp_path / "tiny.onnx"
    from third_party_models import make_onnx_multi_input

    make_onnx_multi_input(onnx)
    proc = run_cli("bench", str(onnx), "--runs", "5", "--shape", "ids=1x8", "--shape", "mask=1x8",
                   *remote(loopback_device, no_ort))
    assert proc.returncode == 2
    assert "has no onnxruntime" in proc.stderr and f"{no_ort} -m pip install onnxruntime" in proc.stderr
    assert wait_clean(loopback_device) == []


def test_a_missing_remote_python_is_named(loopback_device):
    proc = run_cli("bench", INT8, "--runs", "5", *remote(loopback_device, "/nowhere/bin/python3"))
    assert proc.returncode == 2
    assert "the device has no Python at /nowhere/bin/python3" in proc.stderr and "--remote-python" in proc.stderr


def test_a_connection_cut_mid_run_keeps_the_other_results_and_leaves_nothing_behind(loopback_device,
                                                                                   device_python):
    # Both measure for up to 6 s; the device's is cut after a second or two.
    cmd = [TOOLKIT, "bench", FP32, "--runs", "100000000", "--max-seconds", "6", "--format", "json",
           "--target", "host", *remote(loopback_device, device_python)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith("toolkit-device-") for p in leftovers(loopback_device)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        time.sleep(1.5)  # measuring now
        assert loopback_device.cut_connections()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "connection to toolkit-device was lost while" in err
    records = json.loads(out)["results"]
    assert [r["target"] for r in records if r["status"] == "ok"] == ["host"]
    assert wait_clean(loopback_device) == []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ctrl_c_stops_at_once_even_when_the_device_has_stopped_answering(loopback_device, device_python):
    import os
    import signal

    proc = subprocess.Popen([TOOLKIT, "bench", FP32, "--runs", "100000000", "--max-seconds", "60",
                             *remote(loopback_device, device_python)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stopped: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith("toolkit-device-") for p in leftovers(loopback_device)):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(1)
        stopped = loopback_device.session_pids()
        for pid in stopped:  # the device freezes: no answer, no end of the connection
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and took < 5, (took, err)
    assert "Stopped after 0 of 1 pairs" in err
    assert wait_clean(loopback_device, 20) == []  # once it wakes, the agent finds its connection gone


def test_a_dataset_that_does_not_fit_is_refused_before_anything_is_shipped(loopback_device, device_python):
    before = set(Path(loopback_device.cache_dir).rglob("*"))
    proc = run_cli("bench", INT8, "--runs", "5", "--dataset", "digits", *remote(loopback_device, device_python))
    assert proc.returncode == 2
    assert "dataset 'digits' gives" in proc.stderr and "Pick the dataset the model was trained on" in proc.stderr
    assert set(Path(loopback_device.cache_dir).rglob("*")) == before


def test_a_remote_python_that_is_a_folder_is_named_as_such(loopback_device, device_python):
    proc = run_cli("bench", INT8, "--runs", "5", *remote(loopback_device, device_python.parent.parent))
    assert proc.returncode == 2
    assert f"Python at {device_python.parent.parent} cannot be run" in proc.stderr and "refused" not in proc.stderr


def test_a_damaged_copy_in_the_device_cache_is_sent_again(loopback_device, device_python, tmp_path):
    model = tmp_path / "damaged.tflite"
    model.write_bytes(Path(INT8).read_bytes())
    assert bench_json(str(model), "--runs", "5", *remote(loopback_device, device_python))[0].returncode == 0
    import hashlib

    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    cached = Path(loopback_device.cache_dir) / "edge-toolkit" / "device" / f"{sha}.tflite"
    cached.write_bytes(cached.read_bytes()[:100])  # the device's disk lost the end of it
    proc, results = bench_json(str(model), "--runs", "5", *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    assert results[0]["environment"]["device"]["shipped_bytes"] == model.stat().st_size
    assert cached.read_bytes() == model.read_bytes()


def test_all_backends_on_a_device_skips_those_that_cannot_run_there(loopback_device, device_python, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, np.float32).tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])
    model = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    proc, results = bench_json(str(model), "--runs", "5", "--all-backends", *remote(loopback_device, device_python))
    assert proc.returncode == 0, proc.stderr
    assert [r["backend"] for r in results if r["status"] == "ok"] == ["onnxruntime"]
    skipped = {r["backend"]: r["error"] for r in results if r["status"] == "skipped"}
    assert "has no device module" in skipped["reference"]  # numpy only, but it is built on the toolkit


def test_a_host_that_does_not_resolve_is_one_line():
    proc = run_cli("bench", INT8, "--runs", "5", "--target", "ssh://pi@no-such-host.invalid")
    assert proc.returncode == 2
    assert "cannot resolve the host name no-such-host.invalid" in proc.stderr and "Traceback" not in proc.stderr


def test_a_remote_program_that_is_not_python_is_named(loopback_device):
    proc = run_cli("bench", INT8, "--runs", "5", *remote(loopback_device, "/bin/true"))
    assert proc.returncode == 2
    assert "Python at /bin/true did not start the toolkit's agent" in proc.stderr and "3.8" in proc.stderr


def test_a_keras_model_on_a_device_is_told_to_convert_first(loopback_device, device_python, tmp_path):
    from toolkit.child import run_in_child

    keras_file = run_in_child("third_party_models:make_keras_model", folder=str(tmp_path))
    proc = run_cli("bench", keras_file, "--runs", "5", *remote(loopback_device, device_python))
    assert proc.returncode == 2
    assert "a device cannot run keras files" in proc.stderr and "toolkit convert" in proc.stderr
