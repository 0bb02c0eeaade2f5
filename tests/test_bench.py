"""`toolkit bench` end to end: the record schema, output formats, accuracy, and models users bring."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.child import run_in_child

from conftest import bench_json, run_cli

RECORD_KEYS = {"model", "format", "precision", "backend", "provider", "batch", "threads", "latency_us", "runs",
               "warmup", "throughput_per_s", "init_ms", "first_run_ms", "peak_rss_mb", "size_bytes", "evaluation",
               "unstable", "environment"}


@pytest.fixture(scope="module")
def tflite_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thirdparty_tflite")
    return {k: Path(v) for k, v in run_in_child("third_party_models:make_tflite_models", folder=str(folder)).items()}


@pytest.fixture(scope="module")
def onnx_multi(tmp_path_factory):
    from third_party_models import make_onnx_multi_input

    return make_onnx_multi_input(tmp_path_factory.mktemp("thirdparty_onnx") / "multi.onnx")


def test_json_records_follow_the_schema(artifacts):
    proc, results = bench_json(str(artifacts["tflite"]), "--runs", "30", "--warmup", "5", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    (record,) = results
    assert RECORD_KEYS <= set(record)
    assert record["status"] == "ok" and record["backend"] == "tflite"
    assert record["format"] == "tflite" and record["precision"] == "fp32"
    assert record["runs"] == 30 and record["warmup"] == 5 and record["threads"] == 1 and record["batch"] == 1
    lat = record["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert record["throughput_per_s"] == pytest.approx(1e6 / lat["mean"], rel=0.01)  # the sustained rate
    assert record["size_bytes"] == artifacts["tflite"].stat().st_size
    assert record["provider"]["delegate"] == "xnnpack"
    env = record["environment"]
    assert env["cores"] >= 1 and env["cpu"] and "ai-edge-litert" in env["runtime_versions"]


def test_several_models_and_backends_with_accuracy_on_held_out_data(artifacts):
    proc, results = bench_json(str(artifacts["onnx"]), str(artifacts["onnx_int8"]), "--backend", "onnxruntime",
                               "--backend", "reference", "--runs", "10", "--warmup", "1", "--dataset", "digits")
    assert proc.returncode == 0, proc.stderr
    pairs = {(Path(r["model"]).name, r["backend"]) for r in results}
    assert pairs == {(m, b) for m in ("cnn.onnx", "cnn_int8.onnx") for b in ("onnxruntime", "reference")}
    for r in results:
        assert r["evaluation"]["dataset"] == "digits" and r["evaluation"]["samples"] == 360
        assert r["evaluation"]["task"] == "classification" and r["evaluation"]["top1"] > 0.85
    ort = next(r for r in results if r["backend"] == "onnxruntime")
    assert ort["provider"]["providers"] == ["CPUExecutionProvider"] and "fallback" not in ort["provider"]


def test_default_backend_is_the_best_installed_one_per_format(artifacts):
    proc, results = bench_json(str(artifacts["tflite_int8"]), str(artifacts["onnx"]), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert [r["backend"] for r in results] == ["tflite", "onnxruntime"]
    assert results[0]["precision"] == "int8"


def test_csv_table_and_output_file(artifacts, tmp_path):
    proc = run_cli("bench", str(artifacts["tflite"]), "--runs", "5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows[0]["backend"] == "tflite" and float(rows[0]["p50_us"]) > 0
    out = tmp_path / "results.json"
    table = run_cli("bench", str(artifacts["tflite"]), "--runs", "5", "--output", str(out))
    assert table.returncode == 0
    assert "cnn.tflite" in table.stdout and "p50" in table.stdout
    assert json.loads(out.read_text())["results"][0]["status"] == "ok"


def test_a_cuda_request_reports_what_really_ran(artifacts):
    # Where CUDA cannot start (no GPU, or the CPU build of onnxruntime, as on CI), ORT falls back to CPU
    # silently; the toolkit says so instead of timing the CPU as if it were CUDA.
    import onnxruntime

    proc, (record,) = bench_json(str(artifacts["onnx"]), "--provider", "cuda", "--runs", "5")
    assert proc.returncode == 0
    assert record["provider"]["requested"] == "cuda"
    if record["provider"]["providers"][0] == "CUDAExecutionProvider":  # a machine with a working GPU
        assert "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        assert "fallback" not in record["provider"]
    else:
        assert record["provider"]["providers"] == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider is not running" in record["provider"]["fallback"]
        assert "Warning:" in run_cli("bench", str(artifacts["onnx"]), "--provider", "cuda", "--runs", "5").stderr


def test_batch_sizes_fill_a_dynamic_batch_dimension(artifacts):
    proc, results = bench_json(str(artifacts["tflite"]), str(artifacts["onnx"]), "--batch", "8", "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    for r in results:
        assert r["batch"] == 8
        assert list(r["inputs"].values())[0] == [8, 8, 8, 1]


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_onnx_with_several_inputs_and_dynamic_dimensions(onnx_multi):
    proc, results = bench_json(str(onnx_multi), "--runs", "5")
    assert proc.returncode == 2
    assert results[0]["error"] == ("multi.onnx on onnxruntime: inputs 'ids' [N, seq], 'mask' [N, seq] have dynamic "
                                   "dimensions. Give them with --shape ids=1x<seq> --shape mask=1x<seq>")
    proc, results = bench_json(str(onnx_multi), "--batch", "4", "--shape", "ids=4x16", "--shape", "mask=4x16",
                               "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["inputs"] == {"x": [4, 8], "ids": [4, 16], "mask": [4, 16]}


@pytest.mark.slow  # benchmark children: out of the fast tier, for its time
def test_real_inputs_from_an_npz(onnx_multi, tmp_path):
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=np.ones((2, 8), np.float32), ids=np.arange(10).reshape(2, 5), mask=np.ones((2, 5), bool))
    proc, results = bench_json(str(onnx_multi), "--inputs", str(inputs), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["inputs"] == {"x": [2, 8], "ids": [2, 5], "mask": [2, 5]}


def test_tflite_with_two_inputs_and_a_dynamic_sequence(tflite_models):
    proc, results = bench_json(str(tflite_models["two_inputs"]), "--shape", "tokens=1x32", "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert sorted(results[0]["inputs"].values()) == [[1, 4], [1, 32]]


def test_full_int8_tflite_from_elsewhere(tflite_models):
    proc, results = bench_json(str(tflite_models["int8_mlp"]), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["status"] == "ok" and results[0]["precision"] == "int8"  # from its quantized I/O


@pytest.mark.slow  # several benchmark children: kept out of the fast tier
def test_third_party_onnx_models_shipped_with_onnx_and_onnxruntime():
    import onnx
    import onnxruntime

    models = [Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx",
              Path(onnxruntime.__file__).parent / "datasets/logreg_iris.onnx"]
    proc, results = bench_json(*map(str, models), "--runs", "5", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert results[0]["inputs"] == {"data_0": [1, 3, 224, 224]}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # ONNX makes all its cases, some with overflowing casts
@pytest.mark.slow
def test_int8_onnx_node_with_several_integer_inputs(tmp_path):
    # QLinearConv from ONNX's own test suite: uint8/int8 tensors, scales and zero points as inputs.
    from onnx.backend.test.case.node import collect_testcases

    case = next(c for c in collect_testcases(None) if c.name == "test_qlinearconv")
    import onnx

    path = tmp_path / "qlinearconv.onnx"
    onnx.save(case.model, str(path))
    proc, results = bench_json(str(path), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert len(results[0]["inputs"]) == 8


@pytest.mark.slow
def test_accuracy_on_a_model_with_a_fixed_batch_of_three(tmp_path):
    # A linear classifier over 8x8 digits whose batch dimension is fixed at 3: chunks of exactly 3.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([3, 64], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8, 8, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 10])], [w, shape])
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    proc, results = bench_json(str(path), "--dataset", "digits", "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["batch"] == 3
    assert results[0]["evaluation"]["samples"] == 360  # 120 chunks of 3
