"""Model families beyond the CNN, trained on their real default data offline, through conversion, quantization
and benchmarking. The parity gate is the point: a scheme that changes the answers is refused, loudly."""

from __future__ import annotations

import json

import pytest

from toolkit import operations
from toolkit.errors import CheckFailedError

from conftest import bench_json, run_cli


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp")
    proc = run_cli("train", "mlp", "--epochs", "20", "--output", str(folder), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return folder / "mlp.keras", json.loads(proc.stdout)["metrics"]


@pytest.mark.slow
def test_the_mlp_trains_offline_on_breast_cancer_and_beats_the_majority_class(mlp):
    _, metrics = mlp
    assert metrics["dataset"] == "breast-cancer" and metrics["test_samples"] == 114
    assert metrics["baseline_accuracy"] == pytest.approx(0.5877, abs=1e-3)
    assert metrics["accuracy"] > 0.9 > metrics["baseline_accuracy"]


@pytest.mark.slow
def test_the_mlp_scales_raw_features_inside_its_graph(mlp, tmp_path):
    """A device feeds the raw measurements: the fp32 TFLite and ONNX files agree with Keras on them."""
    model, metrics = mlp
    for fmt in ("tflite", "onnx"):
        made = operations.convert(model, fmt, output=tmp_path / f"mlp.{fmt}")
        assert made.manifest.metrics["parity"]["passed"], made.manifest.metrics["parity"]
        assert made.manifest.inputs[0].shape == (None, 30)
    proc, results = bench_json(str(tmp_path / "mlp.tflite"), str(tmp_path / "mlp.onnx"), "--runs", "5",
                               "--dataset", "breast-cancer")
    assert proc.returncode == 0, proc.stderr
    assert [r["evaluation"]["top1"] for r in results] == [pytest.approx(metrics["accuracy"], abs=1e-5)] * 2


@pytest.mark.slow
def test_int8_keeps_the_mlp_scaling_in_float_and_int8_inputs_are_refused_by_the_gate(mlp, tmp_path):
    """30 raw features from 0.001 to 4000 would share one int8 scale and the small ones vanish: int8 with float
    inputs keeps the in-graph scaling in float and passes; int8 inputs cannot, and the gate says so."""
    model, _ = mlp
    with pytest.raises(CheckFailedError, match="does not match its source 'mlp.keras'"):
        operations.quantize(model, "int8", output=tmp_path / "mlp_int8.tflite")
    assert not (tmp_path / "mlp_int8.tflite").exists()
    tflite = operations.quantize(model, "int8-float-io", output=tmp_path / "mlp_int8f.tflite")
    assert tflite.manifest.metrics["parity"]["top1_agreement"] >= 0.97
    assert tflite.manifest.quantization["float_operators"] == 2  # Normalization's subtract and multiply
    onnx_fp32 = operations.convert(model, "onnx", output=tmp_path / "mlp.onnx")
    onnx_int8 = operations.quantize(onnx_fp32.path, "int8", output=tmp_path / "mlp_int8.onnx")
    assert onnx_int8.manifest.metrics["parity"]["top1_agreement"] >= 0.97
    made = operations.quantize(model, "dynamic", output=tmp_path / "mlp_dynamic.tflite")
    assert made.manifest.metrics["parity"]["passed"] and made.precision == "dynamic"
    with pytest.raises(CheckFailedError):  # the option is what makes the difference
        operations.quantize(onnx_fp32.path, "int8", output=tmp_path / "mlp_all.onnx",
                            options={"float_preprocessing": "false"})
