"""Symbolic dimensions: sympy expressions over named runtime symbols (B, T, N, ...)."""

from __future__ import annotations

import functools

import sympy

Dim = sympy.Expr


@functools.cache
def symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, positive=True)


def const(n: int) -> Dim:
    return sympy.Integer(n)


def as_dim(v) -> Dim:
    if isinstance(v, sympy.Expr):
        return v
    if isinstance(v, bool):
        raise TypeError("bool is not a dim")
    if isinstance(v, int):
        return sympy.Integer(v)
    raise TypeError(f"not a dim: {v!r}")


def is_const(d: Dim) -> bool:
    return bool(d.is_Integer)


def value(d: Dim) -> int | None:
    """The integer value of a dim when it has no free symbols."""
    return int(d) if d.is_Integer else None


def floordiv(a: Dim, b: Dim) -> Dim:
    return sympy.floor(a / b)


def conv_out(size: Dim, kernel: int, stride: int, padding: int, dilation: int) -> Dim:
    """The one conv/pool output-size formula: floor((W + 2P - D(K-1) - 1)/S) + 1."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return sympy.floor(span / sympy.Integer(stride)) + 1


def pool_out_ceil(size: Dim, kernel: int, stride: int, padding: int, dilation: int) -> Dim:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return sympy.ceiling(span / sympy.Integer(stride)) + 1


def equal(a: Dim, b: Dim) -> bool | None:
    """True when provably equal, False when provably different, None when undecided."""
    diff = sympy.simplify(a - b)
    if diff == 0:
        return True
    if diff.is_number:
        return False
    if diff.is_zero is False:
        return False
    return None


def product(dims) -> Dim:
    p = sympy.Integer(1)
    for d in dims:
        p = p * d
    return p


def fmt(d: Dim) -> str:
    """Human form: `B`, `3`, `T*2`, `floor(W/2)`."""
    d = as_dim(d) if not isinstance(d, sympy.Expr) else d
    if d.is_Integer:
        return str(int(d))
    return sympy.sstr(d).replace(" ", "")


def fmt_shape(shape) -> str:
    return "[" + ", ".join(fmt(d) for d in shape) + "]"


def substitute(d: Dim, bindings: dict[str, int]) -> Dim:
    # numbers and lone names without sympy's subs, which costs ~0.4 ms a call (every run binds
    # its input dims through here)
    if not bindings or d.is_Integer:
        return d
    if d.is_Symbol:
        return const(bindings[d.name]) if d.name in bindings else d
    return d.subs({symbol(k): v for k, v in bindings.items()})


def free_names(d: Dim) -> list[str]:
    return sorted(s.name for s in d.free_symbols)


def py_expr(d: Dim, names: dict[str, str]) -> str:
    """Python source for a dim, with floor/ceil as integer division and symbols renamed."""
    if d.is_Integer:
        return str(int(d))
    return _py(d, names)


def _py(e, names) -> str:
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return names.get(e.name, e.name)
    if isinstance(e, sympy.floor) or isinstance(e, sympy.ceiling):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        n = _py(num, names)
        d = _py(den, names)
        if isinstance(e, sympy.floor):
            return f"(({n}) // {d})"
        return f"(-((-({n})) // {d}))"
    if e.is_Add:
        terms = [_py(a, names) for a in e.as_ordered_terms()]
        return "(" + " + ".join(terms).replace("+ -", "- ") + ")"
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        if coeff.is_Rational and not coeff.is_Integer:
            num, den = sympy.fraction(e)
            return f"(({_py(num, names)}) // {_py(den, names)})"
        factors = [_py(a, names) for a in e.as_ordered_factors()]
        return "(" + " * ".join(factors) + ")"
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return f"({_py(e.base, names)} ** {int(e.exp)})"
    if isinstance(e, sympy.Mod):
        return f"({_py(e.args[0], names)} % {_py(e.args[1], names)})"
    if isinstance(e, (sympy.Max, sympy.Min)):
        fn = "max" if isinstance(e, sympy.Max) else "min"
        return f"{fn}(" + ", ".join(_py(a, names) for a in e.args) + ")"
    raise ValueError(f"cannot print dim {e}")


_RELATIONS = {sympy.Eq: "==", sympy.Ne: "!=", sympy.Lt: "<", sympy.Le: "<=", sympy.Gt: ">",
              sympy.Ge: ">="}


def py_condition(cond, names: dict[str, str]) -> str:
    """Python source for a condition over dims (an assert's, or a divisibility the checker
    recorded as a constraint), with symbols renamed as in py_expr."""
    for cls, sym in _RELATIONS.items():
        if isinstance(cond, cls):
            return f"{_py(cond.lhs, names)} {sym} {_py(cond.rhs, names)}"
    if isinstance(cond, sympy.And):
        return " and ".join(f"({py_condition(a, names)})" for a in cond.args)
    if isinstance(cond, sympy.Or):
        return " or ".join(f"({py_condition(a, names)})" for a in cond.args)
    if isinstance(cond, sympy.Not):
        return f"not ({py_condition(cond.args[0], names)})"
    raise ValueError(f"cannot print condition {cond}")


def py_divisible(e, names: dict[str, str]) -> str:
    """Python source for "the dim expression `e` (a fraction such as T/2) is an integer"."""
    num, den = sympy.fraction(sympy.together(e))
    return f"{_py(num, names)} % {_py(den, names)} == 0"


def evaluate(d: Dim, bindings: dict[str, int]) -> int:
    v = substitute(d, bindings)
    if not v.is_Integer:
        raise KeyError(free_names(v)[0])
    return int(v)
