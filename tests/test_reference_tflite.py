"""The reference backend's TFLite program: .tflite flatbuffers run in numpy with TFLite's integer semantics, held
to LiteRT's own reference kernels (BUILTIN_REF, XNNPACK off) on the four families in fp32 and full int8, and in
fp16 and dynamic range where those bring kernels of their own (CASES), output by output and intermediate tensor
by intermediate tensor.

Bounds (issue 10): float tensors within rtol 1e-5 plus an atol of 1e-5 times the tensor's largest magnitude
(so values near zero are held to the tensor's scale, not to their own); int8 tensors equal on at least 99.9 %
of elements and never more than 1 LSB apart. Dynamic-range files: see the comment in the parity test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.api import ModelFileError, UsageError

from toolkit_reference.tflite_program import TFLiteProgram, unsupported_ops

TESTDATA = Path(__file__).resolve().parents[1] / "toolkit" / "testdata"
FAMILIES = ("cnn", "mlp", "lstm", "transformer")
SCHEMES = ("fp32", "fp16", "dynamic", "int8")
# Every family in fp32 and int8; fp16 (weights dequantized once, the same kernels after) on the cnn and the lstm;
# dynamic range (hybrid kernels) where it brings its own: conv on the cnn, fully connected on the mlp, batch
# matmul on the transformer. Fewer conversions: the suite's time.
CASES = [(f, s) for f in FAMILIES for s in SCHEMES
         if s in ("fp32", "int8") or (s == "fp16" and f in ("cnn", "lstm"))
         or (s == "dynamic" and f in ("cnn", "mlp", "transformer"))]

# Tiny untrained family models (random non-zero biases, so every bias path runs), converted in each scheme by
# the toolkit's own converter, in one child process that imports TensorFlow once; plus a model made of
# operators the reference kernels do not implement.
_MAKE = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
import numpy as np
import keras
import tensorflow as tf
from toolkit_keras import models as M
from toolkit_keras.convert import _to_tflite
from toolkit.api import ConversionOptions
from toolkit.artifact import Artifact

out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)

def adapted(model, x):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt(keras.Model(model.inputs, layer.input).predict(x, verbose=0))
    for v in model.weights:  # untrained biases are zero, and the converter drops zero biases
        if v.path.endswith(("bias", "beta")):
            v.assign(rng.normal(scale=0.1, size=v.shape))
        elif v.path.endswith("gamma"):
            v.assign(1 + rng.normal(scale=0.1, size=v.shape))
    return model

images = rng.random((32, 20, 20, 1)).astype("float32")
rows = rng.normal(size=(32, 6)).astype("float32")
rows[:, 1] = rng.integers(0, 3, 32)
series = np.cumsum(rng.normal(size=(32, 6, 2)), axis=1).astype("float32")
tokens = rng.integers(0, 50, (32, 8)).astype("int32")
families = {
    "cnn": (M.CifarCNN().build((20, 20, 1), 4), images),
    "mlp": (M.TabularMLP().build((6,), 3, categorical={1: 3}), rows),
    "lstm": (M.RecurrentModel().build((6, 2), 2, units=32), series),
    "transformer": (M.TransformerEncoder().build((8,), 3, vocabulary_size=50, width=32, heads=2), tokens),
}
made = {}
for name, (model, x) in families.items():
    source = out / f"{name}.keras"
    adapted(model, x).save(source)
    np.save(out / f"{name}.npy", x[:8])
    for scheme in json.loads(sys.argv[2])[name]:
        path = out / f"{name}_{scheme}.tflite"
        _to_tflite(Artifact(source), path, ConversionOptions(calibration=x, calibration_name="x"),
                   None if scheme == "fp32" else scheme)
        made[f"{name}_{scheme}"] = str(path)

@tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
def odd(x):
    return {"y": tf.math.cumsum(tf.sin(x), axis=1) + tf.sin(2 * x)}
converter = tf.lite.TFLiteConverter.from_concrete_functions([odd.get_concrete_function()])
(out / "odd.tflite").write_bytes(converter.convert())
made["odd"] = str(out / "odd.tflite")

# Operators the kernels have in float only: int8 LEAKY_RELU and HARD_SWISH, refused at load, not at run.
inputs = keras.Input((8,))
hidden = keras.layers.LeakyReLU(negative_slope=0.1)(keras.layers.Dense(8)(inputs))
swish = keras.layers.Activation("hard_silu")(keras.layers.Dense(8)(hidden))
keras.Model(inputs, keras.layers.Dense(3)(swish)).save(out / "leaky.keras")
_to_tflite(Artifact(out / "leaky.keras"), out / "leaky_int8.tflite",
           ConversionOptions(calibration=rows[:, :1].repeat(8, axis=1), calibration_name="x"), "int8")
made["leaky_int8"] = str(out / "leaky_int8.tflite")
# int16 activations (int16x8): kernels with int8 arithmetic only must refuse them, never run them wrongly.
_to_tflite(Artifact(out / "cnn.keras"), out / "cnn_int16x8.tflite",
           ConversionOptions(calibration=images, calibration_name="x"), "int16x8")
made["cnn_int16x8"] = str(out / "cnn_int16x8.tflite")
print(json.dumps(made))
"""


@pytest.fixture(scope="module")
def family_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tflite_families")
    schemes = {f: [s for g, s in CASES if g == f] for f in FAMILIES}
    proc = subprocess.run([sys.executable, "-c", _MAKE, str(folder), json.dumps(schemes)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: Path(v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def litert_reference(path: Path, feeds: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """Outputs by name and every tensor LiteRT keeps, from its reference kernels with XNNPACK off."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                         experimental_preserve_all_tensors=True)
    for d in interp.get_input_details():
        interp.resize_tensor_input(d["index"], feeds[d["name"]].shape)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], feeds[d["name"]])
    interp.invoke()
    outputs = {d["name"]: interp.get_tensor(d["index"]) for d in interp.get_output_details()}
    tensors = {}
    for d in interp.get_tensor_details():
        try:
            tensors[d["name"]] = interp.get_tensor(d["index"])
        except ValueError:  # not allocated (constants folded away, scratch)
            pass
    return outputs, tensors


def feeds_for(program: TFLiteProgram, samples: np.ndarray) -> dict[str, np.ndarray]:
    spec = program.input_specs[0]
    if spec.dtype == "int8":  # int8 I/O: quantize the samples with the input's own parameters
        q = spec.quantization
        samples = np.clip(np.round(samples / q.scale[0]) + q.zero_point[0], -128, 127)
    feeds = {spec.name: samples.astype(spec.dtype)}
    program.resize({spec.name: samples.shape})
    return feeds


def float_close(mine: np.ndarray, ref: np.ndarray) -> bool:
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return bool(np.allclose(mine, ref, rtol=1e-5, atol=1e-5 * scale))


def int8_agreement(mine: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    diff = np.abs(mine.astype(np.int64) - ref.astype(np.int64))
    return float((diff == 0).mean()) if diff.size else 1.0, int(diff.max()) if diff.size else 0


@pytest.mark.slow
@pytest.mark.parametrize(("family", "scheme"), CASES)
def test_each_family_and_scheme_matches_litert_reference_kernels_tensor_by_tensor(family_files, family, scheme):
    path = family_files[f"{family}_{scheme}"]
    program = TFLiteProgram(path)
    feeds = feeds_for(program, np.load(path.with_name(f"{family}.npy")))
    ref_out, ref_tensors = litert_reference(path, feeds)
    mine = program.run(feeds)
    traced = program.trace(feeds)

    assert list(mine) == [s.name for s in program.output_specs] == list(ref_out)
    compared = 0
    for name, value in {**traced, **mine}.items():
        ref = ref_out.get(name, ref_tensors.get(name))
        if ref is None:
            continue
        assert value.dtype == ref.dtype and value.shape == ref.shape, name
        if value.dtype.kind == "f" and scheme == "dynamic":
            # A 1-ulp float difference upstream (BLAS sums in another order than the reference loops) can
            # move an input of a hybrid kernel across a rounding boundary of its on-the-fly int8 quantization:
            # one input step, about max|x|/255 x |w|. Hybrid files are held to 1e-3 of each tensor's scale.
            assert float_close(value, ref) or bool(np.allclose(value, ref, rtol=0, atol=1e-3 * np.abs(ref).max())), \
                (name, float(np.abs(value - ref).max()))
        elif value.dtype.kind == "f":
            assert float_close(value, ref), (name, float(np.abs(value - ref).max()))
        elif program.quantization(name) is not None:
            equal, lsb = int8_agreement(value, ref)
            assert equal >= 0.999 and lsb <= 1, (name, equal, lsb)
        else:
            np.testing.assert_array_equal(value, ref, err_msg=name)
        compared += 1
    assert compared >= len(program.output_specs) + 3  # intermediates were compared too, not only outputs


@pytest.mark.slow
def test_every_quantized_family_uses_integer_kernels_and_the_float_ones_stay_float(family_files):
    """What the schemes make of the families, so the parity test above covers what it claims to."""
    int8 = TFLiteProgram(family_files["transformer_int8"])
    kinds = {name for *_, name, _, _ in int8._steps}
    assert {"SOFTMAX", "MEAN", "RSQRT", "SQUARED_DIFFERENCE", "BATCH_MATMUL", "FULLY_CONNECTED"} <= kinds
    softmax = next(t for t in int8._tensors if t.name.endswith("Softmax"))
    assert softmax.dtype == np.int8 and int8.quantization(softmax.name)[1][0] == -128
    hybrid = TFLiteProgram(family_files["cnn_dynamic"])
    weights = [t for t in hybrid._tensors if t.data is not None and t.dtype == np.int8]
    assert weights and all(len(hybrid.quantization(t.name)[0]) > 1 for t in weights)  # per-channel int8 weights
    fp16 = TFLiteProgram(family_files["lstm_fp16"])
    assert any(t.dtype == np.float16 for t in fp16._tensors)


@pytest.mark.slow
def test_a_model_with_operators_the_kernels_lack_is_refused_naming_each_of_them(family_files):
    odd = family_files["odd"]
    why = unsupported_ops(odd)
    assert why is not None and why.startswith("reference backend does not implement CUMSUM (1 node: ")
    assert "; SIN (2 nodes: " in why
    with pytest.raises(ModelFileError, match="does not implement CUMSUM .*SIN") as err:
        TFLiteProgram(odd)
    assert "\n" not in str(err.value)
    assert unsupported_ops(family_files["transformer_int8"]) is None
    # Kernels that exist in float only are named with the use they refuse, every one of them, before loading.
    why = unsupported_ops(family_files["leaky_int8"])
    assert why is not None and "HARD_SWISH (quantized HARD_SWISH; 1 node: " in why
    assert "LEAKY_RELU (quantized LEAKY_RELU; 1 node: " in why
    with pytest.raises(ModelFileError, match="HARD_SWISH .*LEAKY_RELU"):
        TFLiteProgram(family_files["leaky_int8"])
    why = unsupported_ops(family_files["cnn_int16x8"])
    assert why is not None and "CONV_2D (int16 activations; " in why


# -- fast tier: the committed tiny files, LiteRT without TensorFlow ---------------------------------------

def test_tiny_int8_and_fp32_files_match_litert_exactly_and_trace_every_operator():
    rng = np.random.default_rng(0)
    for name in ("tiny_fp32.tflite", "tiny_int8.tflite"):
        path = TESTDATA / name
        program = TFLiteProgram(path)
        feeds = {}
        for spec in program.input_specs:
            x = rng.normal(size=(5, 4))
            feeds[spec.name] = (np.clip(np.round(x * 40), -128, 127) if spec.dtype == "int8" else x).astype(spec.dtype)
        program.resize({k: v.shape for k, v in feeds.items()})
        ref, tensors = litert_reference(path, feeds)
        mine = program.run(feeds)
        for out, value in mine.items():
            if value.dtype.kind == "f":
                assert float_close(value, ref[out])
            else:
                np.testing.assert_array_equal(value, ref[out])
        traced = program.trace(feeds)
        assert list(traced)[-len(mine):] == list(mine) or set(mine) <= set(traced)
        assert all(k in tensors for k in traced)


def test_quantization_gives_the_parameters_that_dequantize_a_traced_int8_tensor():
    program = TFLiteProgram(TESTDATA / "tiny_int8.tflite")
    spec = program.input_specs[0]
    feeds = {spec.name: np.arange(-8, 8, dtype=np.int8).reshape(4, 4)}
    program.resize({spec.name: (4, 4)})
    out = program.output_specs[0].name
    scales, zero_points, axis = program.quantization(out)
    value = program.trace(feeds)[out]
    real = scales[0] * (value.astype(np.float64) - zero_points[0])
    assert value.dtype == np.int8 and axis == 0 and real.min() >= 0  # relu: never below zero once dequantized
    weights = next(t.name for t in program._tensors if t.data is not None and t.dtype == np.int8)
    assert len(program.quantization(weights)[0]) == 3  # per-channel: one scale per output unit
    with pytest.raises(UsageError, match="no tensor 'nope'"):
        program.quantization("nope")


def test_shapes_follow_resize_and_a_wrong_feed_is_one_clear_error():
    program = TFLiteProgram(TESTDATA / "tiny_fp32.tflite")
    a, b = (s.name for s in program.input_specs)
    assert program.input_specs[0].shape == (None, 4)
    program.resize({a: (3, 4), b: (3, 4)})
    outputs = program.run({a: np.ones((3, 4), np.float32), b: np.ones((3, 4), np.float32)})
    assert sorted(v.shape for v in outputs.values()) == [(3, 3), (3, 4)]
    with pytest.raises(UsageError, match=r"has shape \[2, 4\], the model is set for \[3, 4\]"):
        program.run({a: np.ones((2, 4), np.float32), b: np.ones((2, 4), np.float32)})
    with pytest.raises(UsageError, match="cannot take shape"):
        program.resize({a: (3, 5)})
    with pytest.raises(UsageError, match=f"no value for input '{b}'"):
        program.run({a: np.ones((3, 4), np.float32)})
    with pytest.raises(UsageError, match="takes float32, not complex128"):
        program.run({a: np.ones((3, 4), complex), b: np.ones((3, 4), np.float32)})


def test_an_operator_the_kernels_lack_is_named_with_its_node(tmp_path):
    """The tiny file with its FULLY_CONNECTED code patched to CUMSUM: refused before anything runs."""
    from tflite.Model import Model

    data = bytearray((TESTDATA / "tiny_int8.tflite").read_bytes())
    model = Model.GetRootAs(bytes(data), 0)
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.BuiltinCode() == 9 or code.DeprecatedBuiltinCode() == 9:  # FULLY_CONNECTED
            for slot, width in ((4, 1), (10, 4)):  # deprecated_builtin_code (int8), builtin_code (int32)
                at = code._tab.Offset(slot)
                if at:
                    data[code._tab.Pos + at:code._tab.Pos + at + width] = (128 if width == 4 else 127).to_bytes(
                        width, "little", signed=True)
    patched = tmp_path / "patched.tflite"
    patched.write_bytes(bytes(data))
    why = unsupported_ops(patched)
    assert why is not None and why.startswith("reference backend does not implement CUMSUM (1 node: ")
    with pytest.raises(ModelFileError, match="does not implement CUMSUM"):
        TFLiteProgram(patched)


def test_the_program_runs_without_importing_tensorflow():
    code = ("import sys, numpy as np\n"
            "from toolkit_reference.tflite_program import TFLiteProgram\n"
            f"p = TFLiteProgram({str(TESTDATA / 'tiny_int8.tflite')!r})\n"
            "s = p.input_specs[0]; p.resize({s.name: (2, 4)})\n"
            "y = p.run({s.name: np.zeros((2, 4), np.int8)})\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)\n"
            "print(next(iter(y.values())).dtype)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "int8"
