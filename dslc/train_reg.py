"""Regularisation terms of a train section's loss (dslc/train_check.py): `l1(params("fc*"))` and
`l2(params("fc*.weight"))` are rewritten, before the loss is elaborated, into sums over extra
inputs of the loss graph that the training program fills with the model's parameters.

l2(params(...)) is the sum of the squares of every element of the chosen parameters (no 1/2:
`lambda * l2(...)` adds 2 * lambda * w to each gradient), l1(params(...)) the sum of their
absolute values. The chosen parameters are those whose state_dict key matches one of the
glob patterns (fnmatch: `*` any text, `?` one character); `params()` chooses them all. Buffers
(batch norm's running statistics) are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from dslc.diagnostics import Diagnostic, DslcError, Span
from dslc.ir import Graph
from dslc.syntax import ast
from dslc.types import TensorType

PENALTIES = {"l1": "abs", "l2": "square"}


@dataclass
class PenaltyParam:
    """A parameter the loss reads: its loss-graph input name and its state_dict key."""

    arg: str
    key: str
    type: TensorType
    span: Span


def _err(msg: str, span: Span, **kw) -> DslcError:
    return DslcError(Diagnostic("E0642", msg, span, **kw))


def trainable(graph: Graph) -> dict[str, TensorType]:
    """The model's trainable parameters by state_dict key, in execution order."""
    return {key: TensorType(spec.dtype, tuple(spec.shape))
            for key, (_node, _local, spec) in graph.param_keys().items() if not spec.buffer}


def arg_name(key: str) -> str:
    """The loss input that holds parameter `key` (`fc1.weight` -> `param_fc1_weight`)."""
    return "param_" + "".join(c if c.isalnum() else "_" for c in key)


def rewrite(expr, graph: Graph, taken: set[str]) -> tuple[object, list[PenaltyParam]]:
    """The loss expression with every `l1(params(...))` / `l2(params(...))` replaced by its sum,
    and the parameters it reads (each once, in the model's order)."""
    params = trainable(graph)
    used: dict[str, PenaltyParam] = {}

    def visit(e):
        if isinstance(e, ast.Call) and e.func == "params":
            raise _err("params(...) is the argument of l1(...) or l2(...)", e.span,
                       expected='l2(params("fc*"))', found="params(...) alone")
        if not (isinstance(e, ast.Call) and e.func in PENALTIES):
            return None
        if len(e.args) != 1 or e.kwargs or not (
                isinstance(e.args[0], ast.Call) and e.args[0].func == "params"):
            raise _err(f"{e.func}(...) takes the parameters it penalises", e.span,
                       expected=f'{e.func}(params("PATTERN", ...))',
                       found=f"{len(e.args)} argument(s)" if len(e.args) != 1 else
                       "an argument that is not params(...)")
        sel = e.args[0]
        patterns = []
        for a in sel.args:
            if not isinstance(a, ast.String):
                raise _err("params(...) takes patterns of state_dict keys in quotes", a.span,
                           expected='params("fc*.weight")', found=type(a).__name__.lower())
            patterns.append(a.value)
        if sel.kwargs:
            raise _err("params(...) takes patterns only", sel.kwargs[0].span,
                       expected='params("fc*.weight", "conv*")', found=sel.kwargs[0].name)
        keys = [k for k in params if not patterns or any(fnmatchcase(k, p) for p in patterns)]
        if not keys:
            shown = ", ".join(list(params)[:8]) + (", ..." if len(params) > 8 else "")
            raise _err(f"params({', '.join(repr(p) for p in patterns)}) chooses no parameter "
                       f"of model '{graph.model}'", sel.span,
                       expected=f"patterns of these keys: {shown}" if params else
                       "a model with parameters", found="no match")
        terms = []
        for k in keys:
            if k not in used:
                name = arg_name(k)
                if name in taken:
                    raise _err(f"'{name}' (parameter {k}) has the name of another input of "
                               "the loss", sel.span, expected="a fresh name", found=name)
                used[k] = PenaltyParam(name, k, params[k], sel.span)
            terms.append(_term(PENALTIES[e.func], used[k], e.span))
        out = terms[0]
        for t in terms[1:]:
            out = ast.BinOp(span=e.span, op="+", left=out, right=t)
        return out

    return walk(expr, visit), list(used.values())


def _term(op: str, p: PenaltyParam, span: Span):
    """sum(square(p)) over every axis (abs for l1)."""
    x = ast.Call(span=span, func=op, func_span=span, args=[ast.Name(span=span, name=p.arg)],
                 kwargs=[])
    if p.type.rank == 0:
        return x
    dims = ast.TupleLit(span=span, items=[ast.Number(span=span, value=i, text=str(i))
                                          for i in range(p.type.rank)])
    return ast.Call(span=span, func="sum", func_span=span, args=[x],
                    kwargs=[ast.Kwarg(span=span, name="dim", value=dims)])


def walk(e, fn):
    """A copy of the expression with `fn` applied top-down (fn returns a replacement or None)."""
    r = fn(e)
    if r is not None:
        return r
    if isinstance(e, ast.Node):
        new = {}
        for k in type(e).model_fields:
            v = getattr(e, k)
            w = walk(v, fn)
            if w is not v:
                new[k] = w
        return e.model_copy(update=new) if new else e
    if isinstance(e, list):
        items = [walk(x, fn) for x in e]
        return items if any(a is not b for a, b in zip(items, e)) else e
    return e
