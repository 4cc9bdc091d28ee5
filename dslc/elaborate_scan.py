"""Elaboration of `scan` recurrences: the cell block becomes a sub-graph, its states and
per-step values are checked for a fixed shape (a part of `Elaborator`, dslc/elaborate.py)."""

from __future__ import annotations

from dslc import dims as D
from dslc.diagnostics import did_you_mean
from dslc.ir import Frame, Graph
from dslc.limits import MAX_REPEAT
from dslc.ops.registry import OPS
from dslc.syntax import ast
from dslc.values import Env, TensorVal, describe, norm_int


class Scans:
    """`scan` for `Elaborator`."""

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
        if e.cell.label:  # `h = scan cell(...) over xs as rnn1`
            name = self.claim_name(e.cell.label, e.cell.span)
        else:
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
