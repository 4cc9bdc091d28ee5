"""Graph ops (family "graph"): message passing over node features [N, F] and an i64[2, E] edge
index (row 0 sources, row 1 targets, as torch_geometric); shape rules for elaboration, NumPy
kernels (sorted-segment reductions) for the interpreter, plain-torch emitters for codegen.

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

import weakref
import zlib
from typing import Literal

import numpy as np
from scipy import sparse

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ParamSpec, ShapeError, concrete, need_float
from dslc.types import INT_DTYPES, TensorType, tensor

# ---- shared checks -----------------------------------------------------------------------


def _need_edge_index(t: TensorType, arg: int) -> None:
    if t.dtype not in INT_DTYPES:
        raise ShapeError("edge_index must hold integer node indices", expected="i64[2, E]",
                         found=str(t), arg=arg, code="E0302")
    if t.rank != 2 or D.equal(t.shape[0], D.const(2)) is not True:
        raise ShapeError("edge_index must have shape [2, E] (sources, targets)",
                         expected="i64[2, E]", found=str(t), arg=arg)


def _need_nodes(t: TensorType, arg: int, what: str = "node tensor") -> None:
    if t.rank < 1:
        raise ShapeError(f"the {what} needs a node axis 0", expected="[N, ...]", found=str(t),
                         arg=arg)


def _same(a: D.Dim, b: D.Dim, msg: str, arg: int, expected: str, found: str) -> None:
    eq = D.equal(a, b)
    if eq is not True:
        why = "" if eq is False else " (cannot be shown equal)"
        raise ShapeError(msg + why, expected=expected, found=found, arg=arg)


def _need_per_edge(t: TensorType, ei: TensorType, arg: int, what: str) -> None:
    if t.rank < 1:
        raise ShapeError(f"{what} needs an edge axis 0", expected="[E, ...]", found=str(t),
                         arg=arg)
    _same(t.shape[0], ei.shape[1], f"{what} must have one row per edge", arg,
          f"[{D.fmt(ei.shape[1])}, ...] (edge_index is {ei})", str(t))


def _edge_count(ei: np.ndarray) -> int:
    return int(ei.shape[1])


def check_index(idx: np.ndarray, n: int, what: str) -> np.ndarray:
    """Indices as intp after a range check: a bad graph is a clear error, not a wrong gather."""
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ShapeError(f"{what} holds node index {bad}, outside the {n} nodes",
                             expected=f"0 <= index < {n}", found=str(bad))
    return idx.astype(np.intp, copy=False)


# ---- sorted segments (the NumPy speed trick) ------------------------------------------------


class Segments:
    """Edges grouped by one endpoint: sorted once, then every reduction is a reduceat over
    contiguous runs (about 2x faster than np.add.at, which scatters one element at a time)."""

    def __init__(self, idx: np.ndarray, n: int):
        self.n = n
        self.order = np.argsort(idx, kind="stable")
        s = idx[self.order]
        if s.size:
            self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            self.nodes = s[self.starts]
        else:
            self.starts = self.nodes = np.zeros(0, np.intp)
        self.sorted_idx = s
        self.counts = np.bincount(idx, minlength=n)

    def reduce(self, vals_sorted: np.ndarray, ufunc, fill: float = 0.0) -> np.ndarray:
        """Per node: ufunc over its edges' rows (already in sorted order); `fill` where none."""
        out = np.full((self.n,) + vals_sorted.shape[1:], fill, vals_sorted.dtype)
        if vals_sorted.shape[0]:
            out[self.nodes] = ufunc.reduceat(vals_sorted, self.starts, axis=0)
        return out

    def sum(self, vals_sorted):
        return self.reduce(vals_sorted, np.add)

    def mean(self, vals_sorted):
        s = self.sum(vals_sorted)
        c = np.maximum(self.counts, 1).astype(s.dtype).reshape((-1,) + (1,) * (s.ndim - 1))
        return s / c

    def max(self, vals_sorted):
        return self.reduce(vals_sorted, np.maximum)

    def softmax(self, vals_sorted):
        """Softmax over each node's edges, in sorted order (nodes with no edge: nothing)."""
        m = self.reduce(vals_sorted, np.maximum, -np.inf)
        ex = np.exp(vals_sorted - m[self.sorted_idx])
        den = self.sum(ex)
        return ex / den[self.sorted_idx]

    def unsort(self, vals_sorted):
        out = np.empty_like(vals_sorted)
        out[self.order] = vals_sorted
        return out


_CACHE: dict[tuple, tuple[weakref.ref, object]] = {}


def memo(arr: np.ndarray, key: tuple, make):
    """`make()` computed once per edge-index array (held weakly: the array is the key) and
    reused by every layer that reads the same array in a run: a 2-layer GCN sorts its edges
    and normalises its adjacency once, not twice."""
    # The content's checksum is in the key too: an array changed in place between two runs
    # must not get the first run's sorting (a crc32 of the edges costs microseconds).
    k = (id(arr), zlib.crc32(np.ascontiguousarray(arr))) + key
    hit = _CACHE.get(k)
    if hit is not None and hit[0]() is arr:
        return hit[1]
    value = make()
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[k] = (weakref.ref(arr), value)
    return value


def segments(ei: np.ndarray, row: int, n: int) -> Segments:
    """The grouping of `ei[row]` (memoised per array)."""
    return memo(ei, ("seg", row, n),
                lambda: Segments(check_index(ei[row], n, "edge_index"), n))


def propagate(x: np.ndarray, ei: np.ndarray, w: np.ndarray | None, reduce: str = "sum"):
    """out[i] = reduce over edges j -> i of w_e * x[j]."""
    n = x.shape[0]
    seg = segments(ei, 1, n)
    src = check_index(ei[0], n, "edge_index")[seg.order]
    vals = x[src]
    if w is not None:
        vals = vals * w[seg.order].reshape((-1,) + (1,) * (x.ndim - 1))
    return getattr(seg, reduce)(vals)


def looped(ei: np.ndarray, n: int) -> np.ndarray:
    """self_looped(ei, n), memoised per array (so its segments are too)."""
    return memo(ei, ("loops", n), lambda: self_looped(ei, n))


def self_looped(ei: np.ndarray, n: int) -> np.ndarray:
    loop = np.arange(n, dtype=ei.dtype)
    return np.concatenate([ei, np.stack([loop, loop])], axis=1)


def gcn_weights(ei: np.ndarray, n: int, dtype, w: np.ndarray | None = None) -> np.ndarray:
    """torch_geometric's gcn_norm for self_looped(ei): add_remaining_self_loops (an old loop is
    weight 0 and its weight moves to the appended loop), then D^-1/2 (A + I) D^-1/2."""
    src = check_index(ei[0], n, "edge_index")
    dst = check_index(ei[1], n, "edge_index")
    loops = src == dst
    w = np.ones(src.shape[0], dtype) if w is None else w.astype(dtype, copy=False)
    loop_w = np.ones(n, dtype)
    loop_w[src[loops]] = w[loops]  # the last of repeated loops wins, as torch's index_put_
    ww = np.concatenate([np.where(loops, 0, w).astype(dtype), loop_w])
    dst2 = np.concatenate([dst, np.arange(n)])
    src2 = np.concatenate([src, np.arange(n)])
    deg = np.bincount(dst2, weights=ww, minlength=n).astype(dtype)
    return (_inv_pow(deg, -0.5)[src2] * ww * _inv_pow(deg, -0.5)[dst2]).astype(dtype)


def _inv_pow(deg: np.ndarray, p: float) -> np.ndarray:
    """deg ** p with 0 for an isolated node (torch_geometric masks inf only: a negative
    weighted degree gives NaN on both sides)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (deg ** p).astype(deg.dtype)
    d[np.isinf(d)] = 0
    return d


def laplacian_weights(ei: np.ndarray, n: int, dtype, normalization: str, scaled: bool,
                      lambda_max: float) -> np.ndarray:
    """Weights of L (or 2L/lambda_max - I) over self_looped(ei), as torch_geometric's
    remove_self_loops + get_laplacian (+ ChebConv's scaling); old loops get weight 0."""
    src = check_index(ei[0], n, "edge_index")
    check_index(ei[1], n, "edge_index")
    w = np.where(src == ei[1], 0, 1).astype(dtype)
    deg = np.bincount(src, weights=w, minlength=n).astype(dtype)  # torch_geometric: by row
    if normalization == "none":
        off, diag = -w, deg
    else:
        dinv = _inv_pow(deg, -0.5 if normalization == "sym" else -1.0)
        off = -dinv[src] * w * dinv[ei[1]] if normalization == "sym" else -dinv[src] * w
        diag = np.ones(n, dtype)
    ww = np.concatenate([off, diag]).astype(dtype)
    if scaled:
        ww = (2.0 * ww / lambda_max).astype(dtype)
        ww[ei.shape[1]:] -= 1
    return ww


def chebyshev(x: np.ndarray, ei: np.ndarray, w: np.ndarray, k: int) -> list[np.ndarray]:
    """T_0 x = x, T_1 x = L x, T_k x = 2 L T_(k-1) x - T_(k-2) x."""
    ts = [x]
    if k > 1:
        ts.append(propagate(x, ei, w))
    for _ in range(2, k):
        ts.append(2 * propagate(ts[-1], ei, w) - ts[-2])
    return ts


# ---- torch emission helpers -------------------------------------------------------------


def _t_loop(ei: str, x: str) -> str:
    return f"torch.arange({x}.shape[0], device={ei}.device, dtype={ei}.dtype)"


def _t_looped(ei: str, x: str) -> str:
    return f"torch.cat([{ei}, {_t_loop(ei, x)}.expand(2, -1)], dim=1)"


def _t_gcn_norm(ei: str, x: str, w: str | None, out_ei: str, out_w: str, fresh) -> list[str]:
    loops, lw, deg, dinv = (fresh(n) for n in ("loops", "loop_w", "deg", "dinv"))
    lines = [f"{loops} = {ei}[0] == {ei}[1]",
             f"{lw} = {x}.new_ones({x}.shape[0])"]
    if w is None:
        lines.append(f"{out_w} = torch.cat([(~{loops}).to({x}.dtype), {lw}])")
    else:
        lines += [f"{lw}[{ei}[0][{loops}]] = {w}[{loops}].to({x}.dtype)",
                  f"{out_w} = torch.cat([{w}.to({x}.dtype).masked_fill({loops}, 0), {lw}])"]
    lines += [f"{out_ei} = {_t_looped(ei, x)}",
              f"{deg} = {x}.new_zeros({x}.shape[0]).index_add_(0, {out_ei}[1], {out_w})",
              f"{dinv} = {deg}.pow(-0.5).masked_fill({deg} == 0, 0)",
              f"{out_w} = {dinv}[{out_ei}[0]] * {out_w} * {dinv}[{out_ei}[1]]"]
    return lines


def _t_propagate(x: str, ei: str, w: str | None) -> str:
    msg = f"{x}[{ei}[0]]"
    if w is not None:
        msg = f"{msg} * {w}.view(-1, *[1] * ({x}.dim() - 1))"
    return f"torch.zeros_like({x}).index_add_(0, {ei}[1], {msg})"


def _t_reduce(msgs: str, idx: str, n: str, reduce: str) -> str:
    shape = f"({n},) + {msgs}.shape[1:]"
    if reduce == "sum":
        return f"{msgs}.new_zeros({shape}).index_add_(0, {idx}, {msgs})"
    how = {"mean": "mean", "max": "amax"}[reduce]
    return (f"{msgs}.new_zeros({shape}).index_reduce_(0, {idx}, {msgs}, {how!r}, "
            "include_self=False)")


def _t_softmax(s: str, idx: str, n: str, out: str, fresh) -> list[str]:
    mx, ex = fresh("mx"), fresh("ex")
    return [f"{mx} = {s}.new_full(({n},) + {s}.shape[1:], float('-inf'))"
            f".index_reduce_(0, {idx}, {s}, 'amax')",
            f"{ex} = ({s} - {mx}[{idx}]).exp()",
            f"{out} = {ex} / torch.zeros_like({mx}).index_add_(0, {idx}, {ex})[{idx}]"]


def _fresh(ctx):
    return ctx.body.fresh


def _flat(ins, arg=0) -> int:
    """Features per node (the product of the non-node axes) for MAC counts."""
    return D.product(ins[arg].shape[1:])


# ---- gather ------------------------------------------------------------------------------


class _Graph(Attrs):
    """Attrs of an op whose input 1 is an edge index into input 0's node axis."""

    def index_bounds(self, ins: list[TensorType]) -> dict[int, D.Dim]:
        """Input position -> the size its integer values index (for random valid graphs)."""
        return {1: ins[0].shape[0]}


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


class EdgeOpAttrs(Attrs):
    def index_bounds(self, ins):
        return {0: ins[1].shape[0]}


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
    torch_call=lambda a, args, ctx, ins: "",
    torch_stmts=_gcn_norm_stmts,
    n_outputs=lambda a: 2,
    macs=lambda a, ins, outs: 2 * outs[1].shape[0],
    examples=(
        Example({}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), int_high=5),
    ),
)


class LaplacianAttrs(EdgeOpAttrs):
    normalization: Literal["sym", "rw", "none"] = "sym"
    scaled: bool = False
    lambda_max: float = 2.0


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


def _t_laplacian(a: LaplacianAttrs, ei: str, x: str, out_ei: str, out_w: str, fresh):
    w, deg, dinv = fresh("w"), fresh("deg"), fresh("dinv")
    lines = [f"{w} = ({ei}[0] != {ei}[1]).to({x}.dtype)",
             f"{deg} = {x}.new_zeros({x}.shape[0]).index_add_(0, {ei}[0], {w})"]
    if a.normalization == "none":
        lines.append(f"{out_w} = torch.cat([-{w}, {deg}])")
    else:
        p = "-0.5" if a.normalization == "sym" else "-1.0"
        lines.append(f"{dinv} = {deg}.pow({p}).masked_fill({deg} == 0, 0)")
        off = (f"-{dinv}[{ei}[0]] * {w} * {dinv}[{ei}[1]]" if a.normalization == "sym"
               else f"-{dinv}[{ei}[0]] * {w}")
        lines.append(f"{out_w} = torch.cat([{off}, {x}.new_ones({x}.shape[0])])")
    if a.scaled:
        lines += [f"{out_w} = {out_w} * {2.0 / a.lambda_max!r}",
                  f"{out_w} = torch.cat([{out_w}[:{ei}.shape[1]], {out_w}[{ei}.shape[1]:] - 1])"]
    lines.append(f"{out_ei} = {_t_looped(ei, x)}")
    return lines


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


def _t_cheb_terms(x: str, ei: str, w: str, k: int, fresh) -> tuple[list[str], list[str]]:
    ts = [x]
    lines = []
    for i in range(1, k):
        t = fresh(f"tx{i}")
        prop = _t_propagate(ts[-1], ei, w)
        lines.append(f"{t} = {prop}" if i == 1 else f"{t} = 2 * {prop} - {ts[-2]}")
        ts.append(t)
    return lines, ts


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
    torch_call=lambda a, args, ctx, ins: (
        f"((torch.rand({args[0]}.shape[1], device={args[0]}.device) >= {a.p!r})"
        f".to({args[1]}.dtype) if self.training else {args[1]}.new_ones({args[0]}.shape[1]))"),
    random=True,
    label=lambda a: f"p={a.p}",
    examples=(Example({"p": 0.3}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), int_high=5),
              Example({"p": 0.3}, (tensor("i64", 2, 9), tensor("f32", 5, 2)), train=True,
                      int_high=5)),
)

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


def _pdict(entries: dict[str, str]) -> str:
    inner = ", ".join(f"{k!r}: nn.Parameter(torch.zeros({v}))" for k, v in entries.items())
    return f"nn.ParameterDict({{{inner}}})"


def _shape_str(dims) -> str:
    return ", ".join(str(d) for d in dims)


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
    p = {"weight": ParamSpec((D.const(a.out_channels), D.const(n)), "xavier_uniform", n)}
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
    torch_module=lambda a, ins: (f"nn.Linear({_in(ins, 'gcn_conv')}, {a.out_channels}"
                                 + ("" if a.bias else ", bias=False") + ")"),
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
                             "uniform_fan_in", n)}
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
    n = _in(ins, "cheb_conv")
    p = {"weight": _shape_str((a.K, a.out_channels, n))}
    if a.bias:
        p["bias"] = str(a.out_channels)
    return _pdict(p)


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
    p = {"weight": ParamSpec((h * c, D.const(n)), "xavier_uniform", n),
         "att_src": ParamSpec((D.const(1), h, c), "xavier_uniform", a.heads),
         "att_dst": ParamSpec((D.const(1), h, c), "xavier_uniform", a.heads)}
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
    n = _in(ins, "gat_conv")
    p = {"weight": _shape_str((a.heads * a.out_channels, n)),
         "att_src": _shape_str((1, a.heads, a.out_channels)),
         "att_dst": _shape_str((1, a.heads, a.out_channels))}
    if a.bias:
        p["bias"] = str(_gat_out(a))
    return _pdict(p)


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


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _lstm_aggregate(h_sorted: np.ndarray, seg: Segments, p) -> np.ndarray:
    """An LSTM over each node's neighbours in edge order (sorted by target, stable); the
    state after a node's last neighbour is its aggregate (0 for a node without one)."""
    n, f = seg.n, h_sorted.shape[1]
    deg = seg.counts
    steps = int(deg.max()) if deg.size else 0
    pos = np.arange(h_sorted.shape[0]) - np.repeat(np.r_[0, np.cumsum(deg)[:-1]], deg)
    dense = np.zeros((n, max(steps, 1), f), h_sorted.dtype)
    dense[seg.sorted_idx, pos] = h_sorted
    hs = np.zeros((n, f), h_sorted.dtype)
    cs = np.zeros((n, f), h_sorted.dtype)
    for t in range(steps):
        g = dense[:, t] @ p["weight_ih"].T + p["bias_ih"] + hs @ p["weight_hh"].T + p["bias_hh"]
        i, fg, gg, o = np.split(g, 4, axis=1)
        c_new = _sigmoid(fg) * cs + _sigmoid(i) * np.tanh(gg)
        h_new = _sigmoid(o) * np.tanh(c_new)
        live = (deg > t)[:, None]
        cs = np.where(live, c_new, cs)
        hs = np.where(live, h_new, hs)
    return hs


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
        agg = _lstm_aggregate(h[src], seg, p)
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
    return _pdict({k: _shape_str(int(d) for d in s.shape)
                   for k, s in _sage_params(a, ins).items()})


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

_GMM_EPS = 1e-15  # torch_geometric GMMConv's guard against a zero sigma


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
    p = {"g": ParamSpec((D.const(n), o * k), "xavier_uniform", n),
         "mu": ParamSpec((k, D.const(d)), "normal"),
         "sigma": ParamSpec((k, D.const(d)), "ones")}
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
    z = -0.5 * (ps[:, None, :] - p["mu"][None]) ** 2 / (_GMM_EPS + p["sigma"][None] ** 2)
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
        f".pow(2) / ({_GMM_EPS!r} + {m}.sigma.view(1, {k}, {d}).pow(2))).sum(dim=-1))",
        f"{msgs} = ({h}[{ei}[0]] * {gauss}.unsqueeze(-1)).sum(dim=1)",
    ]
    out = _t_reduce(msgs, f"{ei}[1]", f"{x}.shape[0]", "mean")
    if a.root_weight:
        out += f" + F.linear({x}, {m}.root_weight)"
    if a.bias:
        out += f" + {m}.bias"
    return lines + [f"{targets[0]} = {out}"]


def _gmm_module(a: GMMAttrs, ins) -> str:
    return _pdict({k: _shape_str(int(d) for d in s.shape)
                   for k, s in _gmm_params(a, ins).items()})


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

GRAPH_OPS = (GATHER, SCATTER, EDGE_SOFTMAX, DEGREE, ADD_SELF_LOOPS, GCN_NORM, LAPLACIAN,
             PROPAGATE, CHEBYSHEV, DIFFUSION, READOUT, EDGE_DROPOUT, GCN_CONV, CHEB_CONV,
             GAT_CONV, GIN_AGGREGATE, SAGE_CONV, GMM_CONV)
