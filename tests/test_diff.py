"""`toolkit diff` and the per-layer tensors behind it (Session.trace, toolkit.layers).

Fast tier: the layer naming on real tensor names of each format, the metrics on arrays whose answer is known, and
the traces of the shipped tiny models on LiteRT and ONNX Runtime. Slow tier (the trained digits CNN of
conftest's `artifacts`): fp32 against int8 names its worst layers, the same on two backends; one file on two
backends agrees to float precision; the JSON, the HTML page in a browser and the one-line errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from browser import needs_chromium, open_in_chromium  # tests/support
from conftest import run_cli
from toolkit.cli import cli
from toolkit.diff import compare, sqnr_of
from toolkit.layers import dequantize, layer_name


# ---------------------------------------------------------------------------------------------- layer naming
@pytest.mark.parametrize("tensor, layer", [
    # TFLite from the Keras converter: fused ops named after each, the last op first
    ("cnn_1/conv2d_1/Relu;cnn_1/conv2d_1/BiasAdd;cnn_1/conv2d_1/convolution;cnn_1/conv2d_1/Squeeze1", "cnn_1/conv2d_1"),
    ("cnn_1/max_pooling2d_1/MaxPool2d", "cnn_1/max_pooling2d_1"),
    ("sequential_1/dense_1/MatMul;sequential_1/dense_1/Relu;sequential_1/dense_1/BiasAdd", "sequential_1/dense_1"),
    # tf2onnx: the function's wrapper scope, TensorFlow's port, its own suffix for the nodes it adds
    ("StatefulPartitionedCall/cnn_1/conv2d_1_2/Relu:0", "cnn_1/conv2d_1_2"),
    ("StatefulPartitionedCall/cnn_1/conv2d_1/BiasAdd__6:0", "cnn_1/conv2d_1"),
    # ONNX Runtime's QDQ quantizer
    ("StatefulPartitionedCall/cnn_1/conv2d_1/Relu:0_DequantizeLinear_Output", "cnn_1/conv2d_1"),
    ("StatefulPartitionedCall/cnn_1/flatten_1/Reshape:0_QuantizeLinear_Output", "cnn_1/flatten_1"),
    ("StatefulPartitionedCall/cnn_1/dense_1/BiasAdd/ReadVariableOp:0_quantized", "cnn_1/dense_1"),
    # a layer within a layer; torch.onnx's names
    ("transformer/attention_0/query/einsum/Einsum", "transformer/attention_0/query"),
    ("/layer1/layer1.0/conv1/Conv_output_0", "layer1/layer1.0/conv1"),
    # no layer owns these: a converter's own nodes, a function's outputs, graph inputs
    ("Transpose__38:0_DequantizeLinear_Output", None),
    ("StatefulPartitionedCall_1:0", None),
    ("output_0_QuantizeLinear_Input", None),
    ("serving_default_image:0", None),
])
def test_tensor_names_of_every_format_map_to_one_layer_name(tensor, layer):
    assert layer_name(tensor) == layer


def test_dequantize_per_tensor_and_per_channel():
    q = np.array([[-128, 0, 127], [10, 20, 30]], np.int8)
    assert np.allclose(dequantize(q, [0.5], [0]), q.astype(np.float32) * 0.5)
    per_row = dequantize(q, [1.0, 0.1], [0, 10], axis=0)
    assert np.allclose(per_row, [[-128, 0, 127], [0, 1, 2]])
    assert dequantize(np.ones(3, np.float32), [9.0], [9]).tolist() == [1, 1, 1]  # float stays as it is


def test_a_layers_value_is_an_activation_never_a_0d_quantisation_scale():
    from toolkit.layers import layer_outputs

    trace = {"m/dense_1/MatMul:0": np.ones((2, 3), np.float32), "m/dense_1/MatMul:0_scale": np.float32(0.1),
             "m/dense_1/quant_scales_mul:0": np.array(0.01, np.float32), "y": np.zeros((2, 3), np.float32)}
    layers, _ = layer_outputs(trace, ["y"])
    assert {k: v[0] for k, v in layers.items()} == {"m/dense_1": "m/dense_1/MatMul:0"}


def test_metrics_on_known_errors():
    a = np.ones(1000)
    tenth_off = compare(a, a * 1.1)  # noise power 1/100 of the signal's: 20 dB
    assert tenth_off["sqnr_db"] == pytest.approx(20.0)
    assert tenth_off["max_abs"] == pytest.approx(0.1) and tenth_off["rmse"] == pytest.approx(0.1)
    assert tenth_off["cosine"] == pytest.approx(1.0)
    assert compare(a, a)["sqnr_db"] == math.inf
    assert compare(a, -a)["cosine"] == pytest.approx(-1.0)
    assert compare(np.zeros(4), np.ones(4))["sqnr_db"] == -math.inf


# ---------------------------------------------------------------------------------------------- traces
def _session(backend: str, path: Path):
    from toolkit import plugins
    from toolkit.artifact import Artifact
    from toolkit.interfaces import BackendOptions

    return plugins.registries().backends.get(backend).load(Artifact.open(path), BackendOptions())


def test_litert_traces_every_operator_of_a_full_int8_model_dequantized(tmp_path):
    from toolkit.testing import tiny_tflite_model

    session = _session("tflite", tiny_tflite_model(tmp_path, "tiny_int8.tflite"))
    feed = {s.name: s.quantize(np.random.default_rng(0).random((3, *s.shape[1:]), np.float32))
            for s in session.input_specs}
    session.resize({k: v.shape for k, v in feed.items()})
    trace = session.trace(feed)
    out = session.output_specs[0]
    assert list(trace)[-1] == out.name  # in execution order, the output last
    assert all(v.dtype == np.float32 for v in trace.values())
    assert np.array_equal(trace[out.name], out.dequantize(session.run(feed)[out.name]))


def test_onnxruntime_traces_intermediate_values_without_changing_run(tmp_path):
    from toolkit.testing import tiny_onnx_model

    session = _session("onnxruntime", tiny_onnx_model(tmp_path / "tiny.onnx"))
    x = {"x": np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)}
    trace = session.trace(x)
    assert list(trace) == ["xw", "z", "y"]
    assert np.allclose(trace["y"], np.maximum(trace["z"], 0))
    assert list(session.run(x)) == ["y"]  # the session's own graph still has its one output
    assert np.array_equal(session.run(x)["y"], trace["y"])


# ---------------------------------------------------------------------------------------------- toolkit diff
def diff_json(*args) -> dict:
    proc = run_cli("diff", *map(str, args), "--format", "json", "--samples", "40")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def int8_on_ort(artifacts) -> dict:
    return diff_json(artifacts["onnx"], artifacts["onnx_int8"])


def test_fp32_against_int8_gives_finite_sqnrs_worst_first(int8_on_ort):
    rows = int8_on_ort["rows"]
    sqnrs = [sqnr_of(r) for r in rows]
    assert sqnrs == sorted(sqnrs)
    assert all(math.isfinite(s) and 10 < s < 80 for s in sqnrs), sqnrs  # int8 is close, not equal
    layers = [r["layer"] for r in rows if r["kind"] == "layer"]
    assert any("conv2d" in name for name in layers) and any("dense" in name for name in layers)
    assert [r["kind"] for r in rows].count("output") == 1
    assert all(r["cosine"] > 0.99 for r in rows)


def test_the_worst_layers_are_the_same_on_two_backends(artifacts, int8_on_ort):
    on_reference = diff_json(artifacts["onnx"], artifacts["onnx_int8"], "--backend", "reference")
    assert on_reference["rows"][0]["layer"] == int8_on_ort["rows"][0]["layer"]
    # Every layer's loss agrees too (a flatten ties with the layer it reshapes, so the order of ties may not)
    ort = {r["layer"]: sqnr_of(r) for r in int8_on_ort["rows"]}
    ref = {r["layer"]: sqnr_of(r) for r in on_reference["rows"]}
    assert ort.keys() == ref.keys() and all(abs(ort[k] - ref[k]) < 0.5 for k in ort), (ort, ref)
    assert on_reference["a"]["backend"] == "reference" and int8_on_ort["a"]["backend"] == "onnxruntime"


def test_tflite_and_onnx_from_one_keras_model_name_the_same_layers(artifacts, int8_on_ort):
    tflite = diff_json(artifacts["tflite"], artifacts["tflite_int8"])
    assert {r["layer"] for r in tflite["rows"] if r["kind"] == "layer"} <= {r["layer"] for r in int8_on_ort["rows"]}
    assert tflite["a"]["precision"] == "fp32" and tflite["b"]["precision"] == "int8"


def test_one_file_on_two_backends_agrees_to_float_precision(artifacts):
    result = diff_json(artifacts["onnx"], "--backend", "onnxruntime,reference")
    assert result["rows"] and all(sqnr_of(r) > 90 for r in result["rows"]), [sqnr_of(r) for r in result["rows"]]
    # Tensors no layer owns (tf2onnx's own Transpose) are compared too, by name: the same file on both sides.
    assert any(r["kind"] == "tensor" and r["tensor_a"] == r["tensor_b"] for r in result["rows"])
    assert result["no_layer"] == {"a": [], "b": []}
    assert result["a"]["file"] == result["b"]["file"]


def test_an_int8_tflite_file_on_the_reference_backend_equals_litert_reference_kernels_layer_by_layer(artifacts):
    """The ground truth holds: every int8 value the numpy TFLite program computes is the one LiteRT's own
    reference kernels compute, bit for bit (XNNPACK rounds differently, by up to a step here and there)."""
    result = diff_json(artifacts["tflite_int8"], "--backend", "tflite,reference", "-o", "tflite.reference_kernels=true")
    assert result["rows"] and all(r["identical"] for r in result["rows"]), [(r["layer"], r["max_abs"])
                                                                            for r in result["rows"]]
    assert result["a"]["runs_on"]["delegate"] == "reference kernels"


def test_json_schema(int8_on_ort):
    assert int8_on_ort["schema"] == 1
    assert {"a", "b", "dataset", "split", "samples", "rows", "unmatched", "no_layer"} <= set(int8_on_ort)
    assert int8_on_ort["dataset"] == "digits" and int8_on_ort["samples"] == 40  # from the manifest
    row = int8_on_ort["rows"][0]
    assert set(row) == {"layer", "kind", "order", "tensor_a", "tensor_b", "shape", "max_abs", "rmse", "cosine",
                        "sqnr_db", "identical"}
    assert set(int8_on_ort["unmatched"]) == {"only_a", "only_b", "mismatched", "outputs"}


@needs_chromium
def test_the_table_names_the_worst_layer_first_and_the_html_view_opens_in_a_browser(artifacts, int8_on_ort,
                                                                                    tmp_path):
    page = tmp_path / "diff.html"
    proc = run_cli("diff", str(artifacts["onnx"]), str(artifacts["onnx_int8"]), "--samples", "40",
                   "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    body = [line for line in proc.stdout.splitlines() if line.startswith("│")]
    assert body[0].split("│")[1].strip() == int8_on_ort["rows"][0]["layer"]
    verdict, console = open_in_chromium(page, tmp_path)
    assert verdict.startswith("plots-ok 1/1 sqnr="), verdict
    assert console == []


def error_line(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def in_process(*args: str, env: dict | None = None) -> SimpleNamespace:
    """The CLI in this process, for errors found before any child starts (or in the one child that loads)."""
    result = CliRunner().invoke(cli, ["diff", *map(str, args)], env=env)
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Two tiny ONNX models taking 4 and 5 features, and 4-feature data as the user's own .npz dataset."""
    from toolkit.testing import tiny_onnx_model

    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    np.savez(folder / "four.npz", x=rng.standard_normal((50, 4)).astype(np.float32), y=rng.integers(0, 3, 50))
    np.savez(folder / "five.npz", x=rng.standard_normal((50, 5)).astype(np.float32), y=rng.integers(0, 2, 50))
    return {"four": tiny_onnx_model(folder / "four.onnx"), "five": tiny_onnx_model(folder / "five.onnx", features=5),
            "data": folder / "four.npz", "data5": folder / "five.npz", "folder": folder}


def test_bad_input_is_one_line_and_exit_2(tiny_models):
    four, data = str(tiny_models["four"]), str(tiny_models["data"])
    assert "does not exist" in error_line(in_process(four, str(tiny_models["folder"] / "missing.onnx")))
    assert "Did you mean 'onnxruntime'" in error_line(in_process(four, four, "--backend", "onnxruntim"))
    assert "needs two backends" in error_line(in_process(four, "--backend", "onnxruntime"))
    assert "no dataset to feed the models" in error_line(in_process(four, four))
    line = error_line(in_process(four, "--backend", "onnxruntime,tflite", "--dataset", data))
    assert "backend tflite cannot run 'four.onnx'" in line


def test_a_backend_that_cannot_trace_is_named(tiny_models):
    from linear_format_plugin import write_linz  # tests/support: a format and a backend without trace()

    model = write_linz(tiny_models["folder"] / "m.linz")
    proc = in_process(str(model), str(model), "--dataset", str(tiny_models["data5"]),
                   env={"TOOLKIT_PLUGIN_MODULES": "linear_format_plugin"})
    assert "backend linz-numpy cannot give per-layer tensors" in error_line(proc)


@pytest.mark.slow
def test_models_with_different_inputs_are_refused(tiny_models):
    proc = run_cli("diff", str(tiny_models["four"]), str(tiny_models["five"]), "--dataset", str(tiny_models["data"]))
    line = error_line(proc)
    assert "five.onnx on onnxruntime" in line and "the model wants [5]" in line


@pytest.mark.slow
def test_two_tiny_models_that_agree_are_identical_layer_by_layer(tiny_models):
    four, data = str(tiny_models["four"]), str(tiny_models["data"])
    proc = run_cli("diff", four, four, "--dataset", data, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    # xw and z carry no layer scope: they pair by their own names, as tensors
    assert sorted((r["layer"], r["kind"]) for r in rows) == [("xw", "tensor"), ("y (output)", "output"),
                                                              ("z", "tensor")]
    assert all(r["identical"] and r["sqnr_db"] is None and r["max_abs"] == 0 for r in rows)
