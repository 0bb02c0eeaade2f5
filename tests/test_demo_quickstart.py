"""The main job exactly as `make demo` runs it, on the real Fashion-MNIST (the Debian package): the longest
test, in its own file (named to be collected early) so that a parallel run schedules it beside the others."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_quickstart_on_fashion_mnist_keeps_int8_within_one_point(tmp_path):
    """The main job as `make demo` runs it, on a third of the training images and with fewer timed runs (the
    suite's time): its own check holds int8 to 1 point of fp32 on all 10,000 test images. The numpy reference
    backend is left out here (test_cli's quickstart covers it)."""
    out = tmp_path / "qs"
    proc = run_cli("quickstart", "--output", str(out), "--runs", "20", "--limit", "20000",
                   env={"TOOLKIT_BLOCK_PLUGINS": "reference"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert json.loads((out / "results.json").read_text())["dataset"] == "fashion-mnist"
    rows = {(r["artifact"], r["backend"]): r for r in summary}
    assert rows[("cnn.tflite", "tflite")]["accuracy_samples"] == 10000
    for int8, fp32, backend in (("cnn_int8.tflite", "cnn.tflite", "tflite"),
                                ("cnn_int8.onnx", "cnn.onnx", "onnxruntime")):
        assert abs(rows[(int8, backend)]["accuracy"] - rows[(fp32, backend)]["accuracy"]) <= 0.01
        assert rows[(int8, backend)]["accuracy_drop_vs_fp32"] <= 0.01
    assert rows[("cnn.tflite", "tflite")]["accuracy"] > 0.8  # 83.8% on 20,000 images (88% on all 60,000)
