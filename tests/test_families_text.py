"""The text families (the transformer, and the LSTM/GRU on text) through conversion, quantization and benchmarks,
and the models TFLite cannot take. Split from test_families.py so the two long files run on different workers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolkit import operations
from toolkit.api import WordTokenizer, read_specs
from toolkit.errors import ToolkitError, UsageError

from conftest import bench_json, run_cli
from test_families import _train, converts_and_quantizes


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    return _train(tmp_path_factory, "transformer", "transformer", "--epochs", "2")


@pytest.fixture(scope="module")
def gru_text(tmp_path_factory):
    return _train(tmp_path_factory, "gru", "lstm", "-o", "cell=gru", "--dataset", "fine-foods", "--epochs", "1",
                  "--limit", "1000")


@pytest.mark.slow
def test_the_transformer_classifies_reviews_and_its_vocabulary_travels_beside_it(transformer):
    model, metrics = transformer
    assert metrics["dataset"] == "fine-foods" and metrics["accuracy"] > metrics["baseline_accuracy"]
    vocab = model.with_name(model.name + ".vocab.txt")
    assert vocab.read_text().split("\n")[:2] == ["<pad>", "<oov>"]
    tok = WordTokenizer.for_artifact(model)
    ids = tok.encode(["Great coffee, will buy again!", "zzzunknownzzz"])
    assert ids.dtype == np.int32 and ids.shape == (2, 64)
    assert ids[1, -1] == 1 and (ids[1, :-1] == 0).all()  # an unknown word is 1; padding at the front is 0


@pytest.mark.slow
def test_the_transformer_converts_and_quantizes_to_int8_without_calibration_options(transformer, tmp_path):
    converts_and_quantizes("transformer", transformer[0], tmp_path)


@pytest.mark.slow
def test_a_recurrent_text_model_runs_on_litert_and_onnx_runtime_with_its_vocabulary(gru_text, tmp_path):
    model, metrics = gru_text
    int8 = operations.quantize(model, "int8", output=tmp_path / "gru_int8.tflite")
    onnx = operations.convert(model, "onnx", output=tmp_path / "gru.onnx")
    for made in (int8, onnx):
        vocab = made.path.with_name(made.path.name + ".vocab.txt")
        assert vocab.read_bytes() == model.with_name(model.name + ".vocab.txt").read_bytes()
        assert made.manifest.extra["tokenizer"]["sequence_length"] == 64
    assert read_specs(int8.path)[0][0].dtype == "int32"  # token ids in, as the Keras model takes them
    proc, results = bench_json(str(int8.path), str(onnx.path), "--runs", "5", "--dataset", "fine-foods")
    assert proc.returncode == 0, proc.stderr
    assert [r["backend"] for r in results] == ["tflite", "onnxruntime"]
    assert results[1]["evaluation"]["top1"] == pytest.approx(metrics["accuracy"], abs=1e-5)


@pytest.mark.slow
def test_unsupported_combinations_are_refused_with_the_reason_and_a_fix(transformer, tmp_path):
    model, _ = transformer
    with pytest.raises(ToolkitError, match="int16x8 needs float inputs.*token ids") as e:
        operations.quantize(model, "int16x8", output=tmp_path / "t.tflite")
    assert e.value.exit_code == 2 and "--scheme int8 or dynamic" in e.value.hint
    proc = run_cli("train", "transformer", "--dataset", "co2", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "takes token ids" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_cli("train", "lstm", "-o", "cel=gru", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "Did you mean 'cell'" in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_vocabulary_that_is_not_the_models_is_refused(gru_text, tmp_path):
    model, _ = gru_text
    copy = tmp_path / model.name
    for suffix in ("", ".manifest.json", ".vocab.txt"):
        copy.with_name(copy.name + suffix).write_bytes(model.with_name(model.name + suffix).read_bytes())
    copy.with_name(copy.name + ".vocab.txt").write_text("<pad>\n<oov>\nother\n")
    with pytest.raises(UsageError, match="is not the file 'lstm.keras' was made with"):
        operations.convert(copy, "onnx")


MAKE_UNCONVERTIBLE = '''
import keras
from keras import layers, ops
keras.Sequential([keras.Input((None, 3)), layers.LSTM(4), layers.Dense(2)]).save("varlen.keras")
inp = keras.Input((4,))
keras.Model(inp, layers.Dense(2)(ops.cumprod(inp, axis=-1))).save("cumprod.keras")
text = keras.Input((1,), dtype="string")
ids = layers.StringLookup(vocabulary=["a", "b"])(text)
keras.Model(text, layers.Dense(2)(layers.Reshape((1,))(ids))).save("strings.keras")
'''


@pytest.mark.slow
def test_models_tflite_cannot_take_are_refused_with_the_reason_and_the_fix(tmp_path):
    """A Flex op, an LSTM over sequences of no fixed length, text inside the graph: one line each, exit 2 or 1,
    no file; Flex is written only when asked for."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", MAKE_UNCONVERTIBLE], cwd=tmp_path, check=True, capture_output=True)
    cases = {"cumprod.keras": "TFLite has no builtin for (Cumprod)", "varlen.keras": "no fixed length",
             "strings.keras": "the model takes text"}
    errors = {}
    for model, message in cases.items():
        proc = run_cli("convert", str(tmp_path / model), "--to", "tflite")
        assert proc.returncode in (1, 2) and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not list(tmp_path.glob(f"{model.split('.')[0]}*.tflite"))
        errors[model] = proc.stderr
    assert "-o allow_flex=true" in errors["cumprod.keras"]
    # Asked for, the Flex file is made, and the check says why LiteRT here cannot run it.
    proc = run_cli("convert", str(tmp_path / "cumprod.keras"), "--to", "tflite", "-o", "allow_flex=true")
    assert "needs TensorFlow Flex ops (FlexCumprod)" in proc.stderr and "Flex delegate" in proc.stderr


@pytest.mark.slow
def test_a_text_model_benchmarked_on_another_vocabulary_is_refused(gru_text, tmp_path):
    import csv

    model, _ = gru_text
    with open(tmp_path / "other.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([[f"zebra quokka {i}", i % 2] for i in range(40)])
    proc, _ = bench_json(str(model), "--runs", "5", "--dataset", str(tmp_path / "other.csv"))
    assert proc.returncode == 2 and "'other.csv' tokenises with another vocabulary" in proc.stderr, proc.stderr