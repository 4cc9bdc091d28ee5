"""Vector-Jacobian products of the graph ops (the `vjp` of the op records in ops/graph.py and
ops/graph_layers.py), run by the interpreter's backward walk. Edge indices, batch vectors
and the node tensors read for their size only get no cotangent (None).

The backward of a gather is a scatter-add and the other way round; a sum over incoming edges
is a product with the adjacency A (A[i, j] = sum of the weights of edges j -> i), so its
backward is a product with Aᵀ. Memory: what the forward computed per edge ([E, ...] messages
and attention weights) is recomputed from the inputs, not kept.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from dslc.ops.graph_common import GMM_EPS, lstm_aggregate


def _ends(ei: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    from dslc.ops.graph_common import check_index  # graph_common's users import this module
    return check_index(ei[0], n, "edge_index"), check_index(ei[1], n, "edge_index")


def _row(side: str) -> int:
    return 0 if side == "source" else 1


def scatter_add(vals: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """out[i] = sum of vals[e] over idx[e] == i (out [n, ...])."""
    out = np.zeros((n,) + vals.shape[1:], vals.dtype)
    np.add.at(out, idx, vals)
    return out


def adjacency(src: np.ndarray, dst: np.ndarray, w: np.ndarray | None, n: int,
              dtype) -> sparse.csr_matrix:
    """A [n, n] with A[dst, src] = w (repeated edges add): propagate(x) = A @ x."""
    w = np.ones(src.shape[0], dtype) if w is None else w.astype(dtype, copy=False)
    return sparse.csr_matrix((w, (dst, src)), shape=(n, n))


def matmul_nodes(a: sparse.spmatrix, x: np.ndarray) -> np.ndarray:
    """a @ x for x [n, ...] (trailing axes flattened for the sparse product)."""
    flat = x.reshape(x.shape[0], -1)
    return np.asarray(a @ flat).reshape((a.shape[0],) + x.shape[1:])


def _max_share(vals: np.ndarray, best: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Which entries are their group's maximum, each tied one weighted 1/ties (torch's amax
    backward splits the cotangent evenly)."""
    hit = (vals == best[idx]).astype(vals.dtype)
    ties = scatter_add(hit, idx, n)
    return hit / np.maximum(ties, 1)[idx]


# ---- primitives ----------------------------------------------------------------------------


def gather_vjp(a, ins, outs, gouts, ctx):
    x, ei = ins
    idx = _ends(ei, x.shape[0])[_row(a.side)]
    return [scatter_add(gouts[0], idx, x.shape[0]), None], {}


def scatter_vjp(a, ins, outs, gouts, ctx):
    msgs, ei, x = ins
    n = x.shape[0]
    idx = _ends(ei, n)[_row(a.side)]
    g = gouts[0][idx]
    if a.reduce == "mean":
        count = np.maximum(np.bincount(idx, minlength=n), 1).astype(g.dtype)
        g = g / count[idx].reshape((-1,) + (1,) * (g.ndim - 1))
    elif a.reduce == "max":
        g = g * _max_share(msgs, outs[0], idx, n)
    return [g, None, None], {}


def segment_softmax_grad(y: np.ndarray, g: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """The cotangent of scores from that of their softmax y over groups idx: y (g - <g, y>)."""
    return y * (g - scatter_add(g * y, idx, n)[idx])


def edge_softmax_vjp(a, ins, outs, gouts, ctx):
    s, ei, x = ins
    n = x.shape[0]
    return [segment_softmax_grad(outs[0], gouts[0], _ends(ei, n)[1], n), None, None], {}


def propagate_vjp(a, ins, outs, gouts, ctx):
    """out = A x: dx = Aᵀ g, and an edge weight's cotangent is <g[target], x[source]>."""
    x, ei = ins[0], ins[1]
    w = ins[2] if len(ins) == 3 else None
    n = x.shape[0]
    src, dst = _ends(ei, n)
    g = gouts[0]
    gx = matmul_nodes(adjacency(src, dst, w, n, g.dtype).T.tocsr(), g)
    res = [gx, None]
    if w is not None:
        res.append((g[dst] * x[src]).reshape(src.shape[0], -1).sum(axis=1))
    return res, {}


def chebyshev_grad(ts: list[np.ndarray], gts: list[np.ndarray], src, dst, w, n):
    """Backward through T_1 = L x, T_k = 2 L T_(k-1) - T_(k-2), with gts the cotangents of
    the T_k: returns (dx, dw) (dw over the edges of L's index)."""
    gts = [g.copy() for g in gts]
    lt = adjacency(src, dst, w, n, gts[0].dtype).T.tocsr()
    dw = np.zeros(src.shape[0], gts[0].dtype)
    for k in range(len(ts) - 1, 0, -1):
        c = 2.0 if k > 1 else 1.0
        gts[k - 1] += c * matmul_nodes(lt, gts[k])
        dw += c * (gts[k][dst] * ts[k - 1][src]).reshape(src.shape[0], -1).sum(axis=1)
        if k > 1:
            gts[k - 2] -= gts[k]
    return gts[0], dw


def chebyshev_vjp(a, ins, outs, gouts, ctx):
    x, ei, w = ins
    n = x.shape[0]
    src, dst = _ends(ei, n)
    ts = list(outs[0])
    gx, gw = chebyshev_grad(ts, list(gouts[0]), src, dst, w, n)
    return [gx, None, gw], {}


def diffusion_vjp(a, ins, outs, gouts, ctx):
    """h_k = P h_(k-1), P = D⁻¹A (a mean over incoming edges): dx = sum_k (Pᵀ)^k g_k."""
    x, ei = ins
    n = x.shape[0]
    src, dst = _ends(ei, n)
    count = np.maximum(np.bincount(dst, minlength=n), 1)
    pt = adjacency(src, dst, 1.0 / count[dst], n, gouts[0].dtype).T.tocsr()
    g = np.zeros_like(x, dtype=gouts[0].dtype)
    for k in range(a.hops, 0, -1):
        g = matmul_nodes(pt, g + gouts[0][:, k - 1])
    return [g, None], {}


def readout_vjp(a, ins, outs, gouts, ctx):
    x, batch = ins
    b = outs[0].shape[0]
    idx = batch.astype(np.intp)
    g = gouts[0][idx]
    if a.reduce == "mean":
        count = np.maximum(np.bincount(idx, minlength=b), 1).astype(g.dtype)
        g = g / count[idx].reshape((-1,) + (1,) * (g.ndim - 1))
    elif a.reduce == "max":
        g = g * _max_share(x, outs[0], idx, b)
    return [g, None], {}


def shape_only_vjp(a, ins, outs, gouts, ctx):
    """The float output depends on the integer inputs and the other input's shape alone
    (degree, laplacian): no cotangent flows."""
    return [None] * len(ins), {}


def gcn_weights_grad(ei: np.ndarray, n: int, w: np.ndarray | None, gout: np.ndarray):
    """The cotangent of the edge weights w [E] (None: all ones, no cotangent) of
    graph_common.gcn_weights from that of its result gout [E + N]."""
    if w is None:
        return None
    src, dst = _ends(ei, n)
    e = src.shape[0]
    loops = src == dst
    loop_w = np.ones(n, gout.dtype)
    loop_w[src[loops]] = w[loops]
    ww = np.concatenate([np.where(loops, 0, w), loop_w]).astype(gout.dtype)
    src2 = np.concatenate([src, np.arange(n)])
    dst2 = np.concatenate([dst, np.arange(n)])
    deg = np.bincount(dst2, weights=ww, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        dinv = deg ** -0.5
        ddeg = -0.5 * deg ** -1.5
    alive = np.isfinite(dinv)  # an isolated node's inf is set to 0: a constant
    dinv, ddeg = np.where(alive, dinv, 0), np.where(alive, ddeg, 0)
    g_ww = gout * dinv[src2] * dinv[dst2]
    g_dinv = (np.bincount(src2, weights=gout * ww * dinv[dst2], minlength=n)
              + np.bincount(dst2, weights=gout * ww * dinv[src2], minlength=n))
    g_ww = g_ww + (g_dinv * ddeg)[dst2]
    # A self-loop's weight moved to its node's appended loop. With repeated loops only one
    # of them set it, but torch's autograd (index_put's backward) hands the cotangent to
    # each of them: so does this, to equal torch.
    gw = np.where(loops, g_ww[e:][src], g_ww[:e])
    return gw.astype(gout.dtype)


def gcn_norm_vjp(a, ins, outs, gouts, ctx):
    ei, x = ins[0], ins[1]
    w = ins[2] if len(ins) == 3 else None
    gw = None if gouts[1] is None else gcn_weights_grad(ei, x.shape[0], w, gouts[1])
    return [None, None] + ([gw] if len(ins) == 3 else []), {}


# ---- layers --------------------------------------------------------------------------------


def gcn_conv_vjp(a, ins, outs, gouts, ctx):
    """out = Â (x Wᵀ) + b with Â = D^-1/2 (A + I) D^-1/2."""
    from dslc.ops.graph_common import gcn_weights, looped
    x, ei = ins[0], ins[1]
    w_in = ins[2] if len(ins) == 3 else None
    n = x.shape[0]
    g = gouts[0]
    wt = ctx.params["weight"]
    src2, dst2 = _ends(looped(ei, n), n)
    norm = gcn_weights(ei, n, g.dtype, w_in)
    gh = matmul_nodes(adjacency(src2, dst2, norm, n, g.dtype).T.tocsr(), g)
    grads = {"weight": gh.T @ x}
    if a.bias:
        grads["bias"] = g.sum(axis=0)
    res = [gh @ wt, None]
    if w_in is not None:
        h = x @ wt.T
        gnorm = (g[dst2] * h[src2]).sum(axis=1)
        res.append(gcn_weights_grad(ei, n, w_in, gnorm))
    return res, grads


def cheb_conv_vjp(a, ins, outs, gouts, ctx):
    from dslc.ops.graph_common import chebyshev, laplacian_weights, looped
    x, ei = ins
    n = x.shape[0]
    g = gouts[0]
    w = laplacian_weights(ei, n, x.dtype, a.normalization, True, a.lambda_max)
    ei2 = looped(ei, n)
    ts = chebyshev(x, ei2, w, a.K)
    wt = ctx.params["weight"]
    grads = {"weight": np.stack([g.T @ t for t in ts])}
    if a.bias:
        grads["bias"] = g.sum(axis=0)
    src, dst = _ends(ei2, n)
    gx, _ = chebyshev_grad(ts, [g @ wt[k] for k in range(a.K)], src, dst, w, n)
    return [gx, None], grads


def gat_conv_vjp(a, ins, outs, gouts, ctx):
    """GATConv: attention logits a_s[src] + a_d[dst] through a leaky ReLU, a softmax over each
    node's incoming edges (self-loops added, old ones left out), a weighted sum."""
    from dslc.ops.graph_common import looped
    x, ei = ins
    n, hh, c = x.shape[0], a.heads, a.out_channels
    p = ctx.params
    g = gouts[0]
    h = (x @ p["weight"].T).reshape(n, hh, c)
    a_s = (h * p["att_src"]).sum(-1)
    a_d = (h * p["att_dst"]).sum(-1)
    src, dst = _ends(looped(ei, n), n)
    raw = a_s[src] + a_d[dst]
    e = np.where(raw > 0, raw, a.negative_slope * raw)
    old_loop = np.concatenate([ei[0] == ei[1], np.zeros(n, bool)])
    e = np.where(old_loop[:, None], -np.inf, e)
    top = np.full((n, hh), -np.inf, e.dtype)
    np.maximum.at(top, dst, e)
    ex = np.exp(e - top[dst])
    alpha = ex / scatter_add(ex, dst, n)[dst]  # [E', H]
    grads = {}
    if a.bias:
        grads["bias"] = g.sum(axis=0)
    g3 = g.reshape(n, hh, c) if a.concat else np.repeat(g[:, None, :] / hh, hh, axis=1)
    g_alpha = (g3[dst] * h[src]).sum(-1)  # [E', H]
    gh = scatter_add(g3[dst] * alpha[:, :, None], src, n)
    g_e = segment_softmax_grad(alpha, g_alpha, dst, n)
    g_raw = g_e * np.where(raw > 0, raw.dtype.type(1), raw.dtype.type(a.negative_slope))
    g_as, g_ad = scatter_add(g_raw, src, n), scatter_add(g_raw, dst, n)
    grads["att_src"] = (g_as[:, :, None] * h).sum(0, keepdims=True)
    grads["att_dst"] = (g_ad[:, :, None] * h).sum(0, keepdims=True)
    gh = gh + g_as[:, :, None] * p["att_src"] + g_ad[:, :, None] * p["att_dst"]
    gh = gh.reshape(n, hh * c)
    grads["weight"] = gh.T @ x
    return [gh @ p["weight"], None], grads


def gin_aggregate_vjp(a, ins, outs, gouts, ctx):
    """out = (1 + eps) x + A x."""
    x, ei = ins
    n = x.shape[0]
    g = gouts[0]
    src, dst = _ends(ei, n)
    eps = ctx.params["eps"] if a.train_eps else a.eps
    gx = (1 + eps) * g + matmul_nodes(adjacency(src, dst, None, n, g.dtype).T.tocsr(), g)
    grads = {"eps": np.array([np.sum(g * x)])} if a.train_eps else {}
    return [gx, None], grads


def _lstm_aggregate_grad(h_sorted, seg, p, g_agg):
    """BPTT through the LSTM aggregator (graph_common.lstm_aggregate): each node's
    neighbours are one sequence of length deg; returns the cotangent of h_sorted and the
    LSTM's weight gradients. Memory: every step's states for every node."""
    from dslc.ops.recurrent_grad import _Direction
    n, f = seg.n, h_sorted.shape[1]
    deg = seg.counts
    steps = max(int(deg.max()) if deg.size else 0, 1)
    pos = np.arange(h_sorted.shape[0]) - np.repeat(np.r_[0, np.cumsum(deg)[:-1]], deg)
    dense = np.zeros((n, steps, f), g_agg.dtype)
    dense[seg.sorted_idx, pos] = h_sorted
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    cell = _Direction("lstm", False, {f"{k}_agg": p[k] for k in names}, "agg", f)
    mask = (np.arange(steps)[:, None] < deg)[:, :, None].astype(g_agg.dtype)
    zeros = np.zeros((n, f), g_agg.dtype)
    cell.forward(dense, zeros, zeros, mask, list(range(steps)))
    grads: dict[str, np.ndarray] = {}
    du, _, _ = cell.backward(np.zeros((n, steps, f), g_agg.dtype), g_agg, zeros, grads)
    return du[seg.sorted_idx, pos], {k: grads[f"{k}_agg"] for k in names}


def sage_conv_vjp(a, ins, outs, gouts, ctx):
    """SAGEConv: out = lin_l(aggregate of neighbours' h) + lin_r(x), h = x or
    relu(lin(x)) with project; aggregate mean, max or an LSTM over the neighbours."""
    from dslc.ops.graph_common import propagate, segments
    x, ei = ins
    p = ctx.params
    n = x.shape[0]
    g = gouts[0]
    src, dst = _ends(ei, n)
    h = x
    if a.project:
        pre = x @ p["lin_weight"].T + p["lin_bias"]
        h = np.maximum(pre, 0)
    grads: dict[str, np.ndarray] = {}
    if a.aggr == "lstm":
        seg = segments(ei, 1, n)
        agg = lstm_aggregate(h[src[seg.order]], seg, p)
    else:
        agg = propagate(h, ei, None, a.aggr)
    grads["lin_l_weight"] = g.T @ agg
    if a.bias:
        grads["lin_l_bias"] = g.sum(axis=0)
    gx = np.zeros_like(x, dtype=g.dtype)
    if a.root_weight:
        grads["lin_r_weight"] = g.T @ x
        gx += g @ p["lin_r_weight"]
    g_agg = g @ p["lin_l_weight"]
    if a.aggr == "mean":
        count = np.maximum(np.bincount(dst, minlength=n), 1).astype(g.dtype)
        gh = scatter_add(g_agg[dst] / count[dst, None], src, n)
    elif a.aggr == "max":
        gh = scatter_add(g_agg[dst] * _max_share(h[src], agg, dst, n), src, n)
    else:
        g_sorted, lstm_grads = _lstm_aggregate_grad(h[src[seg.order]], seg, p, g_agg)
        grads.update(lstm_grads)
        gh = scatter_add(g_sorted, src[seg.order], n)
    if a.project:
        gpre = gh * (pre > 0)
        grads["lin_weight"] = gpre.T @ x
        grads["lin_bias"] = gpre.sum(axis=0)
        gh = gpre @ p["lin_weight"]
    return [gx + gh, None], grads


def gmm_conv_vjp(a, ins, outs, gouts, ctx):
    """GMMConv (MoNet): messages sum_k gauss_k(pseudo) (x g)[src, k], averaged per target."""
    x, ei, pseudo = ins
    p = ctx.params
    n, k, o = x.shape[0], a.kernel_size, a.out_channels
    g = gouts[0]
    src, dst = _ends(ei, n)
    h = (x @ p["g"]).reshape(n, k, o)
    diff = pseudo[:, None, :] - p["mu"][None]  # [E, K, d]
    var = GMM_EPS + p["sigma"][None] ** 2
    gauss = np.exp((-0.5 * diff ** 2 / var).sum(-1))  # [E, K]
    count = np.maximum(np.bincount(dst, minlength=n), 1).astype(g.dtype)
    gm = g[dst] / count[dst, None]  # the cotangent of each message [E, O]
    grads: dict[str, np.ndarray] = {}
    if a.bias:
        grads["bias"] = g.sum(axis=0)
    gx = np.zeros_like(x, dtype=g.dtype)
    if a.root_weight:
        grads["root_weight"] = g.T @ x
        gx += g @ p["root_weight"]
    gh = scatter_add(gm[:, None, :] * gauss[:, :, None], src, n)  # [n, K, O]
    g_gauss = (gm[:, None, :] * h[src]).sum(-1)  # [E, K]
    gz = (g_gauss * gauss)[:, :, None]  # through exp, then the sum over d
    g_diff = gz * (-diff / var)
    grads["mu"] = -g_diff.sum(axis=0)
    grads["sigma"] = (gz * (diff ** 2 / var ** 2) * p["sigma"][None]).sum(axis=0)
    grads["g"] = x.T @ gh.reshape(n, k * o)
    gx += gh.reshape(n, k * o) @ p["g"].T
    return [gx, None, g_diff.sum(axis=1)], grads
