"""Shared fixtures: a CNN really trained on scikit-learn's digits and its real converted artifacts.

Everything runs the real stack (TensorFlow in child processes, LiteRT, ONNX Runtime); nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).parent
SUPPORT = TESTS / "support"
TOOLKIT = str(Path(sys.executable).with_name("toolkit"))


# Test plugins and model makers in tests/support are importable here and in every child process.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
# The protocol's time minimums (0.5 s of warm-up, 1 s of timing per pair) would add 1.5 s to each of the suite's
# hundreds of benchmarks: the tests count runs instead. The tests of the minimums themselves set them.
os.environ["TOOLKIT_BENCH_MIN_SECONDS"] = "0"
os.environ["TOOLKIT_BENCH_WARMUP_SECONDS"] = "0"
os.environ["TOOLKIT_BENCH_PEAK_SECONDS"] = "0"  # one matrix product: the week's best is kept anyway
# Saved runs go to a history of the test session's own, never the user's (tests that count runs use their own).
os.environ["TOOLKIT_HISTORY"] = os.path.join(tempfile.mkdtemp(prefix="toolkit-test-history-"), "history.sqlite")
sys.path.insert(0, str(SUPPORT))


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Each test sees plugins as the environment defines them, and starts without debug output."""
    from toolkit import plugins

    monkeypatch.delenv("TOOLKIT_DEBUG", raising=False)
    plugins.reset()
    yield
    plugins.reset()


def built_once(tmp_path_factory, name: str, build) -> dict:
    """What `build(folder)` returns (JSON), built once per test session however many xdist workers ask: the first
    builds it under a lock, the others wait and reuse it. The tests only read these files."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's own folder, shared by its workers
    folder = root / f"shared-{name}"
    folder.mkdir(exist_ok=True)
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / "built.json"
        if done.exists():
            return json.loads(done.read_text())
        result = build(folder)
        done.write_text(json.dumps(result))
        return result


def _train_and_convert(folder: Path) -> dict[str, str]:
    from toolkit import operations

    operations.train("cnn", "digits", 12, folder, seed=0)
    trained = folder / "cnn.keras"
    return {
        "keras": str(trained),
        "tflite": str(operations.convert(trained, "tflite").path),
        "tflite_int8": str(operations.quantize(trained, "int8", "digits", to="tflite").path),
        "onnx": str(operations.convert(trained, "onnx").path),
        "onnx_int8": str(operations.quantize(trained.with_suffix(".onnx"), "int8", "digits").path),
    }


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A CNN trained on digits (8x8x1, so the CNN adapts its padding) with a manifest, and its fp32 and int8
    TFLite and ONNX artifacts, each already checked against its source. Built once for all workers."""
    return {k: Path(v) for k, v in built_once(tmp_path_factory, "cnn", _train_and_convert).items()}


@pytest.fixture(scope="session")
def trained(artifacts) -> Path:
    """The trained CNN of `artifacts`."""
    return artifacts["keras"]


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, cwd=None) -> subprocess.CompletedProcess:
    """The real console script in a fresh process, as a user runs it."""
    return subprocess.run([TOOLKIT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def bench_json(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
    proc = run_cli("bench", *args, "--format", "json", env=env)
    results = json.loads(proc.stdout)["results"] if proc.stdout.strip() else []
    return proc, results


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    from toolkit import plugins

    return plugins.registries().datasets.get("digits").load("test")


# Fixtures that train, convert with TensorFlow or build virtual environments: a test that uses one is slow, and
# `make test-fast` (pytest -m "not slow") leaves it out. Marked here so that no test can forget its marker.
SLOW_FIXTURES = {"trained", "artifacts", "tflite_models", "keras_logits", "runtime_venv", "installed_example",
                 "tf_models", "target_models"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
