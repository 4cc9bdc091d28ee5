"""Elaboration: AST to IR graph. Expands imports, blocks and repeats, resolves names, and runs
each op's shape rule as its node is created.

Shape rules run here, not in a later pass, because the language lets conditions and repeat
counts depend on shapes (`if x.shape[1] != out { ... }`): structure cannot be known before
types are. `dslc.interp.check` walks the finished graph again with the same rules, which keeps
the "one interpreter loop" of DESIGN.md as an independent check of the result.

A statement that fails is reported and elaboration goes on with the next one (exec_body):
the names the failed statement defines become `Unknown`, and a later statement that reads one
is skipped without a diagnostic of its own, so each independent mistake is reported once.
Warnings (dslc/elaborate_warn.py) are collected on the way and returned with the graph.

Reading the files (dslc/sources.py) and the values and scopes (dslc/values.py) come before.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pydantic
import sympy

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError, Span, did_you_mean
from dslc.elaborate_call import BUILTINS, Calls
from dslc.elaborate_expr import Expressions
from dslc.elaborate_scan import Scans
from dslc.elaborate_warn import Warnings
from dslc.ir import Constraint, Frame, Graph, IRNode
from dslc.limits import (
    LOOP_ATTRS,
    MAX_DIM,
    MAX_NODES,
    MAX_PARAM_ELEMENTS,
    MAX_REPEAT,
)
from dslc.names import layer_key
from dslc.ops.base import Op, ShapeError
from dslc.ops.registry import OPS
from dslc.sources import Program, pick_model
from dslc.syntax import ast
from dslc.types import DTYPES, TensorType
from dslc.values import Env, TensorVal, Unknown, UnknownValue, describe, is_int, norm_int

HPARAM_TYPES = {"int", "float", "bool", "string", "tuple"}
MAX_ERRORS = 20  # shown per model; the last one says how many more were found
STOP_AFTER = 200  # errors after which elaboration gives up looking for more
# Limits stop elaboration at once: going on would only repeat them (docs/limits.md).
FATAL_CODES = frozenset({"E0237", "E0241"})


class _Stop(Exception):
    """Elaboration gives up: too many errors, or a limit was reached."""


class Elaborator(Expressions, Calls, Scans, Warnings):
    """Builds one model's IR graph. The statements, op application and the graph's bookkeeping
    are here; expressions, calls and `scan` live in their own modules (dslc/elaborate_expr.py,
    elaborate_call.py, elaborate_scan.py) as parts of this one class, because they share its
    state (the graph, frames, names) and call each other recursively."""

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
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.reported: set[tuple[str, Span]] = set()
        self.failed_statements = 0  # statements skipped for an error or an Unknown value

    # ---- diagnostics helpers
    def err(self, code: str, msg: str, span: Span, **kw) -> DslcError:
        return DslcError(Diagnostic(code, msg, span, **kw))

    def warn(self, code: str, msg: str, span: Span, **kw) -> None:
        """Record a warning (docs/errors.md, W00xx) once per place, however many repeat
        iterations or block calls pass there."""
        if (code, span) not in self.reported:
            self.reported.add((code, span))
            self.warnings.append(Diagnostic(code, msg, span, severity="warning", **kw))

    def record(self, exc: DslcError) -> None:
        for d in exc.diagnostics:
            if (d.code, d.span) not in self.reported:
                self.reported.add((d.code, d.span))
                self.errors.append(d)
        if len(self.errors) >= STOP_AFTER:
            raise _Stop

    def all_diagnostics(self) -> list[Diagnostic]:
        """Errors (at most MAX_ERRORS) in source order, then the warnings in source order:
        the first diagnostic of a failure is always its first error."""
        errors = sorted(self.errors, key=self.source_order)
        shown = errors[:MAX_ERRORS]
        if len(errors) > MAX_ERRORS:
            more = len(errors) - MAX_ERRORS
            at_least = "at least " if len(errors) >= STOP_AFTER else ""
            note = (f"{at_least}{more} more error{'s' if more != 1 else ''} not shown (the "
                    f"first {MAX_ERRORS} are)")
            shown[-1] = dataclasses.replace(shown[-1], notes=[*shown[-1].notes, (note, None)])
        return shown + sorted(self.warnings, key=self.source_order)

    def source_order(self, d: Diagnostic) -> tuple:
        return (d.span.file != self.prog.root, d.span.file, d.span.line, d.span.column)

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
        self.warn_renamed_label(name, span)
        return layer_key(name)

    # ---- entry
    def run(self) -> Graph:
        env = Env()
        self.bind_params(self.model.params, {}, self.overrides, env, self.model.span,
                         is_model=True)
        unknown = sorted(set(self.overrides) - {p.name for p in self.model.params})
        if unknown:
            names = [p.name for p in self.model.params]
            self.record(self.err("E0404", f"model '{self.model.name}' has no hyperparameter "
                                 f"'{unknown[0]}'", self.model.name_span,
                                 expected=", ".join(names) or "none", found=unknown[0],
                                 hint=did_you_mean(unknown[0], names)))
        try:
            self.exec_body(self.model.body, env, is_model=True)
        except _Stop:
            pass
        if self.errors:
            raise DslcError(self.all_diagnostics())
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
            if not is_model:
                self.bind_param(p, given_kw, given_spans, env, call_span, is_model)
                continue
            # A model's parameters are checked one by one: a bad one is reported and becomes
            # Unknown, and the body is still checked.
            try:
                self.bind_param(p, given_kw, given_spans, env, call_span, is_model)
            except DslcError as exc:
                self.record(exc)
                env.vars[p.name] = (Unknown(p.span), p.span)
            except UnknownValue:
                env.vars[p.name] = (Unknown(p.span), p.span)

    def bind_param(self, p: ast.Param, given_kw: dict, given_spans: dict[str, Span], env: Env,
                   call_span: Span, is_model: bool) -> None:
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
        self.warn_shadowing(p.name, p.span, callable_too=False)
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
        """Run the statements; one that fails is reported and the names it would define
        become Unknown, so the statements after it are still checked (several diagnostics
        per file) without an error for each use of the name that failed."""
        for stmt in body:
            self.statement_span = stmt.span
            target = self.target
            try:
                self.exec_stmt(stmt, env, is_model, outputs)
            except DslcError as exc:
                self.target = target
                self.record(exc)
                if any(d.code in FATAL_CODES for d in exc.diagnostics):
                    raise _Stop from None
                self.poison(stmt, env)
            except UnknownValue:
                self.target = target
                self.report_unknown_callees(stmt)
                self.poison(stmt, env)

    def report_unknown_callees(self, stmt) -> None:
        """A statement skipped for an Unknown value may still call an op that does not exist:
        that error does not depend on any value, so it is reported (`-> lineer(10)` after a
        block that failed)."""
        for call in calls_in(stmt):
            known = (call.func in self.prog.definitions or call.func in OPS
                     or call.func in BUILTINS)
            if not known:
                self.record(self.unknown_callee(call))

    def poison(self, stmt, env: Env) -> None:
        self.failed_statements += 1
        for name in defined_names(stmt):
            env.set(name, Unknown(stmt.span), stmt.span)
        if isinstance(stmt, ast.InputDecl) and stmt.type is not None:
            # `input x: f32[B, T]` would have defined the dims B and T it names first.
            for d in stmt.type.dims:
                if isinstance(d, ast.Name) and env.get(d.name) is None:
                    env.vars[d.name] = (Unknown(stmt.span), stmt.span)

    def exec_stmt(self, stmt, env: Env, is_model: bool, outputs: list | None) -> None:
        if isinstance(stmt, ast.InputDecl):
            self.exec_input(stmt, env, is_model)
        elif isinstance(stmt, ast.Assign):
            self.exec_assign(stmt, env)
        elif isinstance(stmt, ast.OutputDecl):
            for item in stmt.items:
                if item.value is not None:
                    self.warn_shadowing(item.name, item.span)
                    self.target = item.name
                    value = self.eval(item.value, env)
                    self.target = None
                    env.set(item.name, value, item.span)
                else:
                    found = env.get(item.name)
                    if found is None:
                        raise self.unknown_name(item.name, item.span, env)
                    value = found[0]
                    if isinstance(value, Unknown):
                        raise UnknownValue(item.name)
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
        self.warn_shadowing(stmt.name, stmt.span)
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
        for name in stmt.targets:
            self.warn_shadowing(name, stmt.span)
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
                    self.warn_shadowing(stmt.index, stmt.span)
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
        self.warn_shadowing(stmt.name, stmt.span)
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
        self.warn_dense_over_spatial(op, tensors, span)
        in_types = [t.type for t in tensors]
        try:
            out_types = op.shape(a, in_types)
            params = op.params(a, in_types)
        except ShapeError as exc:
            raise self.shape_diag(op, exc, span, tensors, tensor_spans, attr_spans) from None
        self.check_node_budget(span)
        self.check_param_budget(params, span)
        module = None
        key = self.claim_name(label, label_span or span) if label else None
        if params:
            module = self.child_path(key or self.fresh_layer_name(op.module_prefix or op.name))
        name = self.target or op.name  # the generated code's variable name
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


def calls_in(node) -> list[ast.Call]:
    """The calls of a statement's own expressions, in source order: not those in nested
    statement bodies (they run on their own), nor in the branches of a conditional (only one
    is ever elaborated), nor a scan's cell (a block, checked as such)."""
    out: list[ast.Call] = []

    def walk(n) -> None:
        if isinstance(n, list):
            for x in n:
                walk(x)
            return
        if not isinstance(n, ast.Node) or isinstance(n, (ast.Repeat, ast.If)):
            return
        if isinstance(n, ast.Conditional):
            walk(n.cond)
            return
        if isinstance(n, ast.Call):
            out.append(n)
        for name in type(n).model_fields:
            if isinstance(n, ast.Scan) and name == "cell":
                walk(n.cell.args)
                walk(n.cell.kwargs)
                continue
            walk(getattr(n, name))

    walk(node)
    return sorted(out, key=lambda c: (c.func_span.line, c.func_span.column))


def defined_names(stmt) -> list[str]:
    """The names a statement binds, in its nested bodies too (both branches of an `if`)."""
    if isinstance(stmt, ast.Assign):
        return list(stmt.targets)
    if isinstance(stmt, ast.OutputDecl):
        return [i.name for i in stmt.items]
    if isinstance(stmt, (ast.InputDecl, ast.ConstDecl)):
        return [stmt.name]
    if isinstance(stmt, ast.Repeat):
        return [n for s in stmt.body for n in defined_names(s)]
    if isinstance(stmt, ast.If):
        return [n for s in stmt.body + stmt.orelse for n in defined_names(s)]
    return []


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
    return elaborate_with_warnings(prog, model, hparams)[0]


def elaborate_with_warnings(prog: Program, model: str | None = None,
                            hparams: dict[str, Any] | None = None
                            ) -> tuple[Graph, list[Diagnostic]]:
    """The model's graph and the warnings found on the way, in source order. Errors are
    raised together (DslcError), followed by the warnings."""
    d = pick_model(prog, model)
    e = Elaborator(prog, d, hparams or {})
    try:
        graph = e.run()
    except RecursionError:
        raise DslcError(Diagnostic("E0237", "model nested too deeply", d.name_span)) from None
    return graph, sorted(e.warnings, key=e.source_order)
