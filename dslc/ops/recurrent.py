"""Ops `rnn`, `lstm`, `gru`: fast-path recurrent layers (torch.nn.RNN/LSTM/GRU, batch-first).

Same facts as the torch modules: parameter names and layouts (`weight_ih_l0`, `weight_hh_l0`,
`bias_ih_l0`, `bias_hh_l0`, `_reverse` for the backward direction; gate rows in torch's order:
LSTM i, f, g, o; GRU r, z, n), initialisation U(-1/sqrt(H), 1/sqrt(H)), dropout between layers
in training. The same recurrences can be written in the language with `scan` (specs/blocks/
rnn.dl); these ops are the configurations that lower to one torch module.

The NumPy kernel projects the inputs of all steps with one matmul per layer and direction, then
runs the recurrent loop over time-major, contiguous step slices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dslc import dims as D
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    fmt_value,
    need_float,
)
from dslc.ops.recurrent_common import dirs, seq_lengths, suffixes
from dslc.ops.recurrent_grad import recurrent_vjp
from dslc.types import TensorType, tensor

# Gate blocks per kind: rows of weight_ih / weight_hh are `GATES * hidden_size`.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TORCH_CLASS = {"rnn": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}


class RecurrentAttrs(Attrs):
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    bias: bool = True


class RNNAttrs(RecurrentAttrs):
    nonlinearity: Literal["tanh", "relu"] = "tanh"


def n_states(kind: str) -> int:
    return 2 if kind == "lstm" else 1


def layer_in(a: RecurrentAttrs, features: int, layer: int) -> int:
    """Input width of a layer: the features for the first, the previous layer's output after."""
    return features if layer == 0 else dirs(a) * a.hidden_size


# ---- shape rule ---------------------------------------------------------------------------


def _check_attrs(a: RecurrentAttrs) -> None:
    if a.hidden_size < 1:
        raise ShapeError("hidden_size must be positive", expected=">= 1",
                         found=str(a.hidden_size), attr="hidden_size")
    if a.num_layers < 1:
        raise ShapeError("num_layers must be positive", expected=">= 1",
                         found=str(a.num_layers), attr="num_layers")
    if not 0.0 <= a.dropout <= 1.0:
        raise ShapeError("dropout probability must lie in [0, 1]", expected="0 <= p <= 1",
                         found=repr(a.dropout), attr="dropout")


def _features(ins: list[TensorType]) -> int:
    try:
        return concrete(ins[0].shape[2], "the input features (last axis of [B, T, F])")
    except ShapeError as exc:
        exc.arg = 0  # the weights' width comes from the sequence: point at it
        raise


def _has_lengths(ins: list[TensorType]) -> bool:
    """Sequence lengths are the optional last input, told apart from the states by dtype."""
    return len(ins) > 1 and not ins[-1].is_float


def make_shape(kind: str):
    def shape(a: RecurrentAttrs, ins: list[TensorType]) -> list[TensorType]:
        _check_attrs(a)
        x = ins[0]
        need_float(x)
        if x.rank != 3:
            raise ShapeError(f"{kind} takes a batch-first sequence [B, T, F]",
                             expected="rank 3 [B, T, F]", found=f"{x} (rank {x.rank})", arg=0)
        _features(ins)
        if _has_lengths(ins):
            n = len(ins) - 1
            lens = ins[-1]
            if lens.dtype not in ("i64", "i32") or lens.rank != 1 or \
                    D.equal(lens.shape[0], x.shape[0]) is not True:
                raise ShapeError("sequence lengths must be an integer vector [B], one length "
                                 "per batch row", expected=f"i64[{D.fmt(x.shape[0])}]",
                                 found=str(lens), arg=n, code="E0302" if lens.rank == 1 and
                                 D.equal(lens.shape[0], x.shape[0]) is True else "E0301")
            states = ins[1:n]
        else:
            states = ins[1:]
        if len(states) not in (0, n_states(kind)):
            raise ShapeError(f"{kind} takes the sequence, then optionally its initial state"
                             + (" and cell (h0, c0)" if kind == "lstm" else " h0")
                             + ", then optionally the lengths [B]",
                             expected="x" + (", h0, c0" if kind == "lstm" else ", h0")
                             + " [, lengths]",
                             found=f"{len(ins)} tensors", arg=len(states))
        state = x.with_shape((D.const(a.num_layers * dirs(a)), x.shape[0],
                              D.const(a.hidden_size)))
        for i, s in enumerate(states, start=1):
            if s.rank == 1 and i == len(states):
                raise ShapeError("sequence lengths must be an integer vector [B] (a float "
                                 "tensor here reads as an initial state)",
                                 expected=f"i64[{D.fmt(x.shape[0])}]", found=str(s), arg=i,
                                 code="E0302")
            need_float(s, arg=i)
            if s.dtype != x.dtype:
                raise ShapeError("the initial state's dtype differs from the input's",
                                 expected=x.dtype, found=str(s), arg=i, code="E0302")
            if s.rank != 3 or any(D.equal(p, q) is False or D.equal(p, q) is None
                                  for p, q in zip(s.shape, state.shape)):
                raise ShapeError("initial state must be [num_layers * directions, B, hidden]",
                                 expected=str(state), found=str(s), arg=i)
        y = x.with_shape((x.shape[0], x.shape[1], D.const(dirs(a) * a.hidden_size)))
        return [y] + [state] * n_states(kind)
    return shape


# ---- parameters and cost ------------------------------------------------------------------


def make_params(kind: str):
    g = GATES[kind]

    def params(a: RecurrentAttrs, ins: list[TensorType]) -> dict[str, ParamSpec]:
        f = _features(ins)
        h = a.hidden_size
        out: dict[str, ParamSpec] = {}
        # torch's state_dict order: per layer, per direction: w_ih, w_hh, b_ih, b_hh. All are
        # drawn from U(-1/sqrt(H), 1/sqrt(H)): torch's fan-in here is the hidden size.
        for layer in range(a.num_layers):
            for s in suffixes(a):
                n_in = layer_in(a, f, layer)
                out[f"weight_ih_l{layer}{s}"] = ParamSpec((D.const(g * h), D.const(n_in)),
                                                          "uniform_fan_in", h)
                out[f"weight_hh_l{layer}{s}"] = ParamSpec((D.const(g * h), D.const(h)),
                                                          "uniform_fan_in", h)
                if a.bias:
                    out[f"bias_ih_l{layer}{s}"] = ParamSpec((D.const(g * h),),
                                                            "uniform_fan_in", h)
                    out[f"bias_hh_l{layer}{s}"] = ParamSpec((D.const(g * h),),
                                                            "uniform_fan_in", h)
        return out
    return params


def make_macs(kind: str):
    g = GATES[kind]

    def macs(a: RecurrentAttrs, ins, outs) -> D.Dim:
        """Per step and direction, the two matmuls: G·H·(in + H) per batch row; times T,
        directions and (summed over) layers. Gate nonlinearities are not MACs."""
        f = _features(ins)
        b, t = ins[0].shape[0], ins[0].shape[1]
        h = a.hidden_size
        per_step = sum(g * h * (layer_in(a, f, layer) + h) for layer in range(a.num_layers))
        return b * t * D.const(dirs(a) * per_step)
    return macs


# ---- NumPy kernel -------------------------------------------------------------------------
#
# Measured on 2 cores (bench/bench_rnn.py): a step is one small matmul W_hh h plus about ten
# elementwise calls on [D, G·H, B] arrays, and NumPy's float32 exp and tanh cost 2.4 and 4 ns
# an element on this class of machine, so the loop makes as few calls on as few elements as
# it can:
# - The rows of every weight are put in "loop order" once per call: LSTM's blocks become
#   i, f, o, g so the three sigmoid blocks are one contiguous row range, and the sigmoid
#   rows are negated (exact), so sigmoid is exp, + 1, reciprocal over that range with no
#   negation; the tanh blocks use np.tanh (the exp form of tanh costs as much in more calls).
# - The input projections come from one GEMM per direction and chunk of steps,
#   [k·B, F] @ [F, G·H], laid out [k, D, G·H, B] (the backward direction's time reversed,
#   biases added in the same pass), so loop step s reads one contiguous slice in both
#   directions. A strided view instead costs a NumPy inner loop per row of B: 12 µs an add
#   against 1.7 at B = 8.
# - Feature-major states [D, H, B]: each gate block is a contiguous row range, W_hh h beats
#   h W_hhᵀ for a small batch (63 against 80 µs at H=256, B=8), and the step's output is
#   written straight into the output buffer, which is the next step's h: no copies.
# - Tried and dropped: one Python thread per layer, pipelined by chunks (the GIL hand-overs
#   and two callers of OpenBLAS cost more than the overlap gains: 28-30 ms against 22-29 ms
#   for the sequential loop); all layers in one wavefront, gate arrays stacked over layers and
#   each layer's input projection in its recurrent GEMM ([W_ih | W_hh] @ [h_below; h]):
#   31.4 ms against 27.6 ms for this kernel, as the bigger per-step GEMMs cost what the
#   fewer calls save.

# Per kind, torch's gate blocks in loop order, and how many of them (leading) are sigmoids.
_LOOP_ORDER = {"rnn": (0,), "lstm": (0, 1, 3, 2), "gru": (0, 1, 2)}
_SIGMOIDS = {"rnn": 0, "lstm": 3, "gru": 2}


def _loop_rows(kind: str, hs: int, w: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Writes w into out (same shape, any dtype) with its gate blocks (first axis) in loop
    order and the sigmoid rows negated; returns out."""
    for j, k in enumerate(_LOOP_ORDER[kind]):
        out[j * hs:(j + 1) * hs] = w[k * hs:(k + 1) * hs]
    out[:_SIGMOIDS[kind] * hs] *= -1
    return out


def _stacked(kind: str, a: RecurrentAttrs, p, name: str, layer: int, dt) -> np.ndarray:
    """Parameter `name` of a layer, both directions stacked on a leading axis, in loop
    order."""
    ws = [p[f"{name}_l{layer}{s}"] for s in suffixes(a)]
    out = np.empty((len(ws),) + ws[0].shape, dt)
    for d, w in enumerate(ws):
        _loop_rows(kind, a.hidden_size, w, out[d])
    return out


def _sigmoid_of_negated(x: np.ndarray, one: np.ndarray) -> None:
    """In place: x holds -z; leaves sigmoid(z) = 1 / (1 + exp(-z)). exp overflows to inf for
    saturated gates, the right limit (1 / inf = 0); callers run under errstate(over=...)."""
    np.exp(x, out=x)
    np.add(x, one, out=x)  # a 0-d array of x's dtype: no scalar conversion (0.4 µs a call)
    np.reciprocal(x, out=x)


# Loop steps whose input projections one GEMM computes: up to 64 steps, and at most 2**20
# elements (4 MB in float32) in the chunk's buffer. The projections of the whole sequence at
# once would be a [T, D, G·H, B] temporary (64 MB at T = 2000, B = 8, H = 256; gigabytes for
# a big batch and hidden size); 64-step chunks keep the GEMM within a few % of its full speed
# (16 steps: 15% slower).
_CHUNK_STEPS = 64
_CHUNK_ELEMENTS = 2 ** 20


def _one_direction(a: np.ndarray | None, axis: int = 0) -> np.ndarray | None:
    """The view of a without its directions axis, for a unidirectional layer: 2-d matmuls
    and ufunc calls cost less per call than on [1, ...] arrays."""
    return None if a is None else a[0] if axis == 0 else a[:, 0]


class _Layer:
    """One layer's recurrence for all its directions at once: the stacked directions form a
    leading axis D, so one batched matmul and one call per elementwise op serve both.
    y [T, B, F] is the layer's input (time order, C-contiguous), w_ih [D, G·H, F], bias
    [D, G·H, 1] (b_ih + b_hh, GRU's b_hn apart) and w_hh [D, G·H, H] the loop-order weights,
    h and c [D, H, B] the initial states (updated in place to the final ones); out
    [T, D, H, B] receives the outputs in loop order (the backward direction's time reversed).
    `valid` [T, D, 1, B] (or None) says which batch rows are inside their sequence at each
    loop step: the others keep their state and output zeros (torch's packed sequences);
    steps before `first_masked` have none. The step methods work on views made once here
    (gate blocks as `...` row ranges), without the D axis when there is one direction."""

    def __init__(self, kind, hs, y, w_ih, bias, w_hh, b_hn, h, c, out, valid, first_masked):
        self.kind, self.hs, self.y = kind, hs, y
        self.w_ih, self.bias_rows = w_ih, bias.transpose(0, 2, 1)  # bias as [D, 1, G·H]
        self.first_masked = first_masked
        nd, gh = w_hh.shape[:2]
        bsz, dt = y.shape[1], y.dtype
        k = max(1, min(_CHUNK_STEPS, y.shape[0], _CHUNK_ELEMENTS // (nd * gh * bsz)))
        self.xp_chunk = np.empty((k, nd, gh, bsz), dt)  # the chunk's projections
        self.gemm_out = np.empty((k * bsz, gh), dt)
        gates = np.empty((nd, gh, bsz), dt)
        tmp = np.empty_like(h)
        if nd == 1:
            w_hh, b_hn, h, c, gates, tmp = (_one_direction(v) for v in
                                            (w_hh, b_hn, h, c, gates, tmp))
            xp, out, valid = (_one_direction(v, axis=1) for v in
                              (self.xp_chunk, out, valid))
        else:
            xp = self.xp_chunk
        self.w_hh, self.b_hn, self.h, self.c = w_hh, b_hn, h, c
        # np.dot skips matmul's gufunc machinery for 2-d operands (2 µs a step); the stacked
        # directions need matmul's batching
        self.product = np.dot if w_hh.ndim == 2 else np.matmul
        self.one = np.ones((), dt)
        self.xp, self.out, self.valid, self.gates, self.tmp = xp, out, valid, gates, tmp
        self.record: tuple[np.ndarray, ...] | None = None  # see make_kernel
        blocks = [gates[..., j * hs:(j + 1) * hs, :] for j in range(gh // hs)]
        if kind == "lstm":  # loop order i, f, o, g
            self.sig, self.i, self.f, self.o, self.g = gates[..., :3 * hs, :], *blocks
        elif kind == "gru":  # r, z, n: hh holds W_hh h, its n block W_hn h
            self.rz, self.r, self.z, self.hh_n = gates[..., :2 * hs, :], *blocks

    def _project(self, s0: int, s1: int) -> None:
        """The input projections of loop steps s0 .. s1-1 in both directions into the chunk
        buffer: one GEMM [k·B, F] @ [F, G·H] each, the bias added while transposing to
        feature-major (one pass either way)."""
        steps, bsz, f = self.y.shape
        k = s1 - s0
        for d in range(self.w_ih.shape[0]):
            rows = self.y[s0:s1] if d == 0 else self.y[steps - s1:steps - s0]
            p = np.matmul(rows.reshape(k * bsz, f), self.w_ih[d].T, out=self.gemm_out[:k * bsz])
            p = p.reshape(k, bsz, -1)
            if d == 1:
                p = p[::-1]  # the backward direction walks time backwards
            # Written through a transposed view of the buffer, so NumPy's inner loop runs
            # along G·H (1,024 long) rather than B (8): 104 against 182 µs a 16-step chunk.
            np.add(p, self.bias_rows[d], out=self.xp_chunk[:k, d].transpose(0, 2, 1))

    def _xp(self, s: int) -> np.ndarray:
        """Loop step s's input projections [D, G·H, B], computing the next chunk when due."""
        k = self.xp.shape[0]
        if s % k == 0:
            self._project(s, min(s + k, self.y.shape[0]))
        return self.xp[s % k]

    def run(self, relu: bool = False) -> None:
        step = {"lstm": self._lstm, "gru": self._gru}.get(self.kind, self._rnn)
        steps, out = self.y.shape[0], self.out
        h, c = self.h, self.c
        with np.errstate(over="ignore"):
            # Unmasked steps: the new state goes straight into the output, which is the
            # next step's h; c is updated in place.
            rec = self.record
            for s in range(min(self.first_masked, steps)):
                h = step(self._xp(s), h, c, out[s], c, relu)
                if rec is not None:  # for the vjp: the step's gates, c and tanh(c)
                    np.copyto(rec[0][s], self.gates)
                    np.copyto(rec[1][s], c)
                    np.copyto(rec[2][s], self.tmp)
            self.h[...] = h
            if self.first_masked >= steps:
                return
            h_new, c_new = np.empty_like(h), None if c is None else np.empty_like(c)
            for s in range(self.first_masked, steps):
                step(self._xp(s), self.h, c, h_new, c_new, relu)
                m = self.valid[s]
                np.multiply(h_new, m, out=out[s])
                np.copyto(self.h, h_new, where=m)
                if c is not None:
                    np.copyto(c, c_new, where=m)

    def _lstm(self, xp, h, c, h_out, c_out, relu) -> np.ndarray:
        gates, tmp = self.gates, self.tmp
        self.product(self.w_hh, h, out=gates)
        gates += xp
        _sigmoid_of_negated(self.sig, self.one)  # i, f, o
        np.tanh(self.g, out=self.g)
        np.multiply(self.i, self.g, out=tmp)
        np.multiply(self.f, c, out=c_out)
        c_out += tmp
        np.tanh(c_out, out=tmp)
        np.multiply(self.o, tmp, out=h_out)
        return h_out

    def _gru(self, x_s, h, c, h_out, c_out, relu) -> np.ndarray:
        hs, n = self.hs, self.tmp
        self.product(self.w_hh, h, out=self.gates)
        if self.b_hn is not None:
            self.hh_n += self.b_hn  # b_hn sits inside the reset gate's product
        self.rz += x_s[..., :2 * hs, :]
        _sigmoid_of_negated(self.rz, self.one)
        np.multiply(self.r, self.hh_n, out=n)  # r (W_hn h + b_hn)
        n += x_s[..., 2 * hs:, :]
        np.tanh(n, out=n)
        # h' = (1 - z) n + z h = n + z (h - n)
        np.subtract(h, n, out=h_out)
        h_out *= self.z
        h_out += n
        return h_out

    def _rnn(self, xp, h, c, h_out, c_out, relu) -> np.ndarray:
        self.product(self.w_hh, h, out=h_out)
        h_out += xp
        if relu:
            np.maximum(h_out, 0, out=h_out)
        else:
            np.tanh(h_out, out=h_out)
        return h_out


def _input_weights(kind: str, a: RecurrentAttrs, p, layer: int,
                   dt) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A layer's w_ih [D, G·H, F] and bias [D, G·H, 1] (b_ih + b_hh) in loop order, and GRU's
    b_hn [D, H, 1], which sits inside the reset gate's product (None without biases)."""
    hs, nd = a.hidden_size, dirs(a)
    w_ih = _stacked(kind, a, p, "weight_ih", layer, dt)
    if not a.bias:
        return w_ih, np.zeros((nd, GATES[kind] * hs, 1), dt), None
    bias = _stacked(kind, a, p, "bias_ih", layer, dt)[:, :, None]
    b_hh = _stacked(kind, a, p, "bias_hh", layer, dt)[:, :, None]
    if kind != "gru":
        return w_ih, bias + b_hh, None
    bias[:, :2 * hs] += b_hh[:, :2 * hs]
    return w_ih, bias, np.ascontiguousarray(b_hh[:, 2 * hs:])


def _time_order(out: np.ndarray) -> np.ndarray:
    """A layer's outputs [T, D, H, B] in loop order as [T, B, D·H] in time order."""
    steps, nd, hs, bsz = out.shape
    y = np.empty((steps, bsz, nd, hs), out.dtype)
    y[:, :, 0] = out[:, 0].transpose(0, 2, 1)
    if nd == 2:
        y[:, :, 1] = out[::-1, 1].transpose(0, 2, 1)
    return y.reshape(steps, bsz, nd * hs)


def make_kernel(kind: str):
    def kernel(a: RecurrentAttrs, xs: list[np.ndarray], ctx) -> list[np.ndarray]:
        x = xs[0]
        dt = x.dtype
        bsz, steps, _ = x.shape
        hs, nd = a.hidden_size, dirs(a)
        lengths = seq_lengths(xs, x)
        inits = xs[1:len(xs) - (lengths is not None)]
        h0 = inits[0] if inits else np.zeros((a.num_layers * nd, bsz, hs), dt)
        c0 = inits[1] if len(inits) > 1 else np.zeros_like(h0)
        valid, first_masked = None, steps
        if lengths is not None:
            t = np.arange(steps)[:, None]
            per_dir = [t < lengths, t[::-1] < lengths][:nd]  # loop step -> time per direction
            valid = np.stack(per_dir, axis=1)[:, :, None, :]  # [T, D, 1, B]
            first_masked = int(lengths.min()) if nd == 1 else 0
            if nd == 2 and lengths.min() == steps:
                first_masked = steps
        relu = getattr(a, "nonlinearity", "tanh") == "relu"
        y = np.swapaxes(x, 0, 1)  # [T, B, F], time order
        h_n, c_n = [], []
        for layer in range(a.num_layers):
            w_ih, bias, b_hn = _input_weights(kind, a, ctx.params, layer, dt)
            w_hh = _stacked(kind, a, ctx.params, "weight_hh", layer, dt)
            ks = slice(layer * nd, (layer + 1) * nd)
            # Copies, always: the loop updates them in place, and an initial state laid out
            # [H, B]-contiguous (another lstm's final state) would otherwise be overwritten
            h = np.array(h0[ks].transpose(0, 2, 1), dtype=dt, order="C", copy=True)
            c = np.array(c0[ks].transpose(0, 2, 1), dtype=dt, order="C", copy=True) \
                if kind == "lstm" else None
            out = np.empty((steps, nd, hs, bsz), dt)
            y = np.ascontiguousarray(y)
            run = _Layer(kind, hs, y, w_ih, bias, w_hh, b_hn, h, c, out, valid, first_masked)
            if ctx.grad and kind == "lstm" and lengths is None:
                # The vjp (ops/recurrent_grad.py) walks the steps back from these instead of
                # running the layer again: the layer's input, and per loop step the gates
                # (loop order i, f, o, g), c and tanh(c), feature-major as computed.
                run.record = tuple(np.empty((steps,) + v.shape, dt)
                                   for v in (run.gates, run.c, run.tmp))
                ctx.saved[f"lstm_l{layer}"] = (y, h.copy(), c.copy(), *run.record, out)
            run.run(relu)
            h_n.append(h.transpose(0, 2, 1))
            if c is not None:
                c_n.append(c.transpose(0, 2, 1))
            y = _time_order(out)
            if ctx.train and a.dropout > 0 and layer < a.num_layers - 1:
                # torch applies dropout to every layer's output but the last, in training.
                if a.dropout >= 1.0:
                    y = np.zeros_like(y)
                    ctx.saved[f"dropout_l{layer}"] = np.zeros((bsz, steps, 1), dt)
                else:
                    keep = ctx.rng.random(y.shape) >= a.dropout
                    y = np.where(keep, y * dt.type(1.0 / (1.0 - a.dropout)),
                                 dt.type(0)).astype(dt)
                    # the vjp's mask, batch-first like its layer inputs
                    ctx.saved[f"dropout_l{layer}"] = np.swapaxes(
                        keep * dt.type(1.0 / (1.0 - a.dropout)), 0, 1)
        res = [np.ascontiguousarray(y.transpose(1, 0, 2)),
               np.concatenate(h_n).astype(dt, copy=False)]
        if kind == "lstm":
            res.append(np.concatenate(c_n).astype(dt, copy=False))
        return res
    return kernel


# ---- PyTorch ------------------------------------------------------------------------------


def make_module(kind: str):
    def module(a: RecurrentAttrs, ins: list[TensorType]) -> str:
        args = [str(_features(ins)), str(a.hidden_size)]
        if a.num_layers != 1:
            args.append(f"num_layers={a.num_layers}")
        if kind == "rnn" and a.nonlinearity != "tanh":
            args.append(f"nonlinearity={fmt_value(a.nonlinearity)}")
        if not a.bias:
            args.append("bias=False")
        args.append("batch_first=True")
        if a.dropout:
            args.append(f"dropout={fmt_value(a.dropout)}")
        if a.bidirectional:
            args.append("bidirectional=True")
        return f"{TORCH_CLASS[kind]}({', '.join(args)})"
    return module


def _call(a, args: list[str], ctx, ins) -> str:
    """rnn / gru: the module returns (output, h_n), which unpacks into the two targets."""
    return f"{ctx.module}({', '.join(args)})"


def _stmts(a, args: list[str], ctx, ins, targets: list[str]) -> list[str]:
    """The module call; nn.LSTM returns (output, (h_n, c_n)), the others (output, h_n).
    With lengths, the batch is packed (torch sorts it and puts h_n back in batch order) and
    the output padded back to T steps with zeros."""
    lengths = args[-1] if _has_lengths(ins) else None
    x, states = args[0], args[1:len(args) - (lengths is not None)]
    y = targets[0]
    if lengths is not None:
        packed = f"_{y}_packed"
        lines = [f"{packed} = nn.utils.rnn.pack_padded_sequence({x}, {lengths}.cpu(), "
                 "batch_first=True, enforce_sorted=False)"]
        x, y = packed, f"_{y}_out"
    else:
        lines = []
    call = ", ".join([x] + ([f"({', '.join(states)})"] if len(states) > 1 else states))
    rest = f"({targets[1]}, {targets[2]})" if len(targets) == 3 else targets[1]
    lines.append(f"{y}, {rest} = {ctx.module}({call})")
    if lengths is not None:
        lines.append(f"{targets[0]}, _ = nn.utils.rnn.pad_packed_sequence({y}, "
                     f"batch_first=True, total_length={args[0]}.shape[1])")
    return lines


def make_label(kind: str):
    def label(a: RecurrentAttrs) -> str:
        parts = [str(a.hidden_size)]
        if a.num_layers > 1:
            parts.append(f"{a.num_layers} layers")
        if a.bidirectional:
            parts.append("bidirectional")
        if kind == "rnn" and a.nonlinearity != "tanh":
            parts.append(a.nonlinearity)
        if a.dropout:
            parts.append(f"dropout {a.dropout:g}")
        return ", ".join(parts)
    return label


def _examples(kind: str, extra: dict | None = None) -> tuple[Example, ...]:
    k = n_states(kind)
    return (
        Example({"hidden_size": 5}, (tensor("f32", 2, 4, 3),)),
        Example({"hidden_size": 4, "num_layers": 2, "bidirectional": True, **(extra or {})},
                (tensor("f32", D.symbol("B"), D.symbol("T"), 6),)),
        Example({"hidden_size": 3, "num_layers": 3, "bias": False},
                (tensor("f32", 2, 5, 4),) + (tensor("f32", 3, 2, 3),) * k),
        Example({"hidden_size": 4, "bidirectional": True},
                (tensor("f32", 3, 6, 2),) + (tensor("f32", 2, 3, 4),) * k),
    )


def _lstm_kept(a: RecurrentAttrs, ins: list[TensorType]) -> D.Dim:
    """What the LSTM kernel records for its vjp per layer (make_kernel; nothing with sequence
    lengths): the layer's input [T, B, F], the initial h and c, and per step the gates, c,
    tanh(c) and the outputs ([T, D, 4H + 3H, B])."""
    if len(ins) >= 2 and not ins[-1].is_float:
        return D.const(0)
    bsz, steps, feats = ins[0].shape
    nd, hs = dirs(a), a.hidden_size
    total = D.const(0)
    for layer in range(a.num_layers):
        width = feats if layer == 0 else nd * hs
        total += steps * bsz * (D.as_dim(width) + 7 * nd * hs) + 2 * nd * hs * bsz
    return total


def make_op(kind: str, doc: str, attrs: type[RecurrentAttrs],
            extra: dict | None = None) -> Op:
    k = n_states(kind)
    return Op(
        name=kind,
        family="rnn",
        doc=doc,
        attrs=attrs,
        positional=("hidden_size",),
        min_inputs=1,
        max_inputs=2 + k,  # x, the initial states, the lengths
        shape=make_shape(kind),
        params=make_params(kind),
        macs=make_macs(kind),
        numpy=make_kernel(kind),
        vjp=recurrent_vjp(kind),
        vjp_keeps=(lambda a, ins, outs: _lstm_kept(a, ins)) if kind == "lstm" else None,
        torch_module=make_module(kind),
        torch_call=_call,
        torch_stmts=_stmts,
        label=make_label(kind),
        module_prefix=kind,
        n_outputs=lambda a: 1 + k,
        random=True,  # dropout between layers, in training
        examples=_examples(kind, extra),
    )


_COMMON = ("Input [B, T, F] (batch-first), optional initial state{s} [layers·dirs, B, H], "
           "optional sequence lengths i64[B] last (back-padded batches: steps past a row's "
           "length keep its state and output zeros, as torch's packed sequences); "
           "outputs y [B, T, dirs·H] and the final state{s} [layers·dirs, B, H]. "
           "Attributes as torch: num_layers, bidirectional, dropout (between layers, "
           "training only), bias. ")

RNN = make_op(
    "rnn",
    "Elman recurrent layer, hₜ = act(W_ih xₜ + b_ih + W_hh hₜ₋₁ + b_hh), act tanh or relu "
    "(torch.nn.RNN): `y, h = x -> rnn(hidden_size, nonlinearity=\"tanh\")`. "
    + _COMMON.format(s=" h0"),
    RNNAttrs, {"nonlinearity": "relu"})

LSTM = make_op(
    "lstm",
    "Long short-term memory layer, gates i, f, g, o as torch.nn.LSTM: "
    "`y, h, c = x -> lstm(hidden_size)`; initial states as `lstm(x, h0, c0, hidden_size)`. "
    + _COMMON.format(s="s (h, c)"),
    RecurrentAttrs)

GRU = make_op(
    "gru",
    "Gated recurrent unit layer, gates r, z, n as torch.nn.GRU (the reset gate scales "
    "W_hn hₜ₋₁ + b_hn; hₜ = (1 - z) n + z hₜ₋₁): `y, h = x -> gru(hidden_size)`. "
    + _COMMON.format(s=" h0"),
    RecurrentAttrs)

RECURRENT_OPS = (RNN, LSTM, GRU)
