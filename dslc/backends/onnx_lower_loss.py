"""ONNX lowerings of the losses: computed in float64 as the NumPy kernels do (Cast in, Cast out),
with torch's reductions (none, sum, mean, batchmean) and ignore_index."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from dslc.backends.onnx_builder import Lower
from dslc.backends.onnx_lower_core import reduce


def _f64(lw: Lower, x: str, arg: int) -> str:
    return x if lw.in_types[arg].dtype == "f64" else lw.op("Cast", [x], to=TensorProto.DOUBLE)


def _d(lw: Lower, value: float) -> str:
    return lw.scalar(value, "f64")


def _finish(lw: Lower, loss: str, rank: int, batch=None) -> str:
    """Reduce a float64 loss as `reduction` says and cast it to the input's dtype."""
    how = lw.attrs.reduction
    if how != "none" and rank > 0:
        axes = list(range(rank))
        loss = reduce(lw, "ReduceSum" if how in ("sum", "batchmean") else "ReduceMean", loss,
                      axes, False)
        if how == "batchmean":
            n = lw.op("Cast", [lw.squeeze(lw.dim(batch), [0])], to=TensorProto.DOUBLE)
            loss = lw.op("Div", [loss, n])
    return lw.cast(loss, lw.out_types[0].dtype)


def _mse(lw: Lower, node, ins):
    d = lw.op("Sub", [_f64(lw, ins[0], 0), _f64(lw, ins[1], 1)])
    return [_finish(lw, lw.op("Mul", [d, d]), lw.in_types[0].rank)]


def _l1(lw: Lower, node, ins):
    d = lw.op("Sub", [_f64(lw, ins[0], 0), _f64(lw, ins[1], 1)])
    return [_finish(lw, lw.op("Abs", [d]), lw.in_types[0].rank)]


def _bce(lw: Lower, node, ins):
    """-(y log p + (1 - y) log(1 - p)), each log clamped at -100 as torch does."""
    p, y = _f64(lw, ins[0], 0), _f64(lw, ins[1], 1)
    one, floor = _d(lw, 1.0), _d(lw, -100.0)
    log_p = lw.op("Max", [lw.op("Log", [p]), floor])
    log_q = lw.op("Max", [lw.op("Log", [lw.op("Sub", [one, p])]), floor])
    pos = lw.op("Mul", [y, log_p])
    neg = lw.op("Mul", [lw.op("Sub", [one, y]), log_q])
    return [_finish(lw, lw.op("Neg", [lw.op("Add", [pos, neg])]), lw.in_types[0].rank)]


def _bce_logits(lw: Lower, node, ins):
    """max(z, 0) - z·y + log(1 + exp(-|z|))."""
    z, y = _f64(lw, ins[0], 0), _f64(lw, ins[1], 1)
    soft = lw.op("Log", [lw.op("Add", [_d(lw, 1.0), lw.op("Exp", [lw.op("Neg", [
        lw.op("Abs", [z])])])])])
    if lw.attrs.pos_weight is not None:  # (1 - y) z + (1 + (p - 1) y) log(1 + e^-z)
        p = lw.const(np.asarray(lw.attrs.pos_weight, dtype=np.float64), "pos_weight")
        softplus_neg = lw.op("Add", [soft, lw.op("Max", [lw.op("Neg", [z]), _d(lw, 0.0)])])
        scale = lw.op("Add", [_d(lw, 1.0), lw.op("Mul", [lw.op("Sub", [p, _d(lw, 1.0)]), y])])
        loss = lw.op("Add", [lw.op("Mul", [lw.op("Sub", [_d(lw, 1.0), y]), z]),
                             lw.op("Mul", [scale, softplus_neg])])
        return [_finish(lw, loss, lw.in_types[0].rank)]
    loss = lw.op("Add", [lw.op("Sub", [lw.op("Max", [z, _d(lw, 0.0)]),
                                       lw.op("Mul", [z, y])]), soft])
    return [_finish(lw, loss, lw.in_types[0].rank)]


def _kl_div(lw: Lower, node, ins):
    logq, t = _f64(lw, ins[0], 0), _f64(lw, ins[1], 1)
    if lw.attrs.log_target:
        loss = lw.op("Mul", [lw.op("Exp", [t]), lw.op("Sub", [t, logq])])
    else:  # xlogy: a zero target contributes 0
        zero = lw.op("Equal", [t, _d(lw, 0.0)])
        safe = lw.op("Where", [zero, _d(lw, 1.0), t])
        tlogt = lw.op("Where", [zero, _d(lw, 0.0), lw.op("Mul", [t, lw.op("Log", [safe])])])
        loss = lw.op("Sub", [tlogt, lw.op("Mul", [t, logq])])
    xt = lw.in_types[0]
    return [_finish(lw, loss, xt.rank, xt.shape[0] if xt.rank else 1)]


def _class_weights(lw: Lower, rank: int, axis: int) -> str | None:
    """`weight` as a float64 constant shaped to broadcast along the class axis (or None)."""
    w = getattr(lw.attrs, "weight", None)
    if w is None:
        return None
    shape = [1] * rank
    shape[axis] = len(w)
    return lw.const(np.asarray(w, dtype=np.float64).reshape(shape), "class_weight")


def _nll_of(lw: Lower, logp: str, target: str) -> str:
    """-w[target] logp[target] along the class axis (w = 1 without `weight`), 0 where target
    == ignore_index, mixed with label smoothing's -sum_c w_c logp_c / C; mean divides by the
    kept targets' summed weights (NaN when none is kept, as torch)."""
    xt = lw.in_types[0]
    axis = 1 if xt.rank >= 2 else 0
    keep = lw.op("Not", [lw.op("Equal", [target, lw.scalar(lw.attrs.ignore_index, "i64")])])
    safe = lw.op("Where", [keep, target, lw.scalar(0, "i64")])
    picked = lw.squeeze(lw.op("GatherElements", [logp, lw.unsqueeze(safe, [axis])],
                              axis=axis), [axis])
    w = _class_weights(lw, xt.rank, axis)
    kept = lw.op("Cast", [keep], to=TensorProto.DOUBLE)
    if w is not None:
        wt = lw.op("Mul", [lw.op("Gather", [lw.reshape(w, [-1]), safe], axis=0), kept])
        picked = lw.op("Mul", [picked, wt])
    else:
        wt = kept
    loss = lw.op("Where", [keep, lw.op("Neg", [picked]), _d(lw, 0.0)])
    e = getattr(lw.attrs, "label_smoothing", 0.0)
    if e:
        weighted = logp if w is None else lw.op("Mul", [logp, w])
        smooth = lw.op("Neg", [reduce(lw, "ReduceSum", weighted, [axis], False)])
        smooth = lw.op("Where", [keep, smooth, _d(lw, 0.0)])
        n_classes = int(xt.shape[axis])
        loss = lw.op("Add", [lw.op("Mul", [loss, _d(lw, 1.0 - e)]),
                             lw.op("Mul", [smooth, _d(lw, e / n_classes)])])
    rank = max(xt.rank - 1, 0)
    if lw.attrs.reduction == "mean":
        total = reduce(lw, "ReduceSum", loss, list(range(rank)), False) if rank else loss
        count = reduce(lw, "ReduceSum", wt, list(range(rank)), False) if rank else wt
        return lw.cast(lw.op("Div", [total, count]), lw.out_types[0].dtype)
    return _finish(lw, loss, rank)


def _nll(lw: Lower, node, ins):
    return [_nll_of(lw, _f64(lw, ins[0], 0), ins[1])]


def _cross_entropy(lw: Lower, node, ins):
    xt = lw.in_types[0]
    axis = 1 if xt.rank >= 2 else 0
    logp = lw.op("LogSoftmax", [_f64(lw, ins[0], 0)], axis=axis)
    if lw.in_types[1].is_float:  # class probabilities, smoothed: (1 - e) t + e / C
        t = _f64(lw, ins[1], 1)
        e = lw.attrs.label_smoothing
        if e:
            t = lw.op("Add", [lw.op("Mul", [t, _d(lw, 1.0 - e)]),
                              _d(lw, e / int(xt.shape[axis]))])
        w = _class_weights(lw, xt.rank, axis)
        if w is not None:
            t = lw.op("Mul", [t, w])
        picked = reduce(lw, "ReduceSum", lw.op("Mul", [t, logp]), [axis], False)
        return [_finish(lw, lw.op("Neg", [picked]), max(xt.rank - 1, 0))]
    return [_nll_of(lw, logp, ins[1])]


LOWERINGS = {
    "mse_loss": _mse,
    "l1_loss": _l1,
    "bce": _bce,
    "bce_with_logits": _bce_logits,
    "kl_div": _kl_div,
    "nll_loss": _nll,
    "cross_entropy": _cross_entropy,
}
