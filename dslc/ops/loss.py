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
    # A rescaling weight per class (torch's `weight`): a class-index target's loss is scaled
    # by its class's weight, and `mean` divides by the sum of the kept targets' weights.
    weight: tuple[float, ...] | None = None


class CeAttrs(ClassAttrs):
    # The target mixed with the uniform distribution: (1 - e) * target + e / C (torch's).
    label_smoothing: float = 0.0


class LogitsAttrs(Attrs):
    reduction: Reduction = "mean"
    # The positive examples' weight per class (the last axis), torch's `pos_weight`.
    pos_weight: tuple[float, ...] | None = None


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


def _logits_shape(a, ins):
    """bce_with_logits: as the other pairs, and pos_weight one number per class (last axis)."""
    x = ins[0]
    if a.pos_weight is not None:
        c = x.shape[-1] if x.rank else 1
        if D.equal(c, len(a.pos_weight)) is False and len(a.pos_weight) != 1:
            raise ShapeError(f"pos_weight has {len(a.pos_weight)} numbers, the input's last "
                             f"axis {D.fmt(c)}", expected=f"1 or {D.fmt(c)} weights",
                             found=f"{len(a.pos_weight)} weights", code="E0640")
    return _pair_shape(a, ins)


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
    _check_class_options(a, x)
    return _reduced(a, x, want)


def _check_class_options(a, x: TensorType) -> None:
    """`weight` has one number per class; `label_smoothing` lies in [0, 1]."""
    if getattr(a, "label_smoothing", 0.0) < 0 or getattr(a, "label_smoothing", 0.0) > 1:
        raise ShapeError("label_smoothing is a fraction", expected="a number in [0, 1]",
                         found=repr(a.label_smoothing), code="E0640")
    if a.weight is None or x.rank < 1:
        return
    c = x.shape[1] if x.rank >= 2 else x.shape[0]
    if D.equal(c, len(a.weight)) is False:
        raise ShapeError(f"weight has {len(a.weight)} numbers, the input {D.fmt(c)} classes",
                         expected=f"one weight per class ({D.fmt(c)})",
                         found=f"{len(a.weight)} weights", code="E0640")
    if any(w < 0 for w in a.weight):
        raise ShapeError("class weights must not be negative", expected="weights >= 0",
                         found=repr(a.weight), code="E0640")


def _ce_shape(a, ins):
    x, y = ins
    _check_class_options(a, x)
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


def _class_weights(a, logp: np.ndarray) -> np.ndarray:
    """`weight`, shaped to broadcast along the class axis (ones without it)."""
    axis = _class_axis(logp)
    c = logp.shape[axis]
    w = np.ones(c) if a.weight is None else np.asarray(a.weight, dtype=np.float64)
    shape = [1] * logp.ndim
    shape[axis] = c
    return w.reshape(shape)


def _targets(a, logp: np.ndarray, target: np.ndarray):
    """Kept targets (not ignore_index), the targets with ignored ones at 0, and each kept
    target's class weight (0 for the ignored)."""
    axis = _class_axis(logp)
    keep = target != a.ignore_index
    safe = np.where(keep, target, 0)
    n_classes = logp.shape[axis]
    if np.any((safe < 0) | (safe >= n_classes)):
        bad = int(safe[(safe < 0) | (safe >= n_classes)].flat[0])
        raise ShapeError(f"target class {bad} is out of range", expected=f"0 <= class < "
                         f"{n_classes} (or ignore_index {a.ignore_index})", found=str(bad))
    w = _class_weights(a, logp).reshape(-1)
    return keep, safe, np.where(keep, w[safe], 0.0)


def _nll(a, logp: np.ndarray, target: np.ndarray, dtype, smoothing: float = 0.0):
    """torch's nll_loss (and cross_entropy's class-index form): the weighted -logp[target],
    mixed with label smoothing's -sum_c w_c logp_c / C; `mean` divides by the kept targets'
    summed weights (their count without `weight`), NaN when there are none."""
    axis = _class_axis(logp)
    keep, safe, wt = _targets(a, logp, target)
    picked = np.squeeze(np.take_along_axis(logp, np.expand_dims(safe, axis), axis=axis), axis)
    loss = np.where(keep, -wt * picked, 0.0)
    if smoothing:
        smooth = -(logp * _class_weights(a, logp)).sum(axis=axis)
        loss = (1 - smoothing) * loss + smoothing / logp.shape[axis] * np.where(keep, smooth, 0)
    if a.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            value = loss.sum(dtype=np.float64) / wt.sum(dtype=np.float64)
        return np.asarray(value, dtype=dtype)
    return _reduce(a, loss, dtype)


def _ce_kernel(a, xs, ctx):
    x, y = xs
    logp = _log_softmax(x.astype(np.float64), _class_axis(x))
    if np.issubdtype(y.dtype, np.floating):
        loss = -(_soft_target(a, y, logp) * _class_weights(a, logp) * logp).sum(
            axis=_class_axis(x))
        return [_reduce(a, loss, x.dtype)]
    return [_nll(a, logp, y, x.dtype, a.label_smoothing)]


def _soft_target(a, y: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Class probabilities mixed with the uniform distribution by label_smoothing."""
    e = a.label_smoothing
    t = y.astype(np.float64)
    return (1 - e) * t + e / logp.shape[_class_axis(logp)] if e else t


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


def _softplus_neg(z: np.ndarray) -> np.ndarray:
    """log(1 + e^-z), finite for any z."""
    return np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0.0)


def _bce_logits_kernel(a, xs, ctx):
    x, y = xs
    z = x.astype(np.float64)
    if a.pos_weight is None:
        # max(z, 0) - z*y + log(1 + e^-|z|): finite for any z, equal to the textbook form.
        loss = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    else:  # torch's: (1 - y) z + (1 + (p - 1) y) log(1 + e^-z), p along the last axis
        p = np.asarray(a.pos_weight, dtype=np.float64)
        loss = (1 - y) * z + (1 + (p - 1) * y) * _softplus_neg(z)
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
    if a.pos_weight is None:
        return sig - y, -z
    p = np.asarray(a.pos_weight, dtype=np.float64)
    # d/dz: (1 - y) - (1 + (p - 1) y) sigmoid(-z); d/dy: -z + (p - 1) log(1 + e^-z)
    return (1 - y) - (1 + (p - 1) * y) * (1 - sig), -z + (p - 1) * _softplus_neg(z)


def _kl_d(a, logq, t):
    if a.log_target:
        return -np.exp(t), np.exp(t) * (t - logq + 1)
    return -t, np.where(t > 0, np.log(np.where(t > 0, t, 1.0)) + 1 - logq, 0.0)


def _class_vjp(a, xs, ys, gs, ctx, logits: bool):
    """cross_entropy (logits) and nll_loss (log-probabilities) against class indices or, for
    cross_entropy, class probabilities; with class weights and label smoothing."""
    x, y = xs
    axis = _class_axis(x)
    xw = x.astype(np.float64)
    e = getattr(a, "label_smoothing", 0.0)
    if logits and np.issubdtype(y.dtype, np.floating):
        logp = _log_softmax(xw, axis)
        w = _class_weights(a, logp)
        gl = np.expand_dims(_per_element(a, gs[0], logp.sum(axis=axis).shape), axis)
        d_logp = -gl * w * _soft_target(a, y, logp)
        dx = d_logp - np.exp(logp) * d_logp.sum(axis=axis, keepdims=True)
        return [dx.astype(x.dtype), (-(1 - e) * gl * w * logp).astype(y.dtype)], {}
    logp = _log_softmax(xw, axis) if logits else xw
    keep, safe, wt = _targets(a, logp, y)
    g = np.asarray(gs[0], dtype=np.float64)
    if a.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = g / wt.sum()
    gl = np.where(keep, np.broadcast_to(g, y.shape), 0.0)
    d_logp = np.zeros_like(xw)
    np.put_along_axis(d_logp, np.expand_dims(safe, axis),
                      np.expand_dims(-(1 - e) * wt * gl, axis), axis=axis)
    if e:
        d_logp -= e / x.shape[axis] * _class_weights(a, logp) * np.expand_dims(gl, axis)
    if logits:
        d_logp = d_logp - np.exp(logp) * d_logp.sum(axis=axis, keepdims=True)
    return [d_logp.astype(x.dtype), None], {}


# ---- emitters ------------------------------------------------------------------------------


def _emit(fn: str, extra=lambda a: ""):
    def call(a, args, ctx, ins):
        # WEIGHT: a class weight is made on the input's device with its dtype.
        more = extra(a).replace("WEIGHT", args[0])
        return f"F.{fn}({args[0]}, {args[1]}, reduction={a.reduction!r}{more})"

    return call


def _ignore(a) -> str:
    out = "" if a.ignore_index == -100 else f", ignore_index={a.ignore_index}"
    if a.weight is not None:  # a tensor of the input's dtype and device, as torch wants
        out += f", weight=WEIGHT.new_tensor({_tuple(a.weight)})"
    if getattr(a, "label_smoothing", 0.0):
        out += f", label_smoothing={a.label_smoothing!r}"
    return out


def _tuple(v: tuple[float, ...]) -> str:
    return "(" + ", ".join(repr(float(x)) for x in v) + ("," if len(v) == 1 else "") + ")"


def _pos_weight(a) -> str:
    if a.pos_weight is None:
        return ""
    return f", pos_weight=WEIGHT.new_tensor({_tuple(a.pos_weight)})"


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
          "logits (F.cross_entropy). `weight=(w_0, ..., w_C-1)` scales each class's loss "
          "(`mean` then divides by the kept targets' summed weights), `label_smoothing=e` "
          "mixes the target with the uniform distribution, `ignore_index` drops a label.",
          _ce_shape, _ce_kernel, "cross_entropy",
          (Example({}, (tensor("f32", 4, 5), tensor("i64", 4)), int_high=5),
           Example({"reduction": "none"}, (tensor("f32", 2, 5, 3), tensor("i64", 2, 3)),
                   int_high=5),
           Example({"reduction": "sum"}, (tensor("f32", 5), tensor("i64")), int_high=5),
           Example({}, (tensor("f32", 3, 4), tensor("f32", 3, 4)), float_range=PROBS),
           Example({"weight": (0.5, 2.0, 1.0, 0.0, 3.0)},
                   (tensor("f32", 6, 5), tensor("i64", 6)), int_high=5),
           Example({"weight": (0.5, 2.0, 1.0), "label_smoothing": 0.2, "ignore_index": 1},
                   (tensor("f32", 4, 3, 2), tensor("i64", 4, 2)), int_high=3),
           Example({"label_smoothing": 0.1, "reduction": "none"},
                   (tensor("f32", 4, 5), tensor("i64", 4)), int_high=5),
           Example({"weight": (1.0, 2.0, 0.5, 1.5), "label_smoothing": 0.3},
                   (tensor("f32", 3, 4), tensor("f32", 3, 4)), float_range=PROBS)),
          attrs=CeAttrs, extra=_ignore, class_target=_class_target,
          vjp=lambda a, xs, ys, gs, ctx: _class_vjp(a, xs, ys, gs, ctx, logits=True)),
    _loss("nll_loss", "Negative log-likelihood of log-probabilities [N, C, ...] against class "
          "indices (i64 [N, ...]) (F.nll_loss); `weight` and `ignore_index` as cross_entropy's.",
          _class_shape, _nll_kernel, "nll_loss",
          (Example({}, (tensor("f32", 4, 5), tensor("i64", 4)), int_high=5),
           Example({"reduction": "none"}, (tensor("f32", 2, 5, 3), tensor("i64", 2, 3)),
                   int_high=5),
           Example({"weight": (0.5, 2.0, 1.0, 0.25, 3.0), "reduction": "mean"},
                   (tensor("f32", 2, 5, 3), tensor("i64", 2, 3)), int_high=5)),
          attrs=ClassAttrs, extra=_ignore, class_target=_class_target,
          vjp=lambda a, xs, ys, gs, ctx: _class_vjp(a, xs, ys, gs, ctx, logits=False)),
    _loss("bce", "Binary cross-entropy of probabilities in [0, 1]; each log is clamped at -100 "
          "as torch does (F.binary_cross_entropy).",
          _pair_shape, _bce_kernel, "binary_cross_entropy",
          (Example({}, PAIR, float_range=PROBS),
           Example({"reduction": "none"}, PAIR, float_range=PROBS)), vjp=_pair_vjp(_bce_d)),
    _loss("bce_with_logits", "Binary cross-entropy of logits: sigmoid and bce in one stable "
          "step (F.binary_cross_entropy_with_logits); `pos_weight=(p, ...)` (one number, or "
          "one per class of the last axis) weighs the positive targets' term.",
          _logits_shape, _bce_logits_kernel, "binary_cross_entropy_with_logits",
          (Example({}, PAIR), Example({"reduction": "none"}, PAIR),
           Example({"pos_weight": (1.0, 2.0, 0.5, 3.0, 1.5)}, PAIR)),
          attrs=LogitsAttrs, extra=_pos_weight, vjp=_pair_vjp(_bce_logits_d)),
    _loss("kl_div", "Kullback-Leibler divergence of log-probabilities `input` from `target` "
          "(probabilities, or log-probabilities with log_target=true) (F.kl_div).",
          _pair_shape, _kl_kernel, "kl_div",
          (Example({"reduction": "batchmean"}, PAIR, float_range=PROBS),
           Example({"reduction": "sum", "log_target": True}, PAIR)),
          attrs=KlAttrs,
          extra=lambda a: ", log_target=True" if a.log_target else "", vjp=_pair_vjp(_kl_d)),
)
