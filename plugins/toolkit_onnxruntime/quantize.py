"""Static QDQ int8 quantization with ONNX Runtime, calibrated on real data. The default layout (uint8
activations, int8 per-channel weights) was the fastest int8 layout measured on the CNN here; s8s8 QDQ and dynamic
quantization were slower than fp32. Options (-o) choose another layout or calibration method."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from toolkit.api import (Artifact, ConversionError, ConversionOptions, ConversionResult, PluginOption, Quantizer,
                         UsageError, calibration_record, checked_calibration, first_line, library_versions,
                         model_format)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class OrtStaticQuantizer(Quantizer):
    name = "onnxruntime-qdq"
    description = "ONNX Runtime static quantization to QDQ ONNX, calibrated on a dataset"
    source_formats = ("onnx",)
    target_format = "onnx"
    schemes = ("int8",)
    scheme_help = {"int8": "int8 weights per channel, uint8 activations, calibrated; runs on onnxruntime (CPU, "
                           "CUDA, TensorRT) and the reference backend"}
    priority = 10
    options = (
        PluginOption("activations", str, "uint8", "activation type", ("uint8", "int8")),
        PluginOption("weights", str, "int8", "weight type", ("int8", "uint8")),
        PluginOption("per_channel", bool, True, "one weight scale per output channel"),
        PluginOption("method", str, "minmax", "calibration method", CALIBRATION_METHODS),
        PluginOption("quant_format", str, "qdq", "graph form: QuantizeLinear/DequantizeLinear pairs around float "
                     "ops (qdq), or integer operators such as QLinearConv (qoperator)", ("qdq", "qoperator")),
        PluginOption("float_preprocessing", bool, True, "keep the raw-value path in float: operators that take "
                     "the model's float input before any Conv/MatMul/Gemm/LSTM (in-graph feature scaling)"),
    )

    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> ConversionResult:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        inputs, _ = model_format("onnx").read_specs(source.path)
        feeds = _calibration_feeds(options, inputs)
        count = len(next(iter(feeds.values())))

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._i = 0

            def get_next(self) -> dict[str, np.ndarray] | None:
                if self._i >= count:
                    return None
                self._i += 1
                return {k: v[self._i - 1:self._i] for k, v in feeds.items()}

        extra = options.extra
        activations = QuantType.QUInt8 if extra.get("activations", "uint8") == "uint8" else QuantType.QInt8
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[extra.get("method", "minmax")]
        form = QuantFormat.QOperator if extra.get("quant_format") == "qoperator" else QuantFormat.QDQ
        weight_type = QuantType.QUInt8 if extra.get("weights") == "uint8" else QuantType.QInt8
        with _preprocessed(source.path) as pre:
            kept_float = preprocessing_nodes(pre) if extra.get("float_preprocessing", True) else []
            with _explained(pre, f"static {form.name}"):
                quantize_static(str(pre), str(output), Reader(), quant_format=form, nodes_to_exclude=kept_float,
                                activation_type=activations, weight_type=weight_type,
                                per_channel=bool(extra.get("per_channel", True)), calibrate_method=method)
        record = calibration_record(options, f"onnxruntime static {form.name}, {extra.get('method', 'minmax')} "
                                    "calibration",
                                    activations=f"{extra.get('activations', 'uint8')} per-tensor",
                                    weights=f"{extra.get('weights', 'int8')} "
                                            f"{'per-channel' if extra.get('per_channel', True) else 'per-tensor'}")
        return ConversionResult(precision="int8", quantization=record,
                                versions=library_versions("onnxruntime", "onnx", "numpy"))


@contextmanager
def _preprocessed(path: Path) -> Iterator[Path]:
    """The model after ONNX Runtime's pre-processing for quantization (shape inference, graph clean-up), in a
    temporary folder for the length of the block."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # skip_symbolic_shape: symbolic shape inference needs sympy, and these graphs have static shapes.
        quant_pre_process(str(path), str(pre), skip_symbolic_shape=True)
        yield pre


@contextmanager
def _explained(path: Path, what: str) -> Iterator[None]:
    """ONNX Runtime's quantizers fail with internal errors on graphs with control flow (a recurrent layer that
    tf2onnx exported as a Loop): say that, and what works instead."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - anything the quantizer raises on such a graph
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        loops = sorted({n.op_type for n in graph.node if n.op_type in ("Loop", "Scan", "If")})
        if not loops:
            raise
        raise ConversionError(f"ONNX Runtime's {what} quantization cannot handle this graph's {'/'.join(loops)} "
                              f"(a recurrent layer exported as control flow): {first_line(e)[:120]}",
                              "Drop -o quant_format=qoperator (QDQ handles it)" if "QOperator" in what else
                              "Try --scheme int8 (static QDQ), or quantize the .keras model to TFLite") from e


WEIGHTED_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose", "LSTM", "GRU", "RNN")


def preprocessing_nodes(path: Path) -> list[str]:
    """Names of the nodes on the raw-value path, kept float: every node that takes a float graph input, or another
    such node's output, without a weighted node in between (ONNX graphs are in topological order). That is in-graph
    feature scaling, where one int8 scale for raw features of very different ranges would ruin them, and a
    forecast's last value plus the predicted change, where a level outside the calibration range would be clipped."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    raw = {i.name for i in graph.input if i.type.tensor_type.elem_type in FLOAT_TYPES}
    kept = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS and raw.intersection(node.input):
            raw.update(node.output)
            if node.name:
                kept.append(node.name)
    return kept


FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


class OrtDynamicQuantizer(Quantizer):
    name = "onnxruntime-dynamic"
    description = "ONNX Runtime dynamic quantization: uint8 (or int8) weights, activations quantized on the fly"
    source_formats = ("onnx",)
    target_format = "onnx"
    schemes = ("dynamic",)
    scheme_help = {"dynamic": "uint8 (or int8) weights, activations quantized at run time; no calibration data; "
                              "runs on onnxruntime (CPU)"}
    needs_calibration = False
    # uint8 by default: ONNX Runtime's int8 ConvInteger/MatMulInteger kernels measured 2x slower here (docs).
    options = (PluginOption("weights", str, "uint8", "weight type", ("uint8", "int8")),
               PluginOption("per_channel", bool, False, "one weight scale per output channel"))

    def quantize(self, source: Artifact, output: Path, scheme: str, options: ConversionOptions) -> ConversionResult:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        extra = options.extra
        weights = QuantType.QInt8 if extra.get("weights") == "int8" else QuantType.QUInt8
        with _preprocessed(source.path) as pre:
            with _explained(pre, "dynamic"):
                quantize_dynamic(str(pre), str(output), weight_type=weights,
                                 per_channel=bool(extra.get("per_channel", False)))
        record = {"scheme": "dynamic", "method": "onnxruntime dynamic quantization",
                  "weights": f"{extra.get('weights', 'uint8')} "
                             f"{'per-channel' if extra.get('per_channel') else 'per-tensor'}",
                  "activations": "uint8, quantized at run time", "calibration": None}
        return ConversionResult(precision="dynamic", quantization=record,
                                versions=library_versions("onnxruntime", "onnx", "numpy"))


def _calibration_feeds(options: ConversionOptions, inputs: list[Any]) -> dict[str, np.ndarray]:
    """Calibration samples by input name: a dict from a multi-input dataset, or one array for one input."""
    calib = options.calibration
    if isinstance(calib, Mapping):
        missing = [s.name for s in inputs if s.name not in calib]
        if missing:
            raise UsageError(f"calibration data '{options.calibration_name}' has no {', '.join(missing)}",
                             "Calibrate with the dataset the model was trained on")
        return {s.name: np.asarray(calib[s.name]).astype(s.dtype) for s in inputs}
    if len(inputs) != 1:
        raise UsageError(f"calibration data '{options.calibration_name}' gives one input, the model has {len(inputs)}",
                         "Calibrate with a dataset that names each input")
    spec = inputs[0]
    dtype = np.float32 if spec.quantization or "float" in spec.dtype else np.dtype(spec.dtype)  # token ids: int
    return {spec.name: checked_calibration(options, spec).astype(dtype)}
