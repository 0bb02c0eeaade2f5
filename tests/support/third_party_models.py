"""Models the toolkit did not make, as a user would bring them: several inputs, dynamic dimensions,
integer, bool and int8 inputs. TFLite ones are made with TensorFlow, so call make_tflite_models in a child."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_onnx_multi_input(path: Path) -> Path:
    """x float [N, 8] -> MatMul; ids int64 [N, seq] and mask bool [N, seq] -> masked sum. Two outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["dense"]),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "mask_f"], ["masked"]),
        helper.make_node("ReduceSum", ["masked"], ["total"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "multi_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "seq"]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", "seq"])],
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
        [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_tflite_models(folder: str) -> dict[str, str]:
    """Two TFLite files made straight with TensorFlow (no toolkit code):
    - two_inputs.tflite: x float32 [None, 4] and tokens int32 [None, None] (a dynamic sequence length);
    - int8_mlp.tflite: a full-integer MLP with int8 input and output, calibrated on random data."""
    import tensorflow as tf

    out = Path(folder)

    class TwoInputs(tf.Module):
        def __init__(self):
            self.w = tf.constant(np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([None, None], tf.int32, name="tokens")])
        def __call__(self, x, tokens):
            return {"dense": tf.matmul(x, self.w), "count": tf.reduce_sum(tokens, axis=1)}

    module = TwoInputs()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    (out / "two_inputs.tflite").write_bytes(conv.convert())

    rng = np.random.default_rng(2)
    w1 = rng.standard_normal((16, 32)).astype(np.float32)
    w2 = rng.standard_normal((32, 4)).astype(np.float32)

    class MLP(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32, name="features")])
        def __call__(self, x):
            return tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2)

    mlp = MLP()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([mlp.__call__.get_concrete_function()], mlp)
    (out / "int8_mlp.tflite").write_bytes(_full_int8(conv, rng, (1, 16), 50))
    return {"two_inputs": str(out / "two_inputs.tflite"), "int8_mlp": str(out / "int8_mlp.tflite")}


def _full_int8(conv, rng, shape: tuple[int, ...], samples: int) -> bytes:
    """A TFLite converter's output quantized to full integers, int8 in and out, calibrated on random inputs."""
    import tensorflow as tf

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(samples))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def make_target_models(folder: str) -> dict[str, str]:
    """Made straight with TensorFlow, random weights, no training:
    - wide_mlp.tflite: a fixed-batch float MLP, 1024 -> 512 -> 10 (about 2 MB of weights): too big for a 1 MB
      microcontroller's flash;
    - cnn_int8.tflite: the quickstart's CNN layers (conv, pool, dense) on 28x28x1, full-integer int8 with a
      dynamic batch, as `toolkit quantize --scheme int8` makes it."""
    import tensorflow as tf

    keras = tf.keras
    cnn = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
    rng = np.random.default_rng(4)
    conv = tf.lite.TFLiteConverter.from_keras_model(cnn)
    (Path(folder) / "cnn_int8.tflite").write_bytes(_full_int8(conv, rng, (1, 28, 28, 1), 20))
    return {"wide_mlp": _wide_mlp(folder), "cnn_int8": str(Path(folder) / "cnn_int8.tflite")}


def _wide_mlp(folder: str) -> str:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((1024, 512)).astype(np.float32)
    w2 = rng.standard_normal((512, 10)).astype(np.float32)

    class Wide(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 1024], tf.float32, name="features")])
        def __call__(self, x):
            return tf.nn.softmax(tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2))

    wide = Wide()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([wide.__call__.get_concrete_function()], wide)
    path = Path(folder) / "wide_mlp.tflite"
    path.write_bytes(conv.convert())
    return str(path)


def make_keras_model(folder: str) -> str:
    """tiny.keras: an untrained Dense model saved by Keras (a real .keras file, no training)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    path = Path(folder) / "tiny.keras"
    model.save(path)
    return str(path)


def make_small_cnn(path: Path) -> Path:
    """A small CNN written with onnx.helper (tens of microseconds a call), no training: Conv 1->16 and 16->32
    (3x3, same padding), a 2x2 max-pool between them, global average pooling and a 32x10 MatMul, on 28x28x1.
    Its multiply-accumulates per sample: 16*28*28*9 + 32*14*14*(16*9) + 32*10 = 1,016,384."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["y"])]
    graph = helper.make_graph(nodes, "small_cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [weight("w1", 16, 1, 3, 3), weight("w2", 32, 16, 3, 3), weight("w3", 32, 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
