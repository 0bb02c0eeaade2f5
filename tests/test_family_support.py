"""Fast checks of what the model families rely on: the word tokenizer that travels with text models, parity
thresholds a user can override, and the scale of an int8 ONNX input read from the graph itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit import metrics, operations
from toolkit.api import WordTokenizer, read_specs
from toolkit.errors import UnknownNameError, UsageError


def test_the_tokenizer_ranks_words_by_frequency_and_pads_at_the_front():
    tok = WordTokenizer.fit(["Good good tea", "bad tea", "good coffee"], size=5, sequence_length=4)
    assert tok.vocabulary == ["<pad>", "<oov>", "good", "tea", "bad"]  # ties broken alphabetically
    ids = tok.encode(["GOOD tea!", "coffee", "good good good good tea"])
    assert ids.tolist() == [[0, 0, 2, 3], [0, 0, 0, 1], [2, 2, 2, 2]]  # unknown -> 1; the first words are kept
    again = WordTokenizer.from_settings(tok.settings(), tok.vocabulary_text())
    assert again.encode(["good tea"]).tolist() == tok.encode(["good tea"]).tolist()


def test_a_tokenizer_comes_from_an_artifacts_manifest_and_vocabulary(tmp_path):
    from toolkit.artifact import Artifact, Manifest, sha256_file

    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    tok = WordTokenizer.fit(["a b c"], size=10, sequence_length=3)
    Artifact(model, Manifest("m.onnx", "onnx", "fp32", sha256_file(model),
                             extra={"tokenizer": tok.settings()})).write_manifest()
    with pytest.raises(UsageError, match="vocabulary of 'm.onnx' is missing"):
        WordTokenizer.for_artifact(model)
    model.with_name("m.onnx.vocab.txt").write_text(tok.vocabulary_text())
    assert WordTokenizer.for_artifact(model).encode(["c a"]).tolist() == tok.encode(["c a"]).tolist()


def test_parity_thresholds_can_be_overridden_and_are_checked():
    ref = {"y": np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])}
    got = {"y": np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])}  # 3 of 4 agree
    assert not metrics.compare_outputs(ref, got, "classification", "int8")["passed"]
    loose = metrics.compare_outputs(ref, got, "classification", "int8", {"top1": 0.75})
    assert loose["passed"] and loose["rule"] == "top-1 agreement >= 0.75" and loose["thresholds"] == {"top1": 0.75}
    assert "unused_thresholds" not in loose
    assert metrics.compare_outputs(ref, got, "classification", "int8", {"nrmse": 0.5})["unused_thresholds"] == ["nrmse"]
    assert metrics.parse_thresholds({"nrmse": "0.2", "rtol": "1e-3"}) == {"nrmse": 0.2, "rtol": 1e-3}
    with pytest.raises(UnknownNameError, match="threshold 'top'") as e:
        metrics.parse_thresholds({"top": "0.9"})
    assert "Did you mean 'top1'" in e.value.hint
    for bad in ({"top1": "1.5"}, {"atol": "-1"}, {"rtol": "x"}):
        with pytest.raises(UsageError):
            metrics.parse_thresholds(bad)


def test_a_regression_is_held_to_its_error_relative_to_the_spread():
    ref = {"y": np.linspace(300, 400, 50)[:, None]}
    near = {"y": ref["y"] + 1.0}  # 1 ppm off, spread ~29 ppm
    far = {"y": ref["y"] + 10.0}
    assert metrics.compare_outputs(ref, near, "regression", "int8")["passed"]
    assert not metrics.compare_outputs(ref, far, "regression", "int8")["passed"]
    assert metrics.compare_outputs(ref, far, "regression", "int8", {"nrmse": 0.5})["passed"]


def test_the_scale_of_an_int8_onnx_input_is_read_from_its_dequantize_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["x2"]),
         helper.make_node("DequantizeLinear", ["x2", "s", "z"], ["xf"]),
         helper.make_node("QuantizeLinear", ["xf", "s2", "z2"], ["y"])],
        "edge", [helper.make_tensor_value_info("x", TensorProto.INT8, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [None, 4])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4]),
         helper.make_tensor("s", TensorProto.FLOAT, [], [0.5]), helper.make_tensor("z", TensorProto.INT8, [], [-3]),
         helper.make_tensor("s2", TensorProto.FLOAT, [], [0.25]),
         helper.make_tensor("z2", TensorProto.UINT8, [], [128])])
    path = tmp_path / "edge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    (x,), (y,) = read_specs(path)
    assert (x.quantization.scale, x.quantization.zero_point) == ((0.5,), (-3,))
    assert (y.quantization.scale, y.quantization.zero_point) == ((0.25,), (128,))


def test_a_companion_file_the_manifest_lists_must_be_a_plain_suffix(tmp_path):
    from toolkit.artifact import Artifact, Manifest, sha256_file

    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    manifest = Manifest("m.onnx", "onnx", "fp32", sha256_file(model), extra={"files": {"/../../evil": "0" * 64}})
    with pytest.raises(UsageError, match="not a file suffix"):
        operations.companion_files(Artifact(model, manifest))
    manifest.extra["files"] = {".vocab.txt": "0" * 64}
    with pytest.raises(UsageError, match="is missing"):
        operations.companion_files(Artifact(model, manifest))
    model.with_name("m.onnx.vocab.txt").write_text("x\n")
    with pytest.raises(UsageError, match="sha256 differs"):
        operations.companion_files(Artifact(model, manifest))
    assert json.dumps(manifest.to_dict())  # still a plain manifest


# ------------------------------------------------------------------------------------ the user's own data
def _write_csv(path, header, rows):
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_csv_of_numbers_and_categories_is_a_tabular_dataset_by_its_path(tmp_path):
    from toolkit import plugins

    rows = [[i * 1.5, ["own", "rent"][i % 2], "good" if i % 3 else "bad"] for i in range(50)]
    path = _write_csv(tmp_path / "loans.csv", ["income", "home", "label"], rows)
    data = plugins.registries().datasets.get(str(path))
    assert data.name == str(path.resolve()) and data.task == "classification" and data.num_classes == 2
    assert data.class_names == ("bad", "good")
    x, y = data.load("train")
    xt, yt = data.load("test")
    assert x.shape == (40, 2) and xt.shape == (10, 2) and x.dtype == np.float32
    assert data.columns() == [{"name": "income"}, {"name": "home", "categories": ["own", "rent"]}]
    assert data.categorical() == {1: 2} and set(np.unique(x[:, 1])) <= {0.0, 1.0}


def test_a_csv_of_text_and_labels_is_tokenised_and_a_numeric_label_can_be_a_regression(tmp_path):
    from toolkit import userdata

    texts = _write_csv(tmp_path / "t.csv", ["review", "label"],
                       [[f"good tea number {i}", i % 2] for i in range(30)])
    data = userdata.file_dataset(str(texts))
    x, _ = data.load("train")
    assert x.dtype == np.int32 and x.shape == (24, 64) and data.tokenizer().vocabulary[2] == "good"
    prices = _write_csv(tmp_path / "p.csv", ["size", "price"], [[i, i * 2.5 + 0.1] for i in range(30)])
    reg = userdata.file_dataset(str(prices))
    assert reg.task == "regression" and reg.load("test")[1].shape == (6, 1)


def test_an_npz_with_or_without_its_own_test_split(tmp_path):
    from toolkit import userdata

    np.savez(tmp_path / "a.npz", x=np.zeros((20, 3)), y=np.arange(20) % 2)
    np.savez(tmp_path / "b.npz", x_train=np.zeros((8, 3)), y_train=np.ones(8, int), x_test=np.ones((4, 3)),
             y_test=np.zeros(4, int))
    a, b = userdata.file_dataset(str(tmp_path / "a.npz")), userdata.file_dataset(str(tmp_path / "b.npz"))
    assert len(a.load("train")[0]) == 16 and a.task == "classification"
    assert b.load("test")[0].tolist() == np.ones((4, 3)).tolist() and len(b.load("train")[1]) == 8
    np.savez(tmp_path / "two.npz", a=np.zeros((10, 4)), b=np.ones((10, 2)), y=np.arange(10) % 2)
    x, y = userdata.file_dataset(str(tmp_path / "two.npz")).load("train")
    assert sorted(x) == ["a", "b"] and x["a"].shape == (8, 4) and x["b"].dtype == np.float32 and len(y) == 8


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("a,label\n1,2\n", "at least 10 rows"),
    ("a,b,label\n" + "1,2,3\n" * 10 + "1,2\n", "line 12 has a different number of columns"),
])
def test_a_bad_data_file_is_one_clear_line(tmp_path, content, message):
    from toolkit import userdata

    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        userdata.file_dataset(str(path))
    np.savez(tmp_path / "w.npz", features=np.zeros(3))
    with pytest.raises(UsageError, match="holds features"):
        userdata.file_dataset(str(tmp_path / "w.npz"))


def test_a_csv_with_a_missing_value_is_refused_with_its_line_and_column(tmp_path):
    from toolkit import userdata

    rows = [[i, "own", i % 2] for i in range(20)]
    rows[3][0] = ""
    path = _write_csv(tmp_path / "gaps.csv", ["income", "home", "label"], rows)
    with pytest.raises(UsageError, match="line 5, column income has no value") as e:
        userdata.file_dataset(str(path))
    assert "missing values" in e.value.hint
    rows[3][0] = "NA"  # a word where the column has numbers
    with pytest.raises(UsageError, match="line 5, column income has no value .'NA'."):
        userdata.file_dataset(str(_write_csv(tmp_path / "na.csv", ["income", "home", "label"], rows)))
    rows[3][0] = "inf"
    with pytest.raises(UsageError, match="line 5, column income is not a finite number"):
        userdata.file_dataset(str(_write_csv(tmp_path / "inf.csv", ["income", "home", "label"], rows)))
    rows[3][0], rows[4][1] = 3, "none"  # in a column of words, "none" is a category like German credit's
    assert userdata.file_dataset(str(_write_csv(tmp_path / "ok.csv", ["income", "home", "label"], rows))).categorical()
    np.savez(tmp_path / "nan.npz", x=np.array([[1.0], [np.nan]] * 10), y=np.arange(20) % 2)
    with pytest.raises(UsageError, match="not finite"):
        userdata.file_dataset(str(tmp_path / "nan.npz"))


def test_a_vocabulary_edited_after_training_is_refused_on_the_device_side_too(tmp_path):
    from toolkit.artifact import Artifact, Manifest, sha256_file

    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    tok = WordTokenizer.fit(["good tea", "bad tea"], size=10, sequence_length=4)
    Artifact(model, Manifest("m.onnx", "onnx", "fp32", sha256_file(model), extra={
        "tokenizer": tok.settings(), "files": {".vocab.txt": tok.fingerprint()}})).write_manifest()
    vocab = model.with_name("m.onnx.vocab.txt")
    vocab.write_text(tok.vocabulary_text())
    assert WordTokenizer.for_artifact(model).vocabulary == tok.vocabulary
    vocab.write_text(tok.vocabulary_text().replace("good", "great"))
    with pytest.raises(UsageError, match="is not the vocabulary 'm.onnx' was made with"):
        WordTokenizer.for_artifact(model)


def test_token_ids_from_another_vocabulary_are_refused():
    from types import SimpleNamespace

    from toolkit.text import check_vocabulary

    trained = WordTokenizer.fit(["good tea", "bad tea"], size=10, sequence_length=4)
    other = WordTokenizer.fit(["great coffee"], size=10, sequence_length=4)
    artifact = SimpleNamespace(path=Path("m.tflite"), manifest=SimpleNamespace(extra={
        "files": {".vocab.txt": trained.fingerprint()}, "dataset": "fine-foods"}))
    check_vocabulary(artifact, SimpleNamespace(name="same.csv", tokenizer=lambda: trained))
    with pytest.raises(UsageError, match="'other.csv' tokenises with another vocabulary than 'm.tflite'") as e:
        check_vocabulary(artifact, SimpleNamespace(name="other.csv", tokenizer=lambda: other))
    assert "fine-foods" in e.value.hint
    check_vocabulary(artifact, SimpleNamespace(name="digits"))  # not text: the shape check speaks for it


def test_a_malformed_parity_override_names_its_own_flag():
    from conftest import run_cli

    proc = run_cli("quantize", "m.onnx", "--parity", "top1")
    assert proc.returncode == 2 and "--parity 'top1' is not KEY=VALUE" in proc.stderr
