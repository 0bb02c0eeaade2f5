"""The reference backend's compile step: packed, fused kernels that give the readable kernels' answers (and
ONNX Runtime's), on every input shape, with control flow (If, Loop) reading values from the graph around it."""

from __future__ import annotations

import numpy as np
import pytest

from third_party_models import make_small_cnn
from toolkit.artifact import Artifact
from toolkit.interfaces import BackendOptions
from toolkit_reference.backend import ReferenceBackend


def _load(path, threads=None):
    return ReferenceBackend().load(Artifact.open(path), BackendOptions(threads=threads))


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    return make_small_cnn(tmp_path_factory.mktemp("cnn") / "cnn.onnx")


@pytest.fixture(scope="module")
def small_cnn_qdq(small_cnn):
    """ONNX Runtime's static QDQ quantisation of the small CNN (uint8 activations, int8 weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.batches = iter([{"x": rng.random((1, 1, 28, 28), dtype=np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.batches, None)

    path = small_cnn.with_name("cnn_qdq.onnx")
    quantize_static(str(small_cnn), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return path


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("batch", [1, 5])
def test_the_compiled_fp32_cnn_agrees_with_onnx_runtime_and_with_its_own_readable_kernels(small_cnn, batch):
    session = _load(small_cnn)
    x = _images(batch)
    fast = session.run({"x": x})["y"]
    readable = session.trace({"x": x})["y"]
    (ort,) = _ort(small_cnn).run(None, {"x": x})
    scale = float(np.abs(ort).max())
    np.testing.assert_allclose(fast, ort, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(fast, readable, rtol=1e-5, atol=1e-5 * scale)


def test_the_compile_step_fuses_convolution_with_its_relu_and_folds_weight_dequantisation(small_cnn, small_cnn_qdq):
    fp32 = _load(small_cnn).program
    assert len(fp32.dynamic_steps) < len(fp32.nodes)  # Conv+Relu twice, MatMul alone: 6 steps for 8 nodes
    qdq = _load(small_cnn_qdq).program
    dequantized_weights = [n for n in qdq.nodes if n.op_type == "DequantizeLinear" and n.outputs[0] in qdq.constants]
    assert dequantized_weights and len(qdq.dynamic_steps) < len(qdq.nodes) - len(dequantized_weights)


def test_the_compiled_qdq_int8_cnn_is_within_one_step_of_its_grid_of_onnx_runtime(small_cnn_qdq):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(small_cnn_qdq))
    dq_out = next(n for n in model.graph.node if n.output[0] == "y")
    scale = float(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == dq_out.input[1])))
    x = _images(16, seed=3)
    session = _load(small_cnn_qdq)
    fast, readable = session.run({"x": x})["y"], session.trace({"x": x})["y"]
    (ort,) = _ort(small_cnn_qdq).run(None, {"x": x})
    for other in (ort, readable):
        steps = np.rint(np.abs(fast - other) / scale)
        assert steps.max() <= 1 and (steps == 0).mean() >= 0.999 - 1.0 / steps.size


def test_each_input_shape_gets_its_own_shape_values_and_outputs_never_alias_buffers(small_cnn):
    session = _load(small_cnn)
    x1, x4 = _images(1, seed=5), _images(4, seed=6)
    first = session.run({"x": x1})["y"]
    kept = first.copy()
    four = session.run({"x": x4})["y"]
    again = session.run({"x": x1})["y"]
    assert four.shape == (4, 10) and again.shape == (1, 10)
    np.testing.assert_array_equal(first, kept)  # the second run wrote into no array the first returned
    np.testing.assert_allclose(again, first, rtol=1e-6)
    np.testing.assert_allclose(session.run({"x": x4[2:3]})["y"][0], four[2], rtol=1e-5, atol=1e-6)


def test_a_float64_input_falls_back_to_the_readable_kernels(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float64).reshape(3, 2), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
                              "f64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 2])], [w])
    path = tmp_path / "f64.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = np.array([[1.0, -2.0, 0.5], [-1.0, 0.0, 3.0]])
    y = _load(path).run({"x": x})["y"]
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.maximum(x @ np.arange(6.0).reshape(3, 2), 0))


def _control_flow_model(path):
    """If on a state flag (as voice-activity models carry their LSTM state): the then-branch reads the graph's
    input `x` from the outer scope; then a Loop that adds `x` to an accumulator `n` times, with a scan output."""
    import onnx
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", f, [2, 3])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", f, [2, 3])])
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Mul", ["acc_out", "two"], ["scan"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", f, [2, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", f, [2, 3]),
         helper.make_tensor_value_info("scan", f, [2, 3])])
    nodes = [helper.make_node("Equal", ["state", "zero"], ["is_zero"]),
             helper.make_node("If", ["is_zero"], ["branch"], then_branch=then, else_branch=other),
             helper.make_node("Loop", ["n", "", "branch"], ["total", "scans"], body=body)]
    graph = helper.make_graph(
        nodes, "control", [helper.make_tensor_value_info("x", f, [2, 3]),
                           helper.make_tensor_value_info("state", TensorProto.INT64, [1]),
                           helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("total", f, [2, 3]), helper.make_tensor_value_info("scans", f, [None, 2, 3])],
        [helper.make_tensor(name, dtype, dims, vals) for name, dtype, dims, vals in
         [("zero", TensorProto.INT64, [1], [0]), ("two", f, [], [2.0])]])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("state", [0, 1])
def test_if_and_loop_read_outer_values_and_agree_with_onnx_runtime(tmp_path, state):
    path = _control_flow_model(tmp_path / "control.onnx")
    feeds = {"x": np.array([[1, -2, 3], [-4, 5, -6]], np.float32), "state": np.array([state], np.int64),
             "n": np.array(3, np.int64)}
    ours = _load(path).run(feeds)
    total, scans = _ort(path).run(None, feeds)
    np.testing.assert_array_equal(ours["total"], total)
    np.testing.assert_array_equal(ours["scans"], scans)
    assert scans.shape == (3, 2, 3)


@pytest.mark.slow  # collecting ONNX's node cases takes about 10 s
@pytest.mark.parametrize("name", ["test_if", "test_loop11"])
def test_control_flow_passes_onnx_node_cases(name, tmp_path):
    import warnings

    import onnx
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = next(c for c in collect_testcases(None) if c.name == name)
    path = tmp_path / "case.onnx"
    onnx.save(case.model, str(path))
    session = _load(path)
    (inputs, expected), = case.data_sets
    outputs = session.run({s.name: v for s, v in zip(session.input_specs, inputs)})
    for spec, want in zip(session.output_specs, expected):
        np.testing.assert_allclose(outputs[spec.name], want, rtol=1e-5, atol=1e-6)


def test_threads_limit_the_blas_pool_and_describe_names_the_blas_kernel(small_cnn):
    from threadpoolctl import threadpool_info

    session = _load(small_cnn, threads=1)
    blas = session.describe()["blas"]
    assert blas and all(b["num_threads"] == 1 for b in blas)
    assert all(i["num_threads"] == 1 for i in threadpool_info() if i.get("user_api") == "blas")
    assert blas[0]["internal_api"] in ("openblas", "mkl", "blis", "flexiblas", "accelerate")


def test_a_token_id_outside_the_vocabulary_is_one_line_naming_the_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from toolkit.errors import UsageError

    table = numpy_helper.from_array(np.ones((5, 2), np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="embedding")], "emb",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], [table])
    path = tmp_path / "embedding.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = _load(path)
    for run in (session.run, session.trace):
        with pytest.raises(UsageError, match=r"could not run Gather node 'embedding' on these inputs: index 7 "
                                             r"is out of bounds") as refused:
            run({"ids": np.array([0, 7, 1], np.int64)})
        assert "token ids within its vocabulary" in refused.value.one_line()


def _one_node_model(path, node, inputs, outputs, opset, initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph([node], "one", inputs, outputs, list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def test_dropout_masks_follow_their_opset_and_a_per_channel_bias_dequantizes_along_its_one_axis(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    for opset, mask_type in ((9, TensorProto.FLOAT), (13, TensorProto.BOOL)):
        path = _one_node_model(tmp_path / f"dropout{opset}.onnx", helper.make_node("Dropout", ["x"], ["y", "m"]),
                               [helper.make_tensor_value_info("x", f, [2])],
                               [helper.make_tensor_value_info("y", f, [2]), helper.make_tensor_value_info("m", mask_type, [2])],
                               opset)
        out = _load(path).run({"x": np.array([1.0, -2.0], np.float32)})
        assert out["m"].dtype == (np.float32 if opset == 9 else np.bool_) and out["m"].all()
    # ONNX Runtime's quantizer writes a conv bias's per-channel DequantizeLinear with the default axis (1).
    path = _one_node_model(tmp_path / "bias.onnx", helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
                           [], [helper.make_tensor_value_info("y", f, [3])], 17,
                           [numpy_helper.from_array(np.array([10, -20, 30], np.int32), "q"),
                            numpy_helper.from_array(np.array([0.5, 0.25, 2.0], np.float32), "s"),
                            numpy_helper.from_array(np.zeros(3, np.int32), "z")])
    np.testing.assert_array_equal(_load(path).run({})["y"], [5.0, -5.0, 60.0])


def test_a_damaged_file_on_the_reference_backend_says_the_file_is_damaged(tmp_path, small_cnn):
    from conftest import run_cli

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(small_cnn.read_bytes()[:300])
    proc = run_cli("bench", str(broken), "--backend", "reference")
    assert proc.returncode == 2 and "onnx cannot parse" in proc.stderr and "could not tell" not in proc.stderr


def test_a_refusal_names_every_operator_on_one_line_short_enough_never_to_be_cut():
    from toolkit_reference.refusals import LINE_CHARS, refusal

    long = "StatefulPartitionedCall/model_1/some_block_7/activation_" + "x" * 40
    missing = {(op, None): [f"{long}{op}"] for op in ("Acos", "Asin", "Atan", "Celu", "Cosh", "Det", "Elu",
                                                       "Hardmax", "Mish", "Selu", "Shrink", "Sinh", "Softsign")}
    missing[("Conv", "3-D")] = ["conv3d"]
    line = refusal(missing)
    assert len(line) <= LINE_CHARS and line.startswith("reference backend does not implement Acos (1 node)")
    assert all(f"{op} (" in line for op, _ in missing) and "Conv (3-D; 1 node)" in line
    assert refusal({("Hardmax", None): ["h1", "h2"]}) == "reference backend does not implement Hardmax (2 nodes: h1, h2)"
    assert refusal({}) is None
