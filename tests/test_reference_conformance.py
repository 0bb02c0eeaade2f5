"""The reference backend held to ONNX: every node test case of every operator it claims (the table in
docs/reference-conformance.md is current, and no case is answered wrongly), and its recurrent operators (LSTM,
GRU, RNN) on what ONNX's cases leave out, against ONNX Runtime."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.api import Artifact, BackendOptions, UsageError
from toolkit_reference.backend import ReferenceBackend

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_conformance", DOCS / "gen_conformance.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def conformance():
    """ONNX's node cases run through the backend once for the module: (generator, outcomes per op, not run)."""
    gen = _load_generator()
    per_op, not_run = gen.conformance(gen.collect_cases())
    return gen, per_op, not_run


def _failing(per_op, status: str) -> list[str]:
    return sorted({f"{o.case} ({op}): {o.reason}" for op, outs in per_op.items() for o in outs if o.status == status})


@pytest.mark.slow  # collecting ONNX's node cases runs their export code: about 5-10 s
def test_conformance_table_is_current(conformance):
    gen, per_op, not_run = conformance
    current = gen.CONFORMANCE_MD.read_text(encoding="utf-8") if gen.CONFORMANCE_MD.exists() else ""
    assert current == gen.render(per_op, not_run), (
        "docs/reference-conformance.md is stale: run `python docs/gen_conformance.py` and commit the result")


@pytest.mark.slow
def test_no_claimed_operator_answers_an_onnx_case_wrongly(conformance):
    _, per_op, _ = conformance
    wrong = _failing(per_op, "wrong")
    assert not wrong, f"{len(wrong)} ONNX node cases computed wrongly (refuse them instead):\n" + "\n".join(wrong)


@pytest.mark.slow
def test_an_onnx_case_the_backend_cannot_run_is_refused_in_words_never_a_crash(conformance):
    _, per_op, _ = conformance
    errors = _failing(per_op, "error")
    assert not errors, f"{len(errors)} ONNX node cases end in an error that is no refusal:\n" + "\n".join(errors)


@pytest.mark.slow
def test_the_recurrent_operators_pass_every_onnx_case(conformance):
    _, per_op, _ = conformance
    for op in ("LSTM", "GRU", "RNN"):
        outcomes = per_op[op]
        assert len(outcomes) >= 6, f"ONNX ships at least 6 {op} cases, found {len(outcomes)}"
        assert [o.case for o in outcomes if o.status != "passed"] == []


# ------------------------------------------------------------------ recurrent operators, against ONNX Runtime
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
T, BATCH, INPUT, HIDDEN = 5, 3, 4, 3


def _recurrent_inputs(op: str, rng: np.random.Generator, *, directions: int = 1, lengths: list[int] | None = None,
                      states: bool = True, peepholes: bool = False) -> list[tuple[str, np.ndarray] | None]:
    """ONNX's input slots in order (X, W, R, B, sequence_lens, initial_h[, initial_c, P]); None where omitted."""
    gates = GATES[op]

    def rand(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    slots = [("X", rand(T, BATCH, INPUT)), ("W", rand(directions, gates * HIDDEN, INPUT)),
             ("R", rand(directions, gates * HIDDEN, HIDDEN)), ("B", rand(directions, 2 * gates * HIDDEN)),
             ("sequence_lens", np.array(lengths, np.int32)) if lengths else None,
             ("initial_h", rand(directions, BATCH, HIDDEN)) if states else None]
    if op == "LSTM":
        slots += [("initial_c", rand(directions, BATCH, HIDDEN)) if states else None,
                  ("P", rand(directions, 3 * HIDDEN)) if peepholes else None]
    while slots[-1] is None:
        slots.pop()
    return slots


def _model(op: str, slots: list, outputs: list[str], **attrs):
    from onnx import TensorProto, helper

    names = [s[0] if s else "" for s in slots]
    graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                    for name, value in filter(None, slots)]
    node = helper.make_node(op, names, outputs, hidden_size=HIDDEN, **attrs)
    graph = helper.make_graph([node], "recurrent", graph_inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10  # what ONNX Runtime 1.30+ reads
    return model


def _reference(model, feeds: dict[str, np.ndarray], folder: Path) -> dict[str, np.ndarray]:
    import onnx

    path = folder / "recurrent.onnx"
    onnx.save(model, str(path))
    return ReferenceBackend().load(Artifact.open(path), BackendOptions()).run(feeds)


def _onnxruntime(model, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


# What real exporters write and ONNX's node cases do not all cover: each runs through the reference backend and
# ONNX Runtime, and every output (Y, Y_h, and Y_c for LSTM) must agree.
RECURRENT = {
    "lstm-peepholes-initial-states": ("LSTM", dict(peepholes=True), {}),
    "lstm-bidirectional-uneven-lengths": ("LSTM", dict(directions=2, lengths=[5, 2, 4], peepholes=True),
                                          dict(direction="bidirectional")),
    "lstm-reverse-uneven-lengths": ("LSTM", dict(lengths=[3, 5, 1]), dict(direction="reverse")),
    "lstm-an-empty-sequence": ("LSTM", dict(lengths=[5, 0, 3]), {}),
    "lstm-clip": ("LSTM", dict(peepholes=True), dict(clip=0.3)),
    "lstm-input-forget": ("LSTM", dict(peepholes=True), dict(input_forget=1)),
    "lstm-activations-alpha-beta": ("LSTM", {}, dict(activations=["LeakyRelu", "Tanh", "HardSigmoid"],
                                                     activation_alpha=[0.1, 0.3], activation_beta=[0.4])),
    "gru-linear-before-reset": ("GRU", {}, dict(linear_before_reset=1)),
    "gru-bidirectional-uneven-lengths": ("GRU", dict(directions=2, lengths=[1, 5, 3]),
                                         dict(direction="bidirectional", linear_before_reset=1)),
    "gru-reverse-clip": ("GRU", dict(lengths=[2, 4, 5]), dict(direction="reverse", clip=0.2)),
    "gru-activations": ("GRU", {}, dict(activations=["HardSigmoid", "Softsign"], activation_alpha=[0.3],
                                        activation_beta=[0.6])),
    "rnn-bidirectional-two-activations": ("RNN", dict(directions=2, lengths=[4, 5, 0]),
                                          dict(direction="bidirectional", activations=["Relu", "Elu"],
                                               activation_alpha=[0.5])),
    "rnn-no-initial-state": ("RNN", dict(states=False), dict(activations=["Softplus"])),
    "rnn-affine-explicit": ("RNN", {}, dict(activations=["Affine"], activation_alpha=[0.7], activation_beta=[0.1])),
}


@pytest.mark.parametrize("name", RECURRENT)
def test_recurrent_operator_matches_onnxruntime(name, tmp_path):
    op, shape, attrs = RECURRENT[name]
    slots = _recurrent_inputs(op, np.random.default_rng(len(name)), **shape)
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    model = _model(op, slots, outputs, **attrs)
    feeds = dict(filter(None, slots))
    got, want = _reference(model, feeds, tmp_path), _onnxruntime(model, feeds)
    for output in outputs:
        np.testing.assert_allclose(got[output], want[output], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {output}")
        assert got[output].dtype == np.float32


def test_a_padded_step_gives_zero_output_and_keeps_the_state(tmp_path):
    slots = _recurrent_inputs("GRU", np.random.default_rng(3), lengths=[2, 5, 5])
    got = _reference(_model("GRU", slots, ["Y", "Y_h"]), dict(filter(None, slots)), tmp_path)
    assert np.all(got["Y"][2:, 0, 0] == 0)  # [seq, directions, batch, hidden]: the first sequence ends after 2 steps
    np.testing.assert_array_equal(got["Y_h"][0, 0], got["Y"][1, 0, 0])
    assert np.all(got["Y"][4, 0, 1:] != 0)


@pytest.mark.parametrize("op", GATES)
def test_batch_first_layout_is_the_transpose_of_the_default(op, tmp_path):
    """ONNX Runtime refuses layout=1 ("Batchwise recurrent operations are not supported"): the reference for it is
    the same node in layout 0, with inputs and outputs transposed."""
    slots = _recurrent_inputs(op, np.random.default_rng(7), directions=2, lengths=[5, 3, 1])
    outputs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    seq_first = _reference(_model(op, slots, outputs, direction="bidirectional"), dict(filter(None, slots)), tmp_path)
    batch_first_axes = {"X": (1, 0, 2), "initial_h": (1, 0, 2), "initial_c": (1, 0, 2)}
    swapped = [(s[0], np.ascontiguousarray(np.transpose(s[1], batch_first_axes[s[0]])) if s[0] in batch_first_axes
                else s[1]) if s else None for s in slots]
    batch_first = _reference(_model(op, swapped, outputs, direction="bidirectional", layout=1),
                             dict(filter(None, swapped)), tmp_path)
    np.testing.assert_array_equal(batch_first["Y"], np.transpose(seq_first["Y"], (2, 0, 1, 3)))
    for state in outputs[1:]:
        np.testing.assert_array_equal(batch_first[state], np.swapaxes(seq_first[state], 0, 1))


def test_only_the_final_state_may_be_asked_for(tmp_path):
    """Exporters often drop Y (an empty output name): the states still come out."""
    slots = _recurrent_inputs("LSTM", np.random.default_rng(5))
    model = _model("LSTM", slots, ["", "Y_h", "Y_c"])
    feeds = dict(filter(None, slots))
    got, want = _reference(model, feeds, tmp_path), _onnxruntime(model, feeds)
    assert set(got) == {"Y_h", "Y_c"}
    np.testing.assert_allclose(got["Y_c"], want["Y_c"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs, words", [
    (dict(activations=["Affine"]), "RNN: activation Affine without activation_alpha"),
    (dict(activations=["Swish"]), "RNN: activation Swish (the ONNX spec's are"),
    (dict(direction="bidirectional", activations=["Tanh"]), "RNN: 1 activations for 2 direction(s)"),
])
def test_a_use_the_recurrent_kernels_do_not_cover_is_refused_in_one_line(attrs, words, tmp_path):
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    slots = _recurrent_inputs("RNN", np.random.default_rng(0), directions=directions)
    with pytest.raises(UsageError) as refused:
        _reference(_model("RNN", slots, ["Y"], **attrs), dict(filter(None, slots)), tmp_path)
    line = refused.value.one_line()
    assert "no kernel for this use of RNN" in line and words in line and "\n" not in line
