"""Conversions and quantization on a really trained CNN, checked against Keras on real held-out digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit import operations
from toolkit.artifact import Artifact, manifest_path, sha256_file
from toolkit.child import run_in_child
from toolkit.errors import CheckFailedError

from conftest import digits_test


def predict(path, backend, x):
    outputs = run_in_child("toolkit.benchmark.measure:predict", model=str(path), backend=backend, arrays=[x])
    (only,) = outputs.values()  # the CNN has one output (named differently by each format)
    return only


@pytest.fixture(scope="module")
def held_out():
    return digits_test()


@pytest.fixture(scope="module")
def keras_logits(artifacts, held_out):
    return predict(artifacts["keras"], "keras", held_out[0])


@pytest.mark.parametrize("kind,backend", [("tflite", "tflite"), ("onnx", "onnxruntime"), ("onnx", "reference")])
def test_fp32_artifacts_match_keras_within_1e_5(artifacts, held_out, keras_logits, kind, backend):
    got = predict(artifacts[kind], backend, held_out[0])
    assert got.shape == keras_logits.shape == (len(held_out[0]), 10)
    np.testing.assert_allclose(got, keras_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,backend", [("tflite_int8", "tflite"), ("onnx_int8", "onnxruntime"),
                                          ("onnx_int8", "reference")])
def test_int8_artifacts_agree_with_fp32_on_held_out_data(artifacts, held_out, keras_logits, kind, backend):
    x, y = held_out
    got = predict(artifacts[kind], backend, x)
    agreement = (got.argmax(1) == keras_logits.argmax(1)).mean()
    assert agreement >= 0.97
    fp32_acc = (keras_logits.argmax(1) == y).mean()
    int8_acc = (got.argmax(1) == y).mean()
    assert fp32_acc > 0.85  # the model really learned something
    assert abs(int8_acc - fp32_acc) <= 0.02


def test_the_trained_model_adapts_the_cnn_to_8x8_images(artifacts):
    manifest = Artifact.open(artifacts["keras"]).manifest
    assert manifest.inputs[0].shape == (None, 8, 8, 1)
    assert manifest.extra["dataset"] == "digits"
    assert json.loads((artifacts["keras"].parent / "metrics.json").read_text())["accuracy"] > 0.85


@pytest.mark.slow
def test_the_cnn_is_exactly_the_tutorial_network_at_32x32x3():
    code = ("from toolkit_keras.models import CifarCNN; m = CifarCNN().build((32, 32, 3), 10); "
            "print([(l.__class__.__name__, tuple(l.output.shape[1:])) for l in m.layers]); print(m.count_params())")
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.splitlines()
    assert out[0] == str([("Conv2D", (30, 30, 32)), ("MaxPooling2D", (15, 15, 32)), ("Conv2D", (13, 13, 64)),
                          ("MaxPooling2D", (6, 6, 64)), ("Conv2D", (4, 4, 64)), ("Flatten", (1024,)),
                          ("Dense", (64,)), ("Dense", (10,))])
    assert int(out[1]) == 122570  # the parameter count of the TensorFlow CNN tutorial


def test_manifests_record_provenance_and_quantization(artifacts):
    keras_sha = sha256_file(artifacts["keras"])
    tfl = Artifact.open(artifacts["tflite_int8"]).manifest
    assert tfl.format == "tflite" and tfl.precision == "int8"
    assert tfl.sha256 == sha256_file(artifacts["tflite_int8"])
    assert tfl.source == {"file": "cnn.keras", "sha256": keras_sha, "format": "keras"}
    assert tfl.inputs[0].dtype == "int8" and tfl.inputs[0].quantization is not None
    assert tfl.inputs[0].quantization.scale[0] > 0
    assert tfl.quantization["calibration"]["dataset"] == "digits"
    assert tfl.quantization["calibration"]["samples"] == 200
    assert len(tfl.quantization["calibration"]["sha256"]) == 64
    assert {"tensorflow-cpu", "keras", "numpy"} <= set(tfl.versions)
    assert tfl.metrics["parity"]["passed"] is True
    assert not [op for op in tfl.extra["ops"] if op.startswith("Flex")]

    onnx8 = Artifact.open(artifacts["onnx_int8"]).manifest
    assert onnx8.source["file"] == "cnn.onnx" and onnx8.producer["plugin"] == "onnxruntime"
    assert onnx8.quantization["activations"] == "uint8 per-tensor"
    assert onnx8.quantization["weights"] == "int8 per-channel"
    assert "onnxruntime" in onnx8.versions

    onnx32 = Artifact.open(artifacts["onnx"]).manifest
    assert onnx32.metrics["parity"]["max_abs_diff"] < 1e-4
    assert "tf2onnx" in onnx32.versions


def test_an_artifact_checked_against_another_source_fails_loudly(artifacts, tmp_path):
    # Train a second, different model and check the first one's artifact against it: the answers differ.
    other = tmp_path / "other"
    operations.train("cnn", "digits", 1, other, seed=123)
    candidate = tmp_path / "cnn.tflite"
    candidate.write_bytes(artifacts["tflite"].read_bytes())
    manifest_path(candidate).write_text(manifest_path(artifacts["tflite"]).read_text())
    with pytest.raises(CheckFailedError) as err:
        operations.verify_against_source(Artifact.open(candidate), Artifact.open(other / "cnn.keras"))
    assert err.value.exit_code == 1
    assert "does not match its source" in err.value.one_line()
    assert candidate.exists()  # an existing file is only checked; publishing is where failures are kept aside
