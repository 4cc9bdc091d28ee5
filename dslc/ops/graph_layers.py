"""Graph layer ops (gcn_conv ... gmm_conv); graph.py appends them to GRAPH_OPS for the registry."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import sparse

from dslc import dims as D
from dslc.ops import graph_grad as gg
from dslc.ops.base import Example, Op, ParamSpec, ShapeError, concrete, need_float, torch_init
from dslc.ops.graph_common import (
    GMM_EPS,
    LaplacianAttrs,
    _flat,
    _fresh,
    _Graph,
    _need_edge_index,
    _need_nodes,
    _need_per_edge,
    _t_cheb_terms,
    _t_gcn_norm,
    _t_laplacian,
    _t_loop,
    _t_propagate,
    _t_reduce,
    _t_softmax,
    chebyshev,
    check_index,
    gcn_weights,
    laplacian_weights,
    looped,
    lstm_aggregate,
    memo,
    propagate,
    segments,
)
from dslc.types import tensor

# ---- layers ------------------------------------------------------------------------------


def _in(ins, what: str) -> int:
    x = ins[0]
    need_float(x)
    if x.rank != 2:
        raise ShapeError(f"{what} takes node features [N, F]", expected="rank 2",
                         found=f"{x} (rank {x.rank})", arg=0)
    return concrete(x.shape[1], f"{what}'s input features (axis 1)")


def _need_out(v: int, attr: str = "out_channels") -> None:
    if v < 1:
        raise ShapeError(f"{attr} must be positive", expected=">= 1", found=str(v), attr=attr)


def _pdict(specs: dict[str, ParamSpec]) -> str:
    """The layer's parameters, each initialised as its torch_geometric layer does (the same
    distributions as the NumPy side's init_params), so the module trains from its own start."""
    inner = "".join(f"    {k!r}: nn.Parameter({torch_init(v)}),\n" for k, v in specs.items())
    return f"nn.ParameterDict({{\n{inner}}})"


# gcn_conv ------------------------------------------------------------------------------


class GCNAttrs(_Graph):
    out_channels: int
    bias: bool = True


def _gcn_shape(a: GCNAttrs, ins):
    _in(ins, "gcn_conv")
    _need_out(a.out_channels)
    _need_edge_index(ins[1], 1)
    if len(ins) == 3:
        _need_per_edge(ins[2], ins[1], 2, "edge_weight")
    return [ins[0].with_shape((ins[0].shape[0], D.const(a.out_channels)))]


def _gcn_params(a: GCNAttrs, ins):
    n = _in(ins, "gcn_conv")
    p = {"weight": ParamSpec((D.const(a.out_channels), D.const(n)), "glorot", n)}
    if a.bias:
        p["bias"] = ParamSpec((D.const(a.out_channels),), "zeros")
    return p


def _adjacency(ei: np.ndarray, n: int, w: np.ndarray, dtype) -> sparse.csr_matrix:
    """The weighted adjacency as a CSR matrix: out = A @ x sums w_e * x[source] at each
    target in one compiled sparse product (repeated edges add up, as scatter-sum does)."""
    return sparse.csr_matrix((w.astype(dtype, copy=False), (ei[1], ei[0])), shape=(n, n))


def _gcn_kernel(a: GCNAttrs, xs, ctx):
    x, ei = xs[0], xs[1]
    n = x.shape[0]
    ei2 = looped(ei, n)
    h = x @ ctx.params["weight"].T
    if len(xs) == 3:
        w = gcn_weights(ei, n, x.dtype, xs[2])
        out = propagate(h, ei2, w)
    else:
        # The normalised adjacency depends on the edges alone: built once per edge array.
        adj = memo(ei, ("gcn_csr", n, x.dtype.str), lambda: _adjacency(
            check_index(ei2, n, "edge_index"), n, gcn_weights(ei, n, x.dtype), x.dtype))
        out = np.asarray(adj @ h)
    if a.bias:
        out = out + ctx.params["bias"]
    return [out.astype(x.dtype, copy=False)]


def _gcn_stmts(a: GCNAttrs, args, ctx, ins, targets):
    fresh = _fresh(ctx)
    x, ei = args[0], args[1]
    ei2, w, h = fresh("ei_loops"), fresh("norm"), fresh("h")
    lines = _t_gcn_norm(ei, x, args[2] if len(args) == 3 else None, ei2, w, fresh)
    lines.append(f"{h} = F.linear({x}, {ctx.module}.weight)")
    out = _t_propagate(h, ei2, w)
    if a.bias:
        out += f" + {ctx.module}.bias"
    return lines + [f"{targets[0]} = {out}"]


def _gcn_macs(a: GCNAttrs, ins, outs):
    n, e = ins[0].shape[0], ins[1].shape[1]
    return n * ins[0].shape[1] * a.out_channels + (e + n) * a.out_channels


GCN_CONV = Op(
    name="gcn_conv",
    family="graph",
    doc="Graph convolution (Kipf & Welling, torch_geometric GCNConv): "
        "`gcn_conv(x, edge_index, out_channels)` = D^-1/2 (A + I) D^-1/2 x Wᵀ + b, optional "
        "edge weights [E] as a third input. Params weight [out, in] (GCNConv's lin.weight), "
        "bias [out].",
    attrs=GCNAttrs,
    positional=("out_channels",),
    min_inputs=2,
    max_inputs=3,
    shape=_gcn_shape,
    params=_gcn_params,
    macs=_gcn_macs,
    numpy=_gcn_kernel,
    vjp=gg.gcn_conv_vjp,
    torch_module=lambda a, ins: _pdict(_gcn_params(a, ins)),
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_gcn_stmts,
    label=lambda a: f"{a.out_channels}",
    module_prefix="gcn",
    examples=(
        Example({"out_channels": 4}, (tensor("f32", 6, 3), tensor("i64", 2, 10)), int_high=6),
        Example({"out_channels": 2, "bias": False}, (tensor("f32", 5, 3), tensor("i64", 2, 7)),
                int_high=5),
    ),
)

# cheb_conv -----------------------------------------------------------------------------


class ChebAttrs(_Graph):
    out_channels: int
    K: int
    normalization: Literal["sym", "rw", "none"] = "sym"
    lambda_max: float = 2.0
    bias: bool = True


def _chebc_shape(a: ChebAttrs, ins):
    _in(ins, "cheb_conv")
    _need_out(a.out_channels)
    _need_out(a.K, "K")
    _need_edge_index(ins[1], 1)
    return [ins[0].with_shape((ins[0].shape[0], D.const(a.out_channels)))]


def _chebc_params(a: ChebAttrs, ins):
    n = _in(ins, "cheb_conv")
    p = {"weight": ParamSpec((D.const(a.K), D.const(a.out_channels), D.const(n)),
                             "glorot", n)}
    if a.bias:
        p["bias"] = ParamSpec((D.const(a.out_channels),), "zeros")
    return p


def _chebc_kernel(a: ChebAttrs, xs, ctx):
    x, ei = xs
    n = x.shape[0]
    w = memo(ei, ("lap", n, x.dtype.str, a.normalization, a.lambda_max),
             lambda: laplacian_weights(ei, n, x.dtype, a.normalization, True, a.lambda_max))
    ts = chebyshev(x, looped(ei, n), w, a.K)
    wt = ctx.params["weight"]
    out = sum(t @ wt[k].T for k, t in enumerate(ts))
    if a.bias:
        out = out + ctx.params["bias"]
    return [out.astype(x.dtype, copy=False)]


def _chebc_stmts(a: ChebAttrs, args, ctx, ins, targets):
    fresh = _fresh(ctx)
    x, ei = args
    ei2, w = fresh("ei_loops"), fresh("lap")
    lap = LaplacianAttrs(normalization=a.normalization, scaled=True, lambda_max=a.lambda_max)
    lines = _t_laplacian(lap, ei, x, ei2, w, fresh)
    more, ts = _t_cheb_terms(x, ei2, w, a.K, fresh)
    terms = " + ".join(f"F.linear({t}, {ctx.module}.weight[{k}])" for k, t in enumerate(ts))
    if a.bias:
        terms += f" + {ctx.module}.bias"
    return lines + more + [f"{targets[0]} = {terms}"]


def _chebc_module(a: ChebAttrs, ins) -> str:
    return _pdict(_chebc_params(a, ins))


CHEB_CONV = Op(
    name="cheb_conv",
    family="graph",
    doc="Chebyshev spectral convolution of order K (torch_geometric ChebConv): "
        "`cheb_conv(x, edge_index, out_channels, K)` = sum_k T_k(L̂) x W_kᵀ + b with "
        "L̂ = 2L/lambda_max - I. Params weight [K, out, in] (ChebConv's lins.k.weight "
        "stacked), bias [out].",
    attrs=ChebAttrs,
    positional=("out_channels", "K"),
    min_inputs=2,
    max_inputs=2,
    shape=_chebc_shape,
    params=_chebc_params,
    macs=lambda a, ins, outs: (a.K * ins[0].shape[0] * ins[0].shape[1] * a.out_channels
                               + (a.K - 1) * (ins[1].shape[1] + ins[0].shape[0])
                               * ins[0].shape[1]),
    numpy=_chebc_kernel,
    vjp=gg.cheb_conv_vjp,
    torch_module=_chebc_module,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_chebc_stmts,
    label=lambda a: f"{a.out_channels}, K={a.K}",
    module_prefix="cheb",
    examples=(
        Example({"out_channels": 4, "K": 3}, (tensor("f32", 6, 3), tensor("i64", 2, 10)),
                int_high=6),
        Example({"out_channels": 2, "K": 1, "bias": False},
                (tensor("f32", 4, 3), tensor("i64", 2, 5)), int_high=4),
    ),
)

# gat_conv ------------------------------------------------------------------------------


class GATAttrs(_Graph):
    out_channels: int
    heads: int = 1
    concat: bool = True
    negative_slope: float = 0.2
    bias: bool = True


def _gat_out(a: GATAttrs) -> int:
    return a.heads * a.out_channels if a.concat else a.out_channels


def _gat_shape(a: GATAttrs, ins):
    _in(ins, "gat_conv")
    _need_out(a.out_channels)
    _need_out(a.heads, "heads")
    _need_edge_index(ins[1], 1)
    return [ins[0].with_shape((ins[0].shape[0], D.const(_gat_out(a))))]


def _gat_params(a: GATAttrs, ins):
    n = _in(ins, "gat_conv")
    h, c = D.const(a.heads), D.const(a.out_channels)
    p = {"weight": ParamSpec((h * c, D.const(n)), "glorot", n),
         "att_src": ParamSpec((D.const(1), h, c), "glorot", a.heads),
         "att_dst": ParamSpec((D.const(1), h, c), "glorot", a.heads)}
    if a.bias:
        p["bias"] = ParamSpec((D.const(_gat_out(a)),), "zeros")
    return p


def _gat_kernel(a: GATAttrs, xs, ctx):
    x, ei = xs
    n, hh, c = x.shape[0], a.heads, a.out_channels
    p = ctx.params
    h = (x @ p["weight"].T).reshape(n, hh, c)
    a_s = (h * p["att_src"]).sum(-1)
    a_d = (h * p["att_dst"]).sum(-1)
    ei2 = looped(ei, n)
    seg = segments(ei2, 1, n)
    src = check_index(ei2[0], n, "edge_index")[seg.order]
    dst = seg.sorted_idx
    e = a_s[src] + a_d[dst]
    e = np.where(e > 0, e, a.negative_slope * e)
    # torch_geometric removes existing self-loops before adding one per node: excluded here.
    old_loop = np.concatenate([ei[0] == ei[1], np.zeros(n, bool)])[seg.order]
    e = np.where(old_loop[:, None], -np.inf, e)
    alpha = seg.softmax(e)
    out = seg.sum(h[src] * alpha[:, :, None])
    out = out.reshape(n, hh * c) if a.concat else out.mean(axis=1)
    if a.bias:
        out = out + p["bias"]
    return [out.astype(x.dtype, copy=False)]


def _gat_stmts(a: GATAttrs, args, ctx, ins, targets):
    fresh = _fresh(ctx)
    x, ei = args
    m = ctx.module
    h, asrc, adst, src, dst, e, alpha, out = (
        fresh(s) for s in ("h", "a_src", "a_dst", "src", "dst", "e", "alpha", "agg"))
    n = f"{x}.shape[0]"
    lines = [
        f"{h} = F.linear({x}, {m}.weight).view(-1, {a.heads}, {a.out_channels})",
        f"{asrc} = ({h} * {m}.att_src).sum(-1)",
        f"{adst} = ({h} * {m}.att_dst).sum(-1)",
        f"{src} = torch.cat([{ei}[0], {_t_loop(ei, x)}])",
        f"{dst} = torch.cat([{ei}[1], {_t_loop(ei, x)}])",
        f"{e} = F.leaky_relu({asrc}[{src}] + {adst}[{dst}], {a.negative_slope!r})",
        "# existing self-loops are left out: each node attends to itself once, via its loop",
        f"{e} = {e}.masked_fill(F.pad({ei}[0] == {ei}[1], (0, {n})).unsqueeze(-1), "
        "float('-inf'))",
    ]
    lines += _t_softmax(e, dst, n, alpha, fresh)
    lines.append(f"{out} = torch.zeros_like({h}).index_add_(0, {dst}, "
                 f"{h}[{src}] * {alpha}.unsqueeze(-1))")
    res = (f"{out}.reshape(-1, {a.heads * a.out_channels})" if a.concat
           else f"{out}.mean(dim=1)")
    if a.bias:
        res += f" + {m}.bias"
    return lines + [f"{targets[0]} = {res}"]


def _gat_module(a: GATAttrs, ins) -> str:
    return _pdict(_gat_params(a, ins))


def _gat_macs(a: GATAttrs, ins, outs):
    n, e, hc = ins[0].shape[0], ins[1].shape[1], a.heads * a.out_channels
    return n * ins[0].shape[1] * hc + 2 * n * hc + (e + n) * (hc + 2 * a.heads)


GAT_CONV = Op(
    name="gat_conv",
    family="graph",
    doc="Graph attention (torch_geometric GATConv): `gat_conv(x, edge_index, out_channels, "
        "heads=1, concat=true, negative_slope=0.2)`; scores LeakyReLU(a_srcᵀ W x_j + "
        "a_dstᵀ W x_i), softmax over each node's neighbours and itself; heads concatenated "
        "[N, heads*out] or averaged [N, out]. Params weight [heads*out, in] (lin.weight), "
        "att_src, att_dst [1, heads, out], bias.",
    attrs=GATAttrs,
    positional=("out_channels",),
    min_inputs=2,
    max_inputs=2,
    shape=_gat_shape,
    params=_gat_params,
    macs=_gat_macs,
    numpy=_gat_kernel,
    vjp=gg.gat_conv_vjp,
    torch_module=_gat_module,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_gat_stmts,
    label=lambda a: f"{a.heads}×{a.out_channels}" + ("" if a.concat or a.heads == 1
                                                      else ", mean"),
    module_prefix="gat",
    examples=(
        Example({"out_channels": 3, "heads": 2}, (tensor("f32", 6, 4), tensor("i64", 2, 10)),
                int_high=6),
        Example({"out_channels": 2, "heads": 3, "concat": False},
                (tensor("f32", 5, 3), tensor("i64", 2, 8)), int_high=5),
    ),
)

# gin_aggregate -------------------------------------------------------------------------


class GINAttrs(_Graph):
    eps: float = 0.0
    train_eps: bool = False


def _gin_shape(a: GINAttrs, ins):
    x, ei = ins
    need_float(x)
    _need_nodes(x, 0)
    _need_edge_index(ei, 1)
    return [x]


def _gin_params(a: GINAttrs, ins):
    if not a.train_eps:
        return {}
    return {"eps": ParamSpec((D.const(1),), f"constant:{a.eps!r}")}


def _gin_kernel(a: GINAttrs, xs, ctx):
    x, ei = xs
    eps = ctx.params["eps"] if a.train_eps else np.asarray(a.eps, x.dtype)
    return [((1 + eps) * x + propagate(x, ei, None)).astype(x.dtype, copy=False)]


def _gin_call(a: GINAttrs, args, ctx, ins):
    eps = f"{ctx.module}.eps" if a.train_eps else repr(a.eps)
    return f"(1 + {eps}) * {args[0]} + {_t_propagate(args[0], args[1], None)}"


GIN_AGGREGATE = Op(
    name="gin_aggregate",
    family="graph",
    doc="GIN's aggregation (torch_geometric GINConv before its MLP): "
        "`gin_aggregate(x, edge_index, eps=0.0, train_eps=false)` = (1 + eps) x_i + sum of "
        "x_j over edges j -> i; with train_eps, eps is a learned parameter [1].",
    attrs=GINAttrs,
    positional=("eps",),
    min_inputs=2,
    max_inputs=2,
    shape=_gin_shape,
    params=_gin_params,
    macs=lambda a, ins, outs: (ins[1].shape[1] + ins[0].shape[0]) * _flat(ins),
    numpy=_gin_kernel,
    vjp=gg.gin_aggregate_vjp,
    # eps is a parameter only when learned; a fixed eps is a constant in the code.
    torch_module=lambda a, ins: ("nn.ParameterDict({'eps': nn.Parameter(torch.tensor("
                                 f"[{a.eps!r}]))}})" if a.train_eps else None),
    torch_call=_gin_call,
    label=lambda a: "learned ε" if a.train_eps else f"ε={a.eps}",
    module_prefix="gin",
    examples=(
        Example({}, (tensor("f32", 5, 3), tensor("i64", 2, 8)), int_high=5),
        Example({"eps": 0.5, "train_eps": True}, (tensor("f32", 4, 2), tensor("i64", 2, 6)),
                int_high=4),
    ),
)

# sage_conv -----------------------------------------------------------------------------


class SAGEAttrs(_Graph):
    out_channels: int
    aggr: Literal["mean", "max", "lstm"] = "mean"
    project: bool = False
    root_weight: bool = True
    bias: bool = True


def _sage_shape(a: SAGEAttrs, ins):
    _in(ins, "sage_conv")
    _need_out(a.out_channels)
    _need_edge_index(ins[1], 1)
    return [ins[0].with_shape((ins[0].shape[0], D.const(a.out_channels)))]


def _sage_params(a: SAGEAttrs, ins):
    n = _in(ins, "sage_conv")
    o, f = D.const(a.out_channels), D.const(n)
    p: dict[str, ParamSpec] = {}
    if a.project:
        p["lin_weight"] = ParamSpec((f, f), "uniform_fan_in", n)
        p["lin_bias"] = ParamSpec((f,), "uniform_fan_in", n)
    if a.aggr == "lstm":
        for k in ("weight_ih", "weight_hh"):
            p[k] = ParamSpec((4 * f, f), "uniform_fan_in", n)
        for k in ("bias_ih", "bias_hh"):
            p[k] = ParamSpec((4 * f,), "uniform_fan_in", n)
    p["lin_l_weight"] = ParamSpec((o, f), "uniform_fan_in", n)
    if a.bias:
        p["lin_l_bias"] = ParamSpec((o,), "uniform_fan_in", n)
    if a.root_weight:
        p["lin_r_weight"] = ParamSpec((o, f), "uniform_fan_in", n)
    return p


def _sage_kernel(a: SAGEAttrs, xs, ctx):
    x, ei = xs
    p = ctx.params
    n = x.shape[0]
    h = x
    if a.project:
        h = np.maximum(x @ p["lin_weight"].T + p["lin_bias"], 0)
    if a.aggr == "lstm":
        seg = segments(ei, 1, n)
        src = check_index(ei[0], n, "edge_index")[seg.order]
        agg = lstm_aggregate(h[src], seg, p)
    else:
        agg = propagate(h, ei, None, a.aggr)
    out = agg @ p["lin_l_weight"].T
    if a.bias:
        out = out + p["lin_l_bias"]
    if a.root_weight:
        out = out + x @ p["lin_r_weight"].T
    return [out.astype(x.dtype, copy=False)]


def _t_lstm(m: str, h: str, ei: str, n: str, out: str, fresh) -> list[str]:
    order, src, deg, pos, seq, hs, cs, t, g, i, f, gg, o, c2, live = (
        fresh(s) for s in ("order", "nbr", "deg", "pos", "seq", "hs", "cs", "t", "gates",
                           "i", "f", "g", "o", "c_new", "live"))
    return [
        "# LSTM aggregator: each node's neighbours in edge order, padded to the largest degree",
        f"{order} = torch.sort({ei}[1], stable=True).indices",
        f"{src} = {ei}[0][{order}]",
        f"{deg} = torch.bincount({ei}[1], minlength={n})",
        f"{pos} = torch.arange({order}.shape[0], device={ei}.device) - torch.repeat_interleave("
        f"torch.cumsum({deg}, 0) - {deg}, {deg})",
        f"{seq} = {h}.new_zeros({n}, int({deg}.max()) if {order}.numel() else 0, {h}.shape[1])",
        f"{seq}[{ei}[1][{order}], {pos}] = {h}[{src}]",
        f"{hs} = {h}.new_zeros({n}, {h}.shape[1])",
        f"{cs} = {h}.new_zeros({n}, {h}.shape[1])",
        f"for {t} in range({seq}.shape[1]):",
        f"    {g} = F.linear({seq}[:, {t}], {m}.weight_ih, {m}.bias_ih) + F.linear({hs}, "
        f"{m}.weight_hh, {m}.bias_hh)",
        f"    {i}, {f}, {gg}, {o} = {g}.chunk(4, dim=1)",
        f"    {c2} = torch.sigmoid({f}) * {cs} + torch.sigmoid({i}) * torch.tanh({gg})",
        f"    {live} = ({deg} > {t}).unsqueeze(1)",
        f"    {hs} = torch.where({live}, torch.sigmoid({o}) * torch.tanh({c2}), {hs})",
        f"    {cs} = torch.where({live}, {c2}, {cs})",
        f"{out} = {hs}",
    ]


def _sage_stmts(a: SAGEAttrs, args, ctx, ins, targets):
    fresh = _fresh(ctx)
    x, ei = args
    m = ctx.module
    lines = []
    h = x
    if a.project:
        h = fresh("h")
        lines.append(f"{h} = F.linear({x}, {m}.lin_weight, {m}.lin_bias).relu()")
    agg = fresh("agg")
    if a.aggr == "lstm":
        lines += _t_lstm(m, h, ei, f"{x}.shape[0]", agg, fresh)
    else:
        lines.append(f"{agg} = {_t_reduce(f'{h}[{ei}[0]]', f'{ei}[1]', f'{x}.shape[0]', a.aggr)}")
    out = f"F.linear({agg}, {m}.lin_l_weight" + (f", {m}.lin_l_bias)" if a.bias else ")")
    if a.root_weight:
        out += f" + F.linear({x}, {m}.lin_r_weight)"
    return lines + [f"{targets[0]} = {out}"]


def _sage_module(a: SAGEAttrs, ins) -> str:
    return _pdict(_sage_params(a, ins))


def _sage_macs(a: SAGEAttrs, ins, outs):
    n, e, f = ins[0].shape[0], ins[1].shape[1], ins[0].shape[1]
    m = n * f * a.out_channels * (2 if a.root_weight else 1) + e * f
    if a.project:
        m += n * f * f
    if a.aggr == "lstm":
        m += e * 8 * f * f
    return m


SAGE_CONV = Op(
    name="sage_conv",
    family="graph",
    doc="GraphSAGE layer (torch_geometric SAGEConv): `sage_conv(x, edge_index, out_channels, "
        "aggr=\"mean\")` = W_l aggr(x_j) + b + W_r x_i; aggr mean, max or lstm (an LSTM over "
        "the neighbours in edge order); project=true first maps neighbours through "
        "relu(W x + b) (the max-pool aggregator). Params lin_l_weight, lin_l_bias, "
        "lin_r_weight (lin_l.weight, ...), lin_weight/lin_bias (project), LSTM weight_ih, "
        "weight_hh, bias_ih, bias_hh.",
    attrs=SAGEAttrs,
    positional=("out_channels",),
    min_inputs=2,
    max_inputs=2,
    shape=_sage_shape,
    params=_sage_params,
    macs=_sage_macs,
    numpy=_sage_kernel,
    vjp=gg.sage_conv_vjp,
    torch_module=_sage_module,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_sage_stmts,
    label=lambda a: f"{a.out_channels}, {a.aggr}" + (", project" if a.project else ""),
    module_prefix="sage",
    examples=(
        Example({"out_channels": 4}, (tensor("f32", 6, 3), tensor("i64", 2, 10)), int_high=6),
        Example({"out_channels": 3, "aggr": "max", "project": True},
                (tensor("f32", 5, 3), tensor("i64", 2, 8)), int_high=5),
        # The LSTM aggregator's loop runs max-degree times, read off the data, so it cannot
        # run on the meta device: tested in tests/ops/test_graph.py.
    ),
)

# gmm_conv (MoNet) ----------------------------------------------------------------------




class GMMAttrs(_Graph):
    out_channels: int
    kernel_size: int
    root_weight: bool = True
    bias: bool = True


def _gmm_dim(ins) -> int:
    return concrete(ins[2].shape[1], "gmm_conv's pseudo-coordinate size (axis 1)")


def _gmm_shape(a: GMMAttrs, ins):
    _in(ins, "gmm_conv")
    _need_out(a.out_channels)
    _need_out(a.kernel_size, "kernel_size")
    _need_edge_index(ins[1], 1)
    pseudo = ins[2]
    need_float(pseudo, 2)
    if pseudo.rank != 2:
        raise ShapeError("pseudo-coordinates must be [E, dim]", expected="rank 2",
                         found=str(pseudo), arg=2)
    _need_per_edge(pseudo, ins[1], 2, "pseudo-coordinates")
    _gmm_dim(ins)
    return [ins[0].with_shape((ins[0].shape[0], D.const(a.out_channels)))]


def _gmm_params(a: GMMAttrs, ins):
    n, d = _in(ins, "gmm_conv"), _gmm_dim(ins)
    k, o = D.const(a.kernel_size), D.const(a.out_channels)
    p = {"g": ParamSpec((D.const(n), o * k), "glorot", n),
         "mu": ParamSpec((k, D.const(d)), "glorot"),
         "sigma": ParamSpec((k, D.const(d)), "glorot")}
    if a.root_weight:
        p["root_weight"] = ParamSpec((o, D.const(n)), "uniform_fan_in", n)
    if a.bias:
        p["bias"] = ParamSpec((o,), "zeros")
    return p


def _gmm_kernel(a: GMMAttrs, xs, ctx):
    x, ei, pseudo = xs
    p = ctx.params
    n, k, o = x.shape[0], a.kernel_size, a.out_channels
    h = (x @ p["g"]).reshape(n, k, o)
    seg = segments(ei, 1, n)
    src = check_index(ei[0], n, "edge_index")[seg.order]
    ps = pseudo[seg.order]
    z = -0.5 * (ps[:, None, :] - p["mu"][None]) ** 2 / (GMM_EPS + p["sigma"][None] ** 2)
    gauss = np.exp(z.sum(-1))  # [E, K]
    msgs = (h[src] * gauss[:, :, None]).sum(1)
    out = seg.mean(msgs)
    if a.root_weight:
        out = out + x @ p["root_weight"].T
    if a.bias:
        out = out + p["bias"]
    return [out.astype(x.dtype, copy=False)]


def _gmm_stmts(a: GMMAttrs, args, ctx, ins, targets):
    fresh = _fresh(ctx)
    x, ei, ps = args
    m = ctx.module
    h, gauss, msgs = fresh("h"), fresh("gauss"), fresh("msgs")
    k, o, d = a.kernel_size, a.out_channels, _gmm_dim(ins)
    lines = [
        f"{h} = ({x} @ {m}.g).view(-1, {k}, {o})",
        f"{gauss} = torch.exp((-0.5 * ({ps}.view(-1, 1, {d}) - {m}.mu.view(1, {k}, {d}))"
        f".pow(2) / ({GMM_EPS!r} + {m}.sigma.view(1, {k}, {d}).pow(2))).sum(dim=-1))",
        f"{msgs} = ({h}[{ei}[0]] * {gauss}.unsqueeze(-1)).sum(dim=1)",
    ]
    out = _t_reduce(msgs, f"{ei}[1]", f"{x}.shape[0]", "mean")
    if a.root_weight:
        out += f" + F.linear({x}, {m}.root_weight)"
    if a.bias:
        out += f" + {m}.bias"
    return lines + [f"{targets[0]} = {out}"]


def _gmm_module(a: GMMAttrs, ins) -> str:
    return _pdict(_gmm_params(a, ins))


def _gmm_macs(a: GMMAttrs, ins, outs):
    n, e, f = ins[0].shape[0], ins[1].shape[1], ins[0].shape[1]
    k, o, d = a.kernel_size, a.out_channels, _gmm_dim(ins)
    return n * f * o * k + e * k * (2 * d + o) + (n * f * o if a.root_weight else 0)


GMM_CONV = Op(
    name="gmm_conv",
    family="graph",
    doc="MoNet layer (torch_geometric GMMConv): `gmm_conv(x, edge_index, pseudo, "
        "out_channels, kernel_size)` weights each neighbour by K Gaussian kernels "
        "exp(-1/2 sum_d (u_d - mu_kd)^2 / sigma_kd^2) of the edge's pseudo-coordinates "
        "u [E, dim], then averages; plus W_root x_i + b. Params g [in, out*K], mu, sigma "
        "[K, dim], root_weight [out, in] (root.weight), bias.",
    attrs=GMMAttrs,
    positional=("out_channels", "kernel_size"),
    min_inputs=3,
    max_inputs=3,
    shape=_gmm_shape,
    params=_gmm_params,
    macs=_gmm_macs,
    numpy=_gmm_kernel,
    vjp=gg.gmm_conv_vjp,
    torch_module=_gmm_module,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_gmm_stmts,
    label=lambda a: f"{a.out_channels}, K={a.kernel_size}",
    module_prefix="gmm",
    examples=(
        Example({"out_channels": 3, "kernel_size": 2},
                (tensor("f32", 5, 4), tensor("i64", 2, 8), tensor("f32", 8, 2)), int_high=5),
    ),
)
