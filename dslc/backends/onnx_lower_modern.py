"""ONNX lowerings of the normalisations and regularisers added with issue 13: instance_norm1d/
2d/3d, group_norm, rms_norm, layer_scale, drop_path and alpha_dropout (the last two: the
identity at inference)."""

from __future__ import annotations

import numpy as np

from dslc.backends.onnx_builder import Lower
from dslc.backends.onnx_lower_core import reduce, train_identity
from dslc.types import numpy_dtype


def _channel_shape(rank: int) -> list[int]:
    """[C, 1, ..., 1]: a per-channel vector broadcast over [B, C, *spatial]."""
    return [-1] + [1] * (rank - 2)


def _work(lw: Lower) -> np.dtype:
    """The statistics' dtype of the kernels (f16 accumulates in f32)."""
    return np.promote_types(numpy_dtype(lw.in_types[0].dtype), np.float32)


def _affine(lw: Lower, y: str, rank: int) -> str:
    """y · weight + bias per channel (axis 1), for the parameters the node has."""
    if lw.has_param("weight"):
        y = lw.op("Mul", [y, lw.reshape(lw.param("weight"), _channel_shape(rank))])
    if lw.has_param("bias"):
        y = lw.op("Add", [y, lw.reshape(lw.param("bias"), _channel_shape(rank))])
    return y


def _standardise(lw: Lower, x: str, axes: list[int], eps: float) -> str:
    """(x - mean) / sqrt(var + eps) over `axes`, biased variance (as torch)."""
    centred = lw.op("Sub", [x, reduce(lw, "ReduceMean", x, axes, True)])
    var = reduce(lw, "ReduceMean", lw.op("Mul", [centred, centred]), axes, True)
    return lw.op("Div", [centred, lw.op("Sqrt", [lw.op("Add", [var, lw.fscalar(eps)])])])


def _instance_norm(lw: Lower, node, ins):
    """Running statistics (track_running_stats, eval): BatchNormalization with them. Else
    InstanceNormalization (scale 1, bias 0) and the affine parameters after it (torch's
    affine may lack a bias); a runtime channel count (no parameters then) and f64 (which
    onnxruntime's InstanceNormalization lacks) by ReduceMean."""
    a = lw.attrs
    t = lw.in_types[0]
    x = ins[0]
    if a.track_running_stats:
        c = int(t.shape[1])
        dt = numpy_dtype(t.dtype)
        scale = lw.param("weight") if lw.has_param("weight") else \
            lw.const(np.ones(c, dt), f"{lw.label}.ones")
        bias = lw.param("bias") if lw.has_param("bias") else \
            lw.const(np.zeros(c, dt), f"{lw.label}.zeros")
        return [lw.op("BatchNormalization", [x, scale, bias, lw.param("running_mean"),
                                             lw.param("running_var")], epsilon=a.eps)]
    if not t.shape[1].is_Integer or t.dtype == "f64":
        return [_affine(lw, _standardise(lw, x, list(range(2, t.rank)), a.eps), t.rank)]
    c = int(t.shape[1])
    dt = numpy_dtype(t.dtype)
    y = lw.op("InstanceNormalization", [x, lw.const(np.ones(c, dt), f"{lw.label}.ones"),
                                        lw.const(np.zeros(c, dt), f"{lw.label}.zeros")],
              epsilon=a.eps)
    return [_affine(lw, y, t.rank)]


def _group_norm(lw: Lower, node, ins):
    """Reshape [B, G, rest], InstanceNormalization over rest (scale 1, bias 0), Reshape back,
    per-channel weight and bias (f64: the ReduceMean pattern over rest). Not
    GroupNormalization: opset 18's scales per group, opset 21's per channel, and opset 17
    has none."""
    a = lw.attrs
    t = lw.in_types[0]
    g = a.num_groups
    dt = numpy_dtype(t.dtype)
    rows = lw.reshape(ins[0], [0, g, -1])
    if t.dtype == "f64":  # onnxruntime's InstanceNormalization has no float64 kernel
        y = _standardise(lw, rows, [2], a.eps)
    else:
        y = lw.op("InstanceNormalization", [rows, lw.const(np.ones(g, dt), f"{lw.label}.ones"),
                                            lw.const(np.zeros(g, dt), f"{lw.label}.zeros")],
                  epsilon=a.eps)
    return [_affine(lw, lw.reshape(y, t.shape), t.rank)]


def _rms_norm(lw: Lower, node, ins):
    """RMSNormalization from opset 23 (statistics in float32, as the kernel's for f16 and
    f32); before it, and for f64, the pattern x · 1/Sqrt(ReduceMean(x²) + eps) over the
    normalised trailing axes, · weight (the kernel's order). eps left out is the machine
    epsilon of the statistics' dtype (torch)."""
    a = lw.attrs
    t = lw.in_types[0]
    ns = a.normalized_shape
    k = len(ns) if isinstance(ns, tuple) else 1
    eps = float(np.finfo(_work(lw)).eps) if a.eps is None else a.eps
    x = ins[0]
    if lw.opset >= 23 and t.dtype in ("f16", "f32"):
        if a.elementwise_affine:
            scale = lw.param("weight")
        else:
            shape = [int(d) for d in t.shape[t.rank - k:]]
            scale = lw.const(np.ones(shape, numpy_dtype(t.dtype)), f"{lw.label}.ones")
        return [lw.op("RMSNormalization", [x, scale], axis=-k, epsilon=eps, stash_type=1)]
    ms = reduce(lw, "ReduceMean", lw.op("Mul", [x, x]), list(range(t.rank - k, t.rank)), True)
    inv = lw.op("Reciprocal", [lw.op("Sqrt", [lw.op("Add", [ms, lw.fscalar(eps)])])])
    y = lw.op("Mul", [x, inv])
    if a.elementwise_affine:
        y = lw.op("Mul", [y, lw.param("weight")])
    return [y]


def _layer_scale(lw: Lower, node, ins):
    """x · gamma (gamma [C] for the last axis, [C, 1, ...] for channels_first)."""
    return [lw.op("Mul", [ins[0], lw.param("gamma")])]


LOWERINGS = {
    "instance_norm1d": _instance_norm,
    "instance_norm2d": _instance_norm,
    "instance_norm3d": _instance_norm,
    "group_norm": _group_norm,
    "rms_norm": _rms_norm,
    "layer_scale": _layer_scale,
    "drop_path": train_identity,  # the identity at inference, as their kernels in eval
    "alpha_dropout": train_identity,
}
