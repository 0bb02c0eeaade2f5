"""The pure-Python TFLite reader reports what LiteRT reports, and turns any damaged file into one ModelFileError.

Run as a script (`python tests/test_tflite_reader.py OUT_DIR`) it writes the TensorFlow-made models the slow
tests compare; the tests run it in a child process, as TensorFlow and LiteRT do not share a process well.
"""

from __future__ import annotations

import importlib
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from toolkit.errors import ModelFileError
from toolkit.specs import Quantization, TensorSpec

# The generated schema modules, for their builder functions (`tflite.Model` itself is the class of that name).
tfl_model, tfl_subgraph, tfl_operator, tfl_code = (importlib.import_module(f"tflite.{m}")
                                                   for m in ("Model", "SubGraph", "Operator", "OperatorCode"))

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "toolkit" / "testdata"
FP32 = TESTDATA / "tiny_fp32.tflite"
INT8 = TESTDATA / "tiny_int8.tflite"

try:
    from toolkit_formats.tflite_reader import TFLiteInfo, read_tflite, read_tflite_bytes
except ImportError:  # the folder is not an installed package (yet): import it from the source tree
    sys.path.insert(0, str(ROOT / "plugins"))
    from toolkit_formats.tflite_reader import TFLiteInfo, read_tflite, read_tflite_bytes


def spec_from_litert_detail(detail: dict) -> TensorSpec:
    """A TensorSpec from a LiteRT get_input_details()/get_output_details() entry: the reader's oracle (this was
    toolkit.specs.spec_from_tflite_detail, which the reader replaced)."""
    shape = tuple(None if int(d) < 0 else int(d) for d in detail.get("shape_signature", detail["shape"]))
    qp = detail.get("quantization_parameters") or {}
    scales, zeros = qp.get("scales", []), qp.get("zero_points", [])
    quant = None
    if len(scales):
        quant = Quantization(tuple(float(s) for s in scales), tuple(int(z) for z in zeros),
                             int(qp.get("quantized_dimension", 0)) if len(scales) > 1 else None)
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name, quant)


def litert_view(path: Path) -> TFLiteInfo:
    """What LiteRT's Interpreter says about `path`, in the reader's terms."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate, so that no DELEGATE node joins the model's own operators.
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return TFLiteInfo([spec_from_litert_detail(d) for d in interp.get_input_details()],
                      [spec_from_litert_detail(d) for d in interp.get_output_details()],
                      sorted({op["op_name"] for op in interp._get_ops_details()}))


def parses_or_refuses(data: bytes) -> str:
    """'ok' or 'refused'; any other exception fails the test. Every refusal is a one-line ModelFileError."""
    try:
        read_tflite_bytes(data, "damaged.tflite")
    except ModelFileError as e:
        line = e.one_line()
        assert "\n" not in line and line.startswith("'damaged.tflite' is not a valid TFLite file: "), line
        assert "Re-export the model" in line
        return "refused"
    return "ok"


# -- agreement with LiteRT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [FP32, INT8], ids=["fp32", "int8"])
def test_reader_reports_the_same_inputs_outputs_and_ops_as_litert(path):
    assert read_tflite(path) == litert_view(path)


def test_inputs_come_in_subgraph_order_with_litert_names_not_signature_order():
    info = read_tflite(FP32)
    # The SignatureDef lists a, b; subgraph 0 (and so LiteRT's get_input_details) has b first.
    assert [s.name for s in info.inputs] == ["serving_default_b:0", "serving_default_a:0"]
    assert [s.shape for s in info.inputs] == [(None, 4), (None, 4)]
    assert sorted(s.shape for s in info.outputs) == [(None, 3), (None, 4)]
    assert all(s.dtype == "float32" and s.quantization is None for s in info.inputs + info.outputs)
    assert info.ops == ["ADD", "FULLY_CONNECTED", "MUL"]


def test_int8_io_has_one_scale_and_zero_point_while_weights_stay_per_channel():
    from ai_edge_litert.interpreter import Interpreter

    info = read_tflite(INT8)
    for spec in info.inputs + info.outputs:
        assert spec.dtype == "int8"
        assert len(spec.quantization.scale) == 1 and len(spec.quantization.zero_point) == 1
        assert spec.quantization.axis is None
    weights = [d for d in Interpreter(model_path=str(INT8)).get_tensor_details()
               if len(d["quantization_parameters"]["scales"]) > 1]
    assert weights, "the fixture should have per-channel weights for this test to mean anything"
    assert not {d["name"] for d in weights} & {s.name for s in info.inputs + info.outputs}


def test_reading_from_bytes_matches_reading_the_file():
    assert read_tflite_bytes(FP32.read_bytes(), "x") == read_tflite(FP32)
    assert read_tflite_bytes(bytearray(INT8.read_bytes())) == read_tflite(INT8)


def test_reading_needs_neither_tensorflow_nor_litert():
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from toolkit_formats.tflite_reader import read_tflite; "
            "read_tflite(sys.argv[1]); print(sorted(m for m in ('tensorflow', 'ai_edge_litert', 'keras') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(FP32), str(ROOT / "plugins")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- damaged and hostile files --------------------------------------------------------------------------------


def test_missing_file_is_a_model_file_error(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_tflite(tmp_path / "nope.tflite")
    with pytest.raises(ModelFileError, match="cannot read"):
        read_tflite(tmp_path)


@pytest.mark.parametrize("data, why", [
    (b"", "too short"),
    (b"\x10\x00\x00\x00TFL", "too short"),
    (b"\x10\x00\x00\x00ONNX" + bytes(64), "identifier"),
    (b"PK\x03\x04" + bytes(64), "identifier"),
])
def test_short_or_foreign_files_are_refused_with_a_clear_reason(data, why):
    with pytest.raises(ModelFileError, match=why) as caught:
        read_tflite_bytes(data, "m.tflite")
    assert caught.value.one_line().startswith("'m.tflite' is not a valid TFLite file: ")


def test_truncated_files_are_refused():
    data = FP32.read_bytes()
    for keep in (8, 16, len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 1):
        assert parses_or_refuses(data[:keep]) == "refused", keep
    assert parses_or_refuses(data[len(data) // 2:]) == "refused"


def test_random_bytes_after_a_valid_header_are_refused_or_parsed_never_crash():
    rng = random.Random(0)
    for size in (8, 12, 64, 256, 4096):
        for _ in range(20):
            body = bytes(rng.getrandbits(8) for _ in range(size - 8))
            root = struct.pack("<I", rng.randrange(0, size))
            assert parses_or_refuses(root + b"TFL3" + body) in ("ok", "refused")


def test_two_hundred_single_byte_and_word_mutations_parse_or_raise_model_file_error():
    data = FP32.read_bytes()
    rng = random.Random(0)
    outcomes = []
    for i in range(200):
        damaged = bytearray(data)
        at = rng.randrange(8, len(data) - 4)
        if i % 3 == 0:
            damaged[at] ^= 1 << rng.randrange(8)
        elif i % 3 == 1:
            damaged[at] = rng.randrange(256)
        else:
            damaged[at:at + 4] = struct.pack("<I", rng.choice([0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                                               len(data), rng.getrandbits(32)]))
        outcomes.append(parses_or_refuses(bytes(damaged)))
    # Both must happen, or the mutations miss the structure (or the reader refuses everything).
    assert outcomes.count("ok") > 10 and outcomes.count("refused") > 10, outcomes


def _field_position(data: bytes, table: int, slot: int) -> int:
    vtable = table - struct.unpack_from("<i", data, table)[0]
    return table + struct.unpack_from("<H", data, vtable + slot)[0]


def test_a_vector_claiming_four_billion_entries_is_refused_at_once():
    data = bytearray(FP32.read_bytes())
    root = struct.unpack_from("<I", data, 0)[0]
    field = _field_position(data, root, 8)  # Model.subgraphs
    vector = field + struct.unpack_from("<I", data, field)[0]
    struct.pack_into("<I", data, vector, 0xFFFFFFFF)
    with pytest.raises(ModelFileError, match=r"subgraph list .* is longer \(4294967295 entries\) than the file"):
        read_tflite_bytes(bytes(data))


def _model(subgraph_copies: int = 1, operator_copies: int = 1, distinct_subgraphs: bool = False,
           codes: tuple[tuple[int, int, str | None], ...] = ((0, 0, None),)) -> bytes:
    """A hand-built model with no tensors: one operator per (deprecated_builtin_code, builtin_code, custom_code)
    in `codes`, that list repeated `operator_copies` times, and `subgraph_copies` subgraph entries that are all
    one table (or, with `distinct_subgraphs`, distinct tables sharing the one operator list)."""
    b = flatbuffers.Builder(1024)
    code_tables = []
    for deprecated, builtin, custom in codes:
        custom_name = b.CreateString(custom) if custom is not None else None
        tfl_code.Start(b)
        tfl_code.AddDeprecatedBuiltinCode(b, deprecated)
        tfl_code.AddBuiltinCode(b, builtin)
        if custom_name is not None:
            tfl_code.AddCustomCode(b, custom_name)
        code_tables.append(tfl_code.End(b))
    operators = []
    for index in range(len(codes)):
        tfl_operator.Start(b)
        tfl_operator.AddOpcodeIndex(b, index)
        operators.append(tfl_operator.End(b))
    tfl_subgraph.StartOperatorsVector(b, len(operators) * operator_copies)
    for op in reversed(operators * operator_copies):
        b.PrependUOffsetTRelative(op)
    ops = b.EndVector()
    subgraphs = []
    for i in range(subgraph_copies if distinct_subgraphs else 1):
        tfl_subgraph.Start(b)
        tfl_subgraph.AddOperators(b, ops)
        tfl_subgraph.AddDebugMetadataIndex(b, i)  # a field that differs, so the builder cannot share tables
        subgraphs.append(tfl_subgraph.End(b))
    tfl_model.StartSubgraphsVector(b, subgraph_copies)
    for i in range(subgraph_copies):
        b.PrependUOffsetTRelative(subgraphs[i % len(subgraphs)])
    subgraph_vector = b.EndVector()
    tfl_model.StartOperatorCodesVector(b, len(code_tables))
    for code in reversed(code_tables):
        b.PrependUOffsetTRelative(code)
    code_vector = b.EndVector()
    tfl_model.Start(b)
    tfl_model.AddVersion(b, 3)
    tfl_model.AddOperatorCodes(b, code_vector)
    tfl_model.AddSubgraphs(b, subgraph_vector)
    b.Finish(tfl_model.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_a_hand_built_model_parses():
    assert read_tflite_bytes(_model(2, 3)) == TFLiteInfo([], [], ["ADD"])


def test_operator_names_take_the_larger_of_the_two_builtin_code_fields_and_custom_names():
    codes = ((9, 0, None),     # an old writer: only the int8 field (FULLY_CONNECTED)
             (0, 3, None),     # only the int32 field (CONV_2D), which the tflite accessor would misread as ADD
             (127, 150, None),  # past the int8 range: the placeholder 127 and the real code (GELU)
             (32, 32, "FlexAddV2"))
    assert read_tflite_bytes(_model(codes=codes)).ops == ["CONV_2D", "FULLY_CONNECTED", "FlexAddV2", "GELU"]


def test_a_custom_operator_without_a_name_is_refused():
    with pytest.raises(ModelFileError, match="custom operator without a name"):
        read_tflite_bytes(_model(codes=((32, 32, None),)))


def test_an_operator_using_a_missing_tensor_is_refused():
    data = bytearray(INT8.read_bytes())
    op = tfl_model.Model.GetRootAs(bytes(data), 0).Subgraphs(0).Operators(0)
    struct.pack_into("<i", data, op._tab.Vector(op._tab.Offset(6)), 99)  # Operator.inputs[0]
    with pytest.raises(ModelFileError, match="input tensor 99, but the subgraph has 4 tensors"):
        read_tflite_bytes(bytes(data))


def test_a_schema_version_other_than_3_is_refused():
    data = bytearray(FP32.read_bytes())
    struct.pack_into("<I", data, _field_position(data, struct.unpack_from("<I", data, 0)[0], 4), 4)
    with pytest.raises(ModelFileError, match="schema version 4"):
        read_tflite_bytes(bytes(data))


def test_a_model_without_subgraphs_is_refused():
    with pytest.raises(ModelFileError, match="no subgraphs"):
        read_tflite_bytes(_model(0, 1))


@pytest.mark.timeout(60)  # a hang guard: read naively, this is 4e8 visits (many minutes), not a speed target
def test_offsets_that_share_one_table_many_times_are_read_once():
    # 20,000 subgraph entries x 20,000 operator entries, all one table each.
    data = _model(20_000, 20_000)
    assert read_tflite_bytes(data).ops == ["ADD"]


@pytest.mark.timeout(60)  # a hang guard, as above
def test_many_subgraphs_sharing_one_huge_operator_list_are_refused_quickly():
    # Distinct subgraph tables, one shared 20,000-entry operator list: the work is bounded by the file's size.
    data = _model(20_000, 20_000, distinct_subgraphs=True)
    with pytest.raises(ModelFileError, match="over and over"):
        read_tflite_bytes(data)


# -- models made with TensorFlow (slow) -----------------------------------------------------------------------


def make_tf_models(out: Path) -> None:
    """A small Keras CNN as fp32, full-int8 and fp16-weight .tflite, and a model with a WHILE loop (so three
    subgraphs). Runs in a child process: it imports TensorFlow."""
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="gelu"),  # GELU is builtin code 150: past the int8 deprecated field
        keras.layers.Dense(3, activation="softmax"),
    ])
    samples = np.random.default_rng(0).random((50, 1, 8, 8, 1), dtype=np.float32)
    saved = out / "cnn_saved_model"
    cnn.export(str(saved), format="tf_saved_model", verbose=False)

    def representative():
        for sample in samples:
            yield [sample]

    for name in ("cnn_fp32", "cnn_int8", "cnn_fp16"):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if name == "cnn_int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif name == "cnn_fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        (out / f"{name}.tflite").write_bytes(converter.convert())

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="steps")])
    def loop(x, steps):
        return tf.while_loop(lambda i, v: i < steps, lambda i, v: (i + 1, tf.tanh(v) * 2.0), [0, x])[1]

    holder = tf.Module()
    holder.loop = loop
    converter = tf.lite.TFLiteConverter.from_concrete_functions([loop.get_concrete_function()], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    (out / "while.tflite").write_bytes(converter.convert())


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tf_models")
    proc = subprocess.run([sys.executable, __file__, str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn_fp32", "cnn_int8", "cnn_fp16"])
def test_keras_cnn_tflite_files_read_as_litert_reads_them(tf_models, name):
    path = tf_models / f"{name}.tflite"
    info = read_tflite(path)
    assert info == litert_view(path)
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "GELU"} <= set(info.ops)
    assert info.inputs[0].shape == (None, 8, 8, 1)
    if name == "cnn_int8":
        assert info.inputs[0].dtype == info.outputs[0].dtype == "int8"
        assert len(info.inputs[0].quantization.scale) == 1
    if name == "cnn_fp16":
        assert "DEQUANTIZE" in info.ops


@pytest.mark.slow
def test_ops_of_every_subgraph_count_not_only_the_main_one(tf_models):
    path = tf_models / "while.tflite"
    info, litert = read_tflite(path), litert_view(path)
    assert (info.inputs, info.outputs) == (litert.inputs, litert.outputs)
    assert "WHILE" in litert.ops and set(litert.ops) < set(info.ops)  # LiteRT lists subgraph 0's nodes only
    assert {"LESS", "TANH"} <= set(info.ops)


if __name__ == "__main__":
    make_tf_models(Path(sys.argv[1]))
