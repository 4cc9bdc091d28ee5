"""Graph ops (family "graph"): message passing over node features [N, F] and an i64[2, E] edge
index (row 0 sources, row 1 targets, as torch_geometric); shape rules for elaboration, NumPy
kernels (sorted-segment reductions) for the interpreter, plain-torch emitters for codegen.
This file holds the primitive ops; the layers (gcn_conv ...) are in graph_layers.py and the
helpers both use in graph_common.py.

Conventions shared by every op here:

- Messages flow from `edge_index[0]` (source j) to `edge_index[1]` (target i), as torch_geometric's
  default `flow="source_to_target"`.
- N comes from a node tensor passed in (`x`: its axis 0), so the type system knows the edge index
  holds indices into that axis; each op's attrs declare it with `index_bounds` (interp.py reads it
  to draw valid random graphs) and every kernel checks the indices at run time.
- Edge counts never depend on data: self-loops are *appended* (E + N edges) and an edge that must
  not count (an old self-loop under torch_geometric's "remaining self-loops" rule, a dropped edge)
  gets weight 0 or an excluded attention score. So N and E stay symbolic and every shape is known
  before anything runs.
- The number of graphs B in a batch (`readout`) is the attribute `graphs`: an int (a
  hyperparameter: fixed graphs per batch) or a symbol name (default "B") bound at run time from
  an input that has that axis or `--bind B=...`, else from the batch vector (max + 1).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dslc import dims as D
from dslc.ops import graph_grad as gg
from dslc.ops.base import Attrs, Example, Op, ShapeError, need_float
from dslc.ops.graph_common import (
    EdgeOpAttrs,
    LaplacianAttrs,
    Segments,
    _edge_count,
    _flat,
    _fresh,
    _Graph,
    _need_edge_index,
    _need_nodes,
    _need_per_edge,
    _same,
    _t_cheb_terms,
    _t_gcn_norm,
    _t_laplacian,
    _t_looped,
    _t_propagate,
    _t_reduce,
    _t_softmax,
    chebyshev,
    check_index,
    gcn_weights,
    laplacian_weights,
    propagate,
    segments,
    self_looped,
)
from dslc.ops.graph_layers import (
    CHEB_CONV,
    GAT_CONV,
    GCN_CONV,
    GIN_AGGREGATE,
    GMM_CONV,
    SAGE_CONV,
)
from dslc.types import INT_DTYPES, TensorType, tensor

# ---- gather ------------------------------------------------------------------------------


class GatherAttrs(_Graph):
    side: Literal["source", "target"] = "source"


def _gather_shape(a: GatherAttrs, ins):
    _need_nodes(ins[0], 0)
    _need_edge_index(ins[1], 1)
    return [ins[0].with_shape((ins[1].shape[1],) + ins[0].shape[1:])]


def _row(side: str) -> int:
    return 0 if side == "source" else 1


GATHER = Op(
    name="gather",
    family="graph",
    doc="Per-edge copy of an endpoint's features: `gather(x, edge_index, side=\"source\")` "
        "gives [E, ...] from x [N, ...] (x_j for side source, x_i for side target).",
    attrs=GatherAttrs,
    positional=("side",),
    min_inputs=2,
    max_inputs=2,
    shape=_gather_shape,
    numpy=lambda a, xs, ctx: [xs[0][check_index(xs[1][_row(a.side)], xs[0].shape[0],
                                                "edge_index")]],
    vjp=gg.gather_vjp,
    torch_call=lambda a, args, ctx, ins: f"{args[0]}[{args[1]}[{_row(a.side)}]]",
    label=lambda a: a.side,
    examples=(
        Example({}, (tensor("f32", 5, 3), tensor("i64", 2, 7)), int_high=5),
        Example({"side": "target"}, (tensor("f32", 4, 2, 3), tensor("i64", 2, 6)), int_high=4),
    ),
)

# ---- scatter -----------------------------------------------------------------------------


class ScatterAttrs(Attrs):
    reduce: Literal["sum", "mean", "max"] = "sum"
    side: Literal["source", "target"] = "target"

    def index_bounds(self, ins):
        return {1: ins[2].shape[0]}


def _scatter_shape(a: ScatterAttrs, ins):
    msgs, ei, x = ins
    _need_edge_index(ei, 1)
    _need_per_edge(msgs, ei, 0, "scatter's messages")
    _need_nodes(x, 2)
    return [msgs.with_shape((x.shape[0],) + msgs.shape[1:])]


def _scatter_kernel(a: ScatterAttrs, xs, ctx):
    msgs, ei, x = xs
    seg = segments(ei, _row(a.side), x.shape[0])
    return [getattr(seg, a.reduce)(msgs[seg.order])]


SCATTER = Op(
    name="scatter",
    family="graph",
    doc="Aggregates per-edge messages [E, ...] at each edge's target: "
        "`scatter(msgs, edge_index, x, reduce=\"sum\")` gives [N, ...] with N from x's axis 0; "
        "reduce sum, mean or max (a node with no edge gets 0).",
    attrs=ScatterAttrs,
    positional=("reduce",),
    min_inputs=3,
    max_inputs=3,
    shape=_scatter_shape,
    numpy=_scatter_kernel,
    vjp=gg.scatter_vjp,
    torch_call=lambda a, args, ctx, ins: _t_reduce(args[0], f"{args[1]}[{_row(a.side)}]",
                                                   f"{args[2]}.shape[0]", a.reduce),
    macs=lambda a, ins, outs: ins[1].shape[1] * _flat(ins),
    label=lambda a: a.reduce,
    examples=(
        Example({}, (tensor("f32", 7, 3), tensor("i64", 2, 7), tensor("f32", 5, 2)), int_high=5),
        Example({"reduce": "mean"}, (tensor("f32", 9, 2, 2), tensor("i64", 2, 9),
                                     tensor("f32", 6, 1)), int_high=6),
        Example({"reduce": "max", "side": "source"},
                (tensor("f32", 8, 4), tensor("i64", 2, 8), tensor("f32", 7, 4)), int_high=7),
    ),
)

# ---- edge_softmax ------------------------------------------------------------------------


class EdgeSoftmaxAttrs(Attrs):
    def index_bounds(self, ins):
        return {1: ins[2].shape[0]}


def _esm_shape(a, ins):
    s, ei, x = ins
    need_float(s)
    _need_edge_index(ei, 1)
    _need_per_edge(s, ei, 0, "edge_softmax's scores")
    _need_nodes(x, 2)
    return [s]


def _esm_stmts(a, args, ctx, ins, targets):
    return _t_softmax(args[0], f"{args[1]}[1]", f"{args[2]}.shape[0]", targets[0], _fresh(ctx))


def _esm_kernel(a, xs, ctx):
    s, ei, x = xs
    seg = segments(ei, 1, x.shape[0])
    return [seg.unsort(seg.softmax(s[seg.order]))]


EDGE_SOFTMAX = Op(
    name="edge_softmax",
    family="graph",
    doc="Softmax of per-edge scores [E, ...] over each target node's incoming edges: "
        "`edge_softmax(scores, edge_index, x)` (N from x's axis 0).",
    attrs=EdgeSoftmaxAttrs,
    min_inputs=3,
    max_inputs=3,
    shape=_esm_shape,
    numpy=_esm_kernel,
    vjp=gg.edge_softmax_vjp,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_esm_stmts,
    macs=lambda a, ins, outs: 2 * D.product(ins[0].shape),
    examples=(
        Example({}, (tensor("f32", 9, 2), tensor("i64", 2, 9), tensor("f32", 5, 3)), int_high=5),
        Example({}, (tensor("f32", 6), tensor("i64", 2, 6), tensor("f32", 4, 1)), int_high=4),
    ),
)

# ---- degree ------------------------------------------------------------------------------


class DegreeAttrs(Attrs):
    side: Literal["source", "target"] = "target"

    def index_bounds(self, ins):
        return {0: ins[1].shape[0]}


def _degree_shape(a: DegreeAttrs, ins):
    _need_edge_index(ins[0], 0)
    _need_nodes(ins[1], 1)
    need_float(ins[1], 1)
    return [TensorType(ins[1].dtype, (ins[1].shape[0],))]


def _degree_kernel(a: DegreeAttrs, xs, ctx):
    ei, x = xs
    n = x.shape[0]
    return [np.bincount(check_index(ei[_row(a.side)], n, "edge_index"),
                        minlength=n).astype(x.dtype)]


DEGREE = Op(
    name="degree",
    family="graph",
    doc="Number of edges into each node (side target; out of it for side source), as x's "
        "float dtype: `degree(edge_index, x)` gives [N].",
    attrs=DegreeAttrs,
    positional=("side",),
    min_inputs=2,
    max_inputs=2,
    shape=_degree_shape,
    numpy=_degree_kernel,
    vjp=gg.shape_only_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"{args[1]}.new_zeros({args[1]}.shape[0]).index_add_(0, {args[0]}[{_row(a.side)}], "
        f"{args[1]}.new_ones({args[0]}.shape[1]))"),
    macs=lambda a, ins, outs: ins[0].shape[1],
    label=lambda a: a.side,
    examples=(Example({}, (tensor("i64", 2, 8), tensor("f32", 5, 2)), int_high=5),
              Example({"side": "source"}, (tensor("i64", 2, 3), tensor("f32", 4, 1)),
                      int_high=4)),
)

# ---- add_self_loops, gcn_norm, laplacian ------------------------------------------------


def _looped_type(ins) -> TensorType:
    ei, x = ins[0], ins[1]
    _need_edge_index(ei, 0)
    _need_nodes(x, 1)
    return ei.with_shape((D.const(2), ei.shape[1] + x.shape[0]))


def _loops_kernel(a, xs, ctx):
    ei, x = xs
    check_index(ei, x.shape[0], "edge_index")
    return [self_looped(ei, x.shape[0])]


ADD_SELF_LOOPS = Op(
    name="add_self_loops",
    family="graph",
    doc="Appends one self-loop per node: `add_self_loops(edge_index, x)` gives [2, E + N] "
        "(edges first, then loops 0..N-1; existing loops are kept).",
    attrs=EdgeOpAttrs,
    min_inputs=2,
    max_inputs=2,
    shape=lambda a, ins: [_looped_type(ins)],
    numpy=_loops_kernel,
    no_grad="an edge index (integers) has no derivative",
    torch_call=lambda a, args, ctx, ins: _t_looped(args[0], args[1]),
    examples=(Example({}, (tensor("i64", 2, 6), tensor("f32", 4, 3)), int_high=4),),
)


def _gcn_norm_shape(a, ins):
    ei2 = _looped_type(ins)
    need_float(ins[1], 1)
    if len(ins) == 3:
        _need_per_edge(ins[2], ins[0], 2, "edge_weight")
    return [ei2, TensorType(ins[1].dtype, (ei2.shape[1],))]


def _gcn_norm_kernel(a, xs, ctx):
    ei, x = xs[0], xs[1]
    w = xs[2] if len(xs) == 3 else None
    return [self_looped(ei, x.shape[0]), gcn_weights(ei, x.shape[0], x.dtype, w)]


def _gcn_norm_stmts(a, args, ctx, ins, targets):
    w = args[2] if len(args) == 3 else None
    return _t_gcn_norm(args[0], args[1], w, targets[0], targets[1], _fresh(ctx))


GCN_NORM = Op(
    name="gcn_norm",
    family="graph",
    doc="Renormalised adjacency D^-1/2 (A + I) D^-1/2 as an edge list: "
        "`ei2, w = gcn_norm(edge_index, x)` (optional edge weights [E] as a third input) gives "
        "the self-looped index [2, E + N] and its weights [E + N], as torch_geometric's "
        "gcn_norm (an existing self-loop is weight 0, its weight moves to the appended loop).",
    attrs=EdgeOpAttrs,
    min_inputs=2,
    max_inputs=3,
    shape=_gcn_norm_shape,
    numpy=_gcn_norm_kernel,
    vjp=gg.gcn_norm_vjp,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_gcn_norm_stmts,
    n_outputs=lambda a: 2,
    macs=lambda a, ins, outs: 2 * outs[1].shape[0],
    examples=(
        Example({}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), int_high=5),
    ),
)


def _lap_shape(a: LaplacianAttrs, ins):
    ei2 = _looped_type(ins)
    need_float(ins[1], 1)
    if a.lambda_max <= 0:
        raise ShapeError("lambda_max must be positive", expected="> 0",
                         found=str(a.lambda_max), attr="lambda_max")
    return [ei2, TensorType(ins[1].dtype, (ei2.shape[1],))]


def _lap_kernel(a: LaplacianAttrs, xs, ctx):
    ei, x = xs
    n = x.shape[0]
    return [self_looped(ei, n),
            laplacian_weights(ei, n, x.dtype, a.normalization, a.scaled, a.lambda_max)]


LAPLACIAN = Op(
    name="laplacian",
    family="graph",
    doc="Graph Laplacian as an edge list over the self-looped index: "
        "`ei2, w = laplacian(edge_index, x, normalization=\"sym\", scaled=false, "
        "lambda_max=2.0)`; normalization none (D - A), sym (I - D^-1/2 A D^-1/2) or rw "
        "(I - D^-1 A); scaled gives 2L/lambda_max - I (Chebyshev). Self-loops are ignored and "
        "degrees count edges out of a node, as torch_geometric's get_laplacian.",
    attrs=LaplacianAttrs,
    positional=("normalization",),
    min_inputs=2,
    max_inputs=2,
    shape=_lap_shape,
    numpy=_lap_kernel,
    vjp=gg.shape_only_vjp,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=lambda a, args, ctx, ins, t: _t_laplacian(a, args[0], args[1], t[0], t[1],
                                                           _fresh(ctx)),
    n_outputs=lambda a: 2,
    macs=lambda a, ins, outs: 2 * outs[1].shape[0],
    label=lambda a: a.normalization + (", scaled" if a.scaled else ""),
    examples=(
        Example({}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), int_high=5),
        Example({"normalization": "none"}, (tensor("i64", 2, 6), tensor("f32", 4, 2)),
                int_high=4),
        Example({"normalization": "rw", "scaled": True, "lambda_max": 1.5},
                (tensor("i64", 2, 7), tensor("f32", 4, 2)), int_high=4),
    ),
)

# ---- propagate, chebyshev, diffusion ----------------------------------------------------


def _prop_shape(a, ins):
    x, ei = ins[0], ins[1]
    need_float(x)
    _need_nodes(x, 0)
    _need_edge_index(ei, 1)
    if len(ins) == 3:
        _need_per_edge(ins[2], ei, 2, "edge weights")
        if ins[2].rank != 1:
            raise ShapeError("edge weights must be one number per edge", expected="[E]",
                             found=str(ins[2]), arg=2)
    return [x]


PROPAGATE = Op(
    name="propagate",
    family="graph",
    doc="Sparse product with the (weighted) adjacency: `propagate(x, edge_index, w)` gives "
        "out[i] = sum over edges j -> i of w_e x[j] (weights [E] optional: 1).",
    attrs=_Graph,
    min_inputs=2,
    max_inputs=3,
    shape=_prop_shape,
    numpy=lambda a, xs, ctx: [propagate(xs[0], xs[1], xs[2] if len(xs) == 3 else None)],
    vjp=gg.propagate_vjp,
    torch_call=lambda a, args, ctx, ins: _t_propagate(args[0], args[1],
                                                      args[2] if len(args) == 3 else None),
    macs=lambda a, ins, outs: ins[1].shape[1] * _flat(ins),
    examples=(
        Example({}, (tensor("f32", 5, 3), tensor("i64", 2, 8)), int_high=5),
        Example({}, (tensor("f32", 4, 2, 2), tensor("i64", 2, 6), tensor("f32", 6)), int_high=4),
    ),
)


class ChebyshevAttrs(_Graph):
    K: int


def _cheb_shape(a: ChebyshevAttrs, ins):
    if a.K < 1:
        raise ShapeError("K (the number of Chebyshev terms) must be positive", expected=">= 1",
                         found=str(a.K), attr="K")
    x = _prop_shape(a, ins)[0]
    return [x.with_shape((D.const(a.K),) + x.shape)]


def _cheb_stmts(a: ChebyshevAttrs, args, ctx, ins, targets):
    lines, ts = _t_cheb_terms(args[0], args[1], args[2], a.K, _fresh(ctx))
    return lines + [f"{targets[0]} = torch.stack([{', '.join(ts)}])"]


CHEBYSHEV = Op(
    name="chebyshev",
    family="graph",
    doc="Chebyshev recursion on an edge-list operator L (e.g. a scaled Laplacian): "
        "`chebyshev(x, ei, w, K=3)` stacks T_0 x = x, T_1 x = L x, T_k x = 2 L T_(k-1) x - "
        "T_(k-2) x into [K, N, ...].",
    attrs=ChebyshevAttrs,
    positional=("K",),
    min_inputs=3,
    max_inputs=3,
    shape=_cheb_shape,
    numpy=lambda a, xs, ctx: [np.stack(chebyshev(xs[0], xs[1], xs[2], a.K))],
    vjp=gg.chebyshev_vjp,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_cheb_stmts,
    macs=lambda a, ins, outs: (a.K - 1) * ins[1].shape[1] * _flat(ins),
    label=lambda a: f"K={a.K}",
    examples=(Example({"K": 3}, (tensor("f32", 5, 2), tensor("i64", 2, 8), tensor("f32", 8)),
                      int_high=5),
              Example({"K": 1}, (tensor("f32", 4, 2), tensor("i64", 2, 3), tensor("f32", 3)),
                      int_high=4)),
)


class DiffusionAttrs(_Graph):
    hops: int


def _diff_shape(a: DiffusionAttrs, ins):
    if a.hops < 1:
        raise ShapeError("hops must be positive", expected=">= 1", found=str(a.hops),
                         attr="hops")
    x = _prop_shape(a, ins)[0]
    return [x.with_shape((x.shape[0], D.const(a.hops)) + x.shape[1:])]


def _diff_kernel(a: DiffusionAttrs, xs, ctx):
    x, ei = xs
    hs, h = [], x
    for _ in range(a.hops):
        h = propagate(h, ei, None, "mean")
        hs.append(h)
    return [np.stack(hs, axis=1)]


def _diff_stmts(a: DiffusionAttrs, args, ctx, ins, targets):
    x, ei = args
    fresh = _fresh(ctx)
    hs, lines, h = [], [], x
    for k in range(1, a.hops + 1):
        t = fresh(f"hop{k}")
        lines.append(f"{t} = {_t_reduce(f'{h}[{ei}[0]]', f'{ei}[1]', f'{x}.shape[0]', 'mean')}")
        hs.append(t)
        h = t
    return lines + [f"{targets[0]} = torch.stack([{', '.join(hs)}], dim=1)"]


DIFFUSION = Op(
    name="diffusion",
    family="graph",
    doc="k-hop diffusion with the transition matrix P = D^-1 A (mean over incoming edges): "
        "`diffusion(x, edge_index, hops=3)` stacks P x, P^2 x, ..., P^hops x into "
        "[N, hops, ...] (DCNN's diffusion tensor; a node with no in-edge gets 0).",
    attrs=DiffusionAttrs,
    positional=("hops",),
    min_inputs=2,
    max_inputs=2,
    shape=_diff_shape,
    numpy=_diff_kernel,
    vjp=gg.diffusion_vjp,
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_diff_stmts,
    macs=lambda a, ins, outs: a.hops * ins[1].shape[1] * _flat(ins),
    label=lambda a: f"{a.hops} hops",
    examples=(Example({"hops": 3}, (tensor("f32", 5, 2), tensor("i64", 2, 8)), int_high=5),),
)

# ---- readout -----------------------------------------------------------------------------


class ReadoutAttrs(Attrs):
    reduce: Literal["sum", "mean", "max"] = "sum"
    # Graphs per batch: a fixed number, or the name of a symbolic dim bound at run time.
    graphs: int | str = "B"

    def graphs_dim(self) -> D.Dim:
        return D.const(self.graphs) if isinstance(self.graphs, int) else D.symbol(self.graphs)

    def index_bounds(self, ins):
        return {1: self.graphs_dim()}


def _readout_shape(a: ReadoutAttrs, ins):
    x, batch = ins
    _need_nodes(x, 0)
    if batch.dtype not in INT_DTYPES or batch.rank != 1:
        raise ShapeError("the batch vector must give each node's graph as an integer",
                         expected=f"i64[{D.fmt(x.shape[0])}]", found=str(batch), arg=1,
                         code="E0302" if batch.dtype not in INT_DTYPES else "E0301")
    _same(batch.shape[0], x.shape[0], "the batch vector needs one entry per node", 1,
          f"i64[{D.fmt(x.shape[0])}] (x is {x})", str(batch))
    if isinstance(a.graphs, int) and a.graphs < 1:
        raise ShapeError("graphs must be positive", expected=">= 1", found=str(a.graphs),
                         attr="graphs")
    if isinstance(a.graphs, str) and not a.graphs.isidentifier():
        raise ShapeError("graphs must be a count or a dim name", expected="an int or a name",
                         found=repr(a.graphs), attr="graphs")
    return [x.with_shape((a.graphs_dim(),) + x.shape[1:])]


def _readout_kernel(a: ReadoutAttrs, xs, ctx):
    x, batch = xs
    if isinstance(a.graphs, int):
        b = a.graphs
    elif a.graphs in ctx.bindings:
        b = ctx.bindings[a.graphs]
    else:
        b = int(batch.max()) + 1 if batch.size else 0
    seg = Segments(check_index(batch, b, "the batch vector"), b)
    return [getattr(seg, a.reduce)(x[seg.order])]


def _readout_call(a: ReadoutAttrs, args, ctx, ins):
    x, batch = args
    if isinstance(a.graphs, int):
        b = str(a.graphs)
    elif a.graphs in ctx.dim_names:
        b = ctx.dim(D.symbol(a.graphs))
    else:
        b = f"int({batch}.max()) + 1"
    return _t_reduce(x, batch, b, a.reduce)


READOUT = Op(
    name="readout",
    family="graph",
    doc="Per-graph pooling of node features over a batch of graphs: `readout(x, batch, "
        "reduce=\"sum\", graphs=\"B\")` gives [B, ...] from x [N, ...] and the batch vector "
        "i64[N] (each node's graph); reduce sum, mean or max (an empty graph gets 0). `graphs` "
        "is a fixed count or a dim name; a name is bound from an input with that axis or "
        "--bind, else it is the batch vector's max + 1.",
    attrs=ReadoutAttrs,
    positional=("reduce",),
    min_inputs=2,
    max_inputs=2,
    shape=_readout_shape,
    numpy=_readout_kernel,
    vjp=gg.readout_vjp,
    torch_call=_readout_call,
    macs=lambda a, ins, outs: D.product(ins[0].shape),
    label=lambda a: a.reduce,
    examples=(
        Example({"graphs": 3}, (tensor("f32", 7, 4), tensor("i64", 7)), int_high=3),
        Example({"reduce": "mean", "graphs": 2}, (tensor("f32", 5, 3), tensor("i64", 5)),
                int_high=2),
        Example({"reduce": "max", "graphs": 3}, (tensor("f32", 6, 2, 2), tensor("i64", 6)),
                int_high=3),
    ),
)

# ---- edge_dropout ------------------------------------------------------------------------


class EdgeDropoutAttrs(EdgeOpAttrs):
    p: float = 0.5


def _edrop_shape(a: EdgeDropoutAttrs, ins):
    ei, x = ins
    _need_edge_index(ei, 0)
    need_float(x, 1)
    if not 0.0 <= a.p < 1.0:
        raise ShapeError("p must be in [0, 1)", expected="0 <= p < 1", found=str(a.p),
                         attr="p")
    return [TensorType(x.dtype, (ei.shape[1],))]


def _edrop_kernel(a: EdgeDropoutAttrs, xs, ctx):
    ei, x = xs
    e = _edge_count(ei)
    if ctx.train and a.p > 0:
        return [(ctx.rng.random(e) >= a.p).astype(x.dtype)]
    return [np.ones(e, x.dtype)]


EDGE_DROPOUT = Op(
    name="edge_dropout",
    family="graph",
    doc="DropEdge: `w = edge_dropout(edge_index, x, p=0.5)` gives edge weights [E], each 0 "
        "with probability p in training (not rescaled) and all 1 at inference; pass them to "
        "gcn_conv or propagate as edge weights.",
    attrs=EdgeDropoutAttrs,
    positional=("p",),
    min_inputs=2,
    max_inputs=2,
    shape=_edrop_shape,
    numpy=_edrop_kernel,
    vjp=gg.shape_only_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"((torch.rand({args[0]}.shape[1], device={args[0]}.device) >= {a.p!r})"
        f".to({args[1]}.dtype) if self.training else {args[1]}.new_ones({args[0]}.shape[1]))"),
    random=True,
    label=lambda a: f"p={a.p}",
    examples=(Example({"p": 0.3}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), int_high=5),
              Example({"p": 0.3}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), train=True,
                      int_high=5)),
)

GRAPH_OPS = (GATHER, SCATTER, EDGE_SOFTMAX, DEGREE, ADD_SELF_LOOPS, GCN_NORM, LAPLACIAN,
             PROPAGATE, CHEBYSHEV, DIFFUSION, READOUT, EDGE_DROPOUT, GCN_CONV, CHEB_CONV,
             GAT_CONV, GIN_AGGREGATE, SAGE_CONV, GMM_CONV)
