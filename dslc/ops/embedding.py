"""Op `embedding`: a lookup table (torch.nn.Embedding); the op record for the registry, used by
elaboration (shape rule), the interpreter (kernel) and the PyTorch back end."""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ParamSpec, ShapeError
from dslc.types import INT_DTYPES, tensor


class EmbeddingAttrs(Attrs):
    num_embeddings: int
    embedding_dim: int
    padding_idx: int | None = None


def _shape(a: EmbeddingAttrs, ins):
    x = ins[0]
    if x.dtype not in INT_DTYPES:
        raise ShapeError("embedding indices must be integers", expected="i64 or i32",
                         found=str(x), arg=0, code="E0302")
    for name in ("num_embeddings", "embedding_dim"):
        v = getattr(a, name)
        if v < 1:
            raise ShapeError(f"{name} must be positive", expected=">= 1", found=str(v),
                             attr=name)
    n = a.num_embeddings
    if a.padding_idx is not None and not -n <= a.padding_idx < n:
        raise ShapeError("padding_idx must index the table", expected=f"{-n} <= padding_idx < {n}",
                         found=str(a.padding_idx), attr="padding_idx")
    return [tensor("f32", *x.shape, a.embedding_dim)]


def _params(a: EmbeddingAttrs, ins):
    # torch draws N(0, 1) and then zeroes the padding_idx row.
    row = padding_row(a)
    init = "normal" if row is None else f"normal_zero_row:{row}"
    return {"weight": ParamSpec((D.const(a.num_embeddings), D.const(a.embedding_dim)), init)}


def padding_row(a: EmbeddingAttrs) -> int | None:
    """The table row torch zeroes at init (padding_idx made non-negative), or None."""
    if a.padding_idx is None:
        return None
    return a.padding_idx % a.num_embeddings


def _kernel(a: EmbeddingAttrs, xs, ctx):
    idx = xs[0]
    w = ctx.params["weight"]
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= a.num_embeddings:
            bad = lo if lo < 0 else hi
            raise ShapeError("index out of range for the embedding table",
                             expected=f"0 <= index < {a.num_embeddings}", found=str(bad))
    return [w[idx.astype(np.intp, copy=False)]]


def _vjp(a: EmbeddingAttrs, xs, ys, gs, ctx):
    """Only the looked-up rows get a gradient: each index adds its output row's cotangent to
    its table row (a scatter-add; repeated indices accumulate). torch gives the padding row
    none."""
    w = ctx.params["weight"]
    gw = np.zeros_like(w)
    idx = xs[0].astype(np.intp, copy=False).reshape(-1)
    np.add.at(gw, idx, gs[0].reshape(-1, w.shape[1]).astype(w.dtype))
    row = padding_row(a)
    if row is not None:
        gw[row] = 0
    return [None], {"weight": gw}


def _module(a: EmbeddingAttrs, ins) -> str:
    extra = "" if a.padding_idx is None else f", padding_idx={a.padding_idx}"
    return f"nn.Embedding({a.num_embeddings}, {a.embedding_dim}{extra})"


EMBEDDING = Op(
    name="embedding",
    family="embed",
    doc="Looks up rows of a learned [num_embeddings, embedding_dim] table: integer indices "
        "of any shape [...] give [..., embedding_dim] (torch.nn.Embedding): "
        "`ids -> embedding(num_embeddings, embedding_dim, padding_idx=...)`. An index outside "
        "[0, num_embeddings) is a run-time error. MACs 0 (a lookup).",
    attrs=EmbeddingAttrs,
    positional=("num_embeddings", "embedding_dim"),
    shape=_shape,
    params=_params,
    numpy=_kernel,
    vjp=_vjp,
    torch_module=_module,
    torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]})",
    label=lambda a: f"{a.num_embeddings}×{a.embedding_dim}"
    + ("" if a.padding_idx is None else f", pad {a.padding_idx}"),
    module_prefix="emb",
    examples=(
        Example({"num_embeddings": 10, "embedding_dim": 4}, (tensor("i64", 2, 5),)),
        Example({"num_embeddings": 7, "embedding_dim": 3, "padding_idx": 0},
                (tensor("i64", 3, 4, 2),), int_high=7),
        Example({"num_embeddings": 12, "embedding_dim": 5}, (tensor("i32", 6),), int_high=12),
    ),
)

EMBEDDING_OPS = (EMBEDDING,)
