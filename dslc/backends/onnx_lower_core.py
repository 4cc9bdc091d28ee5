"""ONNX lowerings of the dense ops: activations, arithmetic, shapes, linear, global average and
k-max pooling, normalisation, embeddings, spatial sampling and the eval-mode random ops."""

from __future__ import annotations

import math

import numpy as np

from dslc.backends.onnx_builder import ELEM, Lower
from dslc.types import numpy_dtype

# ---- pointwise ---------------------------------------------------------------------------


def _passthrough(lw: Lower, node, ins):
    """identity: no node."""
    return [ins[0]]


def train_identity(lw: Lower, node, ins):
    """Identity at inference (dropout, dropout2d, gaussian_noise, drop_path, alpha_dropout):
    an ONNX Identity node, so the op and its rate (in `dslc.train_attrs`) have a node to
    name."""
    return [lw.op("Identity", [ins[0]])]


def _unary(op_type: str, **fixed):
    def lower(lw: Lower, node, ins):
        return [lw.op(op_type, [ins[0]], **fixed)]
    return lower


def _leaky_relu(lw: Lower, node, ins):
    return [lw.op("LeakyRelu", [ins[0]], alpha=lw.attrs.negative_slope)]


def _elu(lw: Lower, node, ins):
    return [lw.op("Elu", [ins[0]], alpha=lw.attrs.alpha)]


def _softmax(op_type: str):
    def lower(lw: Lower, node, ins):
        return [lw.op(op_type, [ins[0]], axis=lw.attrs.dim)]
    return lower


def _gelu(lw: Lower, node, ins):
    """Gelu from opset 20; before, 0.5·x·(1 + erf(x/√2)) (or the tanh form)."""
    x = ins[0]
    if lw.opset >= 20:
        return [lw.op("Gelu", [x], approximate=lw.attrs.approximate)]
    half, one = lw.fscalar(0.5), lw.fscalar(1.0)
    if lw.attrs.approximate == "tanh":
        c = lw.fscalar(math.sqrt(2.0 / math.pi))
        cube = lw.op("Mul", [lw.op("Mul", [x, x]), x])
        inner = lw.op("Add", [x, lw.op("Mul", [cube, lw.fscalar(0.044715)])])
        t = lw.op("Tanh", [lw.op("Mul", [inner, c])])
    else:
        t = lw.op("Erf", [lw.op("Div", [x, lw.fscalar(math.sqrt(2.0))])])
    return [lw.op("Mul", [lw.op("Mul", [x, half]), lw.op("Add", [t, one])])]


def _prelu(lw: Lower, node, ins):
    w = lw.param("weight")
    rank = lw.in_types[0].rank
    if lw.attrs.num_parameters != 1 and rank > 2:  # one slope per channel (axis 1)
        w = lw.reshape(w, [lw.attrs.num_parameters] + [1] * (rank - 2))
    return [lw.op("PRelu", [ins[0], w])]


# ---- arithmetic --------------------------------------------------------------------------

_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}


def _binary(name: str):
    def lower(lw: Lower, node, ins):
        a = lw.attrs
        if len(ins) == 2:
            return [lw.op(_BINARY[name], ins)]
        s = lw.fscalar(a.scalar)
        return [lw.op(_BINARY[name], [s, ins[0]] if a.reverse else [ins[0], s])]
    return lower


def _matmul(lw: Lower, node, ins):
    return [lw.op("MatMul", ins)]


def _const(lw: Lower, node, ins):
    return [lw.param("")]


# ---- shapes ------------------------------------------------------------------------------


def _to_out_shape(lw: Lower, node, ins):
    """flatten and reshape: a Reshape to the checked output shape (runtime dims computed from
    the inputs); flatten from axis 1 to the end is ONNX Flatten."""
    a = lw.attrs
    rank = lw.in_types[0].rank
    if node.op == "flatten" and rank >= 2 and a.start_dim == 1 and a.end_dim in (-1, rank - 1):
        return [lw.op("Flatten", [ins[0]], axis=1)]
    return [lw.reshape(ins[0], lw.out_types[0].shape)]


def _permute(lw: Lower, node, ins):
    rank = lw.in_types[0].rank
    return [lw.op("Transpose", [ins[0]], perm=[d % rank for d in lw.attrs.dims])]


def _transpose(lw: Lower, node, ins):
    rank = lw.in_types[0].rank
    perm = list(range(rank))
    d0, d1 = lw.attrs.dim0 % rank, lw.attrs.dim1 % rank
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return [lw.op("Transpose", [ins[0]], perm=perm)]


def _squeeze(lw: Lower, node, ins):
    return [lw.squeeze(ins[0], [lw.attrs.dim % lw.in_types[0].rank])]


def _unsqueeze(lw: Lower, node, ins):
    dim = lw.attrs.dim
    rank = lw.in_types[0].rank
    return [lw.unsqueeze(ins[0], [dim + rank + 1 if dim < 0 else dim])]


def _zeros(lw: Lower, node, ins):
    t = lw.out_types[0]
    from onnx import helper

    value = helper.make_tensor("value", ELEM[t.dtype], [1], [0])
    return [lw.op("ConstantOfShape", [lw.dims(t.shape)], value=value)]


def _concat(lw: Lower, node, ins):
    return [lw.op("Concat", ins, axis=lw.attrs.dim)]


def _stack(lw: Lower, node, ins):
    rank = lw.in_types[0].rank
    dim = lw.attrs.dim + rank + 1 if lw.attrs.dim < 0 else lw.attrs.dim
    return [lw.op("Concat", [lw.unsqueeze(x, [dim]) for x in ins], axis=dim)]


def _split(lw: Lower, node, ins):
    rank = lw.in_types[0].rank
    axis = lw.attrs.dim % rank
    sizes = lw.dims([t.shape[axis] for t in lw.out_types])
    outs = lw.op("Split", [ins[0], sizes], n_out=len(lw.out_types), axis=axis)
    return outs if isinstance(outs, list) else [outs]


def _index(lw: Lower, node, ins):
    """x[i, a:b, ...]: one Slice over the indexed axes, then Squeeze of the `index` axes."""
    big = np.iinfo(np.int64).max
    starts, ends, axes, drop = [], [], [], []
    for ax, (kind, p, q) in enumerate(lw.attrs.items):
        if kind == "index":
            starts.append(p)
            ends.append(p + 1 if p != -1 else big)
            drop.append(ax)
        else:
            if p is None and q is None:
                continue
            starts.append(0 if p is None else p)
            ends.append(big if q is None else q)
        axes.append(ax)
    x = ins[0]
    if axes:
        x = lw.op("Slice", [x, lw.ints(starts), lw.ints(ends), lw.ints(axes)])
    if drop:
        x = lw.squeeze(x, drop)
    if x == ins[0]:
        x = lw.op("Identity", [x])
    return [x]


_REDUCE = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin"}


def reduce(lw: Lower, op_type: str, x: str, axes: list[int], keepdims: bool) -> str:
    """A Reduce* node: axes as an input from opset 18 (ReduceSum from 13), an attribute
    before."""
    if op_type == "ReduceSum" or lw.opset >= 18:
        return lw.op(op_type, [x, lw.ints(axes)], keepdims=int(keepdims))
    return lw.op(op_type, [x], axes=axes, keepdims=int(keepdims))


def _reduce(name: str):
    def lower(lw: Lower, node, ins):
        rank = lw.in_types[0].rank
        dims = lw.attrs.dim if isinstance(lw.attrs.dim, tuple) else (lw.attrs.dim,)
        axes = sorted({d % rank for d in dims})
        return [reduce(lw, _REDUCE[name], ins[0], axes, lw.attrs.keepdim)]
    return lower


# ---- dense layers ------------------------------------------------------------------------


def linear(lw: Lower, x: str, w: str, b: str | None, rank: int) -> str:
    """x Wᵀ + b: Gemm for a 2-d input, else MatMul with the transposed weight (+ Add)."""
    if rank == 2:
        return lw.op("Gemm", [x, w] + ([b] if b else []), transB=1)
    y = lw.op("MatMul", [x, lw.op("Transpose", [w], perm=[1, 0])])
    return lw.op("Add", [y, b]) if b else y


def _linear(lw: Lower, node, ins):
    b = lw.param("bias") if lw.has_param("bias") else None
    return [linear(lw, ins[0], lw.param("weight"), b, lw.in_types[0].rank)]


def _embedding(lw: Lower, node, ins):
    return [lw.op("Gather", [lw.param("weight"), ins[0]], axis=0)]


def _global_avg_pool(lw: Lower, node, ins):
    return [lw.op("GlobalAveragePool", [ins[0]])]


def _k_max_pool(lw: Lower, node, ins):
    """TopK's k largest, put back in their original order (TopK of the indices), gathered."""
    rank = lw.in_types[0].rank
    ax = lw.attrs.dim % rank
    k = lw.ints([lw.attrs.k])
    _, idx = lw.op("TopK", [ins[0], k], n_out=2, axis=ax, largest=1, sorted=1)
    idx_sorted, _ = lw.op("TopK", [idx, k], n_out=2, axis=ax, largest=0, sorted=1)
    return [lw.op("GatherElements", [ins[0], idx_sorted], axis=ax)]


# ---- normalisation -------------------------------------------------------------------------


def _batch_norm(lw: Lower, node, ins):
    a = lw.attrs
    t = lw.in_types[0]
    c = int(t.shape[1])
    dt = numpy_dtype(t.dtype)
    scale = lw.param("weight") if a.affine else lw.const(np.ones(c, dt), f"{lw.label}.ones")
    bias = lw.param("bias") if a.affine else lw.const(np.zeros(c, dt), f"{lw.label}.zeros")
    if a.track_running_stats:
        return [lw.op("BatchNormalization", [ins[0], scale, bias, lw.param("running_mean"),
                                             lw.param("running_var")], epsilon=a.eps)]
    # Without running statistics the batch's own (biased) statistics are used in eval too.
    axes = [0] + list(range(2, t.rank))
    x = ins[0]
    mean = reduce(lw, "ReduceMean", x, axes, True)
    centred = lw.op("Sub", [x, mean])
    var = reduce(lw, "ReduceMean", lw.op("Mul", [centred, centred]), axes, True)
    std = lw.op("Sqrt", [lw.op("Add", [var, lw.fscalar(a.eps)])])
    shape = [c] + [1] * (t.rank - 2)
    y = lw.op("Div", [centred, std])
    return [lw.op("Add", [lw.op("Mul", [y, lw.reshape(scale, shape)]), lw.reshape(bias, shape)])]


def _layer_norm(lw: Lower, node, ins):
    """LayerNormalization over the trailing axes. channels_first (ConvNeXt's LayerNorm2d on
    [B, C, ...]): Transpose C last, LayerNormalization over it, Transpose back (as
    torchvision does)."""
    a = lw.attrs
    t = lw.in_types[0]
    dt = numpy_dtype(t.dtype)
    if a.channels_first:
        shape = [int(t.shape[1])]
    else:
        n_axes = 1 if a.normalized_shape is None or isinstance(a.normalized_shape, int) \
            else len(a.normalized_shape)
        shape = [int(d) for d in t.shape[t.rank - n_axes:]]
    if a.elementwise_affine:
        scale = lw.param("weight")
        bias = [lw.param("bias")] if lw.has_param("bias") else []
    else:
        scale, bias = lw.const(np.ones(shape, dt), f"{lw.label}.ones"), []
    if not a.channels_first:
        return [lw.op("LayerNormalization", [ins[0], scale] + bias, axis=-len(shape),
                      epsilon=a.eps)]
    perm = [0] + list(range(2, t.rank)) + [1]
    back = [0, t.rank - 1] + list(range(1, t.rank - 1))
    last = lw.op("Transpose", [ins[0]], perm=perm)
    y = lw.op("LayerNormalization", [last, scale] + bias, axis=-1, epsilon=a.eps)
    return [lw.op("Transpose", [y], perm=back)]


def _lrn(lw: Lower, node, ins):
    """ONNX LRN for an odd window; an even one is centred differently by torch (size//2
    channels before, ONNX (size-1)//2), so it is written out: the window sums of x² as a
    product with a constant [C, C] band matrix over the channel axis, then
    x / (k + alpha/size · sum)^beta."""
    a = lw.attrs
    if a.size % 2:
        return [lw.op("LRN", [ins[0]], size=a.size, alpha=a.alpha, beta=a.beta, bias=a.k)]
    t = lw.in_types[0]
    if not t.shape[1].is_Integer:
        raise lw.unsupported(f"an even window (size={a.size}) over a runtime channel count",
                             "use an odd size, or a fixed channel count")
    c = int(t.shape[1])
    dt = numpy_dtype(t.dtype)
    band = np.zeros((c, c), dt)  # band[j, i] = 1 when channel j is in channel i's window
    for i in range(c):
        band[max(0, i - a.size // 2):min(c, i + (a.size - 1) // 2 + 1), i] = 1
    perm = [0] + list(range(2, t.rank)) + [1]  # channels last
    back = [0, t.rank - 1] + list(range(1, t.rank - 1))
    x = ins[0]
    sq = lw.op("Transpose", [lw.op("Mul", [x, x])], perm=perm)
    acc = lw.op("Transpose", [lw.op("MatMul", [sq, lw.const(band, f"{lw.label}.window")])],
                perm=back)
    base = lw.op("Add", [lw.op("Mul", [acc, lw.fscalar(a.alpha / a.size)]), lw.fscalar(a.k)])
    return [lw.op("Div", [x, lw.op("Pow", [base, lw.fscalar(a.beta)])])]


# ---- spatial -------------------------------------------------------------------------------


def _affine_grid(lw: Lower, node, ins):
    """The base grid [H·W, 3] (x, y, 1) as a constant, times θᵀ: [B, H·W, 2] -> [B, H, W, 2]
    (AffineGrid itself is opset 20)."""
    from dslc.ops.spatial import _linspace

    a = lw.attrs
    t = lw.in_types[0]
    dt = np.dtype(np.promote_types(numpy_dtype(t.dtype), np.float32))
    xs = _linspace(a.out_w, a.align_corners, dt)
    ys = _linspace(a.out_h, a.align_corners, dt)
    base = np.empty((a.out_h, a.out_w, 3), dtype=dt)
    base[..., 0] = xs[None, :]
    base[..., 1] = ys[:, None]
    base[..., 2] = 1.0
    base = base.reshape(a.out_h * a.out_w, 3).astype(numpy_dtype(t.dtype))
    theta_t = lw.op("Transpose", [ins[0]], perm=[0, 2, 1])  # [B, 3, 2]
    grid = lw.op("MatMul", [lw.const(base, f"{lw.label}.base"), theta_t])
    return [lw.reshape(grid, lw.out_types[0].shape)]


def _grid_sample(lw: Lower, node, ins):
    a = lw.attrs
    lw.need_opset(16, "GridSample")
    mode = a.mode
    if lw.opset >= 20:
        mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    return [lw.op("GridSample", ins, mode=mode, padding_mode=a.padding_mode,
                  align_corners=int(a.align_corners))]


# ---- random ops at inference ---------------------------------------------------------------


def _reparameterize(lw: Lower, node, ins):
    return [ins[0]]  # z = mu at inference


def _randn_like(lw: Lower, node, ins):
    t = lw.out_types[0]
    return [lw.op("RandomNormalLike", [ins[0]], dtype=ELEM[t.dtype])]


LOWERINGS = {
    "identity": _passthrough,
    "dropout": train_identity,
    "dropout2d": train_identity,
    "gaussian_noise": train_identity,
    "relu": _unary("Relu"),
    "leaky_relu": _leaky_relu,
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "tanh": _unary("Tanh"),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "gelu": _gelu,
    "elu": _elu,
    "prelu": _prelu,
    **{name: _binary(name) for name in _BINARY},
    "matmul": _matmul,
    "const": _const,
    "flatten": _to_out_shape,
    "reshape": _to_out_shape,
    "permute": _permute,
    "transpose": _transpose,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "zeros": _zeros,
    "concat": _concat,
    "stack": _stack,
    "split": _split,
    "index": _index,
    **{name: _reduce(name) for name in _REDUCE},
    "linear": _linear,
    "embedding": _embedding,
    "global_avg_pool": _global_avg_pool,
    "k_max_pool": _k_max_pool,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "local_response_norm": _lrn,
    "affine_grid": _affine_grid,
    "grid_sample": _grid_sample,
    "reparameterize": _reparameterize,
    "randn_like": _randn_like,
}
