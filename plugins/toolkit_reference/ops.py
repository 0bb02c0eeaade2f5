"""ONNX operators in plain numpy: enough for the CNN family's graphs (as tf2onnx and ONNX Runtime's QDQ
quantizer write them), the common glue around them, and the element-wise, normalisation, padding and reduction
operators real third-party models bring. Each takes (inputs, attributes) and returns outputs."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Op = Callable[[list[Any], dict[str, Any]], list[np.ndarray]]
OPS: dict[str, Op] = {}


def op(name: str) -> Callable[[Op], Op]:
    def deco(fn: Op) -> Op:
        OPS[name] = fn
        return fn

    return deco


def _pads(attrs: dict[str, Any], x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...],
          dilations: tuple[int, ...]) -> list[int]:
    """ONNX pads as [begin..., end...], resolving auto_pad."""
    auto = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    spatial = x.shape[2:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else big)
            ends.append(big if auto == "SAME_UPPER" else small)
        return begins + ends
    if auto == "VALID":
        return [0] * (2 * len(spatial))
    return list(attrs.get("pads", [0] * (2 * len(spatial))))


def _windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], dilations: tuple[int, int],
             pads: list[int], pad_value: float) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) view of the padded input's sliding windows."""
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])), constant_values=pad_value)
    span = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    win = sliding_window_view(x, span, axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]


@op("Conv")
def conv(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    if x.ndim != 4:
        raise NotImplementedError("Conv: only 2-D convolutions")
    kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    group = int(attrs.get("group", 1))
    pads = _pads(attrs, x, kernel, strides, dilations)
    win = _windows(x, kernel, strides, dilations, pads, 0.0)  # N, C, Ho, Wo, kh, kw
    cin = x.shape[1] // group
    mout = w.shape[0] // group
    outs = []
    for g in range(group):
        xg = win[:, g * cin:(g + 1) * cin]
        wg = w[g * mout:(g + 1) * mout]
        outs.append(np.einsum("nchwij,mcij->nmhw", xg, wg, optimize=True))
    y = outs[0] if group == 1 else np.concatenate(outs, axis=1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return [y.astype(x.dtype, copy=False)]


def _pool_pads(x: np.ndarray, attrs: dict[str, Any], kernel: tuple[int, int], strides: tuple[int, int],
               dilations: tuple[int, int]) -> tuple[list[int], list[int]]:
    """(the pads windows are taken over, the model's own pads): with ceil_mode=1 the output rounds up, and the
    last window may run past the end: the first list pads the end further for it (a window never starts in
    the end padding, as ONNX Runtime and PyTorch rule)."""
    pads = _pads(attrs, x, kernel, strides, dilations)
    if not attrs.get("ceil_mode", 0):
        return pads, pads
    taken = list(pads)
    for axis, (size, k, s, d) in enumerate(zip(x.shape[2:], kernel, strides, dilations)):
        span, padded = (k - 1) * d + 1, size + pads[axis] + pads[axis + 2]
        out = -(-(padded - span) // s) + 1
        if (out - 1) * s >= size + pads[axis]:
            out -= 1
        taken[axis + 2] += max(0, (out - 1) * s + span - padded)
    return taken, pads


def _pool_args(x: np.ndarray, attrs: dict[str, Any], name: str) -> tuple:
    kernel = tuple(attrs["kernel_shape"])
    if x.ndim != 4 or len(kernel) != 2:
        raise NotImplementedError(f"{name}: only 2-D pooling")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    return kernel, strides, dilations, *_pool_pads(x, attrs, kernel, strides, dilations)


@op("MaxPool")
def max_pool(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    x = inputs[0]
    kernel, strides, dilations, pads, _ = _pool_args(x, attrs, "MaxPool")
    return [_windows(x, kernel, strides, dilations, pads, -np.inf).max(axis=(4, 5))]


@op("AveragePool")
def average_pool(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    x = inputs[0]
    kernel, strides, dilations, pads, own = _pool_args(x, attrs, "AveragePool")
    total = _windows(x.astype(np.float64), kernel, strides, dilations, pads, 0.0).sum(axis=(4, 5))
    # What each window averages over: the input, plus the model's own padding with count_include_pad=1, never
    # the extra end padding of ceil_mode.
    counted = np.ones((1, 1) + x.shape[2:])
    if attrs.get("count_include_pad", 0):
        counted = np.pad(counted, ((0, 0), (0, 0), (own[0], own[2]), (own[1], own[3])), constant_values=1.0)
        shift = [p - o for p, o in zip(pads, own)]
    else:
        shift = pads
    counts = _windows(counted, kernel, strides, dilations, shift, 0.0).sum(axis=(4, 5))
    return [(total / counts).astype(x.dtype)]


@op("GlobalAveragePool")
def global_average_pool(inputs, attrs):
    return [inputs[0].mean(axis=tuple(range(2, inputs[0].ndim)), keepdims=True)]


@op("Relu")
def relu(inputs, attrs):
    return [np.maximum(inputs[0], 0).astype(inputs[0].dtype, copy=False)]


@op("Sigmoid")
def sigmoid(inputs, attrs):
    return [(1.0 / (1.0 + np.exp(-inputs[0]))).astype(inputs[0].dtype)]


@op("Tanh")
def tanh(inputs, attrs):
    return [np.tanh(inputs[0])]


@op("Softmax")
def softmax(inputs, attrs):
    x = inputs[0]
    if attrs.get("opset", 13) < 13:  # before opset 13: over every axis from `axis` (default 1) on, as one
        axis = int(attrs.get("axis", 1)) % max(x.ndim, 1)
        flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
        return [softmax([flat], {"axis": 1})[0].reshape(x.shape)]
    axis = int(attrs.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [(e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)]


@op("MatMul")
def matmul(inputs, attrs):
    return [np.matmul(inputs[0], inputs[1])]


@op("Gemm")
def gemm(inputs, attrs):
    a, b = inputs[0], inputs[1]
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + float(attrs.get("beta", 1.0)) * inputs[2]
    return [y.astype(inputs[0].dtype, copy=False)]


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Op:
    def run(inputs, attrs):
        return [fn(inputs[0], inputs[1])]

    return run


OPS["Add"] = _binary(np.add)
OPS["Sub"] = _binary(np.subtract)
OPS["Mul"] = _binary(np.multiply)
def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(np.asarray(a).dtype, np.integer):  # ONNX divides integers truncating toward zero, as C does
        return (np.abs(a) // np.abs(b) * np.sign(a) * np.sign(b)).astype(np.asarray(a).dtype)
    return a / b


OPS["Div"] = _binary(_divide)


@op("Identity")
def identity(inputs, attrs):
    return [inputs[0]]


# Constant's value attributes (exactly one is set) and the dtype each gives.
_CONSTANT_VALUES = {"value": None, "value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                    "value_ints": np.int64, "value_string": object, "value_strings": object}


@op("Constant")
def constant(inputs, attrs):
    for key, dtype in _CONSTANT_VALUES.items():
        if key in attrs:
            return [np.asarray(attrs[key], dtype=dtype)]
    raise NotImplementedError(f"Constant with {', '.join(attrs) or 'no value'}")


@op("Shape")
def shape(inputs, attrs):
    dims = np.array(inputs[0].shape, dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return [dims[start:end]]


@op("Gather")
def gather(inputs, attrs):
    return [np.take(inputs[0], inputs[1].astype(np.int64), axis=int(attrs.get("axis", 0)))]


# ONNX's float8 types: their saturation rules (the `saturate` attribute) are not implemented here.
_NARROW_TYPES = {17: "float8e4m3fn", 18: "float8e4m3fnuz", 19: "float8e5m2", 20: "float8e5m2fnuz", 24: "float8e8m0"}


@op("Cast")
def cast(inputs, attrs):
    import onnx

    if int(attrs["to"]) in _NARROW_TYPES:
        raise NotImplementedError(f"Cast to {_NARROW_TYPES[int(attrs['to'])]}")
    with np.errstate(invalid="ignore"):  # out-of-range floats to integers: what C's cast gives, no warning
        return [inputs[0].astype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"])))]


@op("Slice")
def slice_(inputs, attrs):
    if len(inputs) < 3:
        raise NotImplementedError("Slice: the opset-1 form with starts/ends attributes")
    x, starts, ends = inputs[0], inputs[1], inputs[2]
    axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else np.arange(len(starts))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else np.ones(len(starts), dtype=np.int64)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(e), int(st))
    return [x[tuple(index)]]


@op("Concat")
def concat(inputs, attrs):
    return [np.concatenate(inputs, axis=int(attrs["axis"]))]


@op("Reshape")
def reshape(inputs, attrs):
    x, target = inputs[0], [int(d) for d in inputs[1]]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return [x.reshape(target)]


@op("Flatten")
def flatten(inputs, attrs):
    x = inputs[0]
    axis = int(attrs.get("axis", 1))
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@op("Transpose")
def transpose(inputs, attrs):
    return [np.transpose(inputs[0], attrs.get("perm"))]


@op("Squeeze")
def squeeze(inputs, attrs):
    axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
    return [np.squeeze(inputs[0], axis=tuple(int(a) for a in axes) if axes is not None else None)]


@op("Unsqueeze")
def unsqueeze(inputs, attrs):
    axes = inputs[1] if len(inputs) > 1 else attrs["axes"]
    return [np.expand_dims(inputs[0], axis=tuple(int(a) for a in axes))]


def _per_axis(param: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    if x.ndim == 1:  # a per-channel bias: its one axis, whatever `axis` says (ONNX Runtime refuses axis 1)
        return param.reshape(-1)
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


# The integer types QuantizeLinear and DequantizeLinear are implemented for (not 2- or 4-bit, not float8).
_QUANTIZED_TYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32)


def _check_quantized(attrs: dict[str, Any], dtype: np.dtype, op_type: str) -> None:
    if int(attrs.get("block_size", 0)):
        raise NotImplementedError(f"{op_type} with blocked scales (block_size)")
    if dtype not in _QUANTIZED_TYPES:
        raise NotImplementedError(f"{op_type} to or from {dtype} (int8, uint8, int16, uint16 and int32 only)")


@op("QuantizeLinear")
def quantize_linear(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros((), dtype=np.uint8)
    if "output_dtype" in attrs and int(attrs["output_dtype"]) and zp.dtype == np.uint8 and len(inputs) < 3:
        raise NotImplementedError("QuantizeLinear with output_dtype")
    _check_quantized(attrs, np.dtype(zp.dtype), "QuantizeLinear")
    axis = int(attrs.get("axis", 1))
    info = np.iinfo(zp.dtype)
    # Round half to even, as ONNX specifies (np.rint does).
    q = np.rint(x / _per_axis(scale, x, axis)) + _per_axis(zp, x, axis).astype(np.int32)
    return [np.clip(q, info.min, info.max).astype(zp.dtype)]


@op("DequantizeLinear")
def dequantize_linear(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros((), dtype=x.dtype)
    _check_quantized(attrs, np.dtype(x.dtype), "DequantizeLinear")
    axis = int(attrs.get("axis", 1))
    real = (x.astype(np.int32) - _per_axis(zp, x, axis).astype(np.int32)) * _per_axis(scale, x, axis)
    return [real.astype(scale.dtype)]


# ---------------------------------------------------------------------------------------------- element-wise
def _unary(fn: Callable[[np.ndarray], np.ndarray]) -> Op:
    def run(inputs, attrs):
        return [np.asarray(fn(inputs[0])).astype(inputs[0].dtype, copy=False)]

    return run


OPS["Abs"] = _unary(np.abs)
OPS["Neg"] = _unary(np.negative)
OPS["Exp"] = _unary(np.exp)
OPS["Log"] = _unary(np.log)
OPS["Sqrt"] = _unary(np.sqrt)
OPS["Erf"] = _unary(np.frompyfunc(math.erf, 1, 1))  # numpy has no erf; exact, one element at a time
OPS["Pow"] = _binary(lambda a, b: np.power(a, b).astype(a.dtype, copy=False))
OPS["Equal"] = _binary(np.equal)
OPS["Less"] = _binary(np.less)
OPS["Greater"] = _binary(np.greater)


@op("Max")
def max_(inputs, attrs):
    return [functools.reduce(np.maximum, inputs)]


@op("Sum")
def sum_(inputs, attrs):
    return [functools.reduce(np.add, inputs)]


@op("Mean")
def mean_(inputs, attrs):
    return [(functools.reduce(np.add, inputs) / len(inputs)).astype(inputs[0].dtype)]


@op("Dropout")
def dropout(inputs, attrs):
    """Inference: the input, and a mask of ones. Training mode (a random mask) is not a reference."""
    training = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.array(False)
    if bool(np.asarray(training).reshape(-1)[0]):
        raise NotImplementedError("Dropout in training mode (a random mask)")
    mask = bool if attrs.get("opset", 13) >= 10 else inputs[0].dtype  # before opset 10 the mask is the input's type
    return [inputs[0], np.ones(inputs[0].shape, dtype=mask)]


@op("LRN")
def lrn(inputs, attrs):
    x = inputs[0]
    size = int(attrs["size"])
    alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1.0))
    squares = np.square(x.astype(np.float64))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2  # floor((size-1)/2) before, ceil((size-1)/2) after
    padded = np.pad(squares, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    window = sum(padded[:, i:i + x.shape[1]] for i in range(size))
    return [(x / (bias + alpha / size * window) ** beta).astype(x.dtype)]


@op("Min")
def min_(inputs, attrs):
    return [functools.reduce(np.minimum, inputs)]


@op("Where")
def where(inputs, attrs):
    return [np.where(inputs[0], inputs[1], inputs[2])]


@op("Clip")
def clip(inputs, attrs):
    x = inputs[0]
    low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")  # opset 11+: inputs
    high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    if low is not None:
        x = np.maximum(x, np.asarray(low, dtype=x.dtype))
    if high is not None:
        x = np.minimum(x, np.asarray(high, dtype=x.dtype))
    return [x]


@op("LeakyRelu")
def leaky_relu(inputs, attrs):
    x = inputs[0]
    return [np.where(x >= 0, x, x * np.asarray(attrs.get("alpha", 0.01), dtype=x.dtype))]


@op("HardSigmoid")
def hard_sigmoid(inputs, attrs):
    x = inputs[0]
    alpha, beta = np.asarray(attrs.get("alpha", 0.2), x.dtype), np.asarray(attrs.get("beta", 0.5), x.dtype)
    return [np.clip(alpha * x + beta, 0, 1).astype(x.dtype, copy=False)]


@op("BatchNormalization")
def batch_normalization(inputs, attrs):
    if attrs.get("training_mode"):
        raise NotImplementedError("BatchNormalization in training mode (it updates running statistics)")
    x, scale, bias, mean, var = inputs[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)  # per channel, the second axis
    eps = np.asarray(attrs.get("epsilon", 1e-5), x.dtype)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) + bias.reshape(shape)
    return [y.astype(x.dtype, copy=False)]


@op("Pad")
def pad(inputs, attrs):
    x = inputs[0]
    pads = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("pads")  # opset 11+: an input
    if pads is None:
        raise NotImplementedError("Pad without pads")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    axes = list(range(x.ndim))
    if len(inputs) > 3 and inputs[3] is not None:
        axes = [int(a) % x.ndim for a in np.asarray(inputs[3]).reshape(-1)]
    half = len(pads) // 2
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes[:half]):
        widths[axis] = (pads[i], pads[i + half])
    if any(a < 0 or b < 0 for a, b in widths):
        raise NotImplementedError("Pad with negative pads (cropping)")
    mode = attrs.get("mode", "constant")
    if mode == "constant":
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None and np.size(inputs[2]) else attrs.get("value", 0)
        return [np.pad(x, widths, mode="constant", constant_values=np.asarray(value).reshape(-1)[0] if np.size(value)
                       else 0)]
    if mode in ("reflect", "edge"):
        return [np.pad(x, widths, mode=mode)]
    raise NotImplementedError(f"Pad mode {mode}")


def _reduce(fn: Callable[..., np.ndarray]) -> Op:
    def run(inputs, attrs):
        x = inputs[0]
        axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")  # opset 18: an input
        keepdims = bool(attrs.get("keepdims", 1))
        if axes is None or np.size(axes) == 0:
            if attrs.get("noop_with_empty_axes"):
                return [x]
            axes = None
        else:
            axes = tuple(int(a) for a in np.asarray(axes).reshape(-1))
        extra = {}
        if x.size == 0 and fn in (np.max, np.min):  # ONNX: the max of nothing is the lowest value, and so on
            extra["initial"] = _extreme(x.dtype, lowest=fn is np.max)
        return [np.asarray(fn(x, axis=axes, keepdims=keepdims, **extra)).astype(x.dtype, copy=False)]

    return run


def _extreme(dtype: np.dtype, lowest: bool) -> Any:
    if dtype == np.bool_:
        return not lowest
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min if lowest else np.iinfo(dtype).max
    return -np.inf if lowest else np.inf


OPS["ReduceMax"] = _reduce(np.max)
OPS["ReduceMin"] = _reduce(np.min)
OPS["ReduceSum"] = _reduce(np.sum)
OPS["ReduceMean"] = _reduce(np.mean)
OPS["ReduceProd"] = _reduce(np.prod)


# ---------------------------------------------------------------------------------------------- logic and glue
# What tf2onnx writes for Keras masks and while-loops (a GRU over token ids, the transformer's padding mask).
OPS["Not"] = _unary(np.logical_not)
OPS["And"] = _binary(np.logical_and)
OPS["Or"] = _binary(np.logical_or)
OPS["Xor"] = _binary(np.logical_xor)
OPS["Reciprocal"] = _unary(np.reciprocal)
OPS["Floor"] = _unary(np.floor)
OPS["Ceil"] = _unary(np.ceil)
OPS["Sign"] = _unary(np.sign)


@op("Split")
def split(inputs, attrs):
    x = inputs[0]
    axis = int(attrs.get("axis", 0)) % x.ndim
    sizes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")  # an input from opset 13
    if sizes is None:
        # Equal parts (opset 18: the last may be smaller); the compile step sets num_outputs from the node.
        parts = int(attrs["num_outputs"])
        size = -(-x.shape[axis] // parts)
        sizes = [min(size, x.shape[axis] - i * size) for i in range(parts)]
    bounds = np.cumsum([int(n) for n in np.asarray(sizes).reshape(-1)])[:-1]
    return list(np.split(x, bounds, axis=axis))


@op("Range")
def range_(inputs, attrs):
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
    count = max(int(np.ceil((limit - start) / delta)), 0)
    return [(start + np.arange(count, dtype=start.dtype) * delta).astype(start.dtype)]


@op("ConstantOfShape")
def constant_of_shape(inputs, attrs):
    value = np.asarray(attrs.get("value", np.zeros(1, np.float32))).reshape(-1)
    return [np.full([int(d) for d in np.asarray(inputs[0]).reshape(-1)], value[0], dtype=value.dtype)]


# ---------------------------------------------------------------------------------------------- the transformer's
@op("LayerNormalization")
def layer_normalization(inputs, attrs):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    axes = tuple(range(int(attrs.get("axis", -1)) % x.ndim, x.ndim))  # from `axis` to the last
    xf = x.astype(np.float32)  # stash_type 1: the statistics in float32
    mean = xf.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(((xf - mean) ** 2).mean(axis=axes, keepdims=True) + float(attrs.get("epsilon", 1e-5)))
    y = (xf - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return [y.astype(x.dtype, copy=False), mean, inv_std]  # Y, and the optional Mean and InvStdDev


@op("Gelu")
def gelu(inputs, attrs):
    x = inputs[0]
    if attrs.get("approximate", "none") == "tanh":
        y = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    else:
        y = 0.5 * x * (1 + OPS["Erf"]([x / np.sqrt(2).astype(x.dtype)], {})[0])
    return [np.asarray(y).astype(x.dtype, copy=False)]


@op("Expand")
def expand(inputs, attrs):
    x, shape = inputs[0], tuple(int(d) for d in np.asarray(inputs[1]).reshape(-1))
    return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, shape)))]


@op("Tile")
def tile(inputs, attrs):
    return [np.tile(inputs[0], [int(r) for r in np.asarray(inputs[1]).reshape(-1)])]

from . import quantized, recurrent  # noqa: E402,F401  (they register more operators)
