"""`toolkit inspect`: what a model file is, read in a child by its format plugin and by each runtime that can load
it. Real tiny ONNX and TFLite models; the counts are worked out by hand from how the models are built."""

from __future__ import annotations

import json

import pytest

from toolkit.testing import tiny_onnx_model, tiny_tflite_model

from conftest import run_cli


def inspect_json(path) -> dict:
    proc = run_cli("inspect", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_an_onnx_model_shows_its_operators_weights_and_multiply_accumulates(tmp_path):
    report = inspect_json(tiny_onnx_model(tmp_path / "tiny.onnx", features=4, outputs=3))
    assert report["format"] == "onnx" and report["precision"] == "fp32" and report["opset"] == 17
    assert report["ops"] == {"Add": 1, "MatMul": 1, "Relu": 1}
    assert report["parameters"] == 4 * 3 + 3  # W and b
    assert report["macs"] == 4 * 3  # one sample through x @ W
    assert [(s["name"], s["shape"], s["dtype"]) for s in report["inputs"]] == [("x", [None, 4], "float32")]
    assert report["manifest"] is None


def test_a_tflite_model_shows_what_the_xnnpack_delegate_takes(tmp_path):
    report = inspect_json(tiny_tflite_model(tmp_path, "tiny_int8.tflite"))
    assert report["precision"] == "int8"
    tflite = report["runtimes"]["tflite"]
    assert sum(tflite["delegated"].values()) + sum(tflite["not_delegated"].values()) == sum(report["ops"].values())
    assert tflite["delegated"], "XNNPACK takes the int8 graph"
    q = report["inputs"][0]["quantization"]
    assert report["inputs"][0]["dtype"] == "int8" and len(q["scale"]) == 1 and len(q["zero_point"]) == 1


def test_the_table_names_the_operators_and_says_when_there_is_no_manifest(tmp_path):
    proc = run_cli("inspect", str(tiny_tflite_model(tmp_path, "tiny_fp32.tflite")))
    assert proc.returncode == 0, proc.stderr
    assert "Operators" in proc.stdout and "tflite: delegated" in proc.stdout
    assert "No manifest: nothing says where this file came from" in proc.stdout


def test_a_damaged_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    proc = run_cli("inspect", str(bad))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("Error: ")


@pytest.mark.slow  # two benchmark children
def test_an_onnx_output_declared_without_a_shape_takes_the_shape_onnx_infers(tmp_path):
    """Hand-written graphs often give an output only its type: it is not a scalar, and no backend is blamed."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "unshaped.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    proc = run_cli("inspect", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (out,) = json.loads(proc.stdout)["outputs"]
    assert out["shape"] == [None, 3]
    proc = run_cli("bench", str(path), "--backend", "reference", "--backend", "onnxruntime", "--runs", "10",
                   "--shape", "x=2x3")
    assert proc.returncode == 0, proc.stderr
