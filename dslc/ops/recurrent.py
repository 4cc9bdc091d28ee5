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


def make_shape(kind: str):
    def shape(a: RecurrentAttrs, ins: list[TensorType]) -> list[TensorType]:
        _check_attrs(a)
        x = ins[0]
        need_float(x)
        if x.rank != 3:
            raise ShapeError(f"{kind} takes a batch-first sequence [B, T, F]",
                             expected="rank 3 [B, T, F]", found=f"{x} (rank {x.rank})", arg=0)
        _features(ins)
        if len(ins) not in (1, 1 + n_states(kind)):
            raise ShapeError(f"{kind} takes the sequence, then optionally its initial state"
                             + (" and cell (h0, c0)" if kind == "lstm" else " h0"),
                             expected="x" + (", h0, c0" if kind == "lstm" else ", h0"),
                             found=f"{len(ins)} tensors", arg=len(ins) - 1)
        state = x.with_shape((D.const(a.num_layers * dirs(a)), x.shape[0],
                              D.const(a.hidden_size)))
        for i, s in enumerate(ins[1:], start=1):
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


def _sigmoid_via_tanh(rows: np.ndarray) -> None:
    """In place: rows already hold x/2 (the weights were pre-halved), so
    sigmoid(x) = tanh(x/2)/2 + 1/2: one tanh instead of an exp and a divide."""
    np.tanh(rows, out=rows)
    rows *= 0.5
    rows += 0.5


def _run_direction(kind: str, a, xp: np.ndarray, w_hh: np.ndarray, b_hh: np.ndarray | None,
                   h: np.ndarray, c: np.ndarray | None, out: np.ndarray, reverse: bool):
    """One layer, one direction, feature-major: xp [T, G*H, B] input projections (biases
    folded in where torch adds them outside the reset gate), h and c [H, B], out [T, H, B]
    filled in time order. Feature-major makes each gate block a contiguous row range, and
    W_hh @ h beats h @ W_hhᵀ for a small batch."""
    steps = xp.shape[0]
    hs = a.hidden_size
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    gates = np.empty_like(xp[0])
    if kind == "lstm":
        ifo = (gates[:2 * hs], gates[3 * hs:])
        i, f = gates[:hs], gates[hs:2 * hs]
        g, o = gates[2 * hs:3 * hs], gates[3 * hs:]
        for t in order:
            np.matmul(w_hh, h, out=gates)
            gates += xp[t]
            # i, f, o rows were pre-halved, so one tanh over all four gate blocks serves the
            # three sigmoids (tanh(x/2)/2 + 1/2) and the candidate g.
            np.tanh(gates, out=gates)
            for part in ifo:
                part *= 0.5
                part += 0.5
            c = f * c
            c += i * g
            h = np.tanh(c)
            h *= o
            out[t] = h
        return h, c
    if kind == "gru":
        hh = np.empty_like(gates)
        rz, hh_rz, hh_n = gates[:2 * hs], hh[:2 * hs], hh[2 * hs:]
        r, z = gates[:hs], gates[hs:2 * hs]
        for t in order:
            np.matmul(w_hh, h, out=hh)
            if b_hh is not None:
                hh += b_hh
            x_t = xp[t]
            np.add(x_t[:2 * hs], hh_rz, out=rz)
            _sigmoid_via_tanh(rz)
            n = r * hh_n
            n += x_t[2 * hs:]
            np.tanh(n, out=n)
            # h' = (1 - z) n + z h = n + z (h - n)
            h = h - n
            h *= z
            h += n
            out[t] = h
        return h, None
    relu = getattr(a, "nonlinearity", "tanh") == "relu"
    for t in order:
        h = np.matmul(w_hh, h)
        h += xp[t]
        if relu:
            np.maximum(h, 0, out=h)
        else:
            np.tanh(h, out=h)
        out[t] = h
    return h, None


def _halve_sigmoid_rows(kind: str, w: np.ndarray, hs: int) -> np.ndarray:
    """A copy with the sigmoid gates' rows (first axis blocks) halved; see _sigmoid_via_tanh.
    Halving is exact in binary floating point, so the result equals torch's to rounding."""
    w = np.array(w, order="C")
    if kind == "lstm":
        w[:2 * hs] *= 0.5
        w[3 * hs:] *= 0.5
    elif kind == "gru":
        w[:2 * hs] *= 0.5
    return w


def make_kernel(kind: str):
    def kernel(a: RecurrentAttrs, xs: list[np.ndarray], ctx) -> list[np.ndarray]:
        x = xs[0]
        dt = x.dtype
        bsz, steps, _ = x.shape
        hs, nd = a.hidden_size, dirs(a)
        p = ctx.params
        inits = xs[1:]
        h0 = inits[0] if inits else np.zeros((a.num_layers * nd, bsz, hs), dt)
        c0 = inits[1] if len(inits) > 1 else np.zeros_like(h0)
        layer_x = np.swapaxes(x, 0, 1).reshape(steps * bsz, -1)  # [T*B, F], time-major
        h_n, c_n = [], []
        for layer in range(a.num_layers):
            outs = np.empty((steps, nd * hs, bsz), dt)  # feature-major, see _run_direction
            for d, s in enumerate(suffixes(a)):
                w_ih = _halve_sigmoid_rows(kind, p[f"weight_ih_l{layer}{s}"].astype(dt), hs)
                w_hh = _halve_sigmoid_rows(kind, p[f"weight_hh_l{layer}{s}"].astype(dt), hs)
                # All steps' input projections with one 2-D GEMM: [T*B, F] @ [F, G*H].
                xp = np.matmul(layer_x, w_ih.T)
                b_hh = None
                if a.bias:
                    b_ih = _halve_sigmoid_rows(kind, p[f"bias_ih_l{layer}{s}"].astype(dt), hs)
                    b_hh = _halve_sigmoid_rows(kind, p[f"bias_hh_l{layer}{s}"].astype(dt), hs)
                    xp += b_ih
                    if kind != "gru":  # GRU's b_hn sits inside the reset gate's product
                        xp += b_hh
                        b_hh = None
                    else:
                        b_hh = b_hh[:, None]
                xp = np.ascontiguousarray(xp.reshape(steps, bsz, -1).transpose(0, 2, 1))
                k = layer * nd + d
                h, c = _run_direction(kind, a, xp, w_hh, b_hh, h0[k].T.astype(dt),
                                      c0[k].T.astype(dt) if kind == "lstm" else None,
                                      outs[:, d * hs:(d + 1) * hs], reverse=d == 1)
                h_n.append(h.T)
                c_n.append(None if c is None else c.T)
            if ctx.train and a.dropout > 0 and layer < a.num_layers - 1:
                # torch applies dropout to every layer's output but the last, in training.
                if a.dropout >= 1.0:
                    outs = np.zeros_like(outs)
                else:
                    keep = ctx.rng.random(outs.shape) >= a.dropout
                    outs = np.where(keep, outs * dt.type(1.0 / (1.0 - a.dropout)),
                                    dt.type(0)).astype(dt)
            layer_out = outs
            layer_x = outs.transpose(0, 2, 1).reshape(steps * bsz, -1)
        y = np.ascontiguousarray(layer_out.transpose(2, 0, 1))  # [T, F, B] -> [B, T, F]
        res = [y, np.stack(h_n).astype(dt)]
        if kind == "lstm":
            res.append(np.stack(c_n).astype(dt))
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


def _lstm_stmts(a, args: list[str], ctx, ins, targets: list[str]) -> list[str]:
    """nn.LSTM returns (output, (h_n, c_n)): a statement unpacks the nested pair."""
    call = args[0] if len(args) == 1 else f"{args[0]}, ({args[1]}, {args[2]})"
    y, h, c = targets
    return [f"{y}, ({h}, {c}) = {ctx.module}({call})"]


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
        max_inputs=1 + k,
        shape=make_shape(kind),
        params=make_params(kind),
        macs=make_macs(kind),
        numpy=make_kernel(kind),
        torch_module=make_module(kind),
        torch_call=_call,
        torch_stmts=_lstm_stmts if kind == "lstm" else None,
        label=make_label(kind),
        module_prefix=kind,
        n_outputs=lambda a: 1 + k,
        random=True,  # dropout between layers, in training
        examples=_examples(kind, extra),
    )


_COMMON = ("Input [B, T, F] (batch-first), optional initial state{s} [layers·dirs, B, H]; "
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
