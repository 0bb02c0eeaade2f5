"""The example third-party plugin in examples/toolkit-onnx-evaluator, installed for real with pip.

What a plugin author gets by copying it: once `pip install -e` has run, `toolkit plugins` lists it next to the
built-ins, `toolkit bench --backend onnx-evaluator` benchmarks on it, and its outputs agree with onnxruntime's.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from toolkit import plugins
from toolkit.api import Artifact, BackendOptions, ModelFileError, TensorSpec

import onnx

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT = os.path.join(os.path.dirname(sys.executable), "toolkit")  # the console script pip installed
BUILTINS = ["core", "formats", "keras", "tflite", "onnxruntime", "reference", "targets"]


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def toolkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOOLKIT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed_example():
    """pip-install the example as a user would (offline: --no-build-isolation builds with this venv's setuptools).
    `make install` installs it already; when it was not there, the test uninstalls what it installed."""
    from importlib import metadata

    try:
        metadata.distribution("toolkit-onnx-evaluator")
        was_installed = True
    except metadata.PackageNotFoundError:
        was_installed = False
    if not was_installed:
        # Not while it is installed (as `make install` leaves it): a reinstall rewrites the entry points that
        # tests running in parallel are reading.
        result = pip("install", "-q", "--no-deps", "--no-build-isolation", "-e", "examples/toolkit-onnx-evaluator")
        assert result.returncode == 0, result.stderr
    # Subprocesses see the install at once. This interpreter started before it, so it processes the new
    # .pth file (the editable install's import hook) the way a fresh interpreter does at start-up.
    site.addsitedir(sysconfig.get_paths()["purelib"])
    plugins.reset()
    try:
        yield
    finally:
        if not was_installed:
            result = pip("uninstall", "-y", "toolkit-onnx-evaluator")
            assert result.returncode == 0, result.stderr
        plugins.reset()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """relu(x @ W + b) with x: float32 [N, 4], N a dynamic batch dimension; y: float32 [N, 3]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]),
         helper.make_node("Add", ["xw", "b"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the toolkit supports
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("example-plugin") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def test_toolkit_plugins_lists_the_example_next_to_the_builtins(installed_example):
    result = toolkit("plugins", "--format", "json")
    assert result.returncode == 0, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)["plugins"]}

    example = records["onnx-evaluator"]
    assert example["status"] == "ok", example["error"]
    assert example["module"] == "toolkit_onnx_evaluator"
    assert example["version"] == "0.1.0"
    assert example["registers"] == {"backends": ["onnx-evaluator"]}
    assert "unavailable" not in example["items"]["backends/onnx-evaluator"]  # available, nothing missing
    for name in BUILTINS:
        assert records[name]["status"] == "ok", (name, records[name]["error"])


def test_toolkit_bench_runs_a_real_onnx_model_on_the_example_backend(installed_example, tiny_onnx):
    result = toolkit("bench", str(tiny_onnx), "--backend", "onnx-evaluator", "--runs", "20", "--warmup", "2",
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    [record] = json.loads(result.stdout)["results"]
    assert record["status"] == "ok", record.get("error")
    assert record["backend"] == "onnx-evaluator"
    assert record["provider"] == {"runtime": "onnx.reference"}  # what Session.describe() says
    assert record["inputs"] == {"x": [1, 4]}  # the dynamic batch dimension N took --batch (1)
    assert record["runs"] == 20
    assert record["latency_us"]["p50"] > 0
    assert record["environment"]  # includes Backend.versions(): the onnx version


def test_the_example_backend_is_never_the_default(installed_example, tiny_onnx):
    from toolkit.benchmark.runner import default_backend

    plugins.reset()
    assert plugins.registries().backends.get("onnx-evaluator").priority < 0
    assert default_backend(Artifact.open(tiny_onnx)) != "onnx-evaluator"


def test_the_example_backend_computes_what_onnxruntime_computes(installed_example, tiny_onnx):
    plugins.reset()  # load the entry points again, now that the example is installed
    backends = plugins.registries().backends
    assert backends.owner("onnx-evaluator") == "onnx-evaluator"  # the plugin (entry point) that registered it

    evaluator = backends.get("onnx-evaluator").load(Artifact.open(tiny_onnx), BackendOptions())
    ort = backends.get("onnxruntime").load(Artifact.open(tiny_onnx), BackendOptions())
    assert evaluator.input_specs == [TensorSpec("x", (None, 4), "float32", dim_names=("N", None))]
    assert evaluator.output_specs == [TensorSpec("y", (None, 3), "float32", dim_names=("N", None))]
    assert evaluator.describe() == {"runtime": "onnx.reference"}

    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    ours, theirs = evaluator.run({"x": x}), ort.run({"x": x})
    assert list(ours) == ["y"]
    assert ours["y"].shape == (5, 3)
    assert (ours["y"] == 0).any() and (ours["y"] > 0).any()  # the Relu is exercised on both sides of 0
    np.testing.assert_allclose(ours["y"], theirs["y"], rtol=1e-5, atol=1e-6)
    # What the benchmark times is the same computation, without the dict around it.
    np.testing.assert_allclose(evaluator.bench_callable({"x": x})()[0], ours["y"])


def test_a_file_onnx_cannot_parse_is_a_one_line_model_file_error(installed_example, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07" + b"\xff" * 64)  # an ONNX header, then garbage
    plugins.reset()
    with pytest.raises(ModelFileError) as info:
        plugins.registries().backends.get("onnx-evaluator").load(Artifact.open(broken), BackendOptions())
    assert "onnx cannot parse" in info.value.one_line()
    assert "\n" not in info.value.one_line()

    result = toolkit("bench", str(broken), "--backend", "onnx-evaluator", "--runs", "1", "--warmup", "0")
    assert result.returncode == 2  # a bad input file, not a crash
    assert "is not a valid onnx file" in result.stderr.lower()  # the onnx format plugin's reader refuses it
    assert "Traceback" not in result.stderr


def test_a_model_the_evaluator_cannot_run_names_the_real_cause_not_the_file(installed_example, artifacts):
    result = toolkit("bench", str(artifacts["onnx_int8"]), "--backend", "onnx-evaluator", "--runs", "1",
                     "--warmup", "0")
    assert result.returncode == 2
    assert "onnx.reference cannot run 'cnn_int8.onnx'" in result.stderr and "DequantizeLinear" in result.stderr
    assert "Check the file" not in result.stderr


def test_the_example_conforms_to_the_backend_contract(installed_example, tmp_path):
    from toolkit.testing import assert_backend_conforms, conformance_models

    plugins.reset()
    backend = plugins.registries().backends.get("onnx-evaluator")
    for model in conformance_models(tmp_path, formats=backend.formats):
        assert_backend_conforms(backend, model)


def test_sweeps_leave_out_the_slow_example_unless_named(installed_example, tiny_onnx):
    swept = toolkit("bench", str(tiny_onnx), "--all-backends", "--runs", "5", "--format", "json")
    assert swept.returncode == 0, swept.stderr
    results = json.loads(swept.stdout)["results"]
    assert {r["backend"] for r in results if r["status"] == "ok"} == {"onnxruntime", "reference"}
    skipped = [r for r in results if r["status"] == "skipped"]
    assert [r["backend"] for r in skipped] == ["onnx-evaluator"] and "too slow for sweeps" in skipped[0]["error"]
