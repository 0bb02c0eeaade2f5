"""One layer naming for every format: the tensor names a converter or quantizer wrote, mapped back to the layer that
computed them, so that the same Keras layer is one row whether it came from a .tflite, a tf2onnx .onnx or an ONNX
Runtime QDQ .onnx. Also the one dequantization every trace uses. Numpy only.

    cnn_1/conv2d_1/Relu;cnn_1/conv2d_1/BiasAdd;cnn_1/conv2d_1/convolution   (TFLite, fused)  -> cnn_1/conv2d_1
    StatefulPartitionedCall/cnn_1/conv2d_1/Relu:0                            (tf2onnx)         -> cnn_1/conv2d_1
    StatefulPartitionedCall/cnn_1/conv2d_1/Relu:0_DequantizeLinear_Output    (ORT QDQ)         -> cnn_1/conv2d_1
    /layer1/layer1.0/conv1/Conv_output_0                                     (torch.onnx)      -> layer1/layer1.0/conv1
    Transpose__38:0                                                          (a converter's)   -> None
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

# What ONNX Runtime's quantizers append to the tensor they quantize (longest first: one may end another).
_QUANTIZER_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Output", "_QuantizeLinear_Input",
                       "_DequantizeLinear", "_QuantizeLinear", "_output_quantized", "_quantized")
# Scopes that wrap a whole exported function, never a layer.
_WRAPPERS = {"StatefulPartitionedCall", "PartitionedCall", "serving_default", "model", "functional"}
# Lower-case TensorFlow op scopes inside a layer (upper-case ones, Relu or MatMul, are recognised by their case).
_OP_SCOPES = {"convolution", "einsum", "moments", "batchnorm", "strided_slice", "while", "add", "sub", "mul",
              "truediv", "concat", "transpose", "shape", "stack", "reshape", "squeeze", "cast", "split", "mean",
              "clip_by_value", "rsqrt", "softmax", "gelu", "erf", "pow", "sqrt"}
_UNIQUE = re.compile(r"__\d+$")  # tf2onnx's suffix for the nodes it adds: BiasAdd__6
_PORT = re.compile(r":\d+$")  # TensorFlow's output index: Relu:0
_WRAPPER = re.compile(r"^(StatefulPartitionedCall|PartitionedCall)(_\d+)?$")


def _strip(name: str) -> str:
    """The tensor name without what quantizers and converters add to it."""
    changed = True
    while changed:
        changed = False
        for suffix in _QUANTIZER_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name[:-len(suffix)], True
        if name.endswith("_output_0"):  # torch.onnx: /conv1/Conv_output_0
            name, changed = name[:-len("_output_0")], True
        stripped = _PORT.sub("", name)
        if stripped != name:
            name, changed = stripped, True
    return name


def _is_op(component: str) -> bool:
    """A component that names an operation rather than a layer: Relu, BiasAdd, MatMul, convolution, einsum."""
    base = _UNIQUE.sub("", component)
    return not base or base[0].isupper() or base in _OP_SCOPES or base.rstrip("0123456789") in _OP_SCOPES


def layer_name(tensor: str) -> str | None:
    """The layer that computed `tensor`, by the scope its name carries; None for a tensor no layer owns (one a
    converter added, Transpose__38, or an exported function's output, StatefulPartitionedCall_1:0)."""
    first = tensor.split(";")[0]  # TFLite fuses ops into one tensor and names it after each, the last op first
    parts = [p for p in _strip(first).split("/") if p]
    parts = [p for p in parts if not _WRAPPER.match(p) and p not in _WRAPPERS]
    layer: list[str] = []
    for part in parts:
        if _is_op(part):
            break
        layer.append(part)
    if not layer or len(layer) == len(parts):  # no scope, or no op after it: not a name this knows how to read
        return None
    return "/".join(layer)


def dequantize(values: np.ndarray, scale: Sequence[float] | np.ndarray, zero_point: Sequence[int] | np.ndarray,
               axis: int | None = None) -> np.ndarray:
    """Integer values as real numbers (float32): scale * (q - zero_point), per tensor, or per channel along
    `axis` when there are several scales. Float values come back as float32 unchanged."""
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float32, copy=False)
    scale = np.asarray(scale, np.float32).reshape(-1)
    zero = np.asarray(zero_point, np.int64).reshape(-1)
    if zero.size == 0:
        zero = np.zeros_like(scale, dtype=np.int64)
    if scale.size <= 1 or values.ndim == 0:
        return ((values.astype(np.float32) - np.float32(zero[0])) * scale[0]).astype(np.float32)
    shape = [1] * values.ndim
    shape[(axis or 0) % values.ndim] = scale.size
    return ((values.astype(np.float32) - zero.reshape(shape).astype(np.float32)) * scale.reshape(shape)).astype(
        np.float32)


def layer_outputs(trace: Mapping[str, np.ndarray], outputs: Sequence[str]) -> tuple[dict[str, tuple[str, np.ndarray]],
                                                                                    list[str]]:
    """({layer: (tensor, value)}, tensors no layer owns): each layer's output, the last floating-point tensor (not
    a 0-d scale) it computed in execution order (for a QDQ graph its DequantizeLinear output, the value the next
    layer reads).
    The model's outputs are left out: they are compared by position, not by layer."""
    layers: dict[str, tuple[str, np.ndarray]] = {}
    orphans: list[str] = []
    for name, value in trace.items():
        value = np.asarray(value)
        # A layer's value is an activation: a 0-d float is a quantisation scale (DynamicQuantizeLinear's, or the
        # product of two that rescales an integer matmul), never what the next layer reads.
        if name in outputs or not np.issubdtype(value.dtype, np.floating) or value.ndim == 0:
            continue
        layer = layer_name(name)
        if layer is None:
            orphans.append(name)
            continue
        layers.pop(layer, None)  # re-inserted: a layer takes the place of its last tensor in execution order
        layers[layer] = (name, value)
    return layers, orphans


# Where an ONNX operator's quantized first output takes its scale and zero point (input positions): QDQ and
# QOperator graphs, ONNX Runtime's contrib QGemm included. DynamicQuantizeLinear computes them: its outputs 1, 2.
ONNX_OUTPUT_QUANTIZATION = {
    "QuantizeLinear": (1, 2), "QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QGemm": (6, 7),
    "QLinearAdd": (6, 7), "QLinearMul": (6, 7), "QLinearAveragePool": (3, 4), "QLinearGlobalAveragePool": (3, 4),
    "QLinearLeakyRelu": (3, 4), "QLinearSigmoid": (3, 4), "QLinearSoftmax": (3, 4), "QLinearConcat": (0, 1)}


def onnx_output_quantization(op_type: str, inputs: Sequence[str], outputs: Sequence[str],
                             axis: int | None = None) -> tuple[str, str, int | None] | None:
    """(scale name, zero-point name, axis) of an ONNX node's quantized first output, or None when it is not
    quantized: what `dequantize` needs to turn the traced integers into real numbers. `axis` is the node's own
    attribute, which only QuantizeLinear's output keeps."""
    if op_type == "DynamicQuantizeLinear":
        return (outputs[1], outputs[2], None) if len(outputs) > 2 else None
    if op_type not in ONNX_OUTPUT_QUANTIZATION:
        return None
    scale, zero = ONNX_OUTPUT_QUANTIZATION[op_type]
    padded = list(inputs) + [""] * 8
    return padded[scale], padded[zero], (axis if op_type == "QuantizeLinear" else None)
