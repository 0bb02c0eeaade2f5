"""Write the tiny .tflite fixtures in toolkit/testdata/ (needs TensorFlow; run once, commit the outputs).

    .venv/bin/python tests/support/make_tiny_tflite.py [OUTPUT_DIR]

tiny_fp32.tflite: two float32 inputs `a`, `b` [None, 4]; outputs `sum` = relu(a @ W + b @ V) [None, 3] and
`prod` = a * b [None, 4]. tiny_int8.tflite: full-integer int8, `x` [None, 4] -> Dense(3) -> relu, per-channel
weights. Weights and calibration data come from seed 0, so reruns give the same numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "toolkit" / "testdata"


def _convert(concrete: tf.types.experimental.ConcreteFunction, module: tf.Module,
             representative=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if representative is None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    else:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Full integer: no float fallback, and int8 at the model's edges too.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def tiny_fp32() -> bytes:
    rng = np.random.default_rng(0)
    module = tf.Module()
    module.w = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), trainable=False)
    module.v = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="a"),
                                  tf.TensorSpec([None, 4], tf.float32, name="b")])
    def serve(a, b):
        return {"sum": tf.nn.relu(a @ module.w + b @ module.v), "prod": a * b}

    module.serve = serve
    return _convert(serve.get_concrete_function(), module)


def tiny_int8() -> bytes:
    rng = np.random.default_rng(0)
    module = tf.Module()
    module.kernel = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), trainable=False)
    module.bias = tf.Variable(rng.normal(scale=0.1, size=(3,)).astype(np.float32), trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def serve(x):
        return {"y": tf.nn.relu(tf.matmul(x, module.kernel) + module.bias)}

    module.serve = serve
    samples = rng.normal(size=(50, 1, 4)).astype(np.float32)

    def representative():
        for sample in samples:
            yield [sample]

    return _convert(serve.get_concrete_function(), module, representative)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(0)
    for name, make in (("tiny_fp32.tflite", tiny_fp32), ("tiny_int8.tflite", tiny_int8)):
        data = make()
        (out / name).write_bytes(data)
        print(f"{out / name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
