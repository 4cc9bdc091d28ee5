"""NumPy helpers the attention ops (ops/attention.py, ops/attention_masks.py) and their vjps
(ops/attention_grad.py) share: the stable softmax, the causal and band masks, the projection,
the einsum equation's parse, and which role each of nn.MultiheadAttention's mask inputs plays."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from dslc.ops.base import ShapeError


def _softmax_last(s: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Stable softmax over the last axis: the max is subtracted first, so scores of ±1e4 stay
    finite. A row whose entries are all -inf gives NaN, as torch.softmax does. `overwrite`
    lets it work in s itself (a caller's own temporary: attention's [B, h, T, T] scores,
    4 MB a layer in the encoder benchmark)."""
    m = np.max(s, axis=-1, keepdims=True)
    e = np.subtract(s, m, out=s if overwrite else None)
    np.exp(e, out=e)
    # One reciprocal a row and a multiply: half the time of dividing every element.
    e *= np.reciprocal(np.sum(e, axis=-1, keepdims=True))
    return e


def _band(tq: int, tk: int, window: int) -> np.ndarray:
    i = np.arange(tq)[:, None]
    j = np.arange(tk)[None, :]
    return np.abs(i - j) > window


def _causal(tq: int, tk: int) -> np.ndarray:
    return np.triu(np.ones((tq, tk), dtype=bool), 1)


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    # One [B*T, in] x [in, out] product: NumPy runs a 3-d @ 2-d matmul as B separate
    # products, which is 2-3x slower for these sizes.
    y = np.matmul(x.reshape(-1, x.shape[-1]), w.T).reshape(x.shape[:-1] + (w.shape[0],))
    if b is not None:
        y += b
    return y


def _mask_kinds(a: Any, n: int) -> list[str]:
    if n == 2:
        return ["attn", "padding"]
    if n == 1:
        return ["padding" if a.padding else "attn"]
    return []


def _parse_equation(a: Any, n: int) -> tuple[list[str], str]:
    eq = a.equation.replace(" ", "")
    m = re.fullmatch(r"([a-zA-Z]+(?:,[a-zA-Z]+)*)->([a-zA-Z]*)", eq)
    if not m:
        raise ShapeError("einsum equation must be 'ab,bc->ac': letters per input, then the "
                         "output's letters (no '...')", expected="e.g. 'bqd,bkd->bqk'",
                         found=repr(a.equation), attr="equation")
    terms = m.group(1).split(",")
    out = m.group(2)
    if len(terms) != n:
        raise ShapeError(f"einsum equation names {len(terms)} inputs but {n} were given",
                         expected=f"{n} comma-separated terms", found=repr(a.equation),
                         attr="equation")
    letters = set("".join(terms))
    if any(c not in letters for c in out) or len(set(out)) != len(out):
        raise ShapeError("each output letter must appear once and in some input",
                         expected=f"letters from {''.join(sorted(letters))}",
                         found=repr(out), attr="equation")
    return terms, out
