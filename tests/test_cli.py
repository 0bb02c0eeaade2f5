"""The CLI as a user meets it: fast help, JSON for scripts, and the whole main job end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from toolkit import operations
from toolkit.cli import cli

from parity import assert_reference_agrees

from conftest import run_cli

HEAVY = ("tensorflow", "keras", "onnxruntime", "tf2onnx", "ai_edge_litert")


def test_importing_the_cli_imports_no_ml_framework():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import toolkit.cli"], capture_output=True,
                          text=True, check=True)
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY), imported & set(HEAVY)


def test_plugins_json_lists_the_builtins_and_what_they_register():
    result = CliRunner().invoke(cli, ["plugins", "--format", "json"])
    plugins = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert plugins["onnxruntime"]["registers"] == {"quantizers": ["onnxruntime-qdq", "onnxruntime-dynamic"],
                                                   "backends": ["onnxruntime"]}
    assert plugins["tflite"]["status"] == "ok" and "unavailable" not in plugins["tflite"]["items"]["backends/tflite"]


def test_targets_detect_the_host_and_list_the_shipped_profiles():
    result = CliRunner().invoke(cli, ["targets", "--format", "json"])
    targets = {t["name"]: t for t in json.loads(result.output)["targets"]}
    host = targets["host"]
    assert host["detected"] and host["cores"] >= 1 and host["ram_mb"] > 0 and host["arch"]
    assert "onnxruntime" in host["runtimes"] and "ai-edge-litert" in host["runtimes"]
    assert {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "x86-edge-box"} <= set(targets)
    assert targets["raspberry-pi-4"]["python"].endswith("venv/bin/python")
    assert "host (detected): ISA" in CliRunner().invoke(cli, ["targets"]).output


@pytest.mark.slow
def test_training_reports_progress_from_the_child(tmp_path):
    seen = {"total": None, "batches": 0}

    def on_start(total):
        seen["total"] = total

    def on_batch(epoch, batch, logs):
        seen["batches"] += 1
        assert "loss" in logs

    artifact, metrics = operations.train("cnn", "digits", 2, tmp_path, on_start=on_start, on_batch=on_batch,
                                         limit=256, batch_size=32)
    assert seen == {"total": 16, "batches": 16}
    assert metrics["train_samples"] == 256 and metrics["epochs"] == 2
    assert artifact.manifest.format == "keras" and artifact.path.exists()


@pytest.mark.slow
def test_train_convert_quantize_through_the_cli(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("train", "cnn", "--dataset", "digits", "--output", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    trained = json.loads(proc.stdout)
    assert trained["metrics"]["epochs"] == 12  # the dataset's suggested epochs
    assert trained["metrics"]["accuracy"] > 0.85

    proc = run_cli("convert", str(out / "cnn.keras"), "--to", "onnx")
    assert proc.returncode == 0, proc.stderr
    assert "Checked against cnn.keras on digits:test[:360]" in proc.stdout and "passed" in proc.stdout

    proc = run_cli("quantize", str(out / "cnn.onnx"), "--calibration", "digits", "--samples", "100",
                   "--output", str(out / "q.onnx"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)["manifest"]
    assert manifest["precision"] == "int8" and manifest["quantization"]["calibration"]["samples"] == 100
    assert manifest["metrics"]["parity"]["passed"]
    assert (out / "q.onnx.manifest.json").exists()


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    """The main job on the offline fallback dataset: four artifacts, every capable backend, a report."""
    out = tmp_path / "qs"
    empty = tmp_path / "no-fashion"
    empty.mkdir()
    proc = run_cli("quickstart", "--output", str(out), "--runs", "20", env={"TOOLKIT_FASHION_MNIST_DIR": str(empty)})
    assert proc.returncode == 0, proc.stderr
    assert "fashion-mnist is not available" in proc.stderr and "using digits" in proc.stderr
    for name in ("cnn.tflite", "cnn_int8.tflite", "cnn.onnx", "cnn_int8.onnx"):
        assert name in proc.stdout
        assert (out / f"{name}.manifest.json").exists()
    results = json.loads((out / "results.json").read_text())
    pairs = {(row["artifact"], row["backend"]) for row in results["summary"]}
    assert pairs == {("cnn.tflite", "tflite"), ("cnn_int8.tflite", "tflite"), ("cnn.onnx", "onnxruntime"),
                     ("cnn.onnx", "reference"), ("cnn_int8.onnx", "onnxruntime"), ("cnn_int8.onnx", "reference"),
                     ("cnn.tflite", "reference"), ("cnn_int8.tflite", "reference")}
    by_pair = {(row["artifact"], row["backend"]): row for row in results["summary"]}
    fp32 = by_pair[("cnn.tflite", "tflite")]["accuracy"]
    for row in results["summary"]:
        assert abs(row["accuracy"] - fp32) <= 0.02, row
        assert row["speedup_vs_fp32"] > 0
    assert by_pair[("cnn.onnx", "onnxruntime")]["speedup_vs_fp32"] == 1.0
    report = (out / "report.md").read_text()
    assert "| cnn_int8.tflite | tflite |" in report and "## Checks against the source" in report
    # The reference backend is the ground truth for all four files (issue 10's bounds, on the held-out digits).
    for name in ("cnn.tflite", "cnn_int8.tflite", "cnn.onnx", "cnn_int8.onnx"):
        assert_reference_agrees(out / name, "digits")
