"""ONNX import, first half: what each ONNX value is known to be before any spec is written.

An ONNX graph mixes three kinds of value, and the importer treats each differently:

- `Const`: a tensor computable from initializers and `Constant`/`ConstantOfShape` nodes alone
  (weights, gate-reordered LSTM weights, scales). Folded with ONNX's reference evaluator; the
  initializers it came from are remembered, which is where layer names come from.
- `Dims`: an integer vector (or scalar) whose entries are sizes, some of them symbolic: what
  torch's exporter builds with `Shape -> Gather -> Concat` to feed `Reshape`. Its entries are
  sympy expressions over the spec's dim names, so the spec can write them (`(B, T, 4, 4)`).
- `Tensor`: a runtime tensor, a value of the spec. It has a spec variable, or a `lazy` recipe
  that writes the statement only if a consumer needs it (the transposes around an ONNX LSTM,
  which fold away when the next layer reads the batch-first result directly).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from dslc import dims as D


@dataclass
class Const:
    array: np.ndarray
    sources: tuple[str, ...] = ()  # initializer names this value was computed from


@dataclass
class Dims:
    items: list[sympy.Expr]
    scalar: bool = False  # a 0-d value (one size), as Squeeze(Shape(x)[i]) gives


@dataclass
class Zeros:
    """A tensor filled with one number whose shape holds runtime sizes (ConstantOfShape or
    Expand of a constant): an RNN's initial state, which dslc's layers default to."""

    shape: list[sympy.Expr]
    fill: float
    dtype: str
    source: tuple | None = None  # (node, input values): how to compute it for given sizes


@dataclass
class Sized:
    """A tensor computed from sizes alone (`CumSum` of ones, a comparison of two such): a
    mask whose values depend only on the dims. Recognised by evaluating it at a few sizes."""

    source: tuple  # (node, input values, output index)


@dataclass
class Tensor:
    shape: list[sympy.Expr | None]  # None: a size ONNX shape inference could not name
    dtype: str
    var: str | None = None
    lazy: Callable[[], str] | None = None  # writes the statement, returns the variable
    tag: tuple[Any, ...] = ()  # what a lazy value is, for patterns that read through it
    extra: dict[str, Any] = field(default_factory=dict)


Value = Const | Dims | Zeros | Sized | Tensor

# ONNX TensorProto element types -> dslc dtypes (the ones a spec can declare).
DTYPES = {1: "f32", 10: "f16", 16: "bf16", 11: "f64", 6: "i32", 7: "i64", 9: "bool"}

_PRODUCT = re.compile(r"^[A-Za-z_]\w*(\*([A-Za-z_]\w*|\d+))*$")


def parse_dim_param(text: str, names: dict[str, str]) -> sympy.Expr | None:
    """A shape-inference dim name as an expression over the spec's dims: a known name, or a
    product such as `B*T` (what torch writes for a flattened batch). Anything else is unknown;
    never `sympify`, which would evaluate the file's text."""
    if text in names:
        return D.symbol(names[text])
    if not _PRODUCT.match(text):
        return None
    out = sympy.Integer(1)
    for part in text.split("*"):
        if part.isdigit():
            out *= int(part)
        elif part in names:
            out *= D.symbol(names[part])
        else:
            return None
    return out


def dim_text(d: sympy.Expr) -> str:
    """A dim in the language's syntax: `B`, `B * T`, `x.shape[2] // 2`, `T + 1`."""
    d = sympy.sympify(d)
    if d.is_Integer:
        return str(int(d))
    if d.is_Symbol:
        return d.name
    if isinstance(d, sympy.floor):
        num, den = sympy.fraction(sympy.together(d.args[0]))
        return f"{_atom(num)} // {_atom(den)}"
    if d.is_Add:
        terms = sorted(d.args, key=sympy.default_sort_key)
        out = dim_text(terms[0])
        for t in terms[1:]:
            if t.could_extract_minus_sign():
                out += f" - {_atom(-t)}"
            else:
                out += f" + {dim_text(t)}"
        return out
    if d.is_Mul:
        num, den = sympy.fraction(d)
        factors = sorted(sympy.Mul.make_args(num), key=sympy.default_sort_key)
        text = " * ".join(_atom(f) for f in factors)
        if den != 1:
            text = f"{_atom(num) if len(factors) > 1 else text} / {_atom(den)}"
        return text
    raise ValueError(f"cannot write dim {d}")


def _atom(d: sympy.Expr) -> str:
    text = dim_text(d)
    return text if d.is_Atom else f"({text})"


def dims_value(v: Value) -> list[sympy.Expr] | None:
    """The entries of an integer vector, whether fully known (Const) or partly symbolic."""
    if isinstance(v, Dims):
        return list(v.items)
    if isinstance(v, Const) and v.array.dtype.kind in "iu":
        return [sympy.Integer(int(x)) for x in v.array.reshape(-1)]
    return None


def make_dims(items: list[sympy.Expr], scalar: bool) -> Value:
    """Dims that turned out fully known become a plain constant."""
    if all(sympy.sympify(i).is_Integer for i in items):
        arr = np.array([int(i) for i in items], dtype=np.int64)
        return Const(arr.reshape(()) if scalar else arr)
    return Dims(list(items), scalar)
