"""A device has only a runtime and numpy: the runtime side must work with no TensorFlow installed.

This builds a real second virtual environment with the core's dependencies, LiteRT and ONNX Runtime only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "numpy", "click", "pluggy", "rich", "tflite", "flatbuffers", "ai-edge-litert", "onnxruntime"],
                   check=True)
    # Build from a copy: pip builds a local folder in place and would leave build/ and *.egg-info in the tree.
    source = venv.parent / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info",
                                                                "__pycache__", "quickstart-out"))
    subprocess.run([*pip, "--no-deps", str(source)], check=True, cwd=venv.parent)
    return venv


def device_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env


def test_the_device_environment_really_has_no_tensorflow(runtime_venv):
    proc = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import tensorflow"], capture_output=True,
                          text=True, env=device_env())
    assert proc.returncode != 0 and "No module named 'tensorflow'" in proc.stderr


def test_bench_tflite_and_onnx_as_json_without_tensorflow(runtime_venv, artifacts):
    proc = subprocess.run([str(runtime_venv / "bin" / "toolkit"), "bench", str(artifacts["tflite_int8"]),
                           str(artifacts["onnx"]), "--format", "json", "--runs", "20"],
                          capture_output=True, text=True, env=device_env())
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert [(r["status"], r["backend"], r["precision"]) for r in results] == [("ok", "tflite", "int8"),
                                                                             ("ok", "onnxruntime", "fp32")]
    assert "tensorflow-cpu" not in results[0]["environment"]["runtime_versions"]


def test_the_reference_backend_checks_a_tflite_file_without_tensorflow_or_onnx(runtime_venv, artifacts):
    proc = subprocess.run([str(runtime_venv / "bin" / "toolkit"), "bench", str(artifacts["tflite_int8"]),
                           "--backend", "reference", "--format", "json", "--runs", "5"],
                          capture_output=True, text=True, env=device_env())
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert (result["status"], result["backend"], result["precision"]) == ("ok", "reference", "int8")
    proc = subprocess.run([str(runtime_venv / "bin" / "toolkit"), "bench", str(artifacts["onnx"]), "--backend",
                           "reference"], capture_output=True, text=True, env=device_env())
    assert proc.returncode == 2 and "pip install 'edge-toolkit[reference]'" in proc.stderr


def test_plugins_load_without_tensorflow_and_say_what_is_missing(runtime_venv):
    proc = subprocess.run([str(runtime_venv / "bin" / "toolkit"), "plugins", "--format", "json"],
                          capture_output=True, text=True, env=device_env())
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    assert all(p["status"] == "ok" for p in plugins.values())
    assert "pip install 'edge-toolkit[keras]'" in plugins["keras"]["items"]["backends/keras"]["unavailable"]
    assert "unavailable" not in plugins["reference"]["items"]["backends/reference"]  # numpy runs .tflite files
    assert "unavailable" not in plugins["tflite"]["items"]["backends/tflite"]
