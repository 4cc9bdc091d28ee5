"""ONNX lowerings of the graph ops: messages by Gather on the edge index rows, aggregation by
ScatterND with a reduction (add; max from opset 18; mean as sum / count), self-loops and
normalised adjacency weights as the NumPy kernels compute them, and the layers built from
them (GCN, ChebNet, GAT, GIN, GraphSAGE with its LSTM aggregator, MoNet)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from dslc.backends.onnx_builder import ELEM, Lower
from dslc.backends.onnx_lower_core import linear, reduce
from dslc.backends.onnx_lower_seq import _rows
from dslc.types import FLOAT_DTYPES, numpy_dtype

# ---- building blocks ------------------------------------------------------------------------


def _fill(lw: Lower, shape: str, value, dtype: str) -> str:
    """A tensor of `shape` (an int64 shape tensor) filled with `value`."""
    arr = np.asarray([value], dtype=numpy_dtype(dtype))
    return lw.op("ConstantOfShape", [shape], value=helper.make_tensor(
        "value", ELEM[dtype], [1], arr.tolist()))


def _count(lw: Lower, x: str) -> str:
    """int64 [1]: the size of axis 0 of x (nodes of a node tensor)."""
    return lw.op("Shape", [x], start=0, end=1)


def _edges(lw: Lower, ei: str) -> str:
    """int64 [1]: the number of edges of an edge index [2, E]."""
    return lw.op("Shape", [ei], start=1, end=2)


def _ei(lw: Lower, ei: str, arg: int) -> str:
    """The edge index as int64 (an i32 one is cast)."""
    return ei if lw.in_types[arg].dtype == "i64" else lw.cast(ei, "i64")


def _row(lw: Lower, ei: str, row: int) -> str:
    return lw.op("Gather", [ei, lw.const(np.asarray(row, np.int64), f"row{row}")], axis=0)


def _arange(lw: Lower, n: str) -> str:
    """int64 [n] from an int64 [1] count."""
    return lw.op("Range", [lw.const(np.asarray(0, np.int64), "zero"), lw.squeeze(n, [0]),
                           lw.const(np.asarray(1, np.int64), "one")])


def _per_edge(lw: Lower, w: str, rank: int) -> str:
    """A per-edge vector [E] shaped to broadcast over [E, ...] messages of this rank."""
    return w if rank == 1 else lw.unsqueeze(w, list(range(1, rank)))


def scatter(lw: Lower, msgs: str, idx: str, n: str, reduction: str, dtype: str,
            rank: int) -> str:
    """out[i] = reduction over the messages whose idx is i, for i < n; 0 where none (as the
    NumPy kernels). sum: ScatterND add; max: ScatterND max over -inf, then 0 where no
    message; mean: sum / max(count, 1)."""
    shape = lw.op("Concat", [n, lw.op("Shape", [msgs], start=1)], axis=0)
    where = lw.unsqueeze(idx, [1])
    if reduction == "sum":
        return lw.op("ScatterND", [_fill(lw, shape, 0.0, dtype), where, msgs], reduction="add")
    count = lw.op("ScatterND", [_fill(lw, n, 0.0, dtype), where,
                                _fill(lw, lw.op("Shape", [idx]), 1.0, dtype)], reduction="add")
    count = _per_edge(lw, count, rank)
    if reduction == "mean":
        total = lw.op("ScatterND", [_fill(lw, shape, 0.0, dtype), where, msgs],
                      reduction="add")
        return lw.op("Div", [total, lw.op("Max", [count, lw.scalar(1.0, dtype)])])
    lw.need_opset(18, "a max aggregation (ScatterND reduction='max')")
    lowest = -np.inf if dtype in FLOAT_DTYPES else np.iinfo(numpy_dtype(dtype)).min
    top = lw.op("ScatterND", [_fill(lw, shape, lowest, dtype), where, msgs], reduction="max")
    has = lw.op("Greater", [count, lw.scalar(0.0, dtype)])
    return lw.op("Where", [has, top, lw.scalar(0.0, dtype)])


def propagate(lw: Lower, x: str, src: str, dst: str, w: str | None, reduction: str,
              dtype: str, rank: int) -> str:
    """out[i] = reduction over edges j -> i of w_e x[j]."""
    msgs = lw.op("Gather", [x, src], axis=0)
    if w is not None:
        msgs = lw.op("Mul", [msgs, _per_edge(lw, w, rank)])
    return scatter(lw, msgs, dst, _count(lw, x), reduction, dtype, rank)


def looped(lw: Lower, ei: str, x: str) -> tuple[str, str, str]:
    """The edge index with one self-loop per node appended: (edge index, sources,
    targets)."""
    loop = _arange(lw, _count(lw, x))
    pair = lw.op("Concat", [lw.unsqueeze(loop, [0]), lw.unsqueeze(loop, [0])], axis=0)
    ei2 = lw.op("Concat", [ei, pair], axis=1)
    return ei2, _row(lw, ei2, 0), _row(lw, ei2, 1)


def _inv_pow(lw: Lower, deg: str, p: float, dtype: str) -> str:
    """deg ** p with 0 for a zero degree."""
    zero = lw.scalar(0.0, dtype)
    return lw.op("Where", [lw.op("Equal", [deg, zero]), zero,
                           lw.op("Pow", [deg, lw.scalar(p, dtype)])])


def gcn_weights(lw: Lower, ei: str, x: str, w: str | None, dtype: str) -> str:
    """torch_geometric's gcn_norm over the self-looped edges: an old self-loop gets weight 0
    and gives its weight to the appended loop (a ScatterElements into a spare slot N for the
    other edges), then D^-1/2 (A + I) D^-1/2."""
    src, dst = _row(lw, ei, 0), _row(lw, ei, 1)
    n = _count(lw, x)
    loops = lw.op("Equal", [src, dst])
    zero, one = lw.scalar(0.0, dtype), lw.scalar(1.0, dtype)
    if w is None:
        w = _fill(lw, _edges(lw, ei), 1.0, dtype)
        loop_w = _fill(lw, n, 1.0, dtype)
    else:
        w = lw.cast(w, dtype) if lw.in_types[2].dtype != dtype else w
        spare = lw.op("Add", [n, lw.ints([1])])
        slot = lw.op("Where", [loops, src, lw.squeeze(n, [0])])
        loop_w = lw.op("ScatterElements", [_fill(lw, spare, 1.0, dtype), slot,
                                           lw.op("Where", [loops, w, one])], axis=0)
        loop_w = lw.op("Slice", [loop_w, lw.ints([0]), n, lw.ints([0])])
    ww = lw.op("Concat", [lw.op("Where", [loops, zero, w]), loop_w], axis=0)
    _, src2, dst2 = looped(lw, ei, x)
    deg = lw.op("ScatterND", [_fill(lw, n, 0.0, dtype), lw.unsqueeze(dst2, [1]), ww],
                reduction="add")
    dinv = _inv_pow(lw, deg, -0.5, dtype)
    left = lw.op("Gather", [dinv, src2], axis=0)
    right = lw.op("Gather", [dinv, dst2], axis=0)
    return lw.op("Mul", [lw.op("Mul", [left, ww]), right])


def laplacian_weights(lw: Lower, ei: str, x: str, dtype: str, normalization: str,
                      scaled: bool, lambda_max: float) -> str:
    """Weights of L (or 2L/lambda_max - I) over the self-looped edges, as the NumPy kernel:
    old loops weigh 0, degrees counted by source."""
    src, dst = _row(lw, ei, 0), _row(lw, ei, 1)
    n = _count(lw, x)
    w = lw.cast(lw.op("Not", [lw.op("Equal", [src, dst])]), dtype)
    deg = lw.op("ScatterND", [_fill(lw, n, 0.0, dtype), lw.unsqueeze(src, [1]), w],
                reduction="add")
    if normalization == "none":
        off, diag = lw.op("Neg", [w]), deg
    else:
        dinv = _inv_pow(lw, deg, -0.5 if normalization == "sym" else -1.0, dtype)
        off = lw.op("Mul", [lw.op("Gather", [dinv, src], axis=0), w])
        if normalization == "sym":
            off = lw.op("Mul", [off, lw.op("Gather", [dinv, dst], axis=0)])
        off = lw.op("Neg", [off])
        diag = _fill(lw, n, 1.0, dtype)
    ww = lw.op("Concat", [off, diag], axis=0)
    if scaled:
        ww = lw.op("Div", [lw.op("Mul", [ww, lw.scalar(2.0, dtype)]),
                           lw.scalar(lambda_max, dtype)])
        eye = lw.op("Concat", [_fill(lw, _edges(lw, ei), 0.0, dtype), _fill(lw, n, 1.0, dtype)],
                    axis=0)
        ww = lw.op("Sub", [ww, eye])
    return ww


def chebyshev(lw: Lower, x: str, src: str, dst: str, w: str, k: int, dtype: str,
              rank: int) -> list[str]:
    """T_0 x = x, T_1 x = L x, T_k x = 2 L T_(k-1) x - T_(k-2) x."""
    ts = [x]
    if k > 1:
        ts.append(propagate(lw, x, src, dst, w, "sum", dtype, rank))
    for _ in range(2, k):
        p = propagate(lw, ts[-1], src, dst, w, "sum", dtype, rank)
        ts.append(lw.op("Sub", [lw.op("Mul", [p, lw.scalar(2.0, dtype)]), ts[-2]]))
    return ts


def segment_softmax(lw: Lower, e: str, dst: str, n: str, dtype: str, rank: int) -> str:
    """Softmax of per-edge scores over each target's edges (ScatterND max and add)."""
    lw.need_opset(18, "a softmax over edges (ScatterND reduction='max')")
    shape = lw.op("Concat", [n, lw.op("Shape", [e], start=1)], axis=0)
    where = lw.unsqueeze(dst, [1])
    m = lw.op("ScatterND", [_fill(lw, shape, -np.inf, dtype), where, e], reduction="max")
    ex = lw.op("Exp", [lw.op("Sub", [e, lw.op("Gather", [m, dst], axis=0)])])
    den = lw.op("ScatterND", [_fill(lw, shape, 0.0, dtype), where, ex], reduction="add")
    return lw.op("Div", [ex, lw.op("Gather", [den, dst], axis=0)])


# ---- primitives ------------------------------------------------------------------------------


def _side(side: str) -> int:
    return 0 if side == "source" else 1


def _gather(lw: Lower, node, ins):
    ei = _ei(lw, ins[1], 1)
    return [lw.op("Gather", [ins[0], _row(lw, ei, _side(lw.attrs.side))], axis=0)]


def _scatter(lw: Lower, node, ins):
    msgs, ei, x = ins
    t = lw.in_types[0]
    idx = _row(lw, _ei(lw, ei, 1), _side(lw.attrs.side))
    return [scatter(lw, msgs, idx, _count(lw, x), lw.attrs.reduce, t.dtype, t.rank)]


def _edge_softmax(lw: Lower, node, ins):
    s, ei, x = ins
    t = lw.in_types[0]
    dst = _row(lw, _ei(lw, ei, 1), 1)
    return [segment_softmax(lw, s, dst, _count(lw, x), t.dtype, t.rank)]


def _degree(lw: Lower, node, ins):
    ei, x = _ei(lw, ins[0], 0), ins[1]
    dtype = lw.in_types[1].dtype
    idx = _row(lw, ei, _side(lw.attrs.side))
    return [scatter(lw, _fill(lw, _edges(lw, ei), 1.0, dtype), idx, _count(lw, x), "sum",
                    dtype, 1)]


def _add_self_loops(lw: Lower, node, ins):
    return [looped(lw, _ei(lw, ins[0], 0), ins[1])[0]]


def _gcn_norm(lw: Lower, node, ins):
    ei = _ei(lw, ins[0], 0)
    dtype = lw.in_types[1].dtype
    w = ins[2] if len(ins) == 3 else None
    return [looped(lw, ei, ins[1])[0], gcn_weights(lw, ei, ins[1], w, dtype)]


def _laplacian(lw: Lower, node, ins):
    a = lw.attrs
    ei = _ei(lw, ins[0], 0)
    dtype = lw.in_types[1].dtype
    return [looped(lw, ei, ins[1])[0],
            laplacian_weights(lw, ei, ins[1], dtype, a.normalization, a.scaled, a.lambda_max)]


def _propagate(lw: Lower, node, ins):
    t = lw.in_types[0]
    ei = _ei(lw, ins[1], 1)
    w = ins[2] if len(ins) == 3 else None
    return [propagate(lw, ins[0], _row(lw, ei, 0), _row(lw, ei, 1), w, "sum", t.dtype, t.rank)]


def _chebyshev_op(lw: Lower, node, ins):
    t = lw.in_types[0]
    ei = _ei(lw, ins[1], 1)
    ts = chebyshev(lw, ins[0], _row(lw, ei, 0), _row(lw, ei, 1), ins[2], lw.attrs.K, t.dtype,
                   t.rank)
    return [lw.op("Concat", [lw.unsqueeze(v, [0]) for v in ts], axis=0)]


def _diffusion(lw: Lower, node, ins):
    t = lw.in_types[0]
    ei = _ei(lw, ins[1], 1)
    src, dst = _row(lw, ei, 0), _row(lw, ei, 1)
    hs, h = [], ins[0]
    for _ in range(lw.attrs.hops):
        h = propagate(lw, h, src, dst, None, "mean", t.dtype, t.rank)
        hs.append(lw.unsqueeze(h, [1]))
    return [lw.op("Concat", hs, axis=1)]


def _readout(lw: Lower, node, ins):
    """Per graph of the batch vector: a scatter with the batch as index; the graph count is
    `graphs` (a number or a runtime dim), or max(batch) + 1 when that dim is nowhere else."""
    a = lw.attrs
    x, batch = ins
    t = lw.in_types[0]
    if isinstance(a.graphs, int) or a.graphs in lw.state.bindings \
            or a.graphs in lw.state.sym_sources:
        n = lw.dim(a.graphs_dim())
    else:
        top = reduce(lw, "ReduceMax", lw.cast(batch, "i64"), [0], True)
        n = lw.op("Add", [top, lw.ints([1])])
    return [scatter(lw, x, lw.cast(batch, "i64"), n, a.reduce, t.dtype, t.rank)]


def _edge_dropout(lw: Lower, node, ins):
    return [_fill(lw, _edges(lw, ins[0]), 1.0, lw.in_types[1].dtype)]  # every edge kept


# ---- layers ------------------------------------------------------------------------------


def _param_or_none(lw: Lower, name: str) -> str | None:
    return lw.param(name) if lw.has_param(name) else None


def _gcn_conv(lw: Lower, node, ins):
    t = lw.in_types[0]
    ei = _ei(lw, ins[1], 1)
    w = ins[2] if len(ins) == 3 else None
    norm = gcn_weights(lw, ei, ins[0], w, t.dtype)
    _, src2, dst2 = looped(lw, ei, ins[0])
    h = linear(lw, ins[0], lw.param("weight"), None, t.rank)
    out = propagate(lw, h, src2, dst2, norm, "sum", t.dtype, 2)
    b = _param_or_none(lw, "bias")
    return [lw.op("Add", [out, b]) if b else out]


def _cheb_conv(lw: Lower, node, ins):
    a = lw.attrs
    t = lw.in_types[0]
    ei = _ei(lw, ins[1], 1)
    w = laplacian_weights(lw, ei, ins[0], t.dtype, a.normalization, True, a.lambda_max)
    _, src2, dst2 = looped(lw, ei, ins[0])
    ts = chebyshev(lw, ins[0], src2, dst2, w, a.K, t.dtype, t.rank)
    weight = lw.param("weight")
    out = None
    for k, tk in enumerate(ts):
        wk = lw.op("Gather", [weight, lw.const(np.asarray(k, np.int64), f"k{k}")], axis=0)
        y = linear(lw, tk, wk, None, t.rank)
        out = y if out is None else lw.op("Add", [out, y])
    b = _param_or_none(lw, "bias")
    return [lw.op("Add", [out, b]) if b else out]


def _gat_conv(lw: Lower, node, ins):
    """GATConv: attention logits a_s[src] + a_d[dst] over the self-looped edges (old loops
    masked to -inf), LeakyReLU, a softmax per target, weighted sum of h[src]."""
    a = lw.attrs
    t = lw.in_types[0]
    dtype = t.dtype
    x = ins[0]
    ei = _ei(lw, ins[1], 1)
    hh, c = a.heads, a.out_channels
    h = lw.reshape(linear(lw, x, lw.param("weight"), None, 2), [t.shape[0], hh, c])
    a_s = reduce(lw, "ReduceSum", lw.op("Mul", [h, lw.param("att_src")]), [2], False)
    a_d = reduce(lw, "ReduceSum", lw.op("Mul", [h, lw.param("att_dst")]), [2], False)
    _, src, dst = looped(lw, ei, x)
    e = lw.op("Add", [lw.op("Gather", [a_s, src], axis=0), lw.op("Gather", [a_d, dst], axis=0)])
    e = lw.op("LeakyRelu", [e], alpha=a.negative_slope)
    old = lw.op("Equal", [_row(lw, ei, 0), _row(lw, ei, 1)])
    no_loop = lw.op("Cast", [_fill(lw, _count(lw, x), 0.0, "f32")], to=ELEM["bool"])
    old = lw.unsqueeze(lw.op("Concat", [old, no_loop], axis=0), [1])
    e = lw.op("Where", [old, lw.scalar(-np.inf, dtype), e])
    alpha = segment_softmax(lw, e, dst, _count(lw, x), dtype, 2)
    msgs = lw.op("Mul", [lw.op("Gather", [h, src], axis=0), lw.unsqueeze(alpha, [2])])
    out = scatter(lw, msgs, dst, _count(lw, x), "sum", dtype, 3)
    if a.concat:
        out = lw.reshape(out, [t.shape[0], hh * c])
    else:
        out = reduce(lw, "ReduceMean", out, [1], False)
    b = _param_or_none(lw, "bias")
    return [lw.op("Add", [out, b]) if b else out]


def _gin_aggregate(lw: Lower, node, ins):
    t = lw.in_types[0]
    x = ins[0]
    ei = _ei(lw, ins[1], 1)
    if lw.attrs.train_eps:
        scale = lw.op("Add", [lw.param("eps"), lw.scalar(1.0, t.dtype)])
    else:
        scale = lw.scalar(1.0 + lw.attrs.eps, t.dtype)
    agg = propagate(lw, x, _row(lw, ei, 0), _row(lw, ei, 1), None, "sum", t.dtype, t.rank)
    return [lw.op("Add", [lw.op("Mul", [x, scale]), agg])]


def _lstm_aggregate(lw: Lower, h: str, ei: str, dtype: str, width: int) -> str:
    """GraphSAGE's LSTM aggregator: each node's neighbours in edge order (a stable sort of the
    targets by TopK of target·E + edge number), scattered into a [N, max degree, F] sequence,
    run by one ONNX LSTM with the degrees as sequence_lens (its Y_h is the state after a
    node's last neighbour); 0 for a node without neighbours."""
    src, dst = _row(lw, ei, 0), _row(lw, ei, 1)
    n, e = _count(lw, h), _edges(lw, ei)
    edge_no = _arange(lw, e)
    key = lw.op("Add", [lw.op("Mul", [dst, e]), edge_no])
    _, order = lw.op("TopK", [key, e], n_out=2, axis=0, largest=0, sorted=1)
    dst_s, src_s = lw.op("Gather", [dst, order], axis=0), lw.op("Gather", [src, order], axis=0)
    deg = lw.cast(scatter(lw, _fill(lw, e, 1.0, "f32"), dst, n, "sum", "f32", 1), "i64")
    start = lw.op("CumSum", [deg, lw.const(np.asarray(0, np.int64), "zero")], exclusive=1)
    pos = lw.op("Sub", [edge_no, lw.op("Gather", [start, dst_s], axis=0)])
    steps = lw.op("Max", [reduce(lw, "ReduceMax", deg, [0], True), lw.ints([1])])
    shape = lw.op("Concat", [n, steps, lw.ints([width])], axis=0)
    where = lw.op("Concat", [lw.unsqueeze(dst_s, [1]), lw.unsqueeze(pos, [1])], axis=1)
    dense = lw.op("ScatterND", [_fill(lw, shape, 0.0, dtype), where,
                                lw.op("Gather", [h, src_s], axis=0)])
    rows = lw.ints(_rows("lstm", width))

    def gate_rows(name: str) -> str:
        return lw.op("Gather", [lw.param(name), rows], axis=0)

    w = lw.unsqueeze(gate_rows("weight_ih"), [0])
    r = lw.unsqueeze(gate_rows("weight_hh"), [0])
    b = lw.unsqueeze(lw.op("Concat", [gate_rows("bias_ih"), gate_rows("bias_hh")], axis=0), [0])
    lens = lw.cast(lw.op("Max", [deg, lw.const(np.asarray(1, np.int64), "one")]), "i32")
    xs = lw.op("Transpose", [dense], perm=[1, 0, 2])
    _, y_h, _ = lw.op("LSTM", [xs, w, r, b, lens], n_out=3, hidden_size=width)
    y_h = lw.squeeze(y_h, [0])
    live = lw.unsqueeze(lw.op("Greater", [deg, lw.const(np.asarray(0, np.int64), "zero")]),
                        [1])
    return lw.op("Where", [live, y_h, lw.scalar(0.0, dtype)])


def _sage_conv(lw: Lower, node, ins):
    a = lw.attrs
    t = lw.in_types[0]
    x = ins[0]
    ei = _ei(lw, ins[1], 1)
    h = x
    if a.project:
        h = lw.op("Relu", [linear(lw, x, lw.param("lin_weight"), lw.param("lin_bias"), 2)])
    if a.aggr == "lstm":
        agg = _lstm_aggregate(lw, h, ei, t.dtype, int(t.shape[1]))
    else:
        agg = propagate(lw, h, _row(lw, ei, 0), _row(lw, ei, 1), None, a.aggr, t.dtype, 2)
    out = linear(lw, agg, lw.param("lin_l_weight"), _param_or_none(lw, "lin_l_bias"), 2)
    if a.root_weight:
        out = lw.op("Add", [out, linear(lw, x, lw.param("lin_r_weight"), None, 2)])
    return [out]


def _gmm_conv(lw: Lower, node, ins):
    """MoNet: Gaussian kernel weights of the pseudo-coordinates per edge and kernel, the
    messages' kernel-weighted sum, a mean per target, plus the root transform and bias."""
    from dslc.ops.graph_common import GMM_EPS

    a = lw.attrs
    t = lw.in_types[0]
    dtype = t.dtype
    x, ei, ps = ins[0], _ei(lw, ins[1], 1), ins[2]
    k, o = a.kernel_size, a.out_channels
    h = lw.reshape(lw.op("MatMul", [x, lw.param("g")]), [t.shape[0], k, o])
    src, dst = _row(lw, ei, 0), _row(lw, ei, 1)
    diff = lw.op("Sub", [lw.unsqueeze(ps, [1]), lw.unsqueeze(lw.param("mu"), [0])])
    sigma = lw.unsqueeze(lw.param("sigma"), [0])
    den = lw.op("Add", [lw.scalar(GMM_EPS, dtype), lw.op("Mul", [sigma, sigma])])
    z = lw.op("Div", [lw.op("Mul", [lw.op("Mul", [diff, diff]), lw.scalar(-0.5, dtype)]), den])
    gauss = lw.op("Exp", [reduce(lw, "ReduceSum", z, [2], False)])  # [E, K]
    msgs = lw.op("Mul", [lw.op("Gather", [h, src], axis=0), lw.unsqueeze(gauss, [2])])
    msgs = reduce(lw, "ReduceSum", msgs, [1], False)
    out = scatter(lw, msgs, dst, _count(lw, x), "mean", dtype, 2)
    if a.root_weight:
        out = lw.op("Add", [out, linear(lw, x, lw.param("root_weight"), None, 2)])
    b = _param_or_none(lw, "bias")
    return [lw.op("Add", [out, b]) if b else out]


LOWERINGS = {
    "gather": _gather,
    "scatter": _scatter,
    "edge_softmax": _edge_softmax,
    "degree": _degree,
    "add_self_loops": _add_self_loops,
    "gcn_norm": _gcn_norm,
    "laplacian": _laplacian,
    "propagate": _propagate,
    "chebyshev": _chebyshev_op,
    "diffusion": _diffusion,
    "readout": _readout,
    "edge_dropout": _edge_dropout,
    "gcn_conv": _gcn_conv,
    "cheb_conv": _cheb_conv,
    "gat_conv": _gat_conv,
    "gin_aggregate": _gin_aggregate,
    "sage_conv": _sage_conv,
    "gmm_conv": _gmm_conv,
}
