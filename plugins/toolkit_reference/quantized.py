"""ONNX's integer operators, as ONNX Runtime's dynamic and QOperator quantisers write them: DynamicQuantizeLinear,
MatMulInteger, ConvInteger, QLinearMatMul and QLinearConv.

Integer sums are exact: the products are summed in float64 (BLAS), which holds every int8 x int8 sum a model can
have (below 2**53) exactly, and then become int32. Requantisation follows ONNX: the int32 result times
(input scale x weight scale / output scale), rounded half to even, plus the zero point, saturated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ops import conv, op


def _centered(values: np.ndarray, zero_point: Any, channel_axis: int | None = None) -> np.ndarray:
    """`values` minus its zero point, as float64 (exact for 8- and 16-bit integers)."""
    out = values.astype(np.float64)
    if zero_point is None:
        return out
    zp = np.asarray(zero_point).astype(np.float64)
    if zp.size > 1 and channel_axis is not None:  # one zero point per output channel
        shape = [1] * values.ndim
        shape[channel_axis] = -1
        zp = zp.reshape(shape)
    return out - zp


def _int32(exact_sum: np.ndarray) -> np.ndarray:
    return np.rint(exact_sum).astype(np.int32)


def _requantize(acc: np.ndarray, multiplier: np.ndarray, zero_point: Any, like: np.ndarray) -> np.ndarray:
    dtype = np.asarray(zero_point).dtype if zero_point is not None else like.dtype
    info = np.iinfo(dtype)
    shifted = np.rint(acc * multiplier) + (np.asarray(zero_point).astype(np.float64) if zero_point is not None else 0)
    return np.clip(shifted, info.min, info.max).astype(dtype)


def _optional(inputs: list[Any], index: int) -> Any:
    return inputs[index] if len(inputs) > index else None


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(inputs, attrs):
    x = inputs[0]
    high = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
    low = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
    scale = np.float32(np.float32(1.0 if high == low else high - low) / np.float32(255))
    zero = np.rint(np.clip(np.float32(0) - low / scale, 0, 255))
    y = np.clip(np.rint(x / scale) + zero, 0, 255).astype(np.uint8)
    return [y, np.array(scale, dtype=np.float32), np.array(zero, dtype=np.uint8)]


@op("MatMulInteger")
def matmul_integer(inputs, attrs):
    a, b = inputs[0], inputs[1]
    a_zp, b_zp = _optional(inputs, 2), _optional(inputs, 3)
    if a_zp is not None and np.size(a_zp) > 1:  # one per row of A
        a_centered = a.astype(np.float64) - np.asarray(a_zp, np.float64).reshape(-1, 1)
    else:
        a_centered = _centered(a, a_zp)
    b_centered = _centered(b, b_zp)  # a 1-D zero point is per column: it broadcasts over the last axis
    return [_int32(np.matmul(a_centered, b_centered))]


def _conv_int(x: np.ndarray, x_zp: Any, w: np.ndarray, w_zp: Any, attrs: dict[str, Any]) -> np.ndarray:
    return conv([_centered(x, x_zp), _centered(w, w_zp, channel_axis=0)], attrs)[0]


@op("ConvInteger")
def conv_integer(inputs, attrs):
    return [_int32(_conv_int(inputs[0], _optional(inputs, 2), inputs[1], _optional(inputs, 3), attrs))]


@op("QLinearMatMul")
def qlinear_matmul(inputs, attrs):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = inputs[:8]
    acc = np.matmul(_centered(a, a_zp), _centered(b, b_zp))
    multiplier = (np.asarray(a_scale) * np.asarray(b_scale) / np.asarray(y_scale)).astype(np.float32)
    return [_requantize(acc, multiplier.astype(np.float64), y_zp, a)]


@op("QLinearConv")
def qlinear_conv(inputs, attrs):
    x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp = inputs[:8]
    bias = _optional(inputs, 8)
    acc = _conv_int(x, x_zp, w, w_zp, attrs)
    if bias is not None:
        acc = acc + bias.astype(np.float64).reshape(1, -1, *([1] * (acc.ndim - 2)))
    w_scale = np.asarray(w_scale)
    if w_scale.size > 1:  # one scale per output channel
        w_scale = w_scale.reshape(1, -1, *([1] * (acc.ndim - 2)))
    multiplier = (np.asarray(x_scale) * w_scale / np.asarray(y_scale)).astype(np.float32)
    return [_requantize(acc, multiplier.astype(np.float64), y_zp, x)]
