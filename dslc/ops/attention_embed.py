"""Positional encodings, tied embeddings, class tokens: ops attention.py lists for the registry."""

from __future__ import annotations

import math

import numpy as np

from dslc import dims as D
from dslc.ops.attention_grad import (
    class_token_vjp,
    no_input_vjp,
    position_embedding_vjp,
    shared_embedding_vjp,
)
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    need_float,
    norm_axis,
)
from dslc.types import tensor

# ---- positional encodings ----------------------------------------------------------------


class SinusoidalAttrs(Attrs):
    dim: int = 1


def _sin_shape(a: SinusoidalAttrs, ins):
    x = ins[0]
    need_float(x)
    if x.rank < 2:
        raise ShapeError("sinusoidal_encoding reads [.., T, .., d]", expected="rank >= 2",
                         found=str(x))
    t = x.shape[norm_axis(a.dim, x.rank)]
    d = concrete(x.shape[-1], "sinusoidal_encoding's size d (the last axis)")
    if d % 2:
        raise ShapeError("sinusoidal_encoding needs an even size (sin and cos pairs)",
                         expected="even last axis", found=str(x), arg=0)
    return [x.with_shape((t, d))]


def sinusoid_table(t: int, d: int) -> np.ndarray:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))."""
    pos = np.arange(t, dtype=np.float64)[:, None]
    freq = np.exp(np.arange(0, d, 2, dtype=np.float64) * (-math.log(10000.0) / d))
    ang = pos * freq
    out = np.empty((t, d))
    out[:, 0::2] = np.sin(ang)
    out[:, 1::2] = np.cos(ang)
    return out


def _sin_call(a: SinusoidalAttrs, args, ctx, ins):
    x = args[0]
    d = concrete(ins[0].shape[-1], "d")
    kw = f"device={x}.device, dtype={x}.dtype"
    # cos(a) = sin(a + π/2): the interleaved sin/cos table as one expression.
    return (f"torch.sin(torch.arange({x}.shape[{a.dim}], {kw})[:, None, None] "
            f"* torch.exp(torch.arange(0, {d}, 2, {kw}) * {-math.log(10000.0) / d!r})"
            f"[:, None] + torch.tensor([0.0, {math.pi / 2!r}], {kw})).flatten(1)")


SINUSOIDAL_ENCODING = Op(
    name="sinusoidal_encoding",
    family="attn",
    doc="The fixed sinusoidal position table of 'Attention is all you need' for a sequence "
        "x [B, T, d]: `x + sinusoidal_encoding(x)`; gives [T, d] with PE[p, 2i] = "
        "sin(p/10000^(2i/d)) and PE[p, 2i+1] = cos(...). `dim` is the time axis (default 1). "
        "No parameters: computed from the shape, on x's device.",
    attrs=SinusoidalAttrs,
    positional=("dim",),
    shape=_sin_shape,
    numpy=lambda a, xs, ctx: [sinusoid_table(xs[0].shape[a.dim], xs[0].shape[-1])
                              .astype(xs[0].dtype)],
    vjp=no_input_vjp,
    torch_call=_sin_call,
    examples=(Example({}, (tensor("f32", 2, 7, 6),)),),
)


class PositionEmbeddingAttrs(Attrs):
    max_len: int
    embedding_dim: int | None = None  # default: the input's last axis (float input)
    dim: int = 1


def _pe_dims(a: PositionEmbeddingAttrs, ins) -> tuple[D.Dim, int]:
    x = ins[0]
    if a.max_len < 1:
        raise ShapeError("max_len must be positive", expected=">= 1", found=str(a.max_len),
                         attr="max_len")
    if x.rank < 1:
        raise ShapeError("position_embedding reads a sequence axis", expected="rank >= 1",
                         found=str(x))
    t = x.shape[norm_axis(a.dim, x.rank)]
    if a.embedding_dim is not None:
        d = a.embedding_dim
    elif x.is_float:
        d = concrete(x.shape[-1], "position_embedding's size (the input's last axis)")
    else:
        raise ShapeError("give embedding_dim for integer (token id) input",
                         expected="embedding_dim=...", found=str(x), attr="embedding_dim")
    if D.value(t) is not None and D.value(t) > a.max_len:
        raise ShapeError(f"the sequence has {D.value(t)} positions but max_len is {a.max_len}",
                         expected=f"T <= {a.max_len}", found=str(x), attr="max_len")
    return t, d


def _pe_kernel(a: PositionEmbeddingAttrs, xs, ctx):
    t = xs[0].shape[a.dim]
    if t > a.max_len:
        raise ShapeError(f"the sequence has {t} positions but max_len is {a.max_len}",
                         expected=f"T <= {a.max_len}", found=str(t))
    return [ctx.params["weight"][:t]]


POSITION_EMBEDDING = Op(
    name="position_embedding",
    family="attn",
    doc="Learned positions: `position_embedding(x, max_len, embedding_dim=None, dim=1)` gives "
        "the first T rows [T, d] of a learned [max_len, d] table (nn.Embedding's layout and "
        "init; key `<name>.weight`, as BERT's position_embeddings / GPT-2's wpe); add it to "
        "the token embeddings. T > max_len is an error.",
    attrs=PositionEmbeddingAttrs,
    positional=("max_len", "embedding_dim"),
    shape=lambda a, ins: [tensor("f32", *_pe_dims(a, ins))],
    params=lambda a, ins: {"weight": ParamSpec((D.const(a.max_len), D.const(_pe_dims(a, ins)[1])),
                                               "normal")},
    numpy=_pe_kernel,
    vjp=position_embedding_vjp,
    torch_module=lambda a, ins: f"nn.Embedding({a.max_len}, {_pe_dims(a, ins)[1]})",
    torch_call=lambda a, args, ctx, ins: (
        f"{ctx.module}(torch.arange({args[0]}.shape[{a.dim}], device={args[0]}.device))"),
    module_prefix="pos",
    label=lambda a: f"max {a.max_len}",
    examples=(
        Example({"max_len": 9}, (tensor("f32", 2, 5, 4),)),
        Example({"max_len": 6, "embedding_dim": 3}, (tensor("i64", 2, 6),)),
    ),
)

# ---- shared (tied) embeddings and class tokens ---------------------------------------------


class SharedEmbeddingAttrs(Attrs):
    num_embeddings: int
    embedding_dim: int


def _shared_shape(a: SharedEmbeddingAttrs, ins):
    ids = ins[0]
    if ids.dtype not in ("i32", "i64"):
        raise ShapeError("embedding indices must be integers", expected="i64 or i32",
                         found=str(ids), arg=0, code="E0302")
    for name in ("num_embeddings", "embedding_dim"):
        if getattr(a, name) < 1:
            raise ShapeError(f"{name} must be positive", expected=">= 1",
                             found=str(getattr(a, name)), attr=name)
    return [tensor("f32", *ids.shape, a.embedding_dim),
            tensor("f32", a.num_embeddings, a.embedding_dim)]


def _shared_kernel(a: SharedEmbeddingAttrs, xs, ctx):
    ids = xs[0]
    w = ctx.params["weight"]
    if ids.size and (ids.min() < 0 or ids.max() >= a.num_embeddings):
        bad = int(ids.max() if ids.max() >= a.num_embeddings else ids.min())
        raise ShapeError("index out of range for the embedding table",
                         expected=f"0 <= index < {a.num_embeddings}", found=str(bad))
    return [w[ids], w]


SHARED_EMBEDDING = Op(
    name="shared_embedding",
    family="attn",
    doc="An embedding whose table is also returned, for weight tying: "
        "`e, table = ids -> shared_embedding(vocab, d) as wte` gives the looked-up vectors "
        "[..., d] and the table [vocab, d]; `h @ transpose(table, 0, 1)` then reuses the table "
        "as the output projection (GPT's tied embeddings). The table is one parameter, "
        "`<name>.weight` (nn.Embedding's layout and init), counted once.",
    attrs=SharedEmbeddingAttrs,
    positional=("num_embeddings", "embedding_dim"),
    shape=_shared_shape,
    params=lambda a, ins: {"weight": ParamSpec((D.const(a.num_embeddings),
                                                D.const(a.embedding_dim)), "normal")},
    numpy=_shared_kernel,
    vjp=shared_embedding_vjp,
    torch_module=lambda a, ins: f"nn.Embedding({a.num_embeddings}, {a.embedding_dim})",
    torch_call=lambda a, args, ctx, ins: f"{ctx.module}({args[0]}), {ctx.module}.weight",
    n_outputs=lambda a: 2,
    module_prefix="emb",
    label=lambda a: f"{a.num_embeddings}×{a.embedding_dim}, shared",
    examples=(Example({"num_embeddings": 7, "embedding_dim": 3}, (tensor("i64", 2, 5),),
                      int_high=7),),
)


class ClassTokenAttrs(Attrs):
    pass


def _cls_dim(ins) -> int:
    x = ins[0]
    if x.rank != 3:
        raise ShapeError("class_token takes a batch of sequences", expected="[B, N, d]",
                         found=str(x), arg=0)
    need_float(x)
    return concrete(x.shape[2], "class_token's size (the last axis)")


def _cls_shape(a, ins):
    x = ins[0]
    d = _cls_dim(ins)
    return [x.with_shape((x.shape[0], x.shape[1] + 1, d))]


def _cls_kernel(a, xs, ctx):
    x = xs[0]
    tok = ctx.params["weight"].astype(x.dtype, copy=False)
    return [np.concatenate([np.broadcast_to(tok, (x.shape[0], 1, x.shape[2])), x], axis=1)]


CLASS_TOKEN = Op(
    name="class_token",
    family="attn",
    doc="Puts a learned token before each sequence of a batch: `patches -> class_token as "
        "cls_token` gives [B, N + 1, d] (ViT's and BERT's [CLS]); the token is one [1, d] "
        "parameter `<name>.weight` (nn.Embedding(1, d)'s layout and init), broadcast over "
        "the batch.",
    attrs=ClassTokenAttrs,
    shape=_cls_shape,
    params=lambda a, ins: {"weight": ParamSpec((D.const(1), D.const(_cls_dim(ins))), "normal")},
    numpy=_cls_kernel,
    vjp=class_token_vjp,
    torch_module=lambda a, ins: f"nn.Embedding(1, {_cls_dim(ins)})",
    torch_call=lambda a, args, ctx, ins: (
        f"torch.cat(({ctx.module}.weight.expand({args[0]}.shape[0], 1, -1), {args[0]}), "
        "dim=1)"),
    module_prefix="cls",
    examples=(Example({}, (tensor("f32", 2, 4, 3),)),),
)
