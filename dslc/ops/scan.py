"""Op `scan`: a recurrence, made by the `scan` expression; runs a cell sub-graph once per step."""

from __future__ import annotations

from typing import Any

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Op, RegionView, ShapeError
from dslc.types import TensorType


class ScanAttrs(Attrs):
    cell: Any  # dslc.ir.Graph: inputs = step inputs, states, statics; outputs = states, outs
    cell_name: str
    n_seq: int
    n_states: int
    n_static: int
    n_outs: int  # per-step outputs (the new states themselves when the cell returns no more)
    along: int = 1
    steps: int | None = None
    reverse: bool = False


def steps_of(a: ScanAttrs, ins: list[TensorType]) -> D.Dim:
    return ins[0].shape[a.along] if a.n_seq else D.const(a.steps)


def stacked(t: TensorType, along: int, steps: D.Dim) -> TensorType:
    return t.with_shape(t.shape[:along] + (steps,) + t.shape[along:])


def out_refs(a: ScanAttrs) -> tuple[list, list]:
    """Sub-graph output refs: (new states, per-step outputs)."""
    refs = [ref for _, ref in a.cell.outputs]
    states = refs[: a.n_states]
    outs = refs[a.n_states:] or states
    return states, outs


def shape(a: ScanAttrs, ins: list[TensorType]) -> list[TensorType]:
    t = steps_of(a, ins)
    states, outs = out_refs(a)
    for i, ref in enumerate(states):
        new = a.cell.type_of(ref)
        init = ins[a.n_seq + i]
        if new.dtype != init.dtype or len(new.shape) != len(init.shape) or any(
                D.equal(x, y) is not True for x, y in zip(new.shape, init.shape)):
            raise ShapeError("the cell changes the shape of state "
                             f"{i} between steps", expected=str(init), found=str(new),
                             arg=a.n_seq + i, code="E0310")
    return [stacked(a.cell.type_of(r), a.along, t) for r in outs] + \
        [a.cell.type_of(r) for r in states]


def region_view(a: ScanAttrs, ins: list[TensorType], outs: list[TensorType]) -> RegionView:
    """Drawn rolled: the cell once, each new state looping back to the state input it
    replaces, the scan node collecting the per-step outputs."""
    steps = D.fmt(outs[0].shape[a.along]) if outs else "?"
    cell_inputs = [nid for _, nid in a.cell.inputs]
    states, step_outs = out_refs(a)
    return RegionView(
        region=a.cell, keyword="scan",
        title=f"{a.cell_name} over {steps} steps" + (" (reverse)" if a.reverse else ""),
        cluster="scan",
        roles=("step",) * a.n_seq + ("state",) * a.n_states + ("fixed",) * a.n_static,
        loops=tuple(zip(states, cell_inputs[a.n_seq: a.n_seq + a.n_states])),
        collected=tuple(step_outs),
        steps=outs[0].shape[a.along] if outs else None)


def ir_attrs(a: ScanAttrs) -> str:
    return f"[{a.cell_name}, states={a.n_states}" + (", reverse" if a.reverse else "") + "]"


def kernel(a: ScanAttrs, xs: list[np.ndarray], ctx) -> list[np.ndarray]:
    seqs = xs[: a.n_seq]
    states = list(xs[a.n_seq: a.n_seq + a.n_states])
    statics = list(xs[a.n_seq + a.n_states:])
    steps = seqs[0].shape[a.along] if seqs else a.steps
    if steps < 1:
        raise ShapeError("a scan needs at least one step", expected=">= 1 steps", found="0")
    order = range(steps - 1, -1, -1) if a.reverse else range(steps)
    collected: list[list[np.ndarray]] = []
    for t in order:
        step_in = [np.take(s, t, axis=a.along) for s in seqs]
        res = ctx.run_graph(a.cell, step_in + states + statics)
        states = res[: a.n_states]
        collected.append(res[a.n_states:] or states)
    if a.reverse:
        collected.reverse()  # outputs line up with the time index, as torch's reverse pass does
    outs = [np.stack([c[j] for c in collected], axis=a.along) for j in range(a.n_outs)]
    return outs + states


def vjp(a: ScanAttrs, ins: list[np.ndarray], outs: list[np.ndarray],
        gouts: list[np.ndarray | None], ctx) -> tuple[list, dict[str, np.ndarray]]:
    """Backpropagation through time: the cell's runs differentiated last step first, each
    through the backward walk's tape of that run (`ctx.saved["region_vjp"]`, dslc/autodiff.py),
    the states' cotangents carried from step to step. Memory: the forward keeps every step's
    cell values (its whole tape) until the backward walk has passed that step. Parameter
    gradients come by their full state_dict keys, summed over the steps."""
    region_vjp = ctx.saved.get("region_vjp")
    if region_vjp is None:
        raise ValueError("a scan's vjp needs the taped cell runs of dslc.autodiff's forward")
    seqs = ins[: a.n_seq]
    steps = seqs[0].shape[a.along] if seqs else a.steps
    order = list(range(steps - 1, -1, -1)) if a.reverse else list(range(steps))
    g_seqs = [np.zeros(s.shape, gouts_dtype(gouts, s)) if np.issubdtype(s.dtype, np.floating)
              else None for s in seqs]
    g_states = list(gouts[a.n_outs:])
    g_statics: list[np.ndarray | None] = [None] * a.n_static
    grads: dict[str, np.ndarray] = {}
    own_outs = a.cell.outputs[a.n_states:] != []
    for k in reversed(range(steps)):
        t = order[k]
        g_step = [None if g is None else np.take(g, t, axis=a.along) for g in gouts[: a.n_outs]]
        if own_outs:
            cell_g = g_states + g_step
        else:  # the per-step outputs are the new states themselves
            cell_g = [_add(s, o) for s, o in zip(g_states, g_step)]
        gins, gp = region_vjp(k, cell_g)
        for j in range(a.n_seq):
            g = gins[j]
            if g is not None and g_seqs[j] is not None:
                index = [slice(None)] * g_seqs[j].ndim
                index[a.along] = t
                g_seqs[j][tuple(index)] += g
        g_states = list(gins[a.n_seq: a.n_seq + a.n_states])
        for j in range(a.n_static):
            g_statics[j] = _add(g_statics[j], gins[a.n_seq + a.n_states + j])
        for key, g in gp.items():
            grads[key] = grads[key] + g if key in grads else g
    return g_seqs + g_states + g_statics, grads


def gouts_dtype(gouts, like: np.ndarray):
    return next((g.dtype for g in gouts if g is not None), like.dtype)


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a + b


def _select(seq: str, along: int, t: str) -> str:
    if along == 0:
        return f"{seq}[{t}]"
    return f"{seq}[{', '.join([':'] * along)}, {t}]"


def torch_stmts(a: ScanAttrs, args: list[str], ctx, ins, targets: list[str]) -> list[str]:
    """A plain Python loop over time; the cell's statements inline in its body."""
    body = ctx.body
    seqs = args[: a.n_seq]
    inits = args[a.n_seq: a.n_seq + a.n_states]
    statics = args[a.n_seq + a.n_states:]
    cell_inputs = [nid for _, nid in a.cell.inputs]
    in_names = [name for name, _ in a.cell.inputs]
    steps = f"{seqs[0]}.shape[{a.along}]" if seqs else str(a.steps)
    t = body.fresh("t")
    state_vars = [body.fresh(in_names[a.n_seq + i]) for i in range(a.n_states)]
    list_vars = [body.fresh(f"{targets[j]}_steps") for j in range(a.n_outs)]
    step_vars = [body.fresh(in_names[k]) for k in range(a.n_seq)]
    lines = [f"{v} = {init}" for v, init in zip(state_vars, inits)]
    lines += [f"{v} = []" for v in list_vars]
    rng = f"reversed(range({steps}))" if a.reverse else f"range({steps})"
    lines.append(f"for {t} in {rng}:")
    loop = [f"{v} = {_select(seq, a.along, t)}" for v, seq in zip(step_vars, seqs)]
    var_map = dict(zip(cell_inputs, step_vars + state_vars + statics))
    sub = body.sub_body(a.cell, var_map)
    loop += sub.emit()
    states, outs = out_refs(a)
    new_states = [sub.var_of[r] for r in states]
    step_outs = [sub.var_of[r] for r in outs]
    changed = [(v, n) for v, n in zip(state_vars, new_states) if v != n]
    if changed:
        loop.append(", ".join(v for v, _ in changed) + " = " + ", ".join(n for _, n in changed))
    loop += [f"{lv}.append({o if o not in dict(changed) else o})"
             for lv, o in zip(list_vars, step_outs)]
    lines += ["    " + ln for ln in loop]
    if a.reverse:
        lines += [f"{lv}.reverse()" for lv in list_vars]
    lines += [f"{targets[j]} = torch.stack({lv}, dim={a.along})"
              for j, lv in enumerate(list_vars)]
    lines += [f"{targets[a.n_outs + i]} = {v}" for i, v in enumerate(state_vars)
              if targets[a.n_outs + i] != v]
    return lines


def label(a: ScanAttrs) -> str:
    return a.cell_name + (", reverse" if a.reverse else "")


SCAN = Op(
    name="scan",
    family="rnn",
    doc="A recurrence: `ys, h = scan cell(args) over x from h0 [reverse] [along 1]` applies the "
        "block `cell` at every step of x's time axis, carrying states; see docs/language.md.",
    attrs=ScanAttrs,
    min_inputs=0,
    max_inputs=None,
    shape=shape,
    # The scan itself adds nothing: its MACs are its cell's, once per step (dslc/regions.py).
    regions=lambda a: (a.cell,),
    region_runs=steps_of,
    region_view=region_view,
    ir_attrs=ir_attrs,
    numpy=kernel,
    vjp=vjp,
    torch_call=lambda a, args, ctx, ins: "",  # statements: see torch_stmts
    torch_stmts=torch_stmts,
    label=label,
    n_outputs=lambda a: a.n_outs + a.n_states,
    examples=(),
)

SCAN_OPS = (SCAN,)
