"""The numpy reference backend against ONNX's own operator test cases (expected outputs ship with onnx)."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.artifact import Artifact
from toolkit.interfaces import BackendOptions
from toolkit_reference.backend import ReferenceBackend
from toolkit_reference.ops import OPS

# The ONNX node cases the CNN family's graphs need, by the op they test.
CASES = [
    "test_conv_with_strides_padding", "test_conv_with_strides_no_padding", "test_conv_with_autopad_same",
    "test_conv_with_strides_and_asymmetric_padding", "test_basic_conv_with_padding", "test_maxpool_2d_default",
    "test_maxpool_2d_strides", "test_maxpool_2d_pads", "test_maxpool_2d_same_upper", "test_maxpool_2d_dilations",
    "test_relu", "test_gemm_default_single_elem_vector_bias", "test_gemm_transposeB", "test_matmul_2d",
    "test_add_bcast", "test_transpose_all_permutations_3", "test_reshape_negative_dim", "test_flatten_axis2",
    "test_softmax_axis_1", "test_concat_2d_axis_1", "test_gather_0", "test_slice", "test_shape",
    "test_squeeze", "test_unsqueeze_axis_0", "test_quantizelinear_axis", "test_dequantizelinear_axis",
    "test_averagepool_2d_default", "test_globalaveragepool", "test_sigmoid", "test_tanh",
    # What real third-party models brought (an OCR classifier, an audio model, a voice-activity detector).
    "test_batchnorm_example", "test_batchnorm_epsilon", "test_clip", "test_clip_example", "test_clip_default_min",
    "test_hardsigmoid", "test_hardsigmoid_example", "test_leakyrelu", "test_constant_pad", "test_edge_pad",
    "test_reflect_pad", "test_log", "test_exp", "test_neg", "test_sqrt", "test_abs", "test_pow", "test_erf",
    "test_equal", "test_less", "test_greater", "test_where_example", "test_max_example", "test_min_example",
    "test_reduce_max_keepdims_example", "test_reduce_max_do_not_keepdims_example",
    "test_reduce_min_keepdims_example", "test_reduce_min_default_axes_keepdims_example",
    "test_reduce_sum_keepdims_example", "test_reduce_sum_do_not_keepdims_example",
    "test_reduce_sum_default_axes_keepdims_example", "test_reduce_mean_keepdims_example",
    "test_reduce_mean_default_axes_keepdims_example",
    # The transformer family's.
    "test_layer_normalization_2d_axis0", "test_layer_normalization_2d_axis_negative_2",
    "test_layer_normalization_4d_axis1", "test_layer_normalization_4d_axis_negative_1", "test_gelu_default_1",
    "test_gelu_default_2", "test_gelu_tanh_1", "test_gelu_tanh_2", "test_expand_dim_changed", "test_tile",
    # The recurrent family's: every LSTM, GRU and RNN case ONNX ships.
    "test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_lstm_batchwise",
    "test_lstm_reverse", "test_lstm_bidirectional", "test_gru_defaults", "test_gru_with_initial_bias",
    "test_gru_seq_length", "test_gru_batchwise", "test_gru_reverse", "test_gru_bidirectional",
    "test_simple_rnn_defaults", "test_simple_rnn_with_initial_bias", "test_rnn_seq_length", "test_simple_rnn_batchwise",
    "test_simple_rnn_reverse", "test_simple_rnn_bidirectional",
]


@pytest.fixture(scope="module")
def node_cases():
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c.name: c for c in collect_testcases(None) if c.name in CASES}


@pytest.mark.slow  # collecting ONNX's node cases runs every case's export code: about 10 s before the first test
@pytest.mark.parametrize("name", CASES)
def test_reference_ops_reproduce_onnx_expected_outputs(name, node_cases, tmp_path):
    import onnx

    case = node_cases[name]
    path = tmp_path / "case.onnx"
    onnx.save(case.model, str(path))
    session = ReferenceBackend().load(Artifact.open(path), BackendOptions())
    (inputs, expected), = case.data_sets
    feeds = {spec.name: value for spec, value in zip(session.input_specs, inputs)}
    outputs = session.run(feeds)
    for spec, want in zip(session.output_specs, expected):
        np.testing.assert_allclose(outputs[spec.name], want, rtol=1e-5, atol=1e-6)


def test_every_operator_it_does_not_implement_is_listed_with_its_nodes(tmp_path):
    import onnx
    from click.testing import CliRunner
    from onnx import TensorProto, helper

    from toolkit.cli import cli

    nodes = [helper.make_node("Hardmax", ["x"], ["a"], name="h1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Hardmax", ["b"], ["c"], name="h2"), helper.make_node("Softsign", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "unimplemented.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert "Hardmax" not in OPS and "Softsign" not in OPS
    reason = ReferenceBackend().supports(Artifact.open(path))
    assert reason == "reference backend does not implement Hardmax (2 nodes: h1, h2); Softsign (1 node: #3)"
    result = CliRunner().invoke(cli, ["bench", str(path), "--backend", "reference"])
    assert result.exit_code == 2 and reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
