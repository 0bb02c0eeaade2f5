"""Packed kernels for the operators that carry a model's work: convolution, matrix products and pooling, each
prepared once (weights in the layout the matrix product wants, buffers kept per input shape) and able to absorb
the element-wise steps that follow it (bias Add, Relu or Relu6, and a QuantizeLinear -> DequantizeLinear pair).

The arithmetic is the readable kernels' (ops.py): a convolution is the same sum of products, only gathered
into one BLAS call; fake quantisation divides, rounds half to even, clamps and multiplies back in float32 as
QuantizeLinear and DequantizeLinear do. Anything a packed kernel does not cover stays with ops.py.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .ops import OPS, _pads

Step = Callable[[list], None]
OnlyUser = Callable[[str], Any]


class KernelError(Exception):
    """A kernel refused a use of its operator (NotImplementedError inside it): the op and the reason."""

    def __init__(self, op_type: str, reason: str):
        super().__init__(f"{op_type}: {reason}")
        self.op_type, self.reason = op_type, reason


class NodeFailure(Exception):
    """A kernel failed on the values it was given (an index out of range, shapes that do not broadcast)."""

    def __init__(self, op_type: str, name: str, error: Exception):
        super().__init__(f"{op_type} {name!r}: {type(error).__name__}: {error}")
        self.op_type, self.name, self.error = op_type, name, error


def run_readable(node: Any, args: list[Any]) -> list[Any]:
    """ops.py's kernel for `node` on `args`: a refusal (NotImplementedError) as KernelError, a failure on these
    values as NodeFailure, so that every caller reports them the same way."""
    try:
        return OPS[node.op_type](args, node.attrs)
    except NotImplementedError as e:
        raise KernelError(node.op_type, str(e)) from None
    except (IndexError, ValueError, TypeError) as e:
        raise NodeFailure(node.op_type, node.name, e) from None


def _const(constants: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    return constants.get(name) if name else None


class FakeQuant:
    """QuantizeLinear then DequantizeLinear with one per-tensor scale and zero point: round-trips a float
    tensor through its integer grid in place."""

    def __init__(self, scale: np.ndarray, zero_point: np.ndarray):
        info = np.iinfo(zero_point.dtype)
        self.scale = scale.astype(np.float32).reshape(())
        zero = int(zero_point.reshape(()))
        self.grid = (float(self.scale), zero, str(zero_point.dtype))
        # clamp(round(x / s) + z, lo, hi) - z is clamp(round(x / s), lo - z, hi - z): integers, exact in float32.
        self.low, self.high = np.float32(info.min - zero), np.float32(info.max - zero)

    @staticmethod
    def of(q_node: Any, constants: dict[str, np.ndarray], only_user: OnlyUser) -> "FakeQuant | None":
        """The pair starting at `q_node`, when its DequantizeLinear is its only reader and undoes it exactly."""
        if q_node.op_type != "QuantizeLinear" or len(q_node.inputs) < 3:
            return None
        dq = only_user(q_node.outputs[0])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.inputs) < 3:
            return None
        scale, zero = _const(constants, q_node.inputs[1]), _const(constants, q_node.inputs[2])
        dq_scale, dq_zero = _const(constants, dq.inputs[1]), _const(constants, dq.inputs[2])
        if any(p is None or p.size != 1 for p in (scale, zero, dq_scale, dq_zero)):
            return None
        if (scale.dtype != np.float32 or zero.dtype not in (np.int8, np.uint8) or dq_zero.dtype != zero.dtype
                or scale.reshape(()) != dq_scale.reshape(()) or zero.reshape(()) != dq_zero.reshape(())):
            return None
        return FakeQuant(scale, zero)

    def apply(self, y: np.ndarray) -> None:
        np.divide(y, self.scale, out=y)
        np.rint(y, out=y)  # half to even, as QuantizeLinear rounds
        np.clip(y, self.low, self.high, out=y)
        y *= self.scale


class Packed:
    """A kernel prepared once. Subclasses compute `produce(x)` into a buffer they own; `finish` applies what
    was absorbed, in order."""

    accepts_bias = False  # whether a following Add of a constant can be absorbed (bias_fits decides its shape)

    def __init__(self, node: Any, constants: dict[str, np.ndarray]):
        self.node, self.constants = node, constants
        self.covers = [node]  # the nodes this kernel computes, in order: its own, then what it absorbed
        self.bias: np.ndarray | None = None
        self.clamp: tuple[float, float | None] | None = None
        self.fake_quant: FakeQuant | None = None

    def absorb(self, follower: Any, constants: dict[str, np.ndarray], only_user: OnlyUser) -> bool:
        if self.fake_quant is not None:
            return False
        taken = self._take(follower, constants, only_user)
        if taken:
            self.covers.append(follower)
            if follower.op_type == "QuantizeLinear":  # and the DequantizeLinear that undoes it
                self.covers.append(only_user(follower.outputs[0]))
        return taken

    def _take(self, follower: Any, constants: dict[str, np.ndarray], only_user: OnlyUser) -> bool:
        if follower.op_type == "QuantizeLinear":
            self.fake_quant = FakeQuant.of(follower, constants, only_user)
            return self.fake_quant is not None
        if self.clamp is not None:
            return False
        if follower.op_type == "Relu":
            self.clamp = (0.0, None)
            return True
        if follower.op_type == "Clip" and len(follower.inputs) == 3:
            low, high = _const(constants, follower.inputs[1]), _const(constants, follower.inputs[2])
            if low is not None and high is not None and low.size == 1 and high.size == 1:
                self.clamp = (float(low), float(high))
                return True
            return False
        if follower.op_type == "Add" and self.bias is None and self.accepts_bias:
            other = [i for i in follower.inputs if i != self.covers[-1].outputs[0]]
            bias = _const(constants, other[0]) if len(other) == 1 else None
            if bias is not None and self.bias_fits(bias):
                self.bias = bias
                return True
        return False

    def bias_fits(self, bias: np.ndarray) -> bool:
        return False

    def finish(self, y: np.ndarray) -> None:
        if self.bias is not None:
            y += self.bias
        if self.clamp is not None:
            low, high = self.clamp
            if high is None:
                np.maximum(y, low, out=y)
            else:
                np.clip(y, low, high, out=y)
        if self.fake_quant is not None:
            self.fake_quant.apply(y)

    def produce(self, x: np.ndarray) -> np.ndarray | None:
        """The result in a buffer of this kernel's, or None when this input is not one it packs for."""
        raise NotImplementedError

    def step(self, in_slot: int, out_slot: int) -> Step:
        produce, finish, readable = self.produce, self.finish, self.readable()

        def run(v: list) -> None:
            x = v[in_slot]
            y = produce(x)
            if y is None:  # an input it was not packed for (say float64): the readable kernels, node by node
                y = readable(x)
            else:
                finish(y)
            v[out_slot] = y

        return run

    def readable(self) -> Callable[[np.ndarray], np.ndarray]:
        """The covered nodes run by ops.py's kernels, each reading the one before it."""
        covers, constants = list(self.covers), self.constants

        def run(x: np.ndarray) -> np.ndarray:
            value, previous = x, self.node.inputs[0]
            for node in covers:
                args = [value if name == previous else (constants.get(name) if name else None)
                        for name in node.inputs]
                value = run_readable(node, args)[0]
                previous = node.outputs[0]
            return value

        return run


class Conv2D(Packed):
    """A 2-D convolution (group 1) as one matrix product over the whole batch: the input's windows gathered,
    kernel offset by kernel offset, into a preallocated (N*Ho*Wo, kh*kw*Cin) column buffer, times the weight
    pre-packed as a (kh*kw*Cin, Cout) matrix.

    Channels stay last in memory: the result is an (N, Cout, Ho, Wo) view of an (N, Ho, Wo, Cout) buffer, so
    the next convolution copies whole channel vectors and a final NCHW -> NHWC Transpose costs nothing."""

    accepts_bias = True

    def __init__(self, node: Any, weight_shape: tuple[int, ...], matrix: np.ndarray, bias: np.ndarray | None,
                 constants: dict[str, np.ndarray]):
        super().__init__(node, constants)
        self.out_channels, self.in_channels = weight_shape[0], weight_shape[1]
        self.kernel = tuple(node.attrs.get("kernel_shape", weight_shape[2:]))
        self.strides = tuple(node.attrs.get("strides", (1, 1)))
        self.dilations = tuple(node.attrs.get("dilations", (1, 1)))
        self.matrix = matrix  # the weight as (kh*kw*Cin, Cout): conv_matrix()
        self.bias = None if bias is None else bias.astype(np.float32).reshape(-1, 1, 1)
        self.buffers: dict[tuple[int, ...], tuple] = {}

    def _prepare(self, x: np.ndarray) -> tuple:
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        pads = _pads(self.node.attrs, x, self.kernel, self.strides, self.dilations)
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        ho, wo = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
        padded = np.zeros((n, hp, wp, c), np.float32) if any(pads) else None
        inner = (slice(None), slice(pads[0], pads[0] + h), slice(pads[1], pads[1] + w), slice(None))
        columns = np.empty((n, ho, wo, kh, kw, c), np.float32)
        out = np.empty((n * ho * wo, self.out_channels), np.float32)
        offsets = [(i, j, slice(i * dh, i * dh + (ho - 1) * sh + 1, sh), slice(j * dw, j * dw + (wo - 1) * sw + 1, sw))
                   for i in range(kh) for j in range(kw)]
        return padded, inner, columns, out, offsets, (n * ho * wo, kh * kw * c), (n, ho, wo, self.out_channels)

    def produce(self, x: np.ndarray) -> np.ndarray | None:
        if x.dtype != np.float32 or x.ndim != 4 or x.shape[1] != self.in_channels:
            return None
        prepared = self.buffers.get(x.shape)
        if prepared is None:
            prepared = self.buffers[x.shape] = self._prepare(x)
        padded, inner, columns, out, offsets, matrix_shape, out_shape = prepared
        source = x.transpose(0, 2, 3, 1)  # NHWC: contiguous when x came from a kernel of this module
        if padded is not None:
            padded[inner] = source
            source = padded
        for i, j, rows, cols in offsets:
            columns[:, :, :, i, j] = source[:, rows, cols]
        np.matmul(columns.reshape(matrix_shape), self.matrix, out=out)
        return out.reshape(out_shape).transpose(0, 3, 1, 2)


class MatMulConst(Packed):
    """x @ W with W a constant matrix (MatMul, or Gemm without transA): W pre-transposed and contiguous, the
    bias of a Gemm or of a following Add added in place."""

    accepts_bias = True

    def __init__(self, node: Any, weight: np.ndarray, bias: np.ndarray | None, constants: dict[str, np.ndarray]):
        super().__init__(node, constants)
        self.weight = weight  # (K, N), contiguous float32
        self.bias = None if bias is None else bias.astype(np.float32)
        self.buffers: dict[tuple[int, ...], np.ndarray] = {}

    def bias_fits(self, bias: np.ndarray) -> bool:
        return bias.dtype == np.float32 and bias.shape[-1:] in ((self.weight.shape[1],), (1,)) and bias.ndim <= 2

    def produce(self, x: np.ndarray) -> np.ndarray | None:
        if x.dtype != np.float32 or x.ndim < 2 or x.shape[-1] != self.weight.shape[0]:
            return None
        out = self.buffers.get(x.shape)
        if out is None:
            out = self.buffers[x.shape] = np.empty(x.shape[:-1] + (self.weight.shape[1],), np.float32)
        np.matmul(x, self.weight, out=out)
        return out


class Pool2D(Packed):
    """Max or average pooling (no padding for the average) as a running max or sum over kernel offsets."""

    def __init__(self, node: Any, constants: dict[str, np.ndarray]):
        super().__init__(node, constants)
        self.kernel = tuple(node.attrs["kernel_shape"])
        self.strides = tuple(node.attrs.get("strides", (1, 1)))
        self.dilations = tuple(node.attrs.get("dilations", (1, 1)))
        self.is_max = node.op_type == "MaxPool"
        self.buffers: dict[tuple[int, ...], tuple] = {}

    def _prepare(self, x: np.ndarray) -> tuple | None:
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.strides, self.dilations
        pads = _pads(self.node.attrs, x, self.kernel, self.strides, self.dilations)
        if any(pads) and not self.is_max:
            return None
        hp, wp = h + pads[0] + pads[2], w + pads[1] + pads[3]
        ho, wo = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
        # Channels last in memory, like the convolutions' results (see Conv2D).
        padded = np.full((n, hp, wp, c), -np.inf, np.float32).transpose(0, 3, 1, 2) if any(pads) else None
        inner = (slice(None), slice(None), slice(pads[0], pads[0] + h), slice(pads[1], pads[1] + w))
        windows = [(slice(None), slice(None), slice(i * dh, i * dh + (ho - 1) * sh + 1, sh),
                    slice(j * dw, j * dw + (wo - 1) * sw + 1, sw)) for i in range(kh) for j in range(kw)]
        return padded, inner, windows, np.empty((n, ho, wo, c), np.float32).transpose(0, 3, 1, 2)

    def produce(self, x: np.ndarray) -> np.ndarray | None:
        if x.dtype != np.float32 or x.ndim != 4:
            return None
        if x.shape not in self.buffers:
            self.buffers[x.shape] = self._prepare(x)
        prepared = self.buffers[x.shape]
        if prepared is None:
            return None
        padded, inner, windows, out = prepared
        source = x
        if padded is not None:
            padded[inner] = x
            source = padded
        np.copyto(out, source[windows[0]])
        combine = np.maximum if self.is_max else np.add
        for window in windows[1:]:
            combine(out, source[window], out=out)
        if not self.is_max:
            out *= np.float32(1.0 / len(windows))
        return out


def pack(node: Any, constants: dict[str, np.ndarray], only_user: OnlyUser,
         layouts: dict[int, np.ndarray]) -> Packed | None:
    """The packed kernel for `node`, or None when the readable kernel is the one to run. `layouts` keeps each
    node's weight in its packed layout, so a graph compiled into several step lists holds it once."""
    attrs, op_type = node.attrs, node.op_type

    def laid_out(make: Callable[[], np.ndarray]) -> np.ndarray:
        if id(node) not in layouts:
            layouts[id(node)] = np.ascontiguousarray(make(), dtype=np.float32)
        return layouts[id(node)]

    if op_type == "Conv":
        weight = _const(constants, node.inputs[1])
        bias = _const(constants, node.inputs[2]) if len(node.inputs) > 2 else None
        if (weight is None or weight.ndim != 4 or weight.dtype != np.float32 or int(attrs.get("group", 1)) != 1
                or (len(node.inputs) > 2 and node.inputs[2] and bias is None)):
            return None
        matrix = laid_out(lambda: weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0]))
        return Conv2D(node, weight.shape, matrix, bias, constants)
    if op_type == "MatMul":
        weight = _const(constants, node.inputs[1])
        if weight is None or weight.ndim != 2 or weight.dtype != np.float32:
            return None
        return MatMulConst(node, laid_out(lambda: weight), None, constants)
    if op_type == "Gemm":
        weight = _const(constants, node.inputs[1])
        bias = _const(constants, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if (weight is None or weight.dtype != np.float32 or attrs.get("transA", 0)
                or float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0
                or (len(node.inputs) > 2 and node.inputs[2] and bias is None)
                or (bias is not None and bias.ndim > 1 and bias.shape[0] != 1)):
            return None
        return MatMulConst(node, laid_out(lambda: weight.T if attrs.get("transB", 0) else weight), bias, constants)
    if op_type in ("MaxPool", "AveragePool"):
        if (len(attrs.get("kernel_shape", ())) != 2 or attrs.get("ceil_mode", 0) or len(node.outputs) > 1
                or (op_type == "AveragePool" and attrs.get("count_include_pad", 0))):
            return None
        return Pool2D(node, constants)
    if op_type == "QuantizeLinear":
        fake_quant = FakeQuant.of(node, constants, only_user)
        if fake_quant is None:
            return None
        return _FakeQuantOnly(node, fake_quant, only_user(node.outputs[0]), constants)
    return None


class _FakeQuantOnly(Packed):
    """A QuantizeLinear -> DequantizeLinear pair on its own (after a Reshape, a Transpose, an input)."""

    def __init__(self, node: Any, fake_quant: FakeQuant, dequantize: Any, constants: dict[str, np.ndarray]):
        super().__init__(node, constants)
        self.covers.append(dequantize)
        self.fake_quant = fake_quant  # applied by finish()

    def absorb(self, follower: Any, constants: dict[str, np.ndarray], only_user: OnlyUser) -> bool:
        return False

    def produce(self, x: np.ndarray) -> np.ndarray | None:
        if x.dtype != np.float32:
            return None
        return np.array(x, dtype=np.float32)  # a copy: x may be read elsewhere
