"""Keras -> TFLite (fp32, full int8) and Keras -> ONNX (tf2onnx), both through a SavedModel export.

These run in a child process (the operations layer puts them there): the TFLite converter can crash.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from toolkit.api import (Artifact, CheckFailedError, ConversionError, ConversionOptions, ConversionResult, Converter,
                         ModelFileError, PluginOption, Quantizer, TensorSpec, UsageError, calibration_record,
                         checked_calibration, first_line, library_versions, model_format, read_specs)

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


def dtype_name(tensor: Any) -> str:
    """A Keras tensor's dtype as numpy names it (Keras 3 gives a string, TensorFlow a DType)."""
    return str(getattr(tensor.dtype, "name", tensor.dtype))


def load_keras(path: Path) -> Any:
    check_keras_zip(path)
    import keras

    from . import layers  # noqa: F401 - registers the zoo's own layers, so safe_mode loads them

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # a corrupt zip, a missing config, unsafe lambda layers...
        if "safe_mode" in str(e) and "Lambda" in str(e):
            raise UsageError(f"'{Path(path).name}' has a Lambda layer holding Python code, which Keras will not "
                             "load in safe mode (loading it would run that code)",
                             "Replace the Lambda with a layer registered with "
                             "keras.saving.register_keras_serializable") from None
        raise UsageError(f"cannot load Keras model '{path}': {first_line(e)[:300]}",
                         "Check it is a .keras file saved by Keras 3") from None


RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN")


def unrolled_for_tflite(model: Any) -> tuple[Any, str | None]:
    """The model with every recurrent layer unrolled over its fixed number of steps, and a note saying so; the
    model itself when it has none. TFLite's builtin operators have no dynamic-batch TensorList (a looping LSTM
    either fails to convert or needs Flex ops no device runs); unrolled, the LSTM is plain builtin arithmetic."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") in RECURRENT_LAYERS and isinstance(node.get("config"), dict) \
                    and not node["config"].get("unroll"):
                node["config"]["unroll"] = True
                found.append(node["config"].get("name", node["class_name"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    config = model.get_config()
    walk(config)
    if not found:
        return model, None
    steps = [d for t in model.inputs for d in tuple(t.shape)[1:2]]
    if any(d is None for d in steps):
        raise ConversionError(f"the recurrent layers ({', '.join(found)}) run over a sequence of no fixed length, "
                              "and TFLite can only convert them unrolled over a fixed one",
                              "Give the model's input a fixed number of steps, e.g. keras.Input(shape=(STEPS, FEATURES))")
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:  # as Keras' own loader does: Normalization recomputes its mean and variance
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    return clone, (f"unrolled {', '.join(found)} over {steps[0]} steps for TFLite: a looping recurrent layer "
                   "needs TensorList ops that TFLite's builtins do not have")


def export_saved_model(model: Any, folder: Path, batch: int = 0) -> None:
    """A SavedModel with a fixed input signature: the batch dimension dynamic, or `batch` when given."""
    if not 0 <= batch <= 65536:
        raise UsageError(f"-o batch={batch} is not a batch size", "Give 1 or more, or 0 for any batch size")
    signature = None
    if batch:
        import tensorflow as tf

        signature = [tf.TensorSpec((batch, *tuple(t.shape)[1:]), t.dtype, name=t.name.split(":")[0])
                     for t in model.inputs]
    model.export(str(folder), format="tf_saved_model", verbose=False, input_signature=signature)


def _tflite_ops(data: bytes) -> list[str]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=data)
    return sorted({op["op_name"] for op in interp._get_ops_details()})


WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV")
LAYOUT_OPS = ("RESHAPE", "EXPAND_DIMS", "SQUEEZE", "TRANSPOSE")


def _preprocessing_nodes(saved: Path) -> list[str]:
    """Names of the operators on the model's raw-value path, which stay float: every one that takes the model's
    input, or another raw-value operator's output, without a weighted layer in between (in-graph feature scaling,
    one-hot of categories, a forecast's last value and the sum that adds the predicted change to it). Quantized,
    raw values of very different ranges would share one int8 scale, and a level outside the calibration data's
    range (a rising series) would be clipped. A path of layout operators only (the EXPAND_DIMS TFLite puts before
    a 1-D convolution) computes nothing: then there is nothing to keep."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    raw = {d["index"] for d in interp.get_input_details()}
    kept, computing = [], False
    for op in interp._get_ops_details():  # noqa: SLF001 - the converter's own way to name nodes, in order
        if op["op_name"] not in WEIGHTED_OPS and raw.intersection(op["inputs"]):
            raw.update(op["outputs"])
            kept.extend(names[t] for t in op["outputs"])
            computing = computing or op["op_name"] not in LAYOUT_OPS
    return kept if computing else []


def _convert_keeping_float(converter: Any, representative: Any, nodes: list[str]) -> bytes:
    """Quantize everything but `nodes`, which stay float (TFLite's selective quantization)."""
    import tensorflow as tf

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes))
    return debugger.get_nondebug_quantized_model()


# TFLite post-training schemes: what the converter is told, and what the result is.
TFLITE_SCHEMES = {
    "int8": "int8 activations (per tensor) and weights (per channel), calibrated; int8 inputs and outputs where "
            "the model feeds its input straight to a weighted layer (images), else the model's own input type with "
            "its in-graph feature scaling kept float; runs on LiteRT (XNNPACK), Edge TPU after compilation, TFLite "
            "Micro",
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

    notes: list[str] = []

    model, unrolled = unrolled_for_tflite(load_keras(source.path))
    if unrolled:
        notes.append(unrolled)
    spec = model.inputs[0]
    float_input = "float" in dtype_name(spec)
    if scheme == "int16x8" and not float_input:
        raise UsageError(f"int16x8 needs float inputs, and '{source.path.name}' takes {spec.dtype} (token ids): "
                         "TFLite's 16x8 mode has no integer-input embedding kernels",
                         "Use --scheme int8 or dynamic for this model")
    allow_flex = bool(options.extra.get("allow_flex", False))
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        batch = int(options.extra.get("batch", 0))
        export_saved_model(model, saved, batch)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        # Set explicitly: a default that lets SELECT_TF_OPS in makes Flex ops no runtime here can run.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if allow_flex:
            converter.target_spec.supported_ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        if scheme is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if scheme == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if scheme in CALIBRATED:
            # Every input's samples, by name (a model may have several).
            calibs = {}
            for t in model.inputs:
                dtype = "float32" if "float" in dtype_name(t) else dtype_name(t)
                calibs[t.name] = checked_calibration(options, TensorSpec(t.name, tuple(t.shape), dtype)).astype(dtype)
            count = min(len(c) for c in calibs.values())
            step = max(batch, 1)  # a fixed-batch signature takes exactly `batch` samples at a time

            def representative() -> Iterator[Any]:
                for i in range(0, count - step + 1, step):
                    chunk = {name: c[i:i + step] for name, c in calibs.items()}
                    yield chunk if len(chunk) > 1 else list(chunk.values())

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if scheme == "int16x8"
                else tf.lite.OpsSet.TFLITE_BUILTINS_INT8, *([tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else [])]
        kept_float = (_preprocessing_nodes(saved) if scheme in CALIBRATED and float_input
                      and options.extra.get("float_preprocessing", True) else [])
        # int8 I/O where the model's input is a plain float tensor fed straight to a weighted layer (images);
        # a model that scales raw features or embeds token ids in the graph keeps its float or integer input.
        int8_io = scheme == "int8" and float_input and not kept_float
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        elif scheme == "int8":
            notes.append("int8 kernels with the model's own input and output types: "
                         + ("its input is token ids" if not float_input else
                            "its first operators scale raw features, which int8 inputs would squeeze into one scale"))
        try:
            data = (_convert_keeping_float(converter, representative, kept_float) if kept_float
                    else converter.convert())
        except Exception as e:
            text = str(e)
            needs = re.search(r"TF Select ops: ([^\n]+)", text)
            if needs or "ERROR_NEEDS_FLEX_OPS" in text:
                ops = needs.group(1).strip() if needs else "unnamed"
                raise ConversionError(f"the model needs TensorFlow operators that TFLite has no builtin for "
                                      f"({ops[:200]}); only a runtime linked with the Flex delegate could run it",
                                      "Replace the layers that use them, or -o allow_flex=true to write such a "
                                      "file anyway") from e
            lines = text.strip().splitlines() or [type(e).__name__]
            raise ConversionError(f"the TFLite converter failed: {lines[-1][:300]}",
                                  "Check that every layer has a TFLite builtin op; --traceback shows its log") from e
    flex = [op for op in _tflite_ops(data) if op.startswith("Flex")]
    if flex and allow_flex:
        notes.append(f"the file needs TensorFlow Flex ops ({', '.join(flex)}): only a TFLite runtime linked with "
                     "the Flex delegate (full TensorFlow) can run it")
    elif flex:
        raise CheckFailedError(f"the converted model needs TensorFlow Flex ops ({', '.join(flex)}) that no "
                               "TFLite runtime on a device can run", "Replace the layers that make them with ones "
                               "TFLite has builtin operators for (or -o allow_flex=true, for a runtime with Flex)")
    output.write_bytes(data)  # a working path: the core checks it before it gets its final name
    quantization = None
    if scheme in CALIBRATED:
        io = "int8" if int8_io else "float32" if float_input else "model's own (integer input)"
        activations = "int16 per-tensor" if scheme == "int16x8" else "int8 per-tensor"
        quantization = calibration_record(options, f"TFLite post-training quantization ({scheme})", io=io,
                                          activations=activations, weights="int8 per-channel",
                                          float_operators=len(kept_float))
    elif scheme is not None:
        quantization = {"scheme": scheme, "method": f"TFLite post-training quantization ({scheme})",
                        "weights": "float16" if scheme == "fp16" else "int8 per-channel",
                        "activations": "float32", "calibration": None}
    return ConversionResult(precision=PRECISION.get(scheme or "", "fp32"), quantization=quantization,
                            versions=library_versions(*KERAS_LIBS), details={"notes": notes} if notes else {})


BATCH_OPTION = PluginOption("batch", int, 0, "a fixed batch size for the file's inputs (0: any batch size)")
FLEX_OPTION = PluginOption("allow_flex", bool, False, "allow TensorFlow Flex (SELECT_TF_OPS) operators, which only "
                           "a TFLite runtime linked with full TensorFlow can run")


class KerasToTFLite(Converter):
    name = "keras-tflite"
    source_format = "keras"
    target_format = "tflite"
    precisions = ("fp32",)
    options = (BATCH_OPTION, FLEX_OPTION)

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
                            "int8, int8-float-io, int16x8: keep the raw-value path (operators that take the float "
                            "input before any weighted layer: in-graph feature scaling) in float"),
               BATCH_OPTION, FLEX_OPTION)

    def calibration_needed(self, scheme: str) -> bool:
        return scheme in CALIBRATED

    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> ConversionResult:
        return _to_tflite(source, output, options, scheme)


def _tf2onnx(args: list[str], output: Path, opset: int) -> None:
    """Run tf2onnx's command line on `args` (its input), writing `output`."""
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "tf2onnx.convert", *args, "--output", str(output), "--opset", str(opset)],
        # Safe-path mode: a tf2onnx.py or tensorflow/ in the user's folder is never imported.
        capture_output=True, text=True)
    if proc.returncode != 0 or not output.exists():
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        # Chained, so --traceback shows the converter's own log.
        raise ConversionError(f"tf2onnx failed: {lines[-1] if lines else proc.returncode}",
                              "Run with --traceback for the converter's log") \
            from RuntimeError("tf2onnx output:\n" + proc.stderr[-8000:])


def check_graph_inputs(path: Path, expected: list[str]) -> None:
    """An exported graph must take exactly the model's inputs: exporters can turn constants into extra inputs that
    a device would have to feed (and could not know)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    names = [i.name for i in graph.input if i.name not in inits]
    if len(names) != len(expected):
        stray = names[len(expected):] if len(names) > len(expected) else names
        raise ConversionError(f"the exported ONNX graph takes {len(names)} inputs ({', '.join(names[:5])}), the "
                              f"model {len(expected)} ({', '.join(expected)}); stray: {', '.join(stray[:5])}",
                              "Report it with --traceback; the converter turned something into an input")


class KerasToONNX(Converter):
    name = "keras-onnx"
    source_format = "keras"
    target_format = "onnx"
    precisions = ("fp32",)
    options = (PluginOption("opset", int, ONNX_OPSET, "ONNX opset the graph is written in"), BATCH_OPTION)

    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> ConversionResult:
        model = load_keras(source.path)
        with tempfile.TemporaryDirectory() as tmp:
            saved = Path(tmp) / "saved_model"
            export_saved_model(model, saved, int(options.extra.get("batch", 0)))
            out_tmp = Path(tmp) / "model.onnx"
            # tf2onnx's from_keras fails on Sequential models under Keras 3; its SavedModel path works.
            _tf2onnx(["--saved-model", str(saved)], out_tmp, options.extra.get("opset", ONNX_OPSET))
            check_graph_inputs(out_tmp, [t.name for t in model.inputs])
            output.write_bytes(out_tmp.read_bytes())
        return ConversionResult(precision="fp32", versions=library_versions(*KERAS_LIBS, "tf2onnx", "onnx"))


class TFLiteToONNX(Converter):
    name = "tflite-onnx"
    description = ("a .tflite file (fp32, or int8 as QuantizeLinear/DequantizeLinear pairs) as ONNX, with tf2onnx: "
                   "an int8 TFLite model runs on ONNX Runtime")
    source_format = "tflite"
    target_format = "onnx"
    precisions = ("fp32", "fp16", "dynamic", "int8")
    options = (PluginOption("opset", int, ONNX_OPSET, "ONNX opset the graph is written in"),)

    def convert(self, source: Artifact, output: Path, options: ConversionOptions) -> ConversionResult:
        with tempfile.TemporaryDirectory() as tmp:
            out_tmp = Path(tmp) / "model.onnx"
            _tf2onnx(["--tflite", str(source.path)], out_tmp, options.extra.get("opset", ONNX_OPSET))
            check_graph_inputs(out_tmp, [s.name for s in read_specs(source.path)[0]])
            output.write_bytes(out_tmp.read_bytes())
        # The graph computes what the .tflite computes, at its precision (int8 weights stay int8); a file without a
        # manifest says it itself.
        precision = (source.manifest.precision if source.manifest else
                     model_format("tflite").describe(source.path).get("precision") or "fp32")
        notes = []
        if precision == "fp16":  # tf2onnx widens float16 weights: the .onnx holds float32 ones
            precision, notes = "fp32", ["tf2onnx widened the float16 weights: the .onnx holds float32 ones, at "
                                        "fp32's size"]
        return ConversionResult(precision=precision, quantization=source.manifest.quantization
                                if source.manifest and precision != "fp32" else None,
                                versions=library_versions("tf2onnx", "onnx", "tflite"),
                                details={"notes": notes} if notes else {})
