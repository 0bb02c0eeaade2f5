"""numpy kernels for TFLite operators, with the integer semantics of TFLite's reference kernels (LiteRT's
BUILTIN_REF resolver): gemmlowp fixed point, QuantizeMultiplier / MultiplyByQuantizedMultiplier with double
rounding, per-channel weight scales, int32 bias, quantized activation clamps, the reference int8 softmax,
lookup tables for int8 tanh/logistic/gelu, and the hybrid (dynamic-range) float kernels.

Each builder runs once per operator (the compile step) and returns a closure that takes the operator's input
arrays and returns its output arrays; everything derivable from the file alone (packed weights, multipliers,
lookup tables, activation ranges) is computed in the builder. Integer arithmetic is vectorised in int64;
integer dot products run as float64 matrix products, which are exact for int8 x int8 sums (< 2^53).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from toolkit.api import ModelFileError, UsageError

I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1
Kernel = Callable[..., Any]


@dataclass
class Quant:
    scales: np.ndarray  # float32
    zero_points: np.ndarray  # int64
    axis: int

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0])


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    quant: Quant | None = None
    data: np.ndarray | None = None  # constant value


@dataclass
class Node:
    index: int
    op: str
    inputs: list[TensorInfo | None]
    outputs: list[TensorInfo]
    options: dict[str, Any] = field(default_factory=dict)

    def fail(self, why: str) -> UsageError:
        return UsageError(f"the reference backend cannot run operator #{self.index} ({self.op}): {why}",
                          "Use the tflite backend for this model")


# -- fixed-point arithmetic (gemmlowp and tflite/kernels/internal/common.h), on int64 arrays ----------------

def round_away(v: Any) -> Any:
    """std::round / TfLiteRound: halves away from zero, in the dtype of `v` (v - trunc(v) is exact)."""
    t = np.trunc(v)
    return t + np.where(np.abs(v - t) >= 0.5, np.sign(v), 0).astype(t.dtype if hasattr(t, "dtype") else float)


def wrap32(x: Any) -> Any:
    return ((np.asarray(x, np.int64) + 2 ** 31) & 0xFFFFFFFF) - 2 ** 31


def srdhm(a: Any, b: Any) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(t >= 0, t >> 31, -((-t) >> 31))  # C++ division truncates toward zero
    return np.where((a == I32_MIN) & (b == I32_MIN), I32_MAX, q)


def rdpot(x: Any, exponent: Any) -> np.ndarray:
    """RoundingDivideByPOT (exponent >= 0: scalar or array)."""
    x, e = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + ((x & mask) > threshold)


def mbqm(x: Any, multiplier: Any, shift: Any, single: bool = False) -> np.ndarray:
    """MultiplyByQuantizedMultiplier. Double rounding (SaturatingRoundingDoublingHighMul, then
    RoundingDivideByPOT) as TFLite's reference kernels do it; `single`: one rounding of x * m / 2^(31 - shift),
    half up, as ruy's multiplier does it (LiteRT's int8 FULLY_CONNECTED goes through ruy even on BUILTIN_REF:
    measured, double rounding is 1 LSB off there)."""
    if single:
        total = 31 - np.asarray(shift, np.int64)
        return (np.asarray(x, np.int64) * np.asarray(multiplier, np.int64) + (np.int64(1) << (total - 1))) >> total
    shift = np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return rdpot(srdhm(wrap32(np.asarray(x, np.int64) << left), multiplier), right)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """QuantizeMultiplier: m = q * 2^shift with q a Q0.31 integer."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(round_away(np.float64(q) * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(m)) for m in np.asarray(ms, np.float64).ravel()]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def sat_mul_pot(x: Any, e: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<e>."""
    x = np.asarray(x, np.int64)
    if e == 0:
        return x
    if e < 0:
        return rdpot(x, -e)
    threshold = (1 << (31 - e)) - 1
    return np.where(x > threshold, I32_MAX, np.where(x < -threshold, I32_MIN, x << e))


def _exp_on_interval(a: np.ndarray) -> np.ndarray:
    """exp(x) for x in [-1/4, 0), Q0.31 in and out."""
    constant_term, one_third = 1895147668, 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = sat_mul_pot(srdhm(sat_mul_pot(x4, -2) + x3, one_third) + x2, -1)
    return constant_term + srdhm(constant_term, x + poly)


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp::exp_on_negative_values: a in Q(integer_bits).(31-integer_bits), result in Q0.31."""
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    a_mod = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval(sat_mul_pot(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            result = np.where(remainder & (1 << (frac_bits + exponent)), srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, I32_MAX, result)


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp::one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson), Q0.31 in and out."""
    s = a + I32_MAX
    t = s + np.where(s >= 0, 1, -1)
    half_denominator = np.where(t >= 0, t >> 1, -((-t) >> 1))  # RoundingHalfSum
    x = 1515870810 + srdhm(half_denominator, -1010580540)  # Q2.29: 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = (1 << 29) - srdhm(half_denominator, x)
        x = x + sat_mul_pot(srdhm(x, one_minus), 2)
    return sat_mul_pot(x, 1)  # ExactMulByPot<-1> keeps the raw value; Rescale<0> from Q1.30


def get_reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    headroom_plus_one = 32 - np.frexp(x.astype(np.float64))[1].astype(np.int64)  # CountLeadingZeros
    shifted_minus_one = (x << headroom_plus_one) - (1 << 31)
    return one_over_one_plus_x(shifted_minus_one), integer_digits - headroom_plus_one


def inv_sqrt_multiplier(value: int) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp(value, kReverseShift=-1), on Python integers."""
    if value <= 1:
        return I32_MAX, 0
    shift = 11
    while value >= 1 << 29:
        value //= 4
        shift += 1
    pairs = ((32 - value.bit_length()) - 1) // 2 - 1
    shift -= pairs
    value <<= 2 * pairs
    half_input = int(rdpot(value >> 1, 1))
    half_three = (1 << 28) + (1 << 27)
    x = 1 << 28  # F3 one
    for _ in range(5):
        x3 = int(sat_mul_pot(srdhm(srdhm(x, x), x), 6))  # F9 -> F3
        x = int(sat_mul_pot(srdhm(half_three, x) - srdhm(half_input, x3), 3))  # F6 -> F3
    x = int(srdhm(x, 1518500250))
    if shift < 0:
        x <<= -shift
        shift = 0
    return x, -shift


# -- helpers --------------------------------------------------------------------------------------------

_INT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}
FUSED = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def fused(node: Node) -> str | None:
    code = node.options.get("FusedActivationFunction", 0)
    if code not in FUSED:
        name = {4: "TANH", 5: "SIGN_BIT"}.get(code, str(code))
        raise ModelFileError(f"operator #{node.index} ({node.op}) has fused activation {name}, which TFLite "
                             "itself does not run", "Re-export the model")
    return FUSED[code]


def float_activation(kind: str | None) -> Callable[[np.ndarray], np.ndarray]:
    bounds = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}.get(kind or "")
    if bounds is None:
        return lambda x: x
    low, high = bounds

    def clip(x: np.ndarray) -> np.ndarray:
        return np.clip(x, low, high, out=x) if x.flags.writeable and x.base is None else np.clip(x, low, high)
    return clip


def qrange(tensor: TensorInfo, kind: str | None) -> tuple[int, int]:
    """CalculateActivationRangeQuantized."""
    qmin, qmax = _INT_RANGE[tensor.dtype]
    scale, zp = np.float32(tensor.quant.scale), tensor.quant.zero_point

    def q(f: float) -> int:
        return zp + int(round_away(np.float32(f) / scale))
    if kind == "RELU":
        return max(qmin, q(0.0)), qmax
    if kind == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if kind == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    return qmin, qmax


def is_quantized(t: TensorInfo | None) -> bool:
    return t is not None and t.quant is not None and t.dtype in _INT_RANGE


def need_quant(node: Node, *tensors: TensorInfo | None) -> None:
    for t in tensors:
        if t is not None and t.dtype in _INT_RANGE and t.quant is None:
            raise node.fail(f"tensor '{t.name}' is {t.dtype} without quantization parameters")


def lut_kernel(node: Node, fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    """An int8 -> int8 element-wise operator as a 256-entry table of fn(all int8 values)."""
    table = np.clip(fn(np.arange(-128, 128, dtype=np.int64)), -128, 127).astype(np.int8)

    def run(x: np.ndarray) -> np.ndarray:
        return table[x.astype(np.int16) + 128]
    return run


def float_lut(node: Node, fn: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    """LUTPopulate<int8>: the float function on every dequantized int8 value, requantized in float32."""
    i, o = node.inputs[0], node.outputs[0]
    need_quant(node, i, o)
    in_scale, out_inv = np.float32(i.quant.scale), np.float32(1.0) / np.float32(o.quant.scale)

    def table(v: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            y = fn(in_scale * (v - i.quant.zero_point).astype(np.float32)).astype(np.float32)
            q = round_away(y * out_inv)
            bad = ~np.isfinite(q)
            q = np.clip(np.where(bad, -128, q + o.quant.zero_point), -128, 127)
        return q.astype(np.int64)
    return lut_kernel(node, table)


def const(node: Node, position: int) -> np.ndarray:
    t = node.inputs[position] if position < len(node.inputs) else None
    if t is None or t.data is None:
        raise node.fail(f"input {position} must be a constant in this reference kernel")
    return t.data


def out_dtype(node: Node, position: int = 0) -> np.dtype:
    return node.outputs[position].dtype


# -- layout and indexing --------------------------------------------------------------------------------

def k_reshape(node: Node) -> Kernel:
    static = node.options.get("NewShapeAsNumpy")
    has_shape_input = len(node.inputs) > 1 and node.inputs[1] is not None

    def run(x: np.ndarray, shape: np.ndarray | None = None) -> np.ndarray:
        target = shape if has_shape_input else static
        if target is None or (has_shape_input and np.asarray(target).ndim == 0):
            target = node.outputs[0].shape
        return x.reshape(tuple(int(d) for d in np.asarray(target).ravel()))
    return run


def k_squeeze(node: Node) -> Kernel:
    dims = node.options.get("SqueezeDimsAsNumpy")
    axes = tuple(int(d) for d in dims) if dims is not None and len(dims) else None
    return lambda x: np.squeeze(x, axis=axes)


def k_expand_dims(node: Node) -> Kernel:
    return lambda x, axis: np.expand_dims(x, int(np.asarray(axis).ravel()[0]))


def k_transpose(node: Node) -> Kernel:
    return lambda x, perm: np.ascontiguousarray(np.transpose(x, tuple(int(p) for p in perm)))


def k_shape(node: Node) -> Kernel:
    dtype = out_dtype(node)
    return lambda x: np.array(x.shape, dtype=dtype)


def k_fill(node: Node) -> Kernel:
    dtype = out_dtype(node)
    return lambda dims, value: np.full(tuple(int(d) for d in dims), value, dtype=dtype)


def k_zeros_like(node: Node) -> Kernel:
    return lambda x: np.zeros_like(x)


def k_cast(node: Node) -> Kernel:
    dtype = out_dtype(node)
    return lambda x: x.astype(dtype)


def k_pack(node: Node) -> Kernel:
    axis = node.options.get("Axis", 0)
    return lambda *xs: np.stack(xs, axis=axis)


def k_unpack(node: Node) -> Kernel:
    axis = node.options.get("Axis", 0)
    return lambda x: tuple(np.array(p) for p in np.moveaxis(x, axis, 0))


def k_split(node: Node) -> Kernel:
    n = node.options.get("NumSplits", len(node.outputs))
    return lambda axis, x: tuple(np.split(x, n, axis=int(np.asarray(axis).ravel()[0])))


def k_split_v(node: Node) -> Kernel:
    def run(x: np.ndarray, sizes: np.ndarray, axis: np.ndarray) -> tuple:
        ax = int(np.asarray(axis).ravel()[0])
        sizes = [int(s) for s in sizes]
        if -1 in sizes:
            sizes[sizes.index(-1)] = x.shape[ax] - (sum(sizes) + 1)
        return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=ax))
    return run


def k_concatenation(node: Node) -> Kernel:
    axis = node.options.get("Axis", 0)
    act = fused(node)
    o = node.outputs[0]
    if is_quantized(o):
        ins = node.inputs
        need_quant(node, *ins)
        same = all(t.quant.scale == o.quant.scale and t.quant.zero_point == o.quant.zero_point for t in ins)
        low, high = qrange(o, act)
        inv = np.float32(1.0) / np.float32(o.quant.scale)

        def requant(x: np.ndarray, t: TensorInfo) -> np.ndarray:
            if t.quant.scale == o.quant.scale and t.quant.zero_point == o.quant.zero_point:
                return x
            scale = np.float32(t.quant.scale) * inv  # ConcatenationWithScaling
            bias = np.float32(-t.quant.zero_point) * scale
            return round_away(x.astype(np.float32) * scale + bias).astype(np.int64) + o.quant.zero_point

        def run_q(*xs: np.ndarray) -> np.ndarray:
            if same:
                y = np.concatenate(xs, axis=axis)
            else:
                y = np.concatenate([requant(x, t) for x, t in zip(xs, ins)], axis=axis)
            return np.clip(y, low, high).astype(o.dtype)
        return run_q
    activation = float_activation(act)
    return lambda *xs: activation(np.concatenate(xs, axis=axis))


def k_gather(node: Node) -> Kernel:
    axis, batch_dims = node.options.get("Axis", 0), node.options.get("BatchDims", 0)
    if batch_dims:
        raise node.fail("batch_dims other than 0")
    return lambda params, indices: np.take(params, indices.astype(np.int64), axis=axis)


def k_slice(node: Node) -> Kernel:
    def run(x: np.ndarray, begin: np.ndarray, size: np.ndarray) -> np.ndarray:
        index = tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size))
        return np.array(x[index])
    return run


def k_strided_slice(node: Node) -> Kernel:
    o = node.options
    begin_mask, end_mask = o.get("BeginMask", 0), o.get("EndMask", 0)
    ellipsis, new_axis, shrink = o.get("EllipsisMask", 0), o.get("NewAxisMask", 0), o.get("ShrinkAxisMask", 0)
    offset = o.get("Offset", False)

    def run(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray | None = None) -> np.ndarray:
        steps = strides if strides is not None else np.ones_like(begin)
        index: list[Any] = []
        for i, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), steps.tolist())):
            bit = 1 << i
            if ellipsis & bit:
                index.append(Ellipsis)
            elif new_axis & bit:
                index.append(np.newaxis)
            elif shrink & bit:
                index.append(int(b))
            else:
                stop = b + e if offset else e
                index.append(slice(None if begin_mask & bit else b, None if end_mask & bit else stop, s))
        return np.array(x[tuple(index)])
    return run


def k_tile(node: Node) -> Kernel:
    return lambda x, multiples: np.tile(x, tuple(int(m) for m in multiples))


def k_pad(node: Node) -> Kernel:
    o = node.outputs[0]
    fill_default = o.quant.zero_point if is_quantized(o) else 0

    def run(x: np.ndarray, paddings: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
        fill = fill_default if value is None else value.ravel()[0]
        return np.pad(x, [(int(a), int(b)) for a, b in paddings], constant_values=fill)
    return run


def k_range(node: Node) -> Kernel:
    dtype = out_dtype(node)
    return lambda start, limit, delta: np.arange(start.ravel()[0], limit.ravel()[0], delta.ravel()[0], dtype=dtype)


# -- element-wise ---------------------------------------------------------------------------------------

def _float_binary(node: Node, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Kernel:
    activation = float_activation(fused(node))
    dtype = out_dtype(node)
    if dtype.kind in "iub":
        if node.options.get("FusedActivationFunction", 0):
            lo, hi = {"RELU": (0, None), "RELU6": (0, 6), "RELU_N1_TO_1": (-1, 1)}[fused(node)]
            return lambda a, b: np.clip(fn(a, b), lo, hi).astype(dtype)
        return lambda a, b: fn(a, b).astype(dtype, copy=False)
    return lambda a, b: activation(fn(a, b).astype(dtype, copy=False))


def _add_sub_params(node: Node, left_shift: int) -> tuple:
    a, b, o = node.inputs[0], node.inputs[1], node.outputs[0]
    sa, sb, so = float(np.float32(a.quant.scale)), float(np.float32(b.quant.scale)), float(np.float32(o.quant.scale))
    twice_max = 2 * max(sa, sb)
    m1, s1 = quantize_multiplier(sa / twice_max)
    m2, s2 = quantize_multiplier(sb / twice_max)
    mo, shift_o = quantize_multiplier(twice_max / ((1 << left_shift) * so))
    return (a.quant.zero_point, b.quant.zero_point, o.quant.zero_point, m1, s1, m2, s2, mo, shift_o)


def k_add_sub(node: Node, sign: int) -> Kernel:
    a, b, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if not is_quantized(o):
        return _float_binary(node, np.add if sign > 0 else np.subtract)
    need_quant(node, a, b, o)
    za, zb, zo, m1, s1, m2, s2, mo, so = _add_sub_params(node, 20)
    low, high = qrange(o, fused(node))

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xa = mbqm((x.astype(np.int64) - za) << 20, m1, s1)
        xb = mbqm((y.astype(np.int64) - zb) << 20, m2, s2)
        out = mbqm(xa + sign * xb, mo, so) + zo
        return np.clip(out, low, high).astype(o.dtype)
    return run


def k_mul(node: Node) -> Kernel:
    a, b, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if not is_quantized(o):
        return _float_binary(node, np.multiply)
    need_quant(node, a, b, o)
    m, s = quantize_multiplier(float(np.float32(a.quant.scale)) * float(np.float32(b.quant.scale))
                               / float(np.float32(o.quant.scale)))
    za, zb, zo = a.quant.zero_point, b.quant.zero_point, o.quant.zero_point
    low, high = qrange(o, fused(node))

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = mbqm((x.astype(np.int64) - za) * (y.astype(np.int64) - zb), m, s) + zo
        return np.clip(out, low, high).astype(o.dtype)
    return run


def k_div(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        raise node.fail("quantized DIV")
    if out_dtype(node).kind == "i":
        return _float_binary(node, lambda a, b: np.floor_divide(a, b))
    return _float_binary(node, np.divide)


def k_squared_difference(node: Node) -> Kernel:
    a, b, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if not is_quantized(o):
        return lambda x, y: np.square(x - y)
    need_quant(node, a, b, o)
    sa, sb, so = (float(np.float32(t.quant.scale)) for t in (a, b, o))
    twice_max = 2 * max(sa, sb)
    m1, s1 = quantize_multiplier(sa / twice_max)
    m2, s2 = quantize_multiplier(sb / twice_max)
    mo, shift_o = quantize_multiplier(twice_max * twice_max / ((1 << 14) * so))
    za, zb, zo = a.quant.zero_point, b.quant.zero_point, o.quant.zero_point

    def run(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        diff = mbqm((x.astype(np.int64) - za) << 7, m1, s1) - mbqm((y.astype(np.int64) - zb) << 7, m2, s2)
        out = mbqm(diff * diff, mo, shift_o) + zo
        return np.clip(out, -128, 127).astype(o.dtype)
    return run


def k_minmax(node: Node, fn: Callable) -> Kernel:
    return lambda a, b: fn(a, b)


def k_compare(node: Node, fn: Callable) -> Kernel:
    a, b = node.inputs[0], node.inputs[1]
    if is_quantized(a) and is_quantized(b) and (a.quant.scale, a.quant.zero_point) != (b.quant.scale,
                                                                                      b.quant.zero_point):
        raise node.fail("comparison of int8 tensors with different quantization")
    return lambda x, y: fn(x, y)


def k_select(node: Node) -> Kernel:
    return lambda c, x, y: np.where(c, x, y)


def _unary_float(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Node], Kernel]:
    def build(node: Node) -> Kernel:
        if is_quantized(node.outputs[0]):
            raise node.fail(f"quantized {node.op}")
        dtype = out_dtype(node)
        return lambda x: fn(x).astype(dtype, copy=False)
    return build


def k_neg(node: Node) -> Kernel:
    return lambda x: np.negative(x)


def k_abs(node: Node) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    if not is_quantized(o):
        return lambda x: np.abs(x)
    need_quant(node, i, o)
    rescale = np.float32(i.quant.scale) != np.float32(o.quant.scale)
    m, s = quantize_multiplier(float(np.float32(i.quant.scale) / np.float32(o.quant.scale)))
    return lut_kernel(node, lambda v: (mbqm(np.abs(v - i.quant.zero_point), m, s) if rescale
                                       else np.abs(v - i.quant.zero_point)) + o.quant.zero_point)


def k_rsqrt(node: Node) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    if not is_quantized(o):
        return lambda x: (np.float32(1.0) / np.sqrt(x)).astype(x.dtype, copy=False)
    need_quant(node, i, o)
    multiplier, shift = quantize_multiplier(1.0 / float(np.sqrt(np.float32(i.quant.scale)) * np.float32(o.quant.scale)))
    zi, zo = i.quant.zero_point, o.quant.zero_point
    table = np.zeros(256, np.int8)
    for v in range(-128, 128):
        value = v - zi
        if value < 0:
            continue
        if value == 0:
            table[v + 128] = 127
            continue
        inv, inv_shift = inv_sqrt_multiplier(value)
        data = int(mbqm(1, inv, inv_shift + 20))
        table[v + 128] = int(np.clip(int(mbqm(data, multiplier, shift - 20)) + zo, -128, 127))

    def run(x: np.ndarray) -> np.ndarray:
        if x.size and int(x.min()) < zi:
            raise UsageError(f"operator #{node.index} (RSQRT) got a negative value", "Check the model's inputs")
        return table[x.astype(np.int16) + 128]
    return run


def k_relu_family(node: Node, low: float, high: float | None) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    if not is_quantized(o):
        return lambda x: np.clip(x, low, high)
    need_quant(node, i, o)
    m, s = quantize_multiplier(float(np.float32(i.quant.scale)) / float(np.float32(o.quant.scale)))
    scale, zo = np.float32(o.quant.scale), o.quant.zero_point
    qmin = max(-128, zo + int(round_away(np.float32(low) / scale)))
    qmax = 127 if high is None else min(127, zo + int(round_away(np.float32(high) / scale)))
    return lut_kernel(node, lambda v: np.clip(zo + mbqm(v - i.quant.zero_point, m, s), qmin, qmax))


def k_leaky_relu(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        raise node.fail("quantized LEAKY_RELU")
    alpha = np.float32(node.options.get("Alpha", 0.2))
    return lambda x: np.where(x > 0, x, x * alpha).astype(x.dtype)


def _logistic32(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32)


def k_logistic(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        return float_lut(node, _logistic32)

    def run(x: np.ndarray) -> np.ndarray:  # reference_ops::Logistic's cut-offs
        with np.errstate(over="ignore"):
            y = np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
        y = np.where(x > np.float32(16.619047164916992), np.float32(1.0), y)
        return np.where(x < np.float32(-9.0), np.exp(x), y).astype(x.dtype)
    return run


def k_tanh(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        return float_lut(node, np.tanh)
    return lambda x: np.tanh(x)


def _erf(x: np.ndarray) -> np.ndarray:
    # numpy has no erf; math.erf per element (GELU appears in few models, and int8 GELU is a 256-entry table)
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def k_gelu(node: Node) -> Kernel:
    approximate = bool(node.options.get("Approximate", False))

    def gelu(x: np.ndarray) -> np.ndarray:
        v = x.astype(np.float64)
        if approximate:
            y = 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))
        else:
            y = 0.5 * v * (1.0 + _erf(v * math.sqrt(0.5)))
        return y.astype(np.float32)
    if is_quantized(node.outputs[0]):
        return float_lut(node, gelu)
    return gelu


def k_hard_swish(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        raise node.fail("quantized HARD_SWISH")
    return lambda x: x * np.clip(x + np.float32(3), 0, 6) / np.float32(6)


def k_softmax(node: Node) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    beta = float(np.float32(node.options.get("Beta", 1.0)))
    if not is_quantized(o):
        def run_f(x: np.ndarray) -> np.ndarray:
            e = np.exp((x - x.max(axis=-1, keepdims=True)) * np.float32(beta))
            return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)
        return run_f
    need_quant(node, i, o)
    if i.dtype != np.int8 or o.dtype != np.int8:
        raise node.fail(f"SOFTMAX from {i.dtype} to {o.dtype}")
    # PreprocessSoftmaxScaling and CalculateInputRadius, kScaledDiffIntegerBits = 5.
    real = min(beta * float(np.float32(i.quant.scale)) * (1 << 26), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    diff_min = -int(math.floor(31.0 * (1 << 26) / (1 << left_shift)))
    diffs = np.arange(-255, 1, dtype=np.int64)
    valid = diffs >= diff_min
    rescaled = srdhm(wrap32(np.where(valid, diffs, 0) << left_shift), multiplier)
    exps = np.where(valid, exp_on_negative_values(rescaled, 5), 0)  # exp of each possible difference, Q0.31
    exps_acc = np.where(valid, sat_mul_pot(exps, -12), 0)  # Rescale<12>

    def run(x: np.ndarray) -> np.ndarray:
        xi = x.astype(np.int64)
        diff = xi - xi.max(axis=-1, keepdims=True) + 255
        total = exps_acc[diff].sum(axis=-1, keepdims=True)
        scale, bits_over_unit = get_reciprocal(total, 12)
        out = rdpot(srdhm(scale, exps[diff]), bits_over_unit + 23) - 128
        out = np.where(valid[diff], np.clip(out, -128, 127), -128)
        return out.astype(np.int8)
    return run


# -- quantize / dequantize -------------------------------------------------------------------------------

def k_quantize(node: Node) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    need_quant(node, o)
    qmin, qmax = _INT_RANGE[o.dtype]
    zo = o.quant.zero_point
    if i.dtype.kind == "f":
        scale = np.float64(np.float32(o.quant.scale))
        if len(o.quant.scales) > 1:
            raise node.fail("per-channel QUANTIZE")

        def run_f(x: np.ndarray) -> np.ndarray:
            return np.clip(round_away(x.astype(np.float64) / scale) + zo, qmin, qmax).astype(o.dtype)
        return run_f
    need_quant(node, i)
    m, s = quantize_multiplier(float(np.float32(i.quant.scale)) / float(np.float32(o.quant.scale)))
    zi = i.quant.zero_point

    def run_q(x: np.ndarray) -> np.ndarray:  # Requantize
        return np.clip(mbqm(x.astype(np.int64) - zi, m, s) + zo, qmin, qmax).astype(o.dtype)
    return run_q


def dequantize(t: TensorInfo, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.float16:
        return x.astype(np.float32)
    q = t.quant
    if len(q.scales) > 1:
        shape = [1] * x.ndim
        shape[q.axis] = -1
        scales = q.scales.astype(np.float64).reshape(shape)
        zps = q.zero_points.reshape(shape)
    else:
        scales, zps = np.float64(q.scales[0]), q.zero_points[0]
    return (scales * (x.astype(np.int64) - zps)).astype(np.float32)


def k_dequantize(node: Node) -> Kernel:
    i = node.inputs[0]
    if i.dtype != np.float16:
        need_quant(node, i)
    return lambda x: dequantize(i, x)


# -- weighted operators ------------------------------------------------------------------------------------

def _channel_multipliers(node: Node, x: TensorInfo, w: TensorInfo, o: TensorInfo, channels: int) -> tuple:
    """PopulateConvolutionQuantizationParams: one multiplier per output channel."""
    scales = w.quant.scales.astype(np.float64)
    if len(scales) == 1:
        scales = np.repeat(scales, channels)
    real = float(np.float32(x.quant.scale)) * scales / float(np.float32(o.quant.scale))
    return quantize_multipliers(real)


def _bias(node: Node, position: int, channels: int, dtype: Any) -> np.ndarray | None:
    if len(node.inputs) <= position or node.inputs[position] is None:
        return None
    b = node.inputs[position]
    if b.data is None:
        raise node.fail("a bias that is not a constant")
    with np.errstate(invalid="ignore"):  # a damaged file's NaN bias: what C's cast gives, no warning
        return b.data.astype(dtype).reshape(channels)


def asymmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tensor_utils::AsymmetricQuantizeFloats for each row of a 2-D float array: int8 values (as float64),
    float32 scales and int64 offsets, with the reference kernel's double arithmetic."""
    rmin = np.minimum(x.min(axis=1), 0).astype(np.float64)
    rmax = np.maximum(x.max(axis=1), 0).astype(np.float64)
    same = rmin == rmax
    scale = np.where(same, 1.0, (rmax - rmin) / 255.0)
    safe = np.where(same, 1.0, scale)
    from_min, from_max = -128.0 - rmin / safe, 127.0 - rmax / safe
    err_min, err_max = 128.0 + np.abs(rmin / safe), 127.0 + np.abs(rmax / safe)
    zp = np.where(err_min < err_max, from_min, from_max)
    nudged = np.where(zp <= -128, -128, np.where(zp >= 127, 127, round_away(zp))).astype(np.int64)
    nudged = np.where(same, 0, nudged)
    scale32 = scale.astype(np.float32)
    inv = (np.float32(1.0) / scale32)[:, None]
    q = round_away(nudged[:, None].astype(np.float32) + x * inv)
    q = np.where(same[:, None], 0, np.clip(q, -128, 127))
    return q.astype(np.float64), scale32, nudged


def symmetric_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tensor_utils::SymmetricQuantizeFloats for each row."""
    rng = np.maximum(np.abs(x.min(axis=1)), np.abs(x.max(axis=1))).astype(np.float32)
    same = rng == 0
    safe = np.where(same, np.float32(1), rng)
    scale = np.where(same, np.float32(1), safe / np.float32(127)).astype(np.float32)
    inv = (np.float32(127) / safe).astype(np.float32)[:, None]
    q = np.where(same[:, None], 0, np.clip(round_away(x * inv), -127, 127))
    return q.astype(np.float64), scale, np.zeros(len(x), np.int64)


def k_fully_connected(node: Node) -> Kernel:
    x, w, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if node.options.get("WeightsFormat", 0) != 0:
        raise node.fail("shuffled weights")
    if w.data is None:
        raise node.fail("weights that are not constant")
    units, depth = w.data.shape[0], int(np.prod(w.data.shape[1:]))
    keep = node.options.get("KeepNumDims", False)
    act = fused(node)

    def shaped(flat: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return flat.reshape(*xs.shape[:-1], units) if keep else flat

    if is_quantized(o):  # full integer
        need_quant(node, x, w, o)
        weights = w.data.astype(np.float64).reshape(units, depth).T.copy()
        mult, shift = _channel_multipliers(node, x, w, o, units)
        bias = _bias(node, 2, units, np.int64)
        zx, zo = x.quant.zero_point, o.quant.zero_point
        zw = int(w.quant.zero_points[0])
        if zw:
            weights -= zw
        low, high = qrange(o, act)

        def run_q(xs: np.ndarray, *_: Any) -> np.ndarray:
            acc = ((xs.reshape(-1, depth).astype(np.float64) - zx) @ weights).astype(np.int64)
            if bias is not None:
                acc += bias
            out = np.clip(mbqm(acc, mult, shift, single=True) + zo, low, high).astype(o.dtype)
            return shaped(out, xs)
        return run_q

    activation = float_activation(act)
    bias_f = _bias(node, 2, units, np.float32)
    if w.dtype in (np.int8, np.uint8) and x.dtype == np.float32:  # hybrid (dynamic range)
        need_quant(node, w)
        qw = w.data.astype(np.float64).reshape(units, depth)
        row_sums = qw.sum(axis=1)
        channel_scales = (np.repeat(w.quant.scales, units) if len(w.quant.scales) == 1
                          else w.quant.scales).astype(np.float32)
        asymmetric = bool(node.options.get("AsymmetricQuantizeInputs", False))
        quantize_rows = asymmetric_quantize_rows if asymmetric else symmetric_quantize_rows
        qw_t = qw.T.copy()

        def run_h(xs: np.ndarray, *_: Any) -> np.ndarray:
            rows = xs.reshape(-1, depth)
            q, scales, offsets = quantize_rows(rows)
            acc = q @ qw_t - offsets[:, None] * row_sums
            scale = scales[:, None] * channel_scales  # float32, as the kernel scales each dot product
            out = acc.astype(np.float32) * scale
            if bias_f is not None:
                out = bias_f + out
            return shaped(activation(out.astype(np.float32)), xs)
        return run_h

    weights_f = w.data.astype(np.float32).reshape(units, depth).T.copy()

    def run_f(xs: np.ndarray, *_: Any) -> np.ndarray:
        out = xs.reshape(-1, depth) @ weights_f
        if bias_f is not None:
            out += bias_f
        return shaped(activation(out), xs)
    return run_f


def _padding(node: Node, in_size: int, filter_size: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """Output size and padding before/after, as ComputePaddingHeightWidth."""
    effective = (filter_size - 1) * dilation + 1
    if node.options.get("Padding", 0) == 0:  # SAME
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size - effective + stride) // stride
    total = max(0, (out - 1) * stride + effective - in_size)
    return out, total // 2, total - total // 2


def _windows(node: Node, x: np.ndarray, kh: int, kw: int, pad_value: Any) -> np.ndarray:
    """(N, OH, OW, KH, KW, C) view of the padded input's receptive fields."""
    sh, sw = node.options.get("StrideH", 1), node.options.get("StrideW", 1)
    dh, dw = node.options.get("DilationHFactor", 1), node.options.get("DilationWFactor", 1)
    n, h, w, c = x.shape
    oh, top, bottom = _padding(node, h, kh, sh, dh)
    ow, left, right = _padding(node, w, kw, sw, dw)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (s[0], s[1] * sh, s[2] * sw, s[1] * dh, s[2] * dw, s[3]), writeable=False)


def k_conv_2d(node: Node) -> Kernel:
    x, w, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if w.data is None:
        raise node.fail("a filter that is not constant")
    oc, kh, kw, ic = w.data.shape
    act = fused(node)
    depth = kh * kw * ic

    if is_quantized(o):
        need_quant(node, x, w, o)
        weights = w.data.astype(np.float64).reshape(oc, depth).T.copy()
        mult, shift = _channel_multipliers(node, x, w, o, oc)
        bias = _bias(node, 2, oc, np.int64)
        zx, zo = x.quant.zero_point, o.quant.zero_point
        low, high = qrange(o, act)

        def run_q(xs: np.ndarray, *_: Any) -> np.ndarray:
            shifted = xs.astype(np.float64) - zx  # padding with 0 here is padding with the zero point
            cols = _windows(node, shifted, kh, kw, 0.0)
            n, oh, ow = cols.shape[:3]
            acc = (cols.reshape(-1, depth) @ weights).astype(np.int64)
            if bias is not None:
                acc += bias
            return np.clip(mbqm(acc, mult, shift) + zo, low, high).astype(o.dtype).reshape(n, oh, ow, oc)
        return run_q

    activation = float_activation(act)
    bias_f = _bias(node, 2, oc, np.float32)
    if w.dtype in (np.int8, np.uint8) and x.dtype == np.float32:  # hybrid, per channel
        need_quant(node, w)
        weights_q = w.data.astype(np.float64).reshape(oc, depth).T.copy()
        channel_scales = (np.repeat(w.quant.scales, oc) if len(w.quant.scales) == 1
                          else w.quant.scales).astype(np.float32)

        def run_h(xs: np.ndarray, *_: Any) -> np.ndarray:
            n = xs.shape[0]
            q, scales, offsets = asymmetric_quantize_rows(xs.reshape(n, -1))
            shifted = (q - offsets[:, None]).reshape(xs.shape)
            cols = _windows(node, shifted, kh, kw, 0.0)
            oh, ow = cols.shape[1:3]
            acc = (cols.reshape(-1, depth) @ weights_q).astype(np.float32).reshape(n, oh * ow, oc)
            out = acc * channel_scales * scales[:, None, None]
            if bias_f is not None:
                out += bias_f
            return activation(out.reshape(n, oh, ow, oc))
        return run_h

    weights_f = w.data.astype(np.float32).reshape(oc, depth).T.copy()

    def run_f(xs: np.ndarray, *_: Any) -> np.ndarray:
        cols = _windows(node, xs, kh, kw, 0.0)
        n, oh, ow = cols.shape[:3]
        out = cols.reshape(-1, depth) @ weights_f
        if bias_f is not None:
            out += bias_f
        return activation(out.reshape(n, oh, ow, oc))
    return run_f


def k_depthwise_conv_2d(node: Node) -> Kernel:
    x, w, o = node.inputs[0], node.inputs[1], node.outputs[0]
    if w.data is None:
        raise node.fail("a filter that is not constant")
    _, kh, kw, channels = w.data.shape
    act = fused(node)
    if w.dtype in (np.int8, np.uint8) and x.dtype == np.float32:
        raise node.fail("hybrid (dynamic range) depthwise convolution")
    quantized = is_quantized(o)
    if quantized:
        need_quant(node, x, w, o)
    ic = x.shape[-1] if x.shape else None
    weights = w.data.astype(np.float64 if quantized else np.float32).reshape(kh * kw, channels)

    def grouped(cols: np.ndarray) -> np.ndarray:
        n, oh, ow = cols.shape[:3]
        in_ch = cols.shape[-1]
        mult = channels // in_ch
        patches = cols.reshape(n, oh, ow, kh * kw, in_ch)
        if mult > 1:
            patches = np.repeat(patches, mult, axis=-1)
        return np.einsum("nhwkc,kc->nhwc", patches, weights)

    if quantized:
        mult_q, shift_q = _channel_multipliers(node, x, w, o, channels)
        bias = _bias(node, 2, channels, np.int64)
        zx, zo = x.quant.zero_point, o.quant.zero_point
        low, high = qrange(o, act)

        def run_q(xs: np.ndarray, *_: Any) -> np.ndarray:
            acc = grouped(_windows(node, xs.astype(np.float64) - zx, kh, kw, 0.0)).astype(np.int64)
            if bias is not None:
                acc += bias
            return np.clip(mbqm(acc, mult_q, shift_q) + zo, low, high).astype(o.dtype)
        return run_q
    activation = float_activation(act)
    bias_f = _bias(node, 2, channels, np.float32)
    del ic

    def run_f(xs: np.ndarray, *_: Any) -> np.ndarray:
        out = grouped(_windows(node, xs, kh, kw, 0.0)).astype(np.float32)
        if bias_f is not None:
            out += bias_f
        return activation(out)
    return run_f


def k_batch_matmul(node: Node) -> Kernel:
    a, b, o = node.inputs[0], node.inputs[1], node.outputs[0]
    adj_x, adj_y = node.options.get("AdjX", False), node.options.get("AdjY", False)

    def operands(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.swapaxes(x, -1, -2) if adj_x else x), (np.swapaxes(y, -1, -2) if adj_y else y)

    if is_quantized(o):
        need_quant(node, a, b, o)
        m, s = quantize_multiplier(float(np.float32(a.quant.scale)) * float(np.float32(b.quant.scale))
                                   / float(np.float32(o.quant.scale)))
        za, zb, zo = a.quant.zero_point, b.quant.zero_point, o.quant.zero_point

        def run_q(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            lhs, rhs = operands(x.astype(np.float64) - za, y.astype(np.float64) - zb)
            acc = np.matmul(lhs, rhs).astype(np.int64)
            return np.clip(mbqm(acc, m, s) + zo, -128, 127).astype(o.dtype)
        return run_q
    if b.dtype != a.dtype:
        raise node.fail(f"BATCH_MATMUL of {a.dtype} by {b.dtype} (hybrid)")
    return lambda x, y: np.matmul(*operands(x, y))


def _pool(node: Node, reducer: str) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    kh, kw = node.options.get("FilterHeight", 1), node.options.get("FilterWidth", 1)
    act = fused(node)
    quantized = is_quantized(o)
    if quantized:
        need_quant(node, i, o)
        low, high = qrange(o, act)
    activation = float_activation(act)

    def counts(xs: np.ndarray) -> np.ndarray:
        ones = np.ones((1, xs.shape[1], xs.shape[2], 1), np.float32)
        return _windows(node, ones, kh, kw, 0.0).sum(axis=(3, 4))  # (1, OH, OW, 1) valid positions

    if reducer == "max":
        def run_max(xs: np.ndarray) -> np.ndarray:
            fill = np.iinfo(xs.dtype).min if quantized else -np.inf
            y = _windows(node, xs, kh, kw, fill).max(axis=(3, 4))
            return np.clip(y, low, high).astype(o.dtype) if quantized else activation(y.astype(xs.dtype))
        return run_max

    def run_avg(xs: np.ndarray) -> np.ndarray:
        if quantized:
            total = _windows(node, xs.astype(np.int64), kh, kw, 0).sum(axis=(3, 4))
            n = counts(xs).astype(np.int64)
            q = np.where(total > 0, total + n // 2, total - n // 2)
            y = np.where(q >= 0, q // n, -((-q) // n))  # C++ division
            return np.clip(y, low, high).astype(o.dtype)
        total = _windows(node, xs, kh, kw, 0.0).sum(axis=(3, 4), dtype=np.float32)
        return activation((total / counts(xs)).astype(np.float32))
    return run_avg


def _axes(axis: np.ndarray, rank: int) -> tuple[int, ...]:
    return tuple(sorted({int(a) % rank for a in np.asarray(axis).ravel()})) if rank else ()


def k_mean(node: Node) -> Kernel:
    i, o = node.inputs[0], node.outputs[0]
    keep = node.options.get("KeepDims", False)
    if not is_quantized(o):
        def run_f(x: np.ndarray, axis: np.ndarray) -> np.ndarray:
            axes = _axes(axis, x.ndim)
            if x.dtype.kind in "iu":
                n = int(np.prod([x.shape[a] for a in axes]))
                s = x.astype(np.int64).sum(axis=axes, keepdims=keep)
                return np.where(s >= 0, s // n, -((-s) // n)).astype(x.dtype)
            return (x.sum(axis=axes, keepdims=keep, dtype=np.float32) / np.float32(
                np.prod([x.shape[a] for a in axes]))).astype(x.dtype)
        return run_f
    need_quant(node, i, o)
    multiplier, shift = quantize_multiplier(float(np.float32(i.quant.scale)) / float(np.float32(o.quant.scale)))
    zi, zo = i.quant.zero_point, o.quant.zero_point
    qmin, qmax = _INT_RANGE[o.dtype]

    def run_q(x: np.ndarray, axis: np.ndarray) -> np.ndarray:  # QuantizedMeanOrSum
        axes = _axes(axis, x.ndim)
        n = int(np.prod([x.shape[a] for a in axes]))
        total = x.astype(np.int64).sum(axis=axes, keepdims=keep)
        bits = min(n.bit_length() - 1, 32, 31 + shift)
        m = (multiplier << bits) // n
        out = mbqm(total - zi * n, m, shift - bits) + zo
        return np.clip(out, qmin, qmax).astype(o.dtype)
    return run_q


def _reduce(fn: Callable) -> Callable[[Node], Kernel]:
    def build(node: Node) -> Kernel:
        i, o = node.inputs[0], node.outputs[0]
        if is_quantized(o) and (i.quant.scale, i.quant.zero_point) != (o.quant.scale, o.quant.zero_point):
            raise node.fail(f"quantized {node.op} that rescales")
        keep = node.options.get("KeepDims", False)
        return lambda x, axis: fn(x, axis=_axes(axis, x.ndim), keepdims=keep).astype(x.dtype)
    return build


def k_sum(node: Node) -> Kernel:
    if is_quantized(node.outputs[0]):
        raise node.fail("quantized SUM")
    keep = node.options.get("KeepDims", False)
    return lambda x, axis: np.sum(x, axis=_axes(axis, x.ndim), keepdims=keep, dtype=x.dtype)


KERNELS: dict[str, Callable[[Node], Kernel]] = {
    "ADD": lambda n: k_add_sub(n, 1),
    "SUB": lambda n: k_add_sub(n, -1),
    "MUL": k_mul,
    "DIV": k_div,
    "SQUARED_DIFFERENCE": k_squared_difference,
    "MAXIMUM": lambda n: k_minmax(n, np.maximum),
    "MINIMUM": lambda n: k_minmax(n, np.minimum),
    "LESS": lambda n: k_compare(n, np.less),
    "LESS_EQUAL": lambda n: k_compare(n, np.less_equal),
    "GREATER": lambda n: k_compare(n, np.greater),
    "GREATER_EQUAL": lambda n: k_compare(n, np.greater_equal),
    "EQUAL": lambda n: k_compare(n, np.equal),
    "NOT_EQUAL": lambda n: k_compare(n, np.not_equal),
    "LOGICAL_AND": lambda n: np.logical_and,
    "LOGICAL_OR": lambda n: np.logical_or,
    "LOGICAL_NOT": lambda n: np.logical_not,
    "SELECT": k_select,
    "SELECT_V2": k_select,
    "NEG": k_neg,
    "ABS": k_abs,
    "RSQRT": k_rsqrt,
    "SQRT": _unary_float(np.sqrt),
    "EXP": _unary_float(np.exp),
    "LOG": _unary_float(np.log),
    "SQUARE": _unary_float(np.square),
    "RELU": lambda n: k_relu_family(n, 0.0, None),
    "RELU6": lambda n: k_relu_family(n, 0.0, 6.0),
    "RELU_N1_TO_1": lambda n: k_relu_family(n, -1.0, 1.0),
    "LEAKY_RELU": k_leaky_relu,
    "LOGISTIC": k_logistic,
    "TANH": k_tanh,
    "GELU": k_gelu,
    "HARD_SWISH": k_hard_swish,
    "SOFTMAX": k_softmax,
    "QUANTIZE": k_quantize,
    "DEQUANTIZE": k_dequantize,
    "FULLY_CONNECTED": k_fully_connected,
    "CONV_2D": k_conv_2d,
    "DEPTHWISE_CONV_2D": k_depthwise_conv_2d,
    "BATCH_MATMUL": k_batch_matmul,
    "MAX_POOL_2D": lambda n: _pool(n, "max"),
    "AVERAGE_POOL_2D": lambda n: _pool(n, "avg"),
    "MEAN": k_mean,
    "SUM": k_sum,
    "REDUCE_MAX": _reduce(np.max),
    "REDUCE_MIN": _reduce(np.min),
    "REDUCE_PROD": _reduce(np.prod),
    "RESHAPE": k_reshape,
    "SQUEEZE": k_squeeze,
    "EXPAND_DIMS": k_expand_dims,
    "TRANSPOSE": k_transpose,
    "SHAPE": k_shape,
    "FILL": k_fill,
    "ZEROS_LIKE": k_zeros_like,
    "CAST": k_cast,
    "PACK": k_pack,
    "UNPACK": k_unpack,
    "SPLIT": k_split,
    "SPLIT_V": k_split_v,
    "CONCATENATION": k_concatenation,
    "GATHER": k_gather,
    "SLICE": k_slice,
    "STRIDED_SLICE": k_strided_slice,
    "TILE": k_tile,
    "PAD": k_pad,
    "PADV2": k_pad,
    "RANGE": k_range,
}
