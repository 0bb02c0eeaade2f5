"""Keras -> TFLite (fp32, full int8) and Keras -> ONNX (tf2onnx), both through a SavedModel export.

These run in a child process (the operations layer puts them there): the TFLite converter can crash.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toolkit.api import (Artifact, CheckFailedError, ConversionError, ConversionOptions, ConversionResult, Converter,
                         ModelFileError, PluginOption, Quantizer, TensorSpec, UsageError, calibration_record,
                         checked_calibration, first_line, library_versions)

from .train import KERAS_LIBS

ONNX_OPSET = 17


def check_keras_zip(path: Path) -> None:
    """A .keras file is a zip: one cut short (an interrupted copy or download) has no central directory, and
    Keras would call it "File not found". Reading the directory is cheap and says what is really wrong."""
    if Path(path).suffix.lower() != ".keras" or not Path(path).is_file():
        return  # a folder, a legacy .h5 or a missing path: Keras' own message
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except zipfile.BadZipFile:
        raise ModelFileError(f"'{Path(path).name}' is not a complete .keras file (the zip archive is damaged or "
                             "truncated)", "Re-save the model with model.save(...)") from None
    except OSError:
        return  # unreadable: Keras reports it below, as before


def load_keras(path: Path) -> Any:
    check_keras_zip(path)
    import keras

    from . import layers  # noqa: F401 - registers the zoo's own layers, so safe_mode loads them

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # a corrupt zip, a missing config, unsafe lambda layers...
        raise UsageError(f"cannot load Keras model '{path}': {first_line(e)}",
                         "Check it is a .keras file saved by Keras 3") from None


def export_saved_model(model: Any, folder: Path) -> None:
    """A SavedModel with a fixed input signature (batch dimension left dynamic)."""
    model.export(str(folder), format="tf_saved_model", verbose=False)


def _tflite_ops(data: bytes) -> list[str]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=data)
    return sorted({op["op_name"] for op in interp._get_ops_details()})


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")


def _preprocessing_nodes(saved: Path) -> list[str]:
    """Names of the operators that come before the first weighted one in the float model (in-graph feature
    scaling): quantizing them would squeeze raw features of very different ranges into one int8 scale."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # noqa: SLF001 - the converter's own way to name nodes
    first = next((i for i, op in enumerate(ops) if op["op_name"] in WEIGHTED_OPS), 0)
    return [names[t] for op in ops[:first] for t in op["outputs"]]


def _convert_keeping_float(converter: Any, representative: Any, nodes: list[str]) -> bytes:
    """Quantize everything but `nodes`, which stay float (TFLite's selective quantization)."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes))
    return debugger.get_nondebug_quantized_model()


# TFLite post-training schemes: what the converter is told, and what the result is.
TFLITE_SCHEMES = {
    "int8": "int8 inputs, outputs, activations (per tensor) and weights (per channel), calibrated; runs on LiteRT "
            "(XNNPACK), Edge TPU after compilation, TFLite Micro; raw features of very different ranges lose "
            "precision at the int8 input (use int8-float-io)",
    "int8-float-io": "int8 activations and weights, calibrated, with float32 inputs and outputs (quantize and "
                     "dequantize ops at the edges; in-graph feature scaling stays float): a drop-in for the fp32 "
                     "file",
    "int16x8": "int16 activations and int8 weights, calibrated, float32 inputs and outputs: closer to fp32 than "
               "int8 where activations have a wide range; LiteRT's reference kernels only (slow)",
    "dynamic": "int8 weights, float activations computed in int8 on the fly; no calibration data; LiteRT",
    "fp16": "float16 weights, float32 compute on CPU (GPU delegates run float16); half the size; no calibration data",
}
CALIBRATED = ("int8", "int8-float-io", "int16x8")
PRECISION = {"int8": "int8", "int8-float-io": "int8", "int16x8": "int16x8", "dynamic": "dynamic", "fp16": "fp16"}


def _to_tflite(source: Artifact, output: Path, options: ConversionOptions, scheme: str | None) -> ConversionResult:
    """`scheme` None converts to fp32; otherwise one of TFLITE_SCHEMES."""
    import tensorflow as tf

    model = load_keras(source.path)
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        export_saved_model(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        # Set explicitly: a default that lets SELECT_TF_OPS in makes Flex ops no runtime here can run.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if scheme is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if scheme == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if scheme in CALIBRATED:
            calib = checked_calibration(options, TensorSpec(model.inputs[0].name, tuple(model.inputs[0].shape),
                                                            "float32"))

            def representative() -> Iterator[list[np.ndarray]]:
                for i in range(len(calib)):
                    yield [calib[i:i + 1].astype(np.float32)]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if scheme == "int16x8"
                else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if scheme == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        kept_float = (_preprocessing_nodes(saved) if scheme in ("int8-float-io", "int16x8")
                      and options.extra.get("float_preprocessing", True) else [])
        try:
            data = (_convert_keeping_float(converter, representative, kept_float) if kept_float
                    else converter.convert())
        except Exception as e:
            lines = str(e).strip().splitlines() or [type(e).__name__]
            raise ConversionError(f"the TFLite converter failed: {lines[-1]}",
                                  "Check that every layer has a TFLite builtin op; --traceback shows its log") from e
    flex = [op for op in _tflite_ops(data) if op.startswith("Flex")]
    if flex:
        raise CheckFailedError(f"the converted model needs TensorFlow Flex ops ({', '.join(flex)}) that no "
                               "TFLite runtime here can run", "Change the model (e.g. unroll=True for an LSTM)")
    output.write_bytes(data)  # a working path: the core checks it before it gets its final name
    quantization = None
    if scheme in CALIBRATED:
        io = {"int8": "int8", "int8-float-io": "float32", "int16x8": "float32"}[scheme]
        activations = "int16 per-tensor" if scheme == "int16x8" else "int8 per-tensor"
        quantization = calibration_record(options, f"TFLite post-training quantization ({scheme})", io=io,
                                          activations=activations, weights="int8 per-channel",
                                          float_operators=len(kept_float))
    elif scheme is not None:
        quantization = {"scheme": scheme, "method": f"TFLite post-training quantization ({scheme})",
                        "weights": "float16" if scheme == "fp16" else "int8 per-channel",
                        "activations": "float32", "calibration": None}
    return ConversionResult(precision=PRECISION.get(scheme or "", "fp32"), quantization=quantization,
                            versions=library_versions(*KERAS_LIBS))


class KerasToTFLite(Converter):
    name = "keras-tflite"
    source_format = "keras"
    target_format = "tflite"
    precisions = ("fp32",)

    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> ConversionResult:
        return _to_tflite(source, output, options, None)


class KerasTFLiteQuantizer(Quantizer):
    name = "keras-tflite-ptq"
    description = "TFLite post-training quantization of a Keras model: int8, int8 with float I/O, int16x8, dynamic, fp16"
    source_formats = ("keras",)
    target_format = "tflite"
    schemes = tuple(TFLITE_SCHEMES)
    scheme_help = TFLITE_SCHEMES
    options = (PluginOption("float_preprocessing", bool, True,
                            "int8-float-io, int16x8: keep the operators before the first weighted layer (in-graph "
                            "feature scaling) in float"),)

    def calibration_needed(self, scheme: str) -> bool:
        return scheme in CALIBRATED

    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> ConversionResult:
        return _to_tflite(source, output, options, scheme)


class KerasToONNX(Converter):
    name = "keras-onnx"
    source_format = "keras"
    target_format = "onnx"
    precisions = ("fp32",)
    options = (PluginOption("opset", int, ONNX_OPSET, "ONNX opset the graph is written in"),)

    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> ConversionResult:
        model = load_keras(source.path)
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "saved_model"
            export_saved_model(model, saved)
            out_tmp = Path(tmp) / "model.onnx"
            # tf2onnx's from_keras fails on Sequential models under Keras 3; its SavedModel path works.
            proc = subprocess.run(
                [sys.executable, "-P", "-m", "tf2onnx.convert", "--saved-model", str(saved), "--output", str(out_tmp),
                 "--opset", str(options.extra.get("opset", ONNX_OPSET))],
                # Safe-path mode: a tf2onnx.py or tensorflow/ in the user's folder is never imported.
                capture_output=True, text=True)
            if proc.returncode != 0 or not out_tmp.exists():
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                # Chained, so --traceback shows the converter's own log.
                raise ConversionError(f"tf2onnx failed: {lines[-1] if lines else proc.returncode}",
                                      "Run with --traceback for the converter's log") \
                    from RuntimeError("tf2onnx output:\n" + proc.stderr[-8000:])
            output.write_bytes(out_tmp.read_bytes())
        return ConversionResult(precision="fp32", versions=library_versions(*KERAS_LIBS, "tf2onnx", "onnx"))
