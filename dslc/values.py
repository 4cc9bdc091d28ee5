"""Elaboration's values and scopes: tensors under construction, dims, scalars, and the
nested name environments of models, blocks and repeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy

from dslc import dims as D
from dslc.diagnostics import Span
from dslc.types import TensorType

# ---- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorVal:
    ref: tuple[int, int]
    type: TensorType
    origin: Span  # where the value was made, for "came from" notes


@dataclass(frozen=True)
class Unknown:
    """The value of a name whose defining statement failed with a diagnostic. Using it
    aborts the using statement quietly (UnknownValue), so one mistake gives one error, not
    one more per statement that depends on it."""

    span: Span


class UnknownValue(Exception):
    """A statement read an Unknown: it is skipped without a diagnostic of its own."""


def describe(v: Any) -> str:
    if isinstance(v, TensorVal):
        return f"tensor {v.type}"
    if isinstance(v, bool):
        return f"bool {str(v).lower()}"
    if isinstance(v, int):
        return f"int {v}"
    if isinstance(v, sympy.Expr):
        return f"dim {D.fmt(v)}"
    if isinstance(v, float):
        return f"float {v!r}"
    if isinstance(v, str):
        return f"string {v!r}"
    if isinstance(v, tuple):
        return "tuple (" + ", ".join(describe(x) for x in v) + ")"
    return type(v).__name__


def norm_int(v):
    """Dims that are plain numbers become Python ints."""
    if isinstance(v, sympy.Expr) and v.is_Integer:
        return int(v)
    return v


def is_int(v) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, sympy.Expr) and v.is_integer is not False and not v.is_Float)


class Env:
    def __init__(self, parent: Env | None = None):
        self.vars: dict[str, tuple[Any, Span]] = {}
        self.parent = parent

    def get(self, name: str):
        env = self
        while env is not None:
            if name in env.vars:
                return env.vars[name]
            env = env.parent
        return None

    def set(self, name: str, value: Any, span: Span) -> None:
        # Assignment rebinds where the name lives (so `h = h -> f` in a repeat carries on).
        env = self
        while env is not None:
            if name in env.vars:
                env.vars[name] = (value, span)
                return
            env = env.parent
        self.vars[name] = (value, span)

    def names(self) -> list[str]:
        out = []
        env = self
        while env is not None:
            out += list(env.vars)
            env = env.parent
        return out
