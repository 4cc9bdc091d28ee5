"""Elaboration of expressions: names, attributes, indexing, arithmetic on dims, scalars
and tensors, and conditions (a part of `Elaborator`, dslc/elaborate.py)."""

from __future__ import annotations

import math

import sympy

from dslc import dims as D
from dslc.diagnostics import DslcError, Span, did_you_mean
from dslc.ir import Constraint
from dslc.ops.registry import OPS
from dslc.syntax import ast
from dslc.values import Env, TensorVal, Unknown, UnknownValue, describe, norm_int

BINOP_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}
_DECIDABLE = "a comparison of fixed sizes and hyperparameters"


class Expressions:
    """Expression evaluation for `Elaborator`."""

    def truth(self, v, span: Span) -> bool:
        if isinstance(v, (sympy.logic.boolalg.Boolean, sympy.Rel)):
            if v == sympy.true:
                return True
            if v == sympy.false:
                return False
            raise self.err("E0225", "condition depends on runtime dims and cannot be decided "
                           "when the model is compiled", span, found=str(v),
                           hint="conditions may use hyperparameters and fixed dims only")
        raise self.err("E0224", "a condition must be a bool", span, expected="a bool",
                       found=describe(v))

    # ---- expressions
    def unknown_name(self, name: str, span: Span, env: Env) -> DslcError:
        hint = did_you_mean(name, env.names())
        return self.err("E0202", f"undefined name '{name}'", span,
                        hint=hint or "define it before use with `name = ...`")

    def eval(self, e, env: Env, symbols: bool = False):
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.String):
            return e.value
        if isinstance(e, ast.Bool):
            return e.value
        if isinstance(e, ast.Name):
            found = env.get(e.name)
            if found is None:
                if symbols:
                    return D.symbol(e.name)
                raise self.unknown_name(e.name, e.span, env)
            if isinstance(found[0], Unknown):
                raise UnknownValue(e.name)
            return found[0]
        if isinstance(e, (ast.TupleLit, ast.ListLit)):
            return tuple(norm_int(self.eval(i, env, symbols)) for i in e.items)
        if isinstance(e, ast.BinOp):
            return self.eval_binop(e, env, symbols)
        if isinstance(e, ast.UnaryOp):
            v = self.eval(e.operand, env, symbols)
            if e.op == "not":
                if isinstance(v, bool):
                    return not v
                return not self.truth(v, e.operand.span)
            if isinstance(v, TensorVal):
                if e.op == "+":
                    return v
                return self.apply_op(OPS["mul"], [v], {"scalar": -1.0}, e.span, [e.operand.span],
                                     {})
            if isinstance(v, bool) or not isinstance(v, (int, float, sympy.Expr)):
                raise self.err("E0226", f"cannot apply unary {e.op} to {describe(v)}", e.span)
            return norm_int(-v) if e.op == "-" else v
        if isinstance(e, ast.Attribute):
            return self.eval_attribute(e, env)
        if isinstance(e, ast.Index):
            return self.eval_index(e, env)
        if isinstance(e, ast.Call):
            return self.eval_call(e, env, None)
        if isinstance(e, ast.Pipe):
            src = self.eval(e.source, env)
            return self.eval_call(e.stage, env, (src, e.source.span))
        if isinstance(e, ast.Scan):
            return self.eval_scan(e, env)
        if isinstance(e, ast.Conditional):
            # Decided when the model is compiled, like an `if` statement; the other branch is
            # never elaborated (it makes no layer and may even be ill-typed for these values).
            cond = self.eval(e.cond, env, symbols)
            if not isinstance(cond, bool):
                cond = self.truth(cond, e.cond.span)
            return self.eval(e.then if cond else e.orelse, env, symbols)
        raise self.err("E0299", "unsupported expression", e.span)  # pragma: no cover

    def eval_attribute(self, e: ast.Attribute, env: Env):
        v = self.eval(e.value, env)
        if isinstance(v, TensorVal):
            if e.attr == "shape":
                return tuple(norm_int(d) for d in v.type.shape)
            if e.attr == "rank":
                return v.type.rank
            if e.attr == "dtype":
                return v.type.dtype
        if isinstance(v, tuple) and e.attr == "len":
            return len(v)
        raise self.err("E0227", f"{describe(v)} has no attribute '{e.attr}'", e.span,
                       expected="shape, rank or dtype of a tensor" if isinstance(v, TensorVal)
                       else None,
                       hint=did_you_mean(e.attr, ["shape", "rank", "dtype"]))

    def eval_index(self, e: ast.Index, env: Env):
        v = self.eval(e.value, env)
        if isinstance(v, tuple):
            if len(e.items) != 1 or isinstance(e.items[0], ast.Slice):
                raise self.err("E0228", "a tuple takes one integer index", e.span)
            i = norm_int(self.eval(e.items[0], env))
            if not isinstance(i, int) or isinstance(i, bool):
                raise self.err("E0228", "index must be an integer", e.items[0].span,
                               found=describe(i))
            if not -len(v) <= i < len(v):
                raise self.err("E0228", "index out of range", e.items[0].span,
                               expected=f"{-len(v)} <= index < {len(v)}", found=str(i))
            return v[i]
        if isinstance(v, TensorVal):
            items = []
            spans = []
            for it in e.items:
                if isinstance(it, ast.Slice):
                    start = norm_int(self.eval(it.start, env)) if it.start else None
                    stop = norm_int(self.eval(it.stop, env)) if it.stop else None
                    for b in (start, stop):
                        if b is not None and not isinstance(b, int):
                            raise self.err("E0228", "slice bounds must be integers",
                                           it.span, found=describe(b))
                    items.append(("slice", start, stop))
                else:
                    i = norm_int(self.eval(it, env))
                    if not isinstance(i, int) or isinstance(i, bool):
                        raise self.err("E0228", "tensor index must be an integer", it.span,
                                       found=describe(i))
                    items.append(("index", i, None))
                spans.append(it.span)
            if "index" not in OPS:
                raise self.err("E0299", "tensor indexing is not available", e.span)
            return self.apply_op(OPS["index"], [v], {"items": tuple(items)}, e.span,
                                 [e.value.span], {})
        raise self.err("E0228", f"cannot index {describe(v)}", e.span)

    def eval_binop(self, e: ast.BinOp, env: Env, symbols: bool):
        if e.op in ("and", "or"):
            left = self.eval(e.left, env, symbols)
            lb = left if isinstance(left, bool) else self.truth(left, e.left.span)
            if e.op == "and" and not lb:
                return False
            if e.op == "or" and lb:
                return True
            right = self.eval(e.right, env, symbols)
            return right if isinstance(right, bool) else self.truth(right, e.right.span)
        a = self.eval(e.left, env, symbols)
        b = self.eval(e.right, env, symbols)
        if isinstance(a, TensorVal) or isinstance(b, TensorVal):
            return self.tensor_binop(e, a, b)
        return self.scalar_binop(e, a, b)

    def tensor_binop(self, e: ast.BinOp, a, b):
        if e.op not in BINOP_OPS:
            raise self.err("E0226", f"operator '{e.op}' is not defined on tensors", e.span,
                           hint="use an op, e.g. pow, or compare with hyperparameters only")
        op = OPS[BINOP_OPS[e.op]]
        if isinstance(a, TensorVal) and isinstance(b, TensorVal):
            return self.apply_op(op, [a, b], {}, e.span, [e.left.span, e.right.span], {})
        scalar, tensor = (b, a) if isinstance(a, TensorVal) else (a, b)
        if e.op == "@" or isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
            raise self.err("E0226", f"cannot apply '{e.op}' to {describe(a)} and {describe(b)}",
                           e.span)
        tspan = e.left.span if isinstance(a, TensorVal) else e.right.span
        return self.apply_op(op, [tensor], {"scalar": scalar,
                                            "reverse": not isinstance(a, TensorVal)},
                             e.span, [tspan], {})

    def scalar_binop(self, e: ast.BinOp, a, b):
        numeric = (int, float, sympy.Expr)
        if e.op in ("==", "!="):
            if isinstance(a, sympy.Expr) or isinstance(b, sympy.Expr):
                eq = D.equal(D.as_dim(a) if not isinstance(a, float) else sympy.Float(a),
                             D.as_dim(b) if not isinstance(b, float) else sympy.Float(b))
                if eq is None and self.symbolic_conditions:
                    return sympy.Eq(a, b) if e.op == "==" else sympy.Ne(a, b)
                if eq is None:
                    raise self.err("E0225", "comparison depends on runtime dims", e.span,
                                   expected=_DECIDABLE,
                                   found=f"{describe(a)} {e.op} {describe(b)}")
                return eq if e.op == "==" else not eq
            return (a == b) if e.op == "==" else (a != b)
        if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, numeric) \
                or not isinstance(b, numeric):
            if e.op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
                return a + b
            if e.op == "+" and isinstance(a, str) and isinstance(b, str):
                return a + b
            raise self.err("E0226", f"cannot apply '{e.op}' to {describe(a)} and {describe(b)}",
                           e.span)
        if e.op in ("<", "<=", ">", ">="):
            r = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge}[e.op](a, b)
            if r in (sympy.true, sympy.false):
                return bool(r)
            if self.symbolic_conditions:
                return r
            raise self.err("E0225", "comparison depends on runtime dims", e.span,
                           expected=_DECIDABLE, found=str(r),
                           hint="a runtime dim such as the batch size is unknown until the "
                           "model runs")
        if e.op == "+":
            return norm_int(a + b)
        if e.op == "-":
            return norm_int(a - b)
        if e.op == "*":
            return norm_int(a * b)
        if e.op == "**":
            if isinstance(b, (int,)) and abs(b) > 64 and isinstance(a, int) and abs(a) > 1:
                raise self.err("E0229", "exponent too large", e.right.span)
            return norm_int(a ** b)
        if e.op == "@":
            raise self.err("E0226", "'@' needs tensors", e.span)
        if isinstance(b, (int, float)) and b == 0:
            raise self.err("E0230", "division by zero", e.right.span,
                           expected="a non-zero divisor", found=describe(b))
        if e.op == "/":
            if isinstance(a, float) or isinstance(b, float):
                return float(a) / float(b)
            if isinstance(a, int) and isinstance(b, int):
                if a % b:
                    raise self.err(
                        "E0231", f"{a} / {b} does not divide evenly", e.span,
                        expected=f"a multiple of {b}", found=str(a),
                        hint="use // for floor division, or 1.0 * a / b for a float")
                return a // b
            q = sympy.Rational(1, 1) * a / b
            if q.is_integer:
                return norm_int(q)
            if q.is_integer is False and not q.free_symbols:
                raise self.err("E0231", "division does not divide evenly", e.span,
                               found=str(q))
            self.graph.constraints.append(Constraint(q, "integer",
                                                     f"{D.fmt(a)} must be divisible by "
                                                     f"{D.fmt(b)}", e.span))
            return q
        if e.op == "//":
            if isinstance(a, float) or isinstance(b, float):
                return float(math.floor(a / b))
            return norm_int(D.floordiv(D.as_dim(a), D.as_dim(b)))
        if e.op == "%":
            if isinstance(a, float) or isinstance(b, float):
                return math.fmod(a, b)
            return norm_int(sympy.Mod(a, b))
        raise self.err("E0226", f"unknown operator {e.op}", e.span)  # pragma: no cover
