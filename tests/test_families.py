"""The four model families, trained on their real default data offline, through every conversion and the default
int8 quantization, and benchmarked on LiteRT and ONNX Runtime. The parity gate is the point: a scheme that changes
the answers is refused, loudly, and an unsupported combination is refused with the reason and the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit import operations
from toolkit.errors import CheckFailedError

from parity import assert_reference_agrees

from conftest import bench_json, run_cli


def _train(tmp_path_factory, name: str, *args: str) -> tuple:
    folder = tmp_path_factory.mktemp(name)
    proc = run_cli("train", *args, "--output", str(folder), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    return folder / made["manifest"]["file"], made["metrics"]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return _train(tmp_path_factory, "mlp", "mlp", "--epochs", "15")


@pytest.fixture(scope="module")
def lstm(tmp_path_factory):
    return _train(tmp_path_factory, "lstm", "lstm", "--epochs", "30")


@pytest.fixture(scope="module")
def breast_cancer_mlp(tmp_path_factory):
    return _train(tmp_path_factory, "bc", "mlp", "--dataset", "breast-cancer", "--epochs", "20")


@pytest.mark.slow
def test_the_mlp_scores_german_credit_from_raw_values_and_category_codes(mlp):
    model, metrics = mlp
    assert metrics["dataset"] == "german-credit" and metrics["test_samples"] == 200
    assert metrics["accuracy"] > metrics["baseline_accuracy"] == pytest.approx(0.675, abs=1e-3)
    manifest = json.loads(model.with_name(model.name + ".manifest.json").read_text())
    features = manifest["extra"]["features"]
    assert len(features) == 20 and manifest["inputs"][0]["shape"] == [None, 20]
    # A device encodes each categorical column by the position of its value in this list.
    assert features[0]["name"] == "status_of_existing_checking_account" and len(features[0]["categories"]) == 4
    assert "categories" not in features[1]  # duration in months: a raw number


@pytest.mark.slow
def test_the_lstm_forecasts_co2_better_than_the_last_value(lstm):
    model, metrics = lstm
    assert metrics["dataset"] == "co2" and metrics["baseline"] == "last value"
    assert metrics["mae"] < metrics["baseline_mae"] and metrics["rmse"] < metrics["baseline_rmse"]
    manifest = json.loads(model.with_name(model.name + ".manifest.json").read_text())
    assert manifest["task"] == "regression" and manifest["outputs"][0]["name"] == "forecast"


def converts_and_quantizes(family: str, model, tmp_path) -> None:  # also used by test_families_text.py
    """convert --to tflite and --to onnx, quantize --scheme int8 (calibration from the manifest), no Flex op; the
    int8 file converted to ONNX too (once: tflite->onnx costs the same for every family)."""
    proc = run_cli("quantize", str(model), "--scheme", "int8", "--output", str(tmp_path / "int8.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert "calibrating on" in proc.stderr
    made = [operations.convert(model, "tflite", output=tmp_path / "fp32.tflite"),
            operations.convert(model, "onnx", output=tmp_path / "fp32.onnx")]
    if family == "transformer":
        made.append(operations.convert(tmp_path / "int8.tflite", "onnx", output=tmp_path / "int8_from_tflite.onnx"))
        assert made[-1].precision == "int8"
    for artifact in made:
        assert artifact.manifest.metrics["parity"]["passed"], artifact.manifest.metrics["parity"]
        held_out = artifact.manifest.metrics["evaluation"]
        assert abs(held_out["artifact"]["top1"] - held_out["source"]["top1"]) <= 0.02, held_out
    for tflite in ("fp32.tflite", "int8.tflite"):
        ops = json.loads((tmp_path / f"{tflite}.manifest.json").read_text())["extra"]["ops"]
        assert ops and not [op for op in ops if op.startswith("Flex")]
    dataset = made[0].manifest.metrics["evaluation"]["dataset"]
    for path in [tmp_path / "int8.tflite"] + [a.path for a in made]:  # the reference backend agrees on each
        assert_reference_agrees(path, dataset)


@pytest.mark.slow
def test_the_mlp_converts_and_quantizes_to_int8_without_calibration_options(mlp, tmp_path):
    converts_and_quantizes("mlp", mlp[0], tmp_path)


@pytest.mark.slow
def test_the_lstm_is_unrolled_for_tflite_quantizes_to_full_int8_and_runs_on_both_runtimes(lstm, tmp_path):
    """TFLite has no builtin TensorList: the converter unrolls the LSTM, says so, and the result is exact; full
    int8 goes the same way, with the raw series kept float at the edges."""
    model, metrics = lstm
    proc = run_cli("convert", str(model), "--to", "tflite", "--output", str(tmp_path / "lstm.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert "unrolled lstm over 24 steps" in proc.stderr
    proc = run_cli("quantize", str(model), "--scheme", "int8", "--output", str(tmp_path / "lstm_int8.tflite"),
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["quantization"]["io"] == "float32" and manifest["metrics"]["parity"]["passed"]
    held_out = manifest["metrics"]["evaluation"]  # the file's own forecast error, beside its source's
    assert held_out["dataset"] == "co2" and held_out["source"]["mae"] == pytest.approx(metrics["mae"], rel=1e-3)
    assert held_out["artifact"]["mae"] < 2 * held_out["source"]["mae"]
    onnx = operations.convert(model, "onnx", output=tmp_path / "lstm.onnx")
    assert "LSTM" in onnx.manifest.extra["ops"]  # ONNX has a real LSTM operator: no unrolling there
    proc, results = bench_json(str(tmp_path / "lstm.tflite"), str(tmp_path / "lstm_int8.tflite"), str(onnx.path),
                               "--runs", "5", "--dataset", "co2")
    assert proc.returncode == 0, proc.stderr
    fp32, int8, ort = (r["evaluation"] for r in results)
    for path in (tmp_path / "lstm.tflite", tmp_path / "lstm_int8.tflite", onnx.path):
        assert_reference_agrees(path, "co2")
    assert fp32["mae"] == pytest.approx(metrics["mae"], rel=1e-3) and ort["mae"] == pytest.approx(metrics["mae"], rel=1e-3)
    assert int8["mae"] < 2 * fp32["mae"]


@pytest.mark.slow
def test_int8_keeps_raw_features_in_float_and_the_gate_refuses_them_quantized(breast_cancer_mlp, tmp_path):
    """30 raw features from 0.001 to 4000 would share one int8 scale and the small ones vanish: int8 keeps the
    in-graph scaling in float (and float inputs) and passes; without that, the gate refuses the file."""
    model, metrics = breast_cancer_mlp
    assert metrics["accuracy"] > 0.9 > metrics["baseline_accuracy"]
    tflite = operations.quantize(model, "int8", output=tmp_path / "mlp_int8.tflite")
    assert tflite.manifest.metrics["parity"]["top1_agreement"] >= 0.97
    assert tflite.manifest.quantization["float_operators"] == 2  # Normalization's subtract and multiply
    with pytest.raises(CheckFailedError, match="does not match its source 'mlp.keras'"):
        operations.quantize(model, "int8", output=tmp_path / "all.tflite", options={"float_preprocessing": "false"})
    assert not (tmp_path / "all.tflite").exists()


@pytest.mark.slow
def test_a_fixed_batch_file_is_checked_and_benchmarked_batch_by_batch(mlp, tmp_path):
    model, metrics = mlp
    made = operations.convert(model, "onnx", output=tmp_path / "b4.onnx", options={"batch": "4"})
    assert made.manifest.inputs[0].shape == (4, 20) and made.manifest.metrics["parity"]["samples"] == 200
    proc, results = bench_json(str(made.path), "--runs", "5", "--dataset", "german-credit")
    assert proc.returncode == 0, proc.stderr
    assert results[0]["evaluation"]["top1"] == pytest.approx(metrics["accuracy"], abs=1e-5)


@pytest.mark.slow
def test_a_family_trains_on_the_users_csv_and_later_steps_find_it_by_its_path(tmp_path):
    import csv

    rng = np.random.default_rng(0)
    with open(tmp_path / "loans.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["income", "home", "label"])
        for _ in range(300):
            income, home = rng.uniform(1e4, 1e5), ["own", "rent", "free"][rng.integers(3)]
            writer.writerow([round(income, 2), home, "good" if income > 4e4 or home == "own" else "bad"])
    (tmp_path / "work").mkdir()
    proc = run_cli("train", "mlp", "--dataset", "loans.csv", "--epochs", "30", "--output", "out", "--format", "json",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    assert made["manifest"]["extra"]["dataset"] == str(tmp_path / "loans.csv")
    assert made["metrics"]["accuracy"] > made["metrics"]["baseline_accuracy"]
    proc = run_cli("quantize", str(tmp_path / "out" / "mlp.keras"), "--scheme", "int8", cwd=tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    assert "loans.csv:test[:60]" in proc.stdout


@pytest.mark.slow
def test_wrong_family_options_and_data_are_one_line_each(mlp, tmp_path):
    model, _ = mlp
    for args, message in [(("train", "lstm", "-o", "units=0"), "-o units=0 is out of range"),
                          (("train", "transformer", "-o", "heads=0"), "-o heads=0 is out of range"),
                          (("train", "mlp", "--dataset", "fine-foods"), "gives token ids")]:
        proc = run_cli(*args, "--epochs", "1", "--output", str(tmp_path / "x"))
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    tflite = operations.convert(model, "tflite", output=tmp_path / "mlp.tflite")
    proc = run_cli("quantize", str(tflite.path))
    assert proc.returncode == 2 and "no installed quantizer takes tflite files" in proc.stderr
    assert "Quantize the model it was made from, mlp.keras" in proc.stderr
