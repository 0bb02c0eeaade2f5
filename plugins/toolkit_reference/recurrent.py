"""ONNX's recurrent operators (LSTM, GRU, RNN) in numpy, with every attribute exporters write: direction
(forward, reverse, bidirectional), sequence_lens, initial states, LSTM peepholes and input_forget, layout 0/1,
activations with their alpha/beta, GRU's linear_before_reset and clip. Behaviour the ONNX spec leaves open
(padded steps, alpha/beta consumption) follows ONNX Runtime's CPU kernels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .ops import op

Activation = Callable[[np.ndarray], np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a negative number only: no overflow warning for large |x|
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_NONE = ()  # the function takes no such parameter
_REQUIRED = None  # the node must give it: ONNX Runtime's default (0) is not the ONNX operator's (1)

# name (lower case) -> (function of x, alpha, beta; default alpha; default beta). The defaults are those of the
# ONNX operators of the same name, where ONNX Runtime agrees with them (measured).
_ACTIVATIONS: dict[str, tuple[Callable[..., np.ndarray], Any, Any]] = {
    "relu": (lambda x, a, b: np.maximum(x, 0), _NONE, _NONE),
    "tanh": (lambda x, a, b: np.tanh(x), _NONE, _NONE),
    "sigmoid": (lambda x, a, b: _sigmoid(x), _NONE, _NONE),
    "affine": (lambda x, a, b: a * x + b, _REQUIRED, _REQUIRED),
    "leakyrelu": (lambda x, a, b: np.where(x >= 0, x, a * x), 0.01, _NONE),
    "thresholdedrelu": (lambda x, a, b: np.where(x > a, x, 0), _REQUIRED, _NONE),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), _REQUIRED, _REQUIRED),
    "hardsigmoid": (lambda x, a, b: np.clip(a * x + b, 0, 1), 0.2, 0.5),
    "elu": (lambda x, a, b: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))), 1.0, _NONE),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), _NONE, _NONE),
    "softplus": (lambda x, a, b: np.logaddexp(0, x), _NONE, _NONE),
}


def _parameter(op_name: str, activation: str, which: str, given: list[float], default: Any) -> float:
    """The next of activation_alpha (or _beta) for an activation that takes one, else its default."""
    if default is _NONE:
        return 0.0
    if given:
        return float(given.pop(0))
    if default is _REQUIRED:
        raise NotImplementedError(f"{op_name}: activation {activation} without activation_{which} (runtimes "
                                  f"disagree on its default: give it explicitly)")
    return default


def _activations(op_name: str, attrs: dict[str, Any], defaults: list[str], directions: int) -> list[list[Activation]]:
    """One list of activation functions per direction. activation_alpha/beta are consumed in order by the
    functions that take an alpha (a beta), as ONNX Runtime does."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in attrs.get("activations", [])]
    names = names or defaults * directions
    per = len(defaults)
    if len(names) != per * directions:
        raise NotImplementedError(f"{op_name}: {len(names)} activations for {directions} direction(s) (it takes "
                                  f"{per} per direction, like the default {', '.join(defaults)})")
    alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
    funcs = []
    for name in names:
        entry = _ACTIVATIONS.get(name.lower())
        if entry is None:
            raise NotImplementedError(f"{op_name}: activation {name} (the ONNX spec's are "
                                      "Relu, Tanh, Sigmoid, Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, "
                                      "HardSigmoid, Elu, Softsign, Softplus)")
        fn, default_alpha, default_beta = entry
        alpha = _parameter(op_name, name, "alpha", alphas, default_alpha)
        beta = _parameter(op_name, name, "beta", betas, default_beta)
        funcs.append(lambda x, fn=fn, a=alpha, b=beta: fn(x, np.asarray(a, x.dtype), np.asarray(b, x.dtype)))
    return [funcs[d * per:(d + 1) * per] for d in range(directions)]


@dataclass
class _Common:
    """What the three operators share, read from the node's inputs and attributes, in layout 0."""
    x: np.ndarray  # [seq, batch, input], in the compute dtype
    w: np.ndarray  # [dirs, gates*hidden, input]
    r: np.ndarray  # [dirs, gates*hidden, hidden]
    b: np.ndarray  # [dirs, 2*gates*hidden]
    lengths: np.ndarray  # [batch] int
    h0: np.ndarray  # [dirs, batch, hidden]
    directions: list[bool]  # per direction: True when it runs backwards in time
    activations: list[list[Activation]]
    clip: float | None
    dtype: np.dtype  # the caller's dtype: outputs are cast back to it
    layout: int


def _common(op_name: str, inputs: list[Any], attrs: dict[str, Any], gates: int, defaults: list[str]) -> _Common:
    x, w, r = inputs[0], inputs[1], inputs[2]
    get = lambda i: inputs[i] if len(inputs) > i and inputs[i] is not None else None  # noqa: E731
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    backwards = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}.get(direction)
    if backwards is None:
        raise NotImplementedError(f"{op_name}: direction {direction!r} (forward, reverse or bidirectional)")
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise NotImplementedError(f"{op_name}: layout {layout} (0 or 1)")
    if x.ndim != 3:
        raise NotImplementedError(f"{op_name}: X of rank {x.ndim} (it is [seq, batch, input], or [batch, seq, input] "
                                  "with layout=1)")
    hidden = r.shape[-1]
    if "hidden_size" in attrs and int(attrs["hidden_size"]) != hidden:
        raise NotImplementedError(f"{op_name}: hidden_size={attrs['hidden_size']} but R is for {hidden} units")
    if w.shape[0] != len(backwards) or w.shape[1] != gates * hidden:
        raise NotImplementedError(f"{op_name}: W of shape {list(w.shape)} for direction {direction} and "
                                  f"{hidden} units (it is [{len(backwards)}, {gates * hidden}, input])")
    compute = np.result_type(x.dtype, np.float32)  # float16 runs in float32, float64 stays float64
    if layout == 1:
        x = np.swapaxes(x, 0, 1)
    seq, batch = x.shape[0], x.shape[1]
    b = get(3)
    b = np.zeros((len(backwards), 2 * gates * hidden), compute) if b is None else b.astype(compute)
    lengths = get(4)
    lengths = np.full(batch, seq, np.int64) if lengths is None else np.asarray(lengths, np.int64).reshape(-1)
    if lengths.shape != (batch,) or (lengths < 0).any() or (lengths > seq).any():
        raise NotImplementedError(f"{op_name}: sequence_lens {lengths.tolist()} for a batch of {batch} sequences of "
                                  f"at most {seq} steps")
    h0 = _state(get(5), layout, (len(backwards), batch, hidden), compute)
    clip = attrs.get("clip")
    return _Common(x.astype(compute, copy=False), w.astype(compute, copy=False), r.astype(compute, copy=False), b,
                   lengths, h0, backwards, _activations(op_name, attrs, defaults, len(backwards)),
                   None if clip is None else float(clip), x.dtype, layout)


def _state(value: np.ndarray | None, layout: int, shape: tuple[int, int, int], dtype: np.dtype) -> np.ndarray:
    """An initial state as [dirs, batch, hidden] (zeros when omitted)."""
    if value is None:
        return np.zeros(shape, dtype)
    return (np.swapaxes(value, 0, 1) if layout == 1 else value).astype(dtype)


def _steps(seq: int, backwards: bool) -> range:
    return range(seq - 1, -1, -1) if backwards else range(seq)


def _outputs(c: _Common, ys: list[np.ndarray], finals: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Y [seq, dirs, batch, hidden] and each final state [dirs, batch, hidden], in the node's layout and dtype."""
    y = np.stack(ys, axis=1)
    states = [np.stack(f, axis=0) for f in finals]
    if c.layout == 1:
        y = np.transpose(y, (2, 0, 1, 3))  # [batch, seq, dirs, hidden]
        states = [np.swapaxes(s, 0, 1) for s in states]
    return [a.astype(c.dtype, copy=False) for a in [y, *states]]


def _clipped(c: _Common, x: np.ndarray) -> np.ndarray:
    return x if c.clip is None else np.clip(x, -c.clip, c.clip)


def _run(c: _Common, d: int, initial: tuple[np.ndarray, ...], gates: int,
         cell: Callable[..., tuple[np.ndarray, ...]]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """One direction: the input projections for every step at once, then `cell` step by step. A sequence
    shorter than the tensor keeps its state past its end and its Y there is zero, as ONNX Runtime does."""
    seq, batch = c.x.shape[0], c.x.shape[1]
    hidden = c.r.shape[-1]
    wb, rb = c.b[d, :gates * hidden], c.b[d, gates * hidden:]
    projected = (c.x.reshape(seq * batch, -1) @ c.w[d].T + wb).reshape(seq, batch, -1)
    y = np.zeros((seq, batch, hidden), c.x.dtype)
    states = initial
    for t in _steps(seq, c.directions[d]):
        new = cell(projected[t], states, c.r[d], rb)
        live = (t < c.lengths)[:, None]
        states = tuple(np.where(live, n, s) for n, s in zip(new, states))
        y[t] = np.where(live, new[0], 0)
    empty = (c.lengths == 0)[:, None]  # an empty sequence ends in zero states, not the initial ones
    return y, tuple(np.where(empty, 0, s) for s in states)


def _lstm_cell(c: _Common, d: int, p: np.ndarray, input_forget: bool) -> Callable[..., tuple[np.ndarray, ...]]:
    f, g, h = c.activations[d]
    hidden = c.r.shape[-1]
    p_i, p_o, p_f = p[d, :hidden], p[d, hidden:2 * hidden], p[d, 2 * hidden:]

    def cell(xw: np.ndarray, states: tuple[np.ndarray, ...], r: np.ndarray, rb: np.ndarray):
        h_prev, c_prev = states
        z = xw + h_prev @ r.T + rb
        zi, zo, zf, zc = np.split(z, 4, axis=-1)  # ONNX's gate order: i, o, f, c
        i = f(_clipped(c, zi + p_i * c_prev))
        forget = 1 - i if input_forget else f(_clipped(c, zf + p_f * c_prev))
        c_new = forget * c_prev + i * g(_clipped(c, zc))
        o = f(_clipped(c, zo + p_o * c_new))
        return o * h(c_new), c_new

    return cell


@op("LSTM")
def lstm(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    c = _common("LSTM", inputs, attrs, 4, ["Sigmoid", "Tanh", "Tanh"])
    hidden, dirs = c.r.shape[-1], len(c.directions)
    c0 = _state(inputs[6] if len(inputs) > 6 else None, c.layout, c.h0.shape, c.x.dtype)
    p = inputs[7] if len(inputs) > 7 and inputs[7] is not None else np.zeros((dirs, 3 * hidden))
    p = p.astype(c.x.dtype)
    ys, finals_h, finals_c = [], [], []
    for d in range(dirs):
        y, (h_last, c_last) = _run(c, d, (c.h0[d], c0[d]), 4, _lstm_cell(c, d, p, bool(attrs.get("input_forget", 0))))
        ys.append(y)
        finals_h.append(h_last)
        finals_c.append(c_last)
    return _outputs(c, ys, [finals_h, finals_c])


def _gru_cell(c: _Common, d: int, linear_before_reset: bool) -> Callable[..., tuple[np.ndarray, ...]]:
    f, g = c.activations[d]
    hidden = c.r.shape[-1]

    def cell(xw: np.ndarray, states: tuple[np.ndarray, ...], r: np.ndarray, rb: np.ndarray):
        (h_prev,) = states
        zr = xw[:, :2 * hidden] + h_prev @ r[:2 * hidden].T + rb[:2 * hidden]  # ONNX's gate order: z, r, h
        z, reset = np.split(f(_clipped(c, zr)), 2, axis=-1)
        r_h, rb_h = r[2 * hidden:], rb[2 * hidden:]
        if linear_before_reset:
            pre = xw[:, 2 * hidden:] + reset * (h_prev @ r_h.T + rb_h)
        else:
            pre = xw[:, 2 * hidden:] + (reset * h_prev) @ r_h.T + rb_h
        return ((1 - z) * g(_clipped(c, pre)) + z * h_prev,)

    return cell


@op("GRU")
def gru(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    c = _common("GRU", inputs, attrs, 3, ["Sigmoid", "Tanh"])
    ys, finals = [], []
    for d in range(len(c.directions)):
        y, (h_last,) = _run(c, d, (c.h0[d],), 3, _gru_cell(c, d, bool(attrs.get("linear_before_reset", 0))))
        ys.append(y)
        finals.append(h_last)
    return _outputs(c, ys, [finals])


def _rnn_cell(c: _Common, d: int) -> Callable[..., tuple[np.ndarray, ...]]:
    (f,) = c.activations[d]

    def cell(xw: np.ndarray, states: tuple[np.ndarray, ...], r: np.ndarray, rb: np.ndarray):
        return (f(_clipped(c, xw + states[0] @ r.T + rb)),)

    return cell


@op("RNN")
def rnn(inputs: list[Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    c = _common("RNN", inputs, attrs, 1, ["Tanh"])
    ys, finals = [], []
    for d in range(len(c.directions)):
        y, (h_last,) = _run(c, d, (c.h0[d],), 1, _rnn_cell(c, d))
        ys.append(y)
        finals.append(h_last)
    return _outputs(c, ys, [finals])
