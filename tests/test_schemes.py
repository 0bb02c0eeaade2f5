"""Every quantization scheme the built-in quantizers offer, on a real trained CNN (TFLite) and a tiny real ONNX
model: each is made, checked against its source by the rule for its precision, recorded in its manifest, and
runs on its runtime. Schemes that need no calibration data need no --calibration and no manifest."""

from __future__ import annotations

import json

import pytest

from toolkit import operations
from toolkit.artifact import Artifact, manifest_path
from toolkit.testing import tiny_onnx_model

from conftest import bench_json, run_cli

CONTRACT = {"TOOLKIT_PLUGIN_MODULES": "contract_plugins"}

TFLITE = {  # scheme: (precision in the manifest, the input dtype a device feeds, calibrated)
    "fp16": ("fp16", "float32", False),
    "dynamic": ("dynamic", "float32", False),
    "int8-float-io": ("int8", "float32", True),
    "int16x8": ("int16x8", "float32", True),
}


@pytest.mark.parametrize("scheme", sorted(TFLITE))
def test_each_tflite_scheme_is_checked_recorded_and_runs(trained, tmp_path, scheme):
    precision, input_dtype, calibrated = TFLITE[scheme]
    made = operations.quantize(trained, scheme, output=tmp_path / f"cnn_{scheme}.tflite")
    manifest = made.manifest
    assert manifest.precision == precision and manifest.format == "tflite"
    assert manifest.inputs[0].dtype == input_dtype
    assert manifest.metrics["parity"]["passed"] and manifest.metrics["parity"]["against"] == "cnn.keras"
    assert manifest.quantization["scheme"] == scheme
    assert (manifest.quantization["calibration"] is not None) == calibrated
    proc, results = bench_json(str(made.path), "--runs", "5", "--dataset", "digits")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["status"] == "ok" and results[0]["precision"] == precision
    assert results[0]["evaluation"]["top1"] > 0.5


def test_the_schemes_list_says_which_need_calibration_data():
    proc = run_cli("quantize", "--list-schemes", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    needs = {(r["scheme"], r["quantizer"]): r["needs_calibration"] for r in json.loads(proc.stdout)["schemes"]}
    assert needs[("fp16", "keras-tflite-ptq")] is False and needs[("dynamic", "onnxruntime-dynamic")] is False
    assert needs[("int16x8", "keras-tflite-ptq")] is True and needs[("int8", "onnxruntime-qdq")] is True


@pytest.mark.slow
def test_onnx_dynamic_quantization_needs_no_data_and_no_manifest(tmp_path):
    model = tiny_onnx_model(tmp_path / "tiny.onnx")
    proc = run_cli("quantize", str(model), "--scheme", "dynamic", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["precision"] == "dynamic" and manifest["producer"]["quantizer"] == "onnxruntime-dynamic"
    assert manifest["quantization"]["calibration"] is None
    assert manifest["metrics"]["parity"]["passed"] and manifest["metrics"]["parity"]["data"] == "synthetic inputs x64"
    assert Artifact.open(tmp_path / "tiny_dynamic.onnx").precision == "dynamic"
    manifest_path(tmp_path / "tiny_dynamic.onnx").unlink()  # the file alone says what it is
    proc, results = bench_json(str(tmp_path / "tiny_dynamic.onnx"), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["precision"] == "dynamic"


@pytest.mark.slow
def test_onnx_static_quantization_writes_integer_operators_on_request(tmp_path):
    import onnx

    model = tiny_onnx_model(tmp_path / "tiny.onnx")
    out = tmp_path / "qop.onnx"
    proc = run_cli("quantize", str(model), "--quantizer", "onnxruntime-qdq", "--calibration", "tiny-tabular",
                   "-o", "quant_format=qoperator", "--output", str(out), "--format", "json", env=CONTRACT)
    assert proc.returncode == 0, proc.stderr
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QGemm" in ops and not ops & {"Gemm", "MatMul"}  # the layer runs as an integer operator
    assert json.loads(proc.stdout)["manifest"]["quantization"]["method"].startswith("onnxruntime static QOperator")
    manifest_path(out).unlink()
    assert Artifact.open(out).precision == "unknown"  # read in a child, when benchmarked:
    proc, results = bench_json(str(out), "--runs", "5")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["precision"] == "int8"
