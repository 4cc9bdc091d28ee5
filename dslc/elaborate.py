"""Elaboration: AST to IR graph. Expands imports, blocks and repeats, resolves names, and runs
each op's shape rule as its node is created.

Shape rules run here, not in a later pass, because the language lets conditions and repeat
counts depend on shapes (`if x.shape[1] != out { ... }`): structure cannot be known before
types are. `dslc.interp.check` walks the finished graph again with the same rules, which keeps
the "one interpreter loop" of DESIGN.md as an independent check of the result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import sympy

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span, did_you_mean
from dslc.ir import Constraint, Frame, Graph, IRNode
from dslc.limits import (
    LOOP_ATTRS,
    MAX_BLOCK_DEPTH,
    MAX_DIM,
    MAX_IMPORT_DEPTH,
    MAX_NODES,
    MAX_PARAM_ELEMENTS,
    MAX_REPEAT,
)
from dslc.names import layer_key
from dslc.ops.base import Op, ShapeError
from dslc.ops.registry import OPS
from dslc.syntax import ast
from dslc.syntax.parser import parse, read_source
from dslc.types import DTYPES, TensorType

HPARAM_TYPES = {"int", "float", "bool", "string", "tuple"}
BINOP_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul"}
_DECIDABLE = "a comparison of fixed sizes and hyperparameters"


# ---- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorVal:
    ref: tuple[int, int]
    type: TensorType
    origin: Span  # where the value was made, for "came from" notes


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


# ---- the program: definitions from a file and its imports ----------------------------------


@dataclass
class Program:
    root: str
    definitions: dict[str, ast.Definition]
    modules: list[ast.Module]

    def models_in(self, file: str) -> list[ast.Definition]:
        return [d for d in self.definitions.values() if d.kind == "model" and d.span.file == file]


def load_program(path: str | Path, text: str | None = None) -> Program:
    path = Path(path)
    defs: dict[str, ast.Definition] = {}
    modules: list[ast.Module] = []
    seen: set[Path] = set()

    def visit(p: Path, stack: list[tuple[Path, Span | None]], text: str | None) -> None:
        key = p.resolve()
        if key in seen:
            return
        if len(stack) > MAX_IMPORT_DEPTH:
            raise DslcError(Diagnostic("E0213", "imports nested too deeply", stack[-1][1],
                                       expected=f"at most {MAX_IMPORT_DEPTH} levels"))
        if text is None:
            text = read_source(p)  # E0106 at the first bad byte, E0109 if unreadable
        mod = parse(text, str(p))
        seen.add(key)
        modules.append(mod)
        for imp in mod.imports:
            target = (p.parent / imp.path)
            rkey = target.resolve()
            chain = [s[0].resolve() for s in stack] + [key]
            if rkey in chain:
                cycle = " -> ".join(str(c.name) for c in chain[chain.index(rkey):]) + \
                    f" -> {target.name}"
                raise DslcError(Diagnostic("E0212", "import cycle", imp.span,
                                           found=cycle, hint="remove one of these imports"))
            if not target.is_file():
                raise DslcError(Diagnostic("E0211", f"cannot find imported file '{imp.path}'",
                                           imp.span, expected=f"a file at {target}",
                                           found="no such file"))
            visit(target, stack + [(p, imp.span)], None)
        for d in mod.definitions:
            if d.name in defs:
                other = defs[d.name]
                raise DslcError(Diagnostic(
                    "E0205", f"'{d.name}' is defined twice", d.name_span,
                    notes=[("first defined here", other.name_span)]))
            if d.name in OPS:
                raise DslcError(Diagnostic(
                    "E0205", f"'{d.name}' is the name of a built-in op", d.name_span,
                    hint="choose another name for this definition"))
            defs[d.name] = d

    try:
        visit(path, [], text)
    except RecursionError:
        raise DslcError(Diagnostic("E0213", "imports nested too deeply",
                                   Span(str(path), 1, 1, 1, 2))) from None
    return Program(str(path), defs, modules)


def pick_model(prog: Program, model: str | None) -> ast.Definition:
    models = prog.models_in(prog.root)
    all_models = [d for d in prog.definitions.values() if d.kind == "model"]
    if model is not None:
        d = prog.definitions.get(model)
        if d is None or d.kind != "model":
            hint = did_you_mean(model, [m.name for m in all_models])
            raise DslcError(Diagnostic(
                "E0401", f"no model named '{model}'", Span(prog.root, 1, 1, 1, 2),
                expected="one of: " + ", ".join(m.name for m in models) if models else "a model",
                found=model, hint=hint))
        return d
    if len(models) == 1:
        return models[0]
    if not models:
        raise DslcError(Diagnostic("E0402", "this file defines no model",
                                   Span(prog.root, 1, 1, 1, 2),
                                   hint="add `model name { ... }`; blocks alone cannot run"))
    stem = Path(prog.root).stem
    for m in models:
        if m.name == stem:
            return m
    raise DslcError(Diagnostic(
        "E0403", "this file defines several models; choose one with --model",
        Span(prog.root, 1, 1, 1, 2), expected="--model " + " | ".join(m.name for m in models)))


# ---- elaboration -------------------------------------------------------------------------


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


BUILTINS = ("len", "min", "max", "int", "float", "sqrt", "prod")


class Elaborator:
    def __init__(self, prog: Program, model: ast.Definition, overrides: dict[str, Any]):
        self.prog = prog
        self.model = model
        self.overrides = dict(overrides)
        self.graph = Graph(model=model.name, hparams={}, span=model.span, file=prog.root)
        self.root = self.graph  # scans elaborate their cells into sub-graphs of this one
        self.frames: list[Frame] = []
        self.counters: dict[str, dict[str, int]] = {}
        self.used_names: dict[str, set[str]] = {}
        self.target: str | None = None
        self.block_depth = 0
        self.flatten_block = False
        self.statement_span: Span | None = None
        self.param_elements = 0  # of the whole model: bounded by MAX_PARAM_ELEMENTS
        self.symbolic_conditions = False

    # ---- diagnostics helpers
    def err(self, code: str, msg: str, span: Span, **kw) -> DslcError:
        return DslcError(Diagnostic(code, msg, span, **kw))

    # ---- frames and names
    def path(self) -> str:
        return self.frames[-1].path if self.frames else ""

    def child_path(self, name: str) -> str:
        return f"{self.path()}.{name}" if self.path() else name

    def fresh_layer_name(self, prefix: str) -> str:
        counts = self.counters.setdefault(self.path(), {})
        used = self.used_names.setdefault(self.path(), set())
        n = counts.get(prefix, 0)
        sep = "_" if prefix[-1:].isdigit() else ""  # block `mlp2` gives mlp2_1, not mlp21
        while True:
            n += 1
            name = f"{prefix}{sep}{n}"
            if name not in used:
                break
        counts[prefix] = n
        used.add(name)
        return layer_key(name)

    def claim_name(self, name: str, span: Span) -> str:
        used = self.used_names.setdefault(self.path(), set())
        if name in used:
            raise self.err("E0206", f"layer name '{name}' is used twice in this scope", span,
                           hint="give each layer its own name")
        used.add(name)
        return layer_key(name)

    # ---- entry
    def run(self) -> Graph:
        env = Env()
        self.bind_params(self.model.params, {}, self.overrides, env, self.model.span,
                         is_model=True)
        unknown = sorted(set(self.overrides) - {p.name for p in self.model.params})
        if unknown:
            raise self.err("E0404", f"model '{self.model.name}' has no hyperparameter "
                           f"'{unknown[0]}'", self.model.name_span,
                           expected=", ".join(p.name for p in self.model.params) or "none",
                           found=unknown[0],
                           hint=did_you_mean(unknown[0], [p.name for p in self.model.params]))
        self.exec_body(self.model.body, env, is_model=True)
        if not self.graph.outputs:
            raise self.err("E0214", f"model '{self.model.name}' declares no output",
                           self.model.name_span, hint="add `output name` at the end of the model")
        return self.graph

    def bind_params(self, params: list[ast.Param], given_pos: dict, given_kw: dict, env: Env,
                    call_span: Span, is_model: bool = False,
                    given_spans: dict[str, Span] | None = None) -> None:
        given_spans = given_spans or {}
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise self.err("E0205", f"parameter '{p.name}' is declared twice", p.span)
            seen.add(p.name)
            if p.type not in HPARAM_TYPES:
                raise self.err("E0207", f"unknown parameter type '{p.type}'", p.type_span,
                               expected=" | ".join(sorted(HPARAM_TYPES)), found=p.type,
                               hint=did_you_mean(p.type, HPARAM_TYPES))
            if p.name in given_kw:
                # A model's values come from --set: blame the parameter's declaration.
                value, span = given_kw[p.name], given_spans.get(
                    p.name, p.span if is_model else call_span)
            elif p.default is not None:
                value, span = self.eval(p.default, env), p.default.span
            else:
                what = "model" if is_model else "block"
                raise self.err("E0208", f"missing argument '{p.name}'", call_span,
                               expected=f"a value for {what} parameter '{p.name}: {p.type}'",
                               found="no value", notes=[("parameter declared here", p.span)])
            value = self.coerce_param(p, value, span)
            env.vars[p.name] = (value, p.span)
            if is_model:
                self.graph.hparams[p.name] = value

    def coerce_param(self, p: ast.Param, value, span: Span):
        ok = {
            "int": is_int(value) and not isinstance(value, float),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "string": isinstance(value, str),
            "tuple": isinstance(value, tuple),
        }[p.type]
        if not ok:
            raise self.err("E0209", f"wrong type for parameter '{p.name}'", span,
                           expected=p.type, found=describe(value),
                           notes=[("parameter declared here", p.span)] if span != p.span
                           else [])
        if p.type == "float":
            return float(value)
        return norm_int(value)

    # ---- statements
    def exec_body(self, body: list[ast.Stmt], env: Env, is_model: bool = False,
                  outputs: list | None = None) -> None:
        for stmt in body:
            self.statement_span = stmt.span
            self.exec_stmt(stmt, env, is_model, outputs)

    def exec_stmt(self, stmt, env: Env, is_model: bool, outputs: list | None) -> None:
        if isinstance(stmt, ast.InputDecl):
            self.exec_input(stmt, env, is_model)
        elif isinstance(stmt, ast.Assign):
            self.exec_assign(stmt, env)
        elif isinstance(stmt, ast.OutputDecl):
            for item in stmt.items:
                if item.value is not None:
                    self.target = item.name
                    value = self.eval(item.value, env)
                    self.target = None
                    env.set(item.name, value, item.span)
                else:
                    found = env.get(item.name)
                    if found is None:
                        raise self.unknown_name(item.name, item.span, env)
                    value = found[0]
                if not isinstance(value, TensorVal):
                    raise self.err("E0215", f"output '{item.name}' is not a tensor", item.span,
                                   expected="a tensor", found=describe(value))
                if is_model:
                    if any(n == item.name for n, _ in self.graph.outputs):
                        raise self.err("E0205", f"output '{item.name}' is declared twice",
                                       item.span)
                    self.graph.outputs.append((item.name, value.ref))
                else:
                    assert outputs is not None
                    outputs.append((item.name, value))
        elif isinstance(stmt, ast.Repeat):
            self.exec_repeat(stmt, env, is_model, outputs)
        elif isinstance(stmt, ast.If):
            cond = self.eval(stmt.cond, env)
            if not isinstance(cond, bool):
                cond = self.truth(cond, stmt.cond.span)
            self.exec_body(stmt.body if cond else stmt.orelse, env, is_model, outputs)
        elif isinstance(stmt, ast.ConstDecl):
            self.exec_const(stmt, env)
        elif isinstance(stmt, ast.Assert):
            self.exec_assert(stmt, env)
        else:  # pragma: no cover - the parser makes no other statements
            raise self.err("E0299", "unsupported statement", stmt.span)

    def exec_input(self, stmt: ast.InputDecl, env: Env, is_model: bool) -> None:
        if not is_model:
            return  # block inputs are bound by the caller (see call_block)
        if stmt.type is None:
            raise self.err("E0216", f"model input '{stmt.name}' needs a type", stmt.span,
                           expected=f"input {stmt.name}: f32[B, ...]", found=f"input {stmt.name}")
        if env.get(stmt.name) is not None:
            raise self.err("E0205", f"'{stmt.name}' is already defined", stmt.span)
        ttype = self.eval_type(stmt.type, env, bind_unknown=True)
        # Dim names of inputs (B, T, ...) are usable in the body: `reshape(x, [B, T, 4, -1])`.
        for d in ttype.shape:
            for sym in sorted(d.free_symbols, key=lambda s: s.name):
                if env.get(sym.name) is None:
                    env.vars[sym.name] = (sym, stmt.span)
        node = self.add_node("input", None, [], [ttype], stmt.span, stmt.name)
        self.graph.inputs.append((stmt.name, node.id))
        env.set(stmt.name, TensorVal((node.id, 0), ttype, stmt.span), stmt.span)

    def eval_type(self, t: ast.TensorType, env: Env, bind_unknown: bool) -> TensorType:
        if t.dtype not in DTYPES:
            raise self.err("E0217", f"unknown dtype '{t.dtype}'", t.dtype_span,
                           expected=" | ".join(DTYPES), found=t.dtype,
                           hint=did_you_mean(t.dtype, DTYPES))
        shape = []
        for d in t.dims:
            if isinstance(d, ast.Name) and env.get(d.name) is None and bind_unknown:
                shape.append(D.symbol(d.name))
                continue
            v = self.eval(d, env, symbols=bind_unknown)
            if not is_int(v):
                raise self.err("E0218", "a dimension must be an integer", d.span,
                               expected="an int or a dim name", found=describe(v))
            v = D.as_dim(v)
            if v.is_Integer and int(v) < 1:
                raise self.err("E0218", "a dimension must be positive", d.span,
                               expected=">= 1", found=str(v))
            if v.is_Integer and int(v) > MAX_DIM:
                raise self.err("E0218", "a dimension is too large", d.span,
                               expected=f"at most 2**40 ({MAX_DIM})", found=str(v))
            shape.append(v)
        fixed = D.product(d for d in shape if d.is_Integer)
        if int(fixed) > MAX_DIM:
            raise self.err("E0218", "a tensor type is too large", t.span,
                           expected=f"a product of fixed dims of at most 2**40 ({MAX_DIM})",
                           found=str(fixed))
        return TensorType(t.dtype, tuple(shape))

    def exec_assign(self, stmt: ast.Assign, env: Env) -> None:
        self.target = stmt.targets[0] if len(stmt.targets) == 1 else ",".join(stmt.targets)
        value = self.eval(stmt.value, env)
        self.target = None
        if len(stmt.targets) == 1:
            env.set(stmt.targets[0], value, stmt.span)
            return
        if not isinstance(value, tuple):
            raise self.err("E0219", f"cannot unpack {describe(value)} into "
                           f"{len(stmt.targets)} names", stmt.value.span,
                           expected=f"{len(stmt.targets)} values", found="1 value")
        if len(value) != len(stmt.targets):
            raise self.err("E0219", "wrong number of values to unpack", stmt.value.span,
                           expected=f"{len(stmt.targets)} values", found=f"{len(value)} values")
        for name, v in zip(stmt.targets, value):
            env.set(name, v, stmt.span)

    def exec_repeat(self, stmt: ast.Repeat, env: Env, is_model: bool, outputs) -> None:
        count = self.eval(stmt.count, env)
        if isinstance(count, bool) or not isinstance(norm_int(count), int):
            raise self.err("E0220", "repeat count must be an integer", stmt.count.span,
                           expected="an int", found=describe(count))
        count = norm_int(count)
        if count < 0 or count > MAX_REPEAT:
            raise self.err("E0220", "repeat count out of range", stmt.count.span,
                           expected=f"0 <= count <= {MAX_REPEAT}", found=str(count))
        if stmt.label:
            label = self.claim_name(stmt.label, stmt.span)
        else:
            label = self.fresh_layer_name("repeat")
        path = self.child_path(label)
        frame = Frame(path, "repeat", label, stmt.span, count)
        self.graph.frames[path] = frame
        self.root.frames[path] = frame
        single_block = (len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Assign)
                        and self.is_single_block_call(stmt.body[0].value))
        self.frames.append(frame)
        try:
            for i in range(count):
                it = Frame(f"{path}.{i}", "iter", str(i), stmt.span)
                self.graph.frames[it.path] = it
                self.root.frames[it.path] = it
                self.frames.append(it)
                inner = Env(env)
                if stmt.index:
                    inner.vars[stmt.index] = (i, stmt.span)
                self.flatten_block = single_block
                try:
                    self.exec_body(stmt.body, inner, is_model, outputs)
                finally:
                    self.flatten_block = False
                    self.frames.pop()
        finally:
            self.frames.pop()

    def is_single_block_call(self, e) -> bool:
        if isinstance(e, ast.Pipe):
            return isinstance(e.source, ast.Name) and self.is_single_block_call(e.stage)
        return isinstance(e, ast.Call) and e.func in self.prog.definitions

    def exec_const(self, stmt: ast.ConstDecl, env: Env) -> None:
        ttype = self.eval_type(stmt.type, env, bind_unknown=False)
        if any(not d.is_Integer for d in ttype.shape):
            raise self.err("E0218", "a constant needs a fixed shape", stmt.type.span)
        raw = self.eval(stmt.value, env)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a value the dtype cannot hold is an error
                arr = np.array(raw, dtype=DTYPES[ttype.dtype][0])
        except (TypeError, ValueError, OverflowError, RuntimeWarning):
            raise self.err("E0221", "constant value must be a nested list of numbers that "
                           f"{ttype.dtype} can hold", stmt.value.span,
                           found=describe(raw)[:200]) from None
        want = tuple(int(d) for d in ttype.shape)
        if arr.shape != want:
            if arr.size == int(np.prod(want)) and arr.size > 0:
                arr = arr.reshape(want)
            else:
                raise self.err("E0222", "constant value does not match its declared shape",
                               stmt.value.span, expected=D.fmt_shape(ttype.shape),
                               found=str(list(arr.shape)))
        name = self.claim_name(stmt.name, stmt.span)
        op = OPS["const"]
        attrs = op.attrs(dtype=ttype.dtype, shape=want)
        node = self.add_node("const", attrs, [], [ttype], stmt.span, stmt.name,
                             module=self.child_path(name), params=op.params(attrs, []))
        node.const_value = arr
        env.set(stmt.name, TensorVal((node.id, 0), ttype, stmt.span), stmt.span)

    def exec_assert(self, stmt: ast.Assert, env: Env) -> None:
        self.symbolic_conditions = True  # `assert T % 4 == 0` is checked when T is known
        try:
            v = self.eval(stmt.cond, env)
        finally:
            self.symbolic_conditions = False
        if isinstance(v, bool):
            if not v:
                raise self.err("E0223", stmt.message or "assertion failed", stmt.cond.span)
            return
        if isinstance(v, sympy.logic.boolalg.Boolean) or isinstance(v, sympy.Rel):
            self.graph.constraints.append(
                Constraint(v, "true", stmt.message or "assertion failed", stmt.cond.span))
            return
        raise self.err("E0224", "assert needs a condition", stmt.cond.span,
                       expected="a bool", found=describe(v))

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

    # ---- calls
    def eval_call(self, call: ast.Call, env: Env, piped):
        args = []
        spans = []
        if piped is not None:
            args.append(piped[0])
            spans.append(piped[1])
        for a in call.args:
            args.append(self.eval(a, env))
            spans.append(a.span)
        kwargs = {}
        kwspans = {}
        for k in call.kwargs:
            if k.name in kwargs:
                raise self.err("E0232", f"argument '{k.name}' given twice", k.span)
            kwargs[k.name] = self.eval(k.value, env)
            kwspans[k.name] = k.span
        name = call.func
        if name in self.prog.definitions:
            d = self.prog.definitions[name]
            if d.kind == "model":
                raise self.err("E0233", f"'{name}' is a model; only blocks can be called",
                               call.func_span, hint=f"declare it as `block {name}`")
            return self.call_block(d, call, args, spans, kwargs, kwspans)
        tensor_args = any(isinstance(a, TensorVal) for a in args)
        if name in BUILTINS and name in OPS and not tensor_args and piped is None:
            return self.call_builtin(call, args, spans)  # max(3, 4) on numbers
        if name in OPS:
            op = OPS[name]
            n_in = 0
            while n_in < len(args) and isinstance(args[n_in], TensorVal):
                n_in += 1
            tensors = args[:n_in]
            rest = args[n_in:]
            for v, s in zip(rest, spans[n_in:]):
                if isinstance(v, TensorVal):
                    raise self.err("E0234", f"tensor inputs of '{name}' must come first",
                                   s, hint="write tensors before other arguments")
            if len(rest) > len(op.positional):
                extra = spans[n_in + len(op.positional)]
                raise self.err("E0235", f"too many arguments for '{name}'", extra,
                               expected=f"at most {len(op.positional)} positional "
                               f"({', '.join(op.positional) or 'none'}) after the tensors",
                               found=f"{len(rest)} positional argument"
                               + ("s" if len(rest) != 1 else ""))
            attrs = {}
            attr_spans = {}
            for pname, v, s in zip(op.positional, rest, spans[n_in:]):
                attrs[pname] = v
                attr_spans[pname] = s
            for k, v in kwargs.items():
                if k in attrs:
                    raise self.err("E0232", f"argument '{k}' given twice", kwspans[k])
                attrs[k] = v
                attr_spans[k] = kwspans[k]
            return self.apply_op(op, tensors, attrs, call.span, spans[:n_in], attr_spans,
                                 label=call.label, label_span=call.span)
        if name in BUILTINS and piped is None:
            return self.call_builtin(call, args, spans)
        candidates = list(OPS) + list(self.prog.definitions) + list(BUILTINS)
        raise self.err("E0203", f"unknown op or block '{name}'", call.func_span,
                       hint=did_you_mean(name, candidates)
                       or "see docs/ops.md for the list of ops")

    def call_builtin(self, call: ast.Call, args, spans):
        name = call.func
        if call.kwargs:
            raise self.err("E0235", f"'{name}' takes no keyword arguments", call.span)
        try:
            if name == "len" and len(args) == 1 and isinstance(args[0], tuple):
                return len(args[0])
            if name in ("min", "max") and args:
                vals = args[0] if len(args) == 1 and isinstance(args[0], tuple) else tuple(args)
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    return (min if name == "min" else max)(vals)
                return norm_int((sympy.Min if name == "min" else sympy.Max)(*vals))
            if name == "int" and len(args) == 1 and isinstance(args[0], (int, float)):
                return int(args[0])
            if name == "float" and len(args) == 1 and isinstance(args[0], (int, float)):
                return float(args[0])
            if name == "sqrt" and len(args) == 1 and isinstance(args[0], (int, float)) \
                    and args[0] >= 0:
                return math.sqrt(args[0])
            if name == "prod" and len(args) == 1 and isinstance(args[0], tuple):
                return norm_int(D.product(D.as_dim(x) for x in args[0]))
        except (TypeError, ValueError):
            pass
        raise self.err("E0236", f"wrong arguments for built-in '{name}'", call.span,
                       found=", ".join(describe(a) for a in args))

    def call_block(self, d: ast.Definition, call: ast.Call, args, spans, kwargs, kwspans):
        if self.block_depth >= MAX_BLOCK_DEPTH:
            raise self.err("E0237", "blocks nested too deeply (is a block calling itself?)",
                           call.span, expected=f"at most {MAX_BLOCK_DEPTH} levels")
        inputs = [s for s in d.body if isinstance(s, ast.InputDecl)]
        n_in = len(inputs)
        tensors = args[:n_in]
        if len(tensors) < n_in or not all(isinstance(t, TensorVal) for t in tensors):
            got = sum(1 for t in tensors if isinstance(t, TensorVal))
            raise self.err("E0238", f"block '{d.name}' takes {n_in} tensor input"
                           f"{'s' if n_in != 1 else ''}", call.span,
                           expected=f"{n_in} ({', '.join(i.name for i in inputs)})",
                           found=f"{got} tensor{'s' if got != 1 else ''}")
        rest = args[n_in:]
        if len(rest) > len(d.params):
            raise self.err("E0235", f"too many arguments for block '{d.name}'",
                           spans[n_in + len(d.params)],
                           expected=f"{len(d.params)} parameters after {n_in} tensors")
        given = {}
        given_spans = {}
        for p, v, s in zip(d.params, rest, spans[n_in:]):
            given[p.name] = v
            given_spans[p.name] = s
        pnames = [p.name for p in d.params]
        for k, v in kwargs.items():
            if k not in pnames:
                raise self.err("E0239", f"block '{d.name}' has no parameter '{k}'", kwspans[k],
                               expected=", ".join(pnames) or "no parameters", found=k,
                               hint=did_you_mean(k, pnames))
            if k in given:
                raise self.err("E0232", f"argument '{k}' given twice", kwspans[k])
            given[k] = v
            given_spans[k] = kwspans[k]
        env = Env()
        self.bind_params(d.params, {}, given, env, call.span, given_spans=given_spans)
        for decl, t, s in zip(inputs, tensors, spans):
            if decl.type is not None:
                self.match_type(decl, t, s, env)
            env.vars[decl.name] = (t, s)
        pushed = False
        if self.flatten_block:
            self.flatten_block = False
        else:
            if call.label:
                name = self.claim_name(call.label, call.span)
            else:
                name = self.fresh_layer_name(d.name)
            frame = Frame(self.child_path(name), "block", d.name, call.span)
            self.graph.frames[frame.path] = frame
            self.root.frames[frame.path] = frame
            self.frames.append(frame)
            pushed = True
        outputs: list = []
        self.block_depth += 1
        saved_target = self.target
        first_id = self.graph.new_id()
        try:
            self.exec_body(d.body, env, is_model=False, outputs=outputs)
        finally:
            self.block_depth -= 1
            self.target = saved_target
            if pushed:
                self.frames.pop()
        if not outputs:
            raise self.err("E0214", f"block '{d.name}' declares no output", d.name_span)
        # The caller's name wins for what the block returns (`h = h -> blk` reads as `h`), so
        # generated code keeps one variable across repeat iterations and can loop over them.
        names = saved_target.split(",") if saved_target else []
        if len(names) == len(outputs):
            for nm, (_, val) in zip(names, outputs):
                node = self.graph.nodes[val.ref[0]]
                if node.id >= first_id and len(node.types) == 1:
                    node.name = nm
        if len(outputs) == 1:
            return outputs[0][1]
        return tuple(v for _, v in outputs)

    def eval_scan(self, e: ast.Scan, env: Env):
        """A recurrence: elaborate the cell block once, on one step's types, into a sub-graph
        that the `scan` node runs at every step (docs/language.md, "Recurrences")."""
        d = self.prog.definitions.get(e.cell.func)
        if d is None or d.kind != "block":
            hint = did_you_mean(e.cell.func, [n for n, x in self.prog.definitions.items()
                                             if x.kind == "block"])
            raise self.err("E0311", f"scan needs a block as its cell, not '{e.cell.func}'",
                           e.cell.func_span, hint=hint or "define `block name(...) { ... }`")
        seqs = [(self.eval(x, env), x.span) for x in e.over]
        inits = [(self.eval(x, env), x.span) for x in e.init]
        for v, sp in seqs + inits:
            if not isinstance(v, TensorVal):
                raise self.err("E0312", "scan sequences and initial states must be tensors",
                               sp, expected="a tensor", found=describe(v))
        along = 1
        if e.along is not None:
            along = norm_int(self.eval(e.along, env))
            if not isinstance(along, int) or isinstance(along, bool) or along < 0:
                raise self.err("E0313", "`along` must be a non-negative axis number",
                               e.along.span, found=describe(along))
        steps = None
        if e.steps is not None:
            steps = norm_int(self.eval(e.steps, env))
            if seqs:
                raise self.err("E0313", "give either `over` sequences or `steps`, not both",
                               e.steps.span)
            if not isinstance(steps, int) or isinstance(steps, bool) or not \
                    0 < steps <= MAX_REPEAT:
                raise self.err("E0313", "`steps` must be a positive integer known when the "
                               "model is compiled", e.steps.span,
                               expected=f"1 <= steps <= {MAX_REPEAT}", found=describe(steps))
        elif not seqs:
            raise self.err("E0313", "a scan needs `over` sequences or `steps n`", e.span)
        length = None
        step_types = []
        for v, sp in seqs:
            if v.type.rank <= along:
                raise self.err("E0314", f"sequence has no time axis {along}", sp,
                               expected=f"rank > {along} (time on axis {along})",
                               found=str(v.type),
                               hint="batch-first [B, T, F] scans along 1; use `along` to choose")
            t = v.type.shape[along]
            if length is not None and D.equal(length, t) is not True:
                raise self.err("E0314", "scan sequences differ in length", sp,
                               expected=f"time axis {D.fmt(length)}", found=D.fmt(t))
            length = t
            step_types.append(v.type.with_shape(v.type.shape[:along] + v.type.shape[along + 1:]))
        cell_args = [self.eval(a, env) for a in e.cell.args]
        cell_kwargs = {k.name: self.eval(k.value, env) for k in e.cell.kwargs}
        statics = [(v, a.span) for v, a in zip(cell_args, e.cell.args) if isinstance(v, TensorVal)]
        hyper = cell_args[len(statics):]
        if any(isinstance(v, TensorVal) for v in hyper):
            raise self.err("E0234", "tensor arguments of a scan cell must come first", e.cell.span)
        decls = [s for s in d.body if isinstance(s, ast.InputDecl)]
        want = len(seqs) + len(inits) + len(statics)
        if len(decls) != want:
            raise self.err("E0315", f"cell '{d.name}' takes {len(decls)} tensor inputs, but the "
                           "scan gives it " + str(want), e.cell.span,
                           expected=f"{len(seqs)} step input(s), then {len(inits)} state(s), "
                           f"then {len(statics)} fixed tensor(s)",
                           found=", ".join(x.name for x in decls) or "no inputs",
                           notes=[("cell defined here", d.name_span)])
        name = self.fresh_layer_name(d.name)
        path = self.child_path(name)
        frame = Frame(path, "scan", d.name, e.span)
        self.graph.frames[path] = frame
        self.root.frames[path] = frame
        outer = (self.graph, self.frames, self.target, self.flatten_block)
        sub = Graph(model=d.name, hparams={}, span=d.span, file=self.graph.file)
        sub.frames[path] = frame
        self.graph, self.frames, self.target = sub, [frame], None
        try:
            vals = []
            for decl, t, sp in zip(decls, step_types + [v.type for v, _ in inits]
                                   + [v.type for v, _ in statics],
                                   [s for _, s in seqs + inits + statics]):
                node = self.add_node("input", None, [], [t], decl.span, decl.name)
                sub.inputs.append((decl.name, node.id))
                vals.append(TensorVal((node.id, 0), t, sp))
            self.flatten_block = True
            result = self.call_block(d, e.cell, vals + hyper,
                                     [s for _, s in seqs + inits + statics] +
                                     [a.span for a in e.cell.args[len(statics):]],
                                     cell_kwargs, {k.name: k.span for k in e.cell.kwargs})
        finally:
            self.graph, self.frames, self.target, self.flatten_block = outer
        outs = list(result) if isinstance(result, tuple) else [result]
        if len(outs) < len(inits):
            raise self.err("E0316", f"cell '{d.name}' returns {len(outs)} value(s) but carries "
                           f"{len(inits)} state(s)", e.cell.span,
                           expected=f"the new states first ({len(inits)}), then step outputs",
                           found=f"{len(outs)} output(s)")
        for i, val in enumerate(outs):
            sub.outputs.append((f"out{i}", val.ref))
        for i, ((init, _), new) in enumerate(zip(inits, outs)):
            same = init.type.dtype == new.type.dtype and init.type.rank == new.type.rank and all(
                D.equal(x, y) is True for x, y in zip(init.type.shape, new.type.shape))
            if not same:
                raise self.err("E0310", f"the cell changes the shape of state {i} between "
                               "steps", e.cell.span, expected=f"{init.type} (the initial state)",
                               found=f"{new.type} (the state the cell returns)",
                               notes=[("initial state made here", init.origin),
                                      ("new state made here", new.origin)])
        n_outs = max(len(outs) - len(inits), 0) or len(inits)
        op = OPS["scan"]
        attrs = op.attrs(cell=sub, cell_name=d.name, n_seq=len(seqs), n_states=len(inits),
                         n_static=len(statics), n_outs=n_outs, along=along, steps=steps,
                         reverse=e.reverse)
        ins = [v for v, _ in seqs + inits + statics]
        out_types = op.shape(attrs, [v.type for v in ins])
        node = self.add_node("scan", attrs, [v.ref for v in ins], out_types, e.span,
                             self.target or d.name)
        vals = tuple(TensorVal((node.id, i), t, e.span) for i, t in enumerate(out_types))
        return vals[0] if len(vals) == 1 else vals

    def match_type(self, decl: ast.InputDecl, t: TensorVal, span: Span, env: Env) -> None:
        want = decl.type
        if want.dtype not in DTYPES:
            raise self.err("E0217", f"unknown dtype '{want.dtype}'", want.dtype_span)
        problem = None
        if want.dtype != t.type.dtype:
            problem = "dtype"
        elif len(want.dims) != t.type.rank:
            problem = "rank"
        else:
            for dexpr, actual in zip(want.dims, t.type.shape):
                if isinstance(dexpr, ast.Name) and env.get(dexpr.name) is None:
                    env.vars[dexpr.name] = (norm_int(actual), dexpr.span)
                    continue
                v = self.eval(dexpr, env)
                if not is_int(v) or D.equal(D.as_dim(v), actual) is not True:
                    problem = "shape"
                    break
        if problem:
            raise self.err("E0301", f"block input '{decl.name}' does not match its declared "
                           f"type ({problem})", span,
                           expected=f"{want.dtype}[...] as declared", found=str(t.type),
                           notes=[("declared here", decl.span), ("value made here", t.origin)])

    # ---- op application
    def apply_op(self, op: Op, tensors: list[TensorVal], attrs: dict, span: Span,
                 tensor_spans: list[Span], attr_spans: dict[str, Span], label: str | None = None,
                 label_span: Span | None = None):
        n = len(tensors)
        if n < op.min_inputs or (op.max_inputs is not None and n > op.max_inputs):
            want = (f"{op.min_inputs}" if op.max_inputs == op.min_inputs else
                    f"{op.min_inputs} to {op.max_inputs if op.max_inputs else 'any number'}")
            raise self.err("E0240", f"'{op.name}' takes {want} tensor input"
                           f"{'s' if want != '1' else ''}", span, expected=want, found=str(n))
        fields = op.attrs.model_fields
        for k in attrs:
            if k not in fields:
                raise self.err("E0239", f"'{op.name}' has no argument '{k}'",
                               attr_spans.get(k, span),
                               expected=", ".join(fields) or "no arguments", found=k,
                               hint=did_you_mean(k, list(fields)))
        clean = {k: _to_attr(v) for k, v in attrs.items()}
        try:
            a = op.attrs.model_validate(clean)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field_name = str(first["loc"][0]) if first["loc"] else None
            if first["type"] == "missing":
                raise self.err("E0208", f"'{op.name}' needs argument '{field_name}'", span,
                               expected=f"{field_name}: {_type_words(fields[field_name])}",
                               found="no value") from None
            raise self.err("E0209", f"wrong type for argument '{field_name}' of '{op.name}'",
                           attr_spans.get(field_name, span),
                           expected=_type_words(fields[field_name]) if field_name in fields
                           else first["msg"],
                           found=describe(attrs.get(field_name))) from None
        self.check_attr_sizes(op, a, span, attr_spans)
        in_types = [t.type for t in tensors]
        try:
            out_types = op.shape(a, in_types)
            params = op.params(a, in_types)
        except ShapeError as exc:
            raise self.shape_diag(op, exc, span, tensors, tensor_spans, attr_spans) from None
        self.check_node_budget(span)
        self.check_param_budget(params, span)
        module = None
        if params:
            if label:
                module = self.child_path(self.claim_name(label, label_span or span))
            else:
                module = self.child_path(self.fresh_layer_name(op.module_prefix or op.name))
        name = self.target or op.name
        node = self.add_node(op.name, a, [t.ref for t in tensors], out_types, span, name,
                             module=module, params=params)
        vals = tuple(TensorVal((node.id, i), t, span) for i, t in enumerate(out_types))
        return vals[0] if op.n_outputs(a) == 1 and len(vals) == 1 else vals

    def check_attr_sizes(self, op: Op, a, span: Span, attr_spans: dict[str, Span]) -> None:
        """No attribute is an absurd number: loop counts are bounded like repeat counts and
        every other integer like a dimension (docs/limits.md)."""
        for name in type(a).model_fields:
            value = getattr(a, name)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int):
                    continue
                limit = MAX_REPEAT if name in LOOP_ATTRS else MAX_DIM
                if abs(v) > limit:
                    raise self.err("E0218", f"'{op.name}' argument '{name}' is too large",
                                   attr_spans.get(name, span), expected=f"at most {limit}",
                                   found=str(v))

    def shape_diag(self, op: Op, exc: ShapeError, span: Span, tensors, tensor_spans,
                   attr_spans) -> DslcError:
        at = span
        notes = []
        if exc.attr and exc.attr in attr_spans:
            at = attr_spans[exc.attr]
        elif exc.arg is not None and exc.arg < len(tensor_spans):
            at = tensor_spans[exc.arg]
        for i, t in enumerate(tensors):
            notes.append((f"input {i} has shape {t.type}, made here", t.origin))
        return DslcError(Diagnostic(exc.code, f"{op.name}: {exc.message}", at,
                                    expected=exc.expected, found=exc.found, notes=notes))

    def check_param_budget(self, params, span: Span) -> None:
        """Parameters are allocated by `run` (init_params): refuse a model whose weights
        could not be, with the op that goes over the limit."""
        for spec in params.values():
            n = D.value(D.product(spec.shape))
            if n is not None:
                self.param_elements += n
        if self.param_elements > MAX_PARAM_ELEMENTS:
            raise self.err("E0241", "model is too large: its parameters would not fit in "
                           "memory", span, expected=f"at most 2**32 ({MAX_PARAM_ELEMENTS}) "
                           "parameter elements in one model",
                           found=f"{self.param_elements} elements up to this layer")

    def check_node_budget(self, span: Span) -> None:
        if len(self.graph.nodes) >= MAX_NODES:
            raise self.err("E0241", "model is too large", span,
                           expected=f"at most {MAX_NODES} nodes")

    def add_node(self, op: str, attrs, inputs, types, span, name, module=None, params=None):
        node = IRNode(self.graph.new_id(), op, attrs, list(inputs), list(types), span, name,
                      module=module, params=dict(params or {}),
                      frames=tuple(f.path for f in self.frames))
        return self.graph.add(node)


def _to_attr(v):
    if isinstance(v, sympy.Expr) and v.is_Integer:
        return int(v)
    if isinstance(v, tuple):
        return tuple(_to_attr(x) for x in v)
    return v


def _type_words(field) -> str:
    ann = field.annotation
    return str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")


def elaborate(prog: Program, model: str | None = None,
              hparams: dict[str, Any] | None = None) -> Graph:
    d = pick_model(prog, model)
    try:
        return Elaborator(prog, d, hparams or {}).run()
    except RecursionError:
        raise DslcError(Diagnostic("E0237", "model nested too deeply", d.name_span)) from None
