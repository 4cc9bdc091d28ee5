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


def dirs(a: RecurrentAttrs) -> int:
    return 2 if a.bidirectional else 1


def n_states(kind: str) -> int:
    return 2 if kind == "lstm" else 1


def layer_in(a: RecurrentAttrs, features: int, layer: int) -> int:
    """Input width of a layer: the features for the first, the previous layer's output after."""
    return features if layer == 0 else dirs(a) * a.hidden_size


def suffixes(a: RecurrentAttrs) -> tuple[str, ...]:
    return ("", "_reverse") if a.bidirectional else ("",)


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
# Gate nonlinearities use one exp each: sigmoid(x) = 1 / (1 + exp(-x)) and
# tanh(x) = 2 / (1 + exp(-2x)) - 1. The factors -1 and -2 are folded into the weights and
# biases beforehand (exact in binary floating point), so a step's gates are
# exp(W h + xp), + 1, reciprocal: three array calls over all gate blocks at once, where
# np.tanh on float32 costs about twice np.exp. exp overflows to inf for saturated gates, which
# gives the right limit (1 / inf = 0); the loop runs under errstate(over="ignore").

# Per kind, the scale folded into each gate block (torch's row order).
_SCALE = {"lstm": (-1.0, -1.0, -2.0, -1.0), "gru": (-1.0, -1.0, -2.0)}


def _scale_rows(kind: str, a, w: np.ndarray, dt) -> np.ndarray:
    """A C-contiguous copy in dtype dt with each gate block's rows (first axis) multiplied by
    its scale."""
    hs = a.hidden_size
    w = np.array(w, dtype=dt, order="C")
    if kind == "rnn":
        if getattr(a, "nonlinearity", "tanh") == "tanh":
            w *= -2.0
        return w
    for k, s in enumerate(_SCALE[kind]):
        w[k * hs:(k + 1) * hs] *= s
    return w


def _gates_exp(g: np.ndarray) -> None:
    """In place: g holds -x (sigmoid rows) or -2x (tanh rows); leaves 1 / (1 + exp(g))."""
    np.exp(g, out=g)
    g += 1.0
    np.reciprocal(g, out=g)


class _Layer:
    """One layer's recurrence for all its directions at once, feature-major: the stacked
    directions form a leading axis D, so one batched matmul and one call per elementwise op
    serve both directions. xp [T, D, G*H, B] holds the input projections in loop order (the
    backward direction's time already reversed), h and c [D, H, B] the states, out
    [T, D, H, B] receives the outputs in loop order. `valid` [T, D, 1, B] (or None) says which
    batch rows are inside their sequence at each loop step: the others keep their state and
    output zeros (torch's packed sequences). Feature-major makes each gate block a contiguous
    row range, and W_hh @ h beats h @ W_hhᵀ for a small batch."""

    def __init__(self, kind, a, xp, w_hh, b_hn, h, c, out, valid, first_masked):
        self.kind, self.a = kind, a
        self.xp, self.w_hh, self.b_hn = xp, w_hh, b_hn
        self.h, self.c, self.out = h, c, out
        self.valid, self.first_masked = valid, first_masked

    def run(self) -> None:
        with np.errstate(over="ignore"):
            getattr(self, "_" + self.kind)()

    def _commit(self, s: int, new: np.ndarray, state: np.ndarray) -> None:
        """The output of loop step s and the state update, masked past each sequence's end."""
        if s < self.first_masked:
            state[...] = new
            self.out[s] = new
            return
        m = self.valid[s]
        np.multiply(new, m, out=self.out[s])
        np.copyto(state, new, where=m)

    def _lstm(self) -> None:
        xp, w_hh, h, c = self.xp, self.w_hh, self.h, self.c
        hs = self.a.hidden_size
        gates = np.empty_like(xp[0])
        i, f = gates[:, :hs], gates[:, hs:2 * hs]
        g, o = gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
        c_new, tmp, h_new = np.empty_like(c), np.empty_like(c), np.empty_like(h)
        masked = self.valid is not None
        for s in range(xp.shape[0]):
            np.matmul(w_hh, h, out=gates)
            gates += xp[s]
            _gates_exp(gates)  # i, f, o = sigmoid; g holds (tanh + 1) / 2
            g *= 2.0
            g -= 1.0
            np.multiply(i, g, out=tmp)
            np.multiply(f, c, out=c_new)
            c_new += tmp
            # h = o tanh(c) = o (1 - 2 / (1 + exp(2c)))
            np.multiply(c_new, 2.0, out=tmp)
            _gates_exp(tmp)
            tmp *= -2.0
            tmp += 1.0
            np.multiply(o, tmp, out=h_new)
            if masked and s >= self.first_masked:
                np.copyto(c, c_new, where=self.valid[s])
            else:
                c, c_new = c_new, c
            self._commit(s, h_new, h)
        self.c[...] = c

    def _gru(self) -> None:
        xp, w_hh, h = self.xp, self.w_hh, self.h
        hs = self.a.hidden_size
        hh = np.empty_like(xp[0])
        rz = np.empty_like(hh[:, :2 * hs])
        r, z = rz[:, :hs], rz[:, hs:]
        hh_rz, hh_n = hh[:, :2 * hs], hh[:, 2 * hs:]
        n, h_new = np.empty_like(h), np.empty_like(h)
        for s in range(xp.shape[0]):
            np.matmul(w_hh, h, out=hh)
            if self.b_hn is not None:
                hh_n += self.b_hn  # b_hn sits inside the reset gate's product
            x_s = xp[s]
            np.add(x_s[:, :2 * hs], hh_rz, out=rz)
            _gates_exp(rz)
            np.multiply(r, hh_n, out=n)
            n += x_s[:, 2 * hs:]
            _gates_exp(n)  # (tanh + 1) / 2
            n *= 2.0
            n -= 1.0
            # h' = (1 - z) n + z h = n + z (h - n)
            np.subtract(h, n, out=h_new)
            h_new *= z
            h_new += n
            self._commit(s, h_new, h)

    def _rnn(self) -> None:
        xp, w_hh, h = self.xp, self.w_hh, self.h
        relu = getattr(self.a, "nonlinearity", "tanh") == "relu"
        h_new = np.empty_like(h)
        for s in range(xp.shape[0]):
            np.matmul(w_hh, h, out=h_new)
            h_new += xp[s]
            if relu:
                np.maximum(h_new, 0, out=h_new)
            else:
                _gates_exp(h_new)
                h_new *= 2.0
                h_new -= 1.0
            self._commit(s, h_new, h)


def _lengths(ins, x: np.ndarray) -> np.ndarray | None:
    """The batch's sequence lengths (an integer last input), checked as torch checks them."""
    if len(ins) < 2 or not np.issubdtype(ins[-1].dtype, np.integer):
        return None
    lengths = np.asarray(ins[-1]).astype(np.int64)
    steps = x.shape[1]
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        raise ValueError(f"sequence lengths must lie in [1, T = {steps}] (torch's packed "
                         f"sequences take no empty sequence); found {lengths.tolist()}")
    return lengths


def make_kernel(kind: str):
    def kernel(a: RecurrentAttrs, xs: list[np.ndarray], ctx) -> list[np.ndarray]:
        x = xs[0]
        dt = x.dtype
        bsz, steps, _ = x.shape
        hs, nd, g = a.hidden_size, dirs(a), GATES[kind]
        p = ctx.params
        lengths = _lengths(xs, x)
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
        layer_x = np.swapaxes(x, 0, 1).reshape(steps * bsz, -1)  # [T*B, F], time-major
        h_n, c_n = [], []
        def scaled(name: str, layer: int, sfx: str) -> np.ndarray:
            return _scale_rows(kind, a, p[f"{name}_l{layer}{sfx}"], dt)

        for layer in range(a.num_layers):
            sfx = suffixes(a)
            w_ih = np.concatenate([scaled("weight_ih", layer, s)
                                   for s in sfx])
            # All steps' input projections, both directions, with one GEMM: [T*B, F] @ [F, D*G*H].
            proj = np.matmul(layer_x, w_ih.T).reshape(steps, bsz, nd, g * hs)
            b_hn = None
            if a.bias:
                b_ih = np.stack([scaled("bias_ih", layer, s)
                                 for s in sfx])
                b_hh = np.stack([scaled("bias_hh", layer, s)
                                 for s in sfx])
                if kind == "gru":  # GRU's b_hn sits inside the reset gate's product
                    b_ih[:, :2 * hs] += b_hh[:, :2 * hs]
                    b_hn = np.ascontiguousarray(b_hh[:, 2 * hs:, None])
                else:
                    b_ih += b_hh
                proj += b_ih
            xp = np.empty((steps, nd, g * hs, bsz), dt)
            xp[:, 0] = proj[:, :, 0].transpose(0, 2, 1)
            if nd == 2:
                xp[:, 1] = proj[::-1, :, 1].transpose(0, 2, 1)  # the loop walks time backwards
            w_hh = np.stack([scaled("weight_hh", layer, s)
                             for s in sfx])
            ks = slice(layer * nd, (layer + 1) * nd)
            h = np.ascontiguousarray(h0[ks].transpose(0, 2, 1), dtype=dt)
            c = np.ascontiguousarray(c0[ks].transpose(0, 2, 1), dtype=dt) \
                if kind == "lstm" else None
            out = np.empty((steps, nd, hs, bsz), dt)
            _Layer(kind, a, xp, w_hh, b_hn, h, c, out, valid, first_masked).run()
            h_n.append(h.transpose(0, 2, 1))
            if c is not None:
                c_n.append(c.transpose(0, 2, 1))
            # [T, D, H, B] in loop order -> [T, B, D*H] in time order
            y = np.empty((steps, bsz, nd, hs), dt)
            y[:, :, 0] = out[:, 0].transpose(0, 2, 1)
            if nd == 2:
                y[:, :, 1] = out[::-1, 1].transpose(0, 2, 1)
            y = y.reshape(steps, bsz, nd * hs)
            if ctx.train and a.dropout > 0 and layer < a.num_layers - 1:
                # torch applies dropout to every layer's output but the last, in training.
                if a.dropout >= 1.0:
                    y = np.zeros_like(y)
                else:
                    keep = ctx.rng.random(y.shape) >= a.dropout
                    y = np.where(keep, y * dt.type(1.0 / (1.0 - a.dropout)),
                                 dt.type(0)).astype(dt)
            layer_x = y.reshape(steps * bsz, -1)
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
