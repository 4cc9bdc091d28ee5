"""Elaboration of calls: built-in functions, ops and blocks, and a block's declared input
types (a part of `Elaborator`, dslc/elaborate.py)."""

from __future__ import annotations

import math

import sympy

from dslc import dims as D
from dslc.diagnostics import SOURCES, Span, did_you_mean, did_you_mean_op
from dslc.ir import Frame
from dslc.limits import MAX_BLOCK_DEPTH
from dslc.ops.registry import OPS
from dslc.syntax import ast
from dslc.types import DTYPES
from dslc.values import Env, TensorVal, UnknownValue, describe, is_int, norm_int

# Functions of numbers that calls may name (the rest are ops and blocks).
BUILTINS = ("len", "min", "max", "int", "float", "sqrt", "prod")


class Calls:
    """Calls for `Elaborator`."""

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
        raise self.unknown_callee(call)

    def unknown_callee(self, call: ast.Call):
        candidates = list(OPS) + list(self.prog.definitions) + list(BUILTINS)
        return self.err("E0203", f"unknown op or block '{call.func}'", call.func_span,
                        hint=did_you_mean_op(call.func, candidates)
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
            self.warn_shadowing(decl.name, decl.span)
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
        failed = self.failed_statements
        try:
            self.exec_body(d.body, env, is_model=False, outputs=outputs)
        finally:
            self.block_depth -= 1
            self.target = saved_target
            if pushed:
                self.frames.pop()
        if self.failed_statements > failed:
            # The body reported its own errors; what the block returns is unknown.
            raise UnknownValue(d.name)
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


    def match_type(self, decl: ast.InputDecl, t: TensorVal, span: Span, env: Env) -> None:
        """A block input's declared type against the tensor given: the message names the
        first axis (or the dtype, or the rank) that differs and shows both whole types."""
        want = decl.type
        if want.dtype not in DTYPES:
            raise self.err("E0217", f"unknown dtype '{want.dtype}'", want.dtype_span)
        problem = None
        declared: list[str] = []
        for i, dexpr in enumerate(want.dims):
            actual = t.type.shape[i] if i < t.type.rank else None
            if isinstance(dexpr, ast.Name) and env.get(dexpr.name) is None:
                if actual is not None and problem is None:
                    env.vars[dexpr.name] = (norm_int(actual), dexpr.span)
                declared.append(dexpr.name)
                continue
            v = self.eval(dexpr, env)
            shown = D.fmt(D.as_dim(v)) if is_int(v) else describe(v)
            declared.append(shown)
            if problem is None and actual is not None and len(want.dims) == t.type.rank and \
                    want.dtype == t.type.dtype:
                if not is_int(v) or D.equal(D.as_dim(v), actual) is not True:
                    problem = (f"axis {i} is {D.fmt(actual)}, declared {shown}"
                               + (f" (`{_source_text(dexpr.span)}`)"
                                  if _source_text(dexpr.span) not in (shown, None) else ""))
        if want.dtype != t.type.dtype:
            problem = f"dtype is {t.type.dtype}, declared {want.dtype}"
        elif len(want.dims) != t.type.rank:
            problem = f"rank is {t.type.rank}, declared {len(want.dims)}"
        if problem:
            raise self.err("E0301", f"block input '{decl.name}' does not match its declared "
                           f"type: {problem}", span,
                           expected=f"{want.dtype}[{', '.join(declared)}] as declared",
                           found=str(t.type),
                           notes=[("declared here", decl.span), ("value made here", t.origin)])


def _source_text(span: Span) -> str | None:
    """The text of a one-line span, as written (`width * 2`), for a diagnostic."""
    line = SOURCES.line(span.file, span.line)
    if line is None or span.end_line != span.line:
        return None
    return line[span.column - 1:span.end_column - 1]
