"""Loss functions of the notes (op family "loss"): mse, l1, cross-entropy, nll, bce, kl_div.

Each reduces as torch.nn.functional does (`reduction` mean | sum | none) and its NumPy kernel is
written so that inputs of +-1e4 give the finite numbers torch gives: log-sum-exp with the
maximum taken out, log1p(exp(-|x|)) for the logit losses, logs clamped at -100 for bce.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, need_float
from dslc.types import TensorType, tensor

Reduction = Literal["mean", "sum", "none"]


class ReduceAttrs(Attrs):
    reduction: Reduction = "mean"


class ClassAttrs(Attrs):
    reduction: Reduction = "mean"
    ignore_index: int = -100


class KlAttrs(Attrs):
    reduction: Literal["mean", "sum", "none", "batchmean"] = "mean"
    log_target: bool = False


# ---- shape rules ---------------------------------------------------------------------------


def _same_shape(x: TensorType, y: TensorType) -> None:
    ok = x.rank == y.rank and all(D.equal(a, b) is True for a, b in zip(x.shape, y.shape))
    if not ok:
        raise ShapeError("input and target must have the same shape", expected=str(x),
                         found=str(y), arg=1)


def _reduced(a, x: TensorType, none_shape) -> list[TensorType]:
    if a.reduction == "none":
        return [x.with_shape(none_shape)]
    return [TensorType(x.dtype, ())]


def _pair_shape(a, ins):
    """mse, l1, bce, bce_with_logits, kl_div: input and target of one float shape."""
    x, y = ins
    need_float(x, 0)
    need_float(y, 1)
    if x.dtype != y.dtype:
        raise ShapeError("input and target have different dtypes", expected=x.dtype,
                         found=y.dtype, arg=1, code="E0302")
    _same_shape(x, y)
    return _reduced(a, x, x.shape)


def _class_shape(a, ins):
    """cross_entropy, nll_loss: input [N, C, d...] (or [C]) and target [N, d...] (or []) of
    class indices (i64), or, for cross_entropy, class probabilities of the input's shape."""
    x, y = ins
    need_float(x, 0)
    if x.rank < 1:
        raise ShapeError("input needs a class axis", expected="[N, C, ...] or [C]",
                         found=str(x))
    if y.dtype != "i64":
        raise ShapeError("target must hold class indices (i64)", expected="i64[...]",
                         found=str(y), arg=1, code="E0302")
    want = x.shape[:1] + x.shape[2:] if x.rank >= 2 else ()
    if y.rank != len(want) or any(D.equal(p, q) is not True for p, q in zip(want, y.shape)):
        raise ShapeError("target shape must be the input's without the class axis (axis 1)",
                         expected=f"i64{D.fmt_shape(want)}", found=str(y), arg=1)
    return _reduced(a, x, want)


def _ce_shape(a, ins):
    x, y = ins
    if y.is_float and x.rank >= 1:
        # Class probabilities (soft labels), as F.cross_entropy takes them.
        _pair_shape(ReduceAttrs(reduction="mean"), ins)
        want = x.shape[:1] + x.shape[2:] if x.rank >= 2 else ()
        return _reduced(a, x, want)
    return _class_shape(a, ins)


# ---- kernels -------------------------------------------------------------------------------


def _reduce(a, loss: np.ndarray, dtype, batch: int = 1) -> np.ndarray:
    if a.reduction == "none":
        return loss.astype(dtype, copy=False)
    total = loss.sum(dtype=np.float64)
    if a.reduction == "mean":
        total = total / max(loss.size, 1) if loss.size else np.nan
    elif a.reduction == "batchmean":
        total = total / batch
    return np.asarray(total, dtype=dtype)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    # Stable at +-1e4: exp only ever sees numbers <= 0.
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _class_axis(x: np.ndarray) -> int:
    return 1 if x.ndim >= 2 else 0


def _nll(a, logp: np.ndarray, target: np.ndarray, dtype) -> np.ndarray:
    axis = _class_axis(logp)
    keep = target != a.ignore_index
    safe = np.where(keep, target, 0)
    n_classes = logp.shape[axis]
    if np.any((safe < 0) | (safe >= n_classes)):
        bad = int(safe[(safe < 0) | (safe >= n_classes)].flat[0])
        raise ShapeError(f"target class {bad} is out of range", expected=f"0 <= class < "
                         f"{n_classes} (or ignore_index {a.ignore_index})", found=str(bad))
    picked = np.take_along_axis(logp, np.expand_dims(safe, axis), axis=axis)
    loss = np.where(keep, -np.squeeze(picked, axis=axis), 0.0)
    if a.reduction == "mean":
        count = int(keep.sum())
        value = loss.sum(dtype=np.float64) / count if count else np.nan
        return np.asarray(value, dtype=dtype)
    return _reduce(a, loss, dtype)


def _ce_kernel(a, xs, ctx):
    x, y = xs
    logp = _log_softmax(x.astype(np.float64), _class_axis(x))
    if np.issubdtype(y.dtype, np.floating):
        loss = -(y.astype(np.float64) * logp).sum(axis=_class_axis(x))
        return [_reduce(a, loss, x.dtype)]
    return [_nll(a, logp, y, x.dtype)]


def _nll_kernel(a, xs, ctx):
    x, y = xs
    return [_nll(a, x.astype(np.float64), y, x.dtype)]


def _mse_kernel(a, xs, ctx):
    x, y = xs
    d = x.astype(np.float64) - y
    return [_reduce(a, d * d, x.dtype)]


def _l1_kernel(a, xs, ctx):
    x, y = xs
    return [_reduce(a, np.abs(x.astype(np.float64) - y), x.dtype)]


def _bce_kernel(a, xs, ctx):
    x, y = xs
    p = x.astype(np.float64)
    # torch clamps each log at -100, so a probability of exactly 0 or 1 costs 100, not inf.
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.maximum(np.log(p), -100.0)
        log_q = np.maximum(np.log1p(-p), -100.0)
    loss = -(y * log_p + (1.0 - y) * log_q)
    return [_reduce(a, loss, x.dtype)]


def _bce_logits_kernel(a, xs, ctx):
    x, y = xs
    z = x.astype(np.float64)
    # max(z, 0) - z*y + log(1 + e^-|z|): finite for any z, equal to the textbook form.
    loss = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return [_reduce(a, loss, x.dtype)]


def _kl_kernel(a, xs, ctx):
    x, y = xs
    logq = x.astype(np.float64)
    t = y.astype(np.float64)
    if a.log_target:
        loss = np.exp(t) * (t - logq)
    else:
        # xlogy: a target of 0 contributes 0, as in torch.
        with np.errstate(divide="ignore", invalid="ignore"):
            tlogt = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
        loss = tlogt - t * logq
    batch = x.shape[0] if x.ndim else 1
    return [_reduce(a, loss, x.dtype, batch)]


# ---- vector-Jacobian products -------------------------------------------------------------


def _per_element(a, g: np.ndarray, shape, batch: int = 1, count: int | None = None):
    """The cotangent of the unreduced loss (of `shape`) from that of the reduced one."""
    g = np.asarray(g, dtype=np.float64)
    if a.reduction == "none":
        return g
    n = int(np.prod(shape)) if count is None else count
    scale = {"sum": 1.0, "mean": 1.0 / max(n, 1), "batchmean": 1.0 / batch}[a.reduction]
    return np.broadcast_to(g * scale, shape)


def _pair_vjp(fn):
    """For the losses of two float tensors: fn(a, x, y) -> (dloss/dx, dloss/dy) per element."""

    def vjp(a, xs, ys, gs, ctx):
        x, y = xs
        xw, yw = x.astype(np.float64), y.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            dx, dy = fn(a, xw, yw)
        gl = _per_element(a, gs[0], x.shape, batch=x.shape[0] if x.ndim else 1)
        return [(gl * dx).astype(x.dtype), (gl * dy).astype(y.dtype)], {}

    return vjp


def _mse_d(a, x, y):
    return 2 * (x - y), -2 * (x - y)


def _l1_d(a, x, y):
    return np.sign(x - y), -np.sign(x - y)


def _bce_d(a, p, y):
    # torch: (p - y) / max(p (1 - p), 1e-12); the target's from the clamped logs.
    log_p = np.maximum(np.log(p), -100.0)
    log_q = np.maximum(np.log1p(-p), -100.0)
    return (p - y) / np.maximum(p * (1 - p), 1e-12), log_q - log_p


def _bce_logits_d(a, z, y):
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return sig - y, -z


def _kl_d(a, logq, t):
    if a.log_target:
        return -np.exp(t), np.exp(t) * (t - logq + 1)
    return -t, np.where(t > 0, np.log(np.where(t > 0, t, 1.0)) + 1 - logq, 0.0)


def _class_vjp(a, xs, ys, gs, ctx, logits: bool):
    """cross_entropy (logits) and nll_loss (log-probabilities) against class indices or, for
    cross_entropy, class probabilities."""
    x, y = xs
    axis = _class_axis(x)
    xw = x.astype(np.float64)
    if logits and np.issubdtype(y.dtype, np.floating):
        logp = _log_softmax(xw, axis)
        yw = y.astype(np.float64)
        gl = np.expand_dims(_per_element(a, gs[0], logp.sum(axis=axis).shape), axis)
        dx = gl * (np.exp(logp) * yw.sum(axis=axis, keepdims=True) - yw)
        return [dx.astype(x.dtype), (-gl * logp).astype(y.dtype)], {}
    keep = y != a.ignore_index
    gl = _per_element(a, gs[0], y.shape, count=int(keep.sum()))
    gl = np.where(keep, gl, 0.0)
    onehot = np.zeros_like(xw)
    np.put_along_axis(onehot, np.expand_dims(np.where(keep, y, 0), axis),
                      np.expand_dims(gl, axis), axis=axis)
    if logits:
        soft = np.exp(_log_softmax(xw, axis))
        dx = soft * np.expand_dims(gl, axis) - onehot
    else:
        dx = -onehot
    return [dx.astype(x.dtype), None], {}


# ---- emitters ------------------------------------------------------------------------------


def _emit(fn: str, extra=lambda a: ""):
    def call(a, args, ctx, ins):
        return f"F.{fn}({args[0]}, {args[1]}, reduction={a.reduction!r}{extra(a)})"

    return call


def _ignore(a) -> str:
    return "" if a.ignore_index == -100 else f", ignore_index={a.ignore_index}"


def _label(a) -> str:
    return a.reduction


def _macs(a, ins, outs):
    return ins[0].numel()


def _class_target(a, ins: list[TensorType]):
    """The `class_target` trait of cross_entropy and nll_loss: an i64 target holds class
    indices, the classes being the input's axis 1 (axis 0 for one unbatched sample)."""
    if len(ins) != 2 or ins[1].dtype != "i64":
        return None
    x = ins[0]
    return 1, (x.shape[1] if x.rank >= 2 else x.shape[0]), a.ignore_index


def _loss(name, doc, shape, kernel, torch_fn, examples, attrs=ReduceAttrs, extra=lambda a: "",
          vjp=None, class_target=None):
    return Op(
        name=name,
        family="loss",
        doc=doc,
        attrs=attrs,
        positional=("reduction",),
        min_inputs=2,
        max_inputs=2,
        shape=shape,
        numpy=kernel,
        vjp=vjp,
        torch_call=_emit(torch_fn, extra),
        macs=_macs,
        label=_label,
        examples=examples,
        class_target=class_target,
    )


PAIR = (tensor("f32", 4, 5), tensor("f32", 4, 5))
PROBS = (0.0, 1.0)  # bce and kl_div take probabilities: inputs drawn in [0, 1)

LOSS_OPS = (
    _loss("mse_loss", "Mean squared error: (input - target)^2, reduced (F.mse_loss).",
          _pair_shape, _mse_kernel, "mse_loss",
          (Example({}, PAIR), Example({"reduction": "none"}, PAIR),
           Example({"reduction": "sum"}, (tensor("f32", 2, 3, 4), tensor("f32", 2, 3, 4)))),
          vjp=_pair_vjp(_mse_d)),
    _loss("l1_loss", "Mean absolute error: |input - target|, reduced (F.l1_loss).",
          _pair_shape, _l1_kernel, "l1_loss",
          (Example({}, PAIR), Example({"reduction": "none"}, PAIR)), vjp=_pair_vjp(_l1_d)),
    _loss("cross_entropy", "Cross-entropy of logits [N, C, ...] against class indices "
          "(i64 [N, ...]) or class probabilities; log-softmax over axis 1, stable for large "
          "logits (F.cross_entropy).",
          _ce_shape, _ce_kernel, "cross_entropy",
          (Example({}, (tensor("f32", 4, 5), tensor("i64", 4)), int_high=5),
           Example({"reduction": "none"}, (tensor("f32", 2, 5, 3), tensor("i64", 2, 3)),
                   int_high=5),
           Example({"reduction": "sum"}, (tensor("f32", 5), tensor("i64")), int_high=5),
           Example({}, (tensor("f32", 3, 4), tensor("f32", 3, 4)), float_range=PROBS)),
          attrs=ClassAttrs, extra=_ignore, class_target=_class_target,
          vjp=lambda a, xs, ys, gs, ctx: _class_vjp(a, xs, ys, gs, ctx, logits=True)),
    _loss("nll_loss", "Negative log-likelihood of log-probabilities [N, C, ...] against class "
          "indices (i64 [N, ...]) (F.nll_loss).",
          _class_shape, _nll_kernel, "nll_loss",
          (Example({}, (tensor("f32", 4, 5), tensor("i64", 4)), int_high=5),
           Example({"reduction": "none"}, (tensor("f32", 2, 5, 3), tensor("i64", 2, 3)),
                   int_high=5)),
          attrs=ClassAttrs, extra=_ignore, class_target=_class_target,
          vjp=lambda a, xs, ys, gs, ctx: _class_vjp(a, xs, ys, gs, ctx, logits=False)),
    _loss("bce", "Binary cross-entropy of probabilities in [0, 1]; each log is clamped at -100 "
          "as torch does (F.binary_cross_entropy).",
          _pair_shape, _bce_kernel, "binary_cross_entropy",
          (Example({}, PAIR, float_range=PROBS),
           Example({"reduction": "none"}, PAIR, float_range=PROBS)), vjp=_pair_vjp(_bce_d)),
    _loss("bce_with_logits", "Binary cross-entropy of logits: sigmoid and bce in one stable "
          "step (F.binary_cross_entropy_with_logits).",
          _pair_shape, _bce_logits_kernel, "binary_cross_entropy_with_logits",
          (Example({}, PAIR), Example({"reduction": "none"}, PAIR)),
          vjp=_pair_vjp(_bce_logits_d)),
    _loss("kl_div", "Kullback-Leibler divergence of log-probabilities `input` from `target` "
          "(probabilities, or log-probabilities with log_target=true) (F.kl_div).",
          _pair_shape, _kl_kernel, "kl_div",
          (Example({"reduction": "batchmean"}, PAIR, float_range=PROBS),
           Example({"reduction": "sum", "log_target": True}, PAIR)),
          attrs=KlAttrs,
          extra=lambda a: ", log_target=True" if a.log_target else "", vjp=_pair_vjp(_kl_d)),
)
