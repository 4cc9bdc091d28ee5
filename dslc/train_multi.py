"""Checking of multi-model `train` sections (a GAN: `train for generator, discriminator`):
AST (dslc/syntax/train_ast.py) + the models' IR graphs to a MultiTrainSpec, which
dslc/backends/torch_train_multi.py turns into a training program.

A loss of an `update MODEL { ... }` block applies the section's models to data arrays
(`target`), noise (`noise`) and each other: `discriminator(generator(z))`. Each distinct
application becomes an input of the update's loss graph (named after it, e.g.
`discriminator_generator_z`), typed by the applied model's output; the loss itself is then
elaborated as a single-model section's loss is (train_check._LossElaborator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dslc import dims as D
from dslc import interp
from dslc.diagnostics import DslcError, Span, did_you_mean
from dslc.elaborate import _Stop, elaborate_with_warnings
from dslc.ir import Graph
from dslc.sources import Program
from dslc.syntax import ast
from dslc.syntax.train_ast import TrainDef, TrainSetting, TrainUpdate
from dslc.train_check import (
    DataArray,
    _clip,
    _const,
    _err,
    _LossElaborator,
    _optimizer,
    _schedule,
    require_settings,
    setting_number,
)
from dslc.train_reg import walk as _walk
from dslc.types import TensorType
from dslc.values import Env

# Settings of the section as a whole, and of each `update` block.
SECTION_SETTINGS = ("batch", "epochs", "steps", "shuffle", "seed", "checkpoint_every")
UPDATE_SETTINGS = ("loss", "optimizer", "schedule", "clip", "no_weight_decay")


@dataclass
class Application:
    """`model(arg, ...)` inside a loss: computed by the program before the loss module."""

    name: str  # the loss graph's input it becomes
    model: str
    args: list[str]  # data arrays, noises or earlier applications, in the model's input order
    type: TensorType
    span: Span
    depends_on: frozenset[str] = frozenset()  # the models whose parameters it depends on


@dataclass
class Update:
    """One optimisation step of one model, in the order of the section's `update` blocks."""

    model: str
    loss_graph: Graph
    loss_args: list[str]
    applications: list[Application]  # arguments before the applications that take them
    optimizer: str
    optimizer_args: dict[str, Any]
    schedule: tuple[str, dict[str, Any]]
    clip: tuple[str, float] | None
    no_weight_decay: tuple[str, ...] = ()
    # l1/l2(params(...)) terms (dslc/train_reg.py) on this update's model: loss input -> key.
    penalty_params: dict[str, str] = field(default_factory=dict)


@dataclass
class MultiTrainSpec:
    name: str | None
    models: list[str]
    data: list[DataArray]  # the data file's arrays (the section's targets)
    noise: list[tuple[str, TensorType]]  # drawn N(0, 1) every step, the sample dim first
    updates: list[Update]
    batch: int
    epochs: int | None
    steps: int | None
    shuffle: bool
    seed: int
    checkpoint_every: int | None = None
    graphs: dict[str, Graph] = field(default_factory=dict)


def _model_names(prog: Program) -> list[str]:
    return [d.name for d in prog.definitions.values() if d.kind == "model"]


def _section_models(prog: Program, t: TrainDef) -> list[tuple[str, Span]]:
    known = _model_names(prog)
    models = t.models or ([(t.model, t.model_span)] if t.model else [])
    if len(models) < 2:
        where = t.noises[0].span if t.noises else t.updates[0].span if t.updates else t.span
        raise _err("E0636", "`noise` and `update` blocks belong to a section for several models",
                   where, expected="train NAME for MODEL_A, MODEL_B { ... }",
                   found="a section for " + (f"'{models[0][0]}' only" if models else
                                             "the file's model"),
                   hint="a single model's section takes `loss = ...` and `optimizer = ...`")
    seen: dict[str, Span] = {}
    for name, span in models:
        if name not in known:
            raise _err("E0630", f"no model named '{name}'", span,
                       expected="one of: " + ", ".join(known), found=name,
                       hint=did_you_mean(name, known))
        if name in seen:
            raise _err("E0630", f"model '{name}' is listed twice", span,
                       notes=[("first listed here", seen[name])])
        seen[name] = span
    return models


def _graphs(prog: Program, models: list[tuple[str, Span]],
            given: Graph | None) -> dict[str, Graph]:
    out = {}
    for name, _ in models:
        if given is not None and given.model == name:
            out[name] = given  # the model as loaded (with its --set hyperparameters)
        else:
            out[name] = elaborate_with_warnings(prog, name, {})[0]
            interp.check(out[name])
    return out


def _settings(items: list[TrainSetting], allowed: tuple[str, ...], where: str,
              elsewhere: tuple[str, ...]) -> dict[str, TrainSetting]:
    out: dict[str, TrainSetting] = {}
    for s in items:
        if s.key in elsewhere:
            raise _err("E0632", f"'{s.key}' belongs {where}", s.key_span,
                       expected=", ".join(allowed), found=s.key,
                       hint="loss, optimizer, schedule and clip go in each `update MODEL { }`;"
                       " batch, epochs, steps, shuffle and seed in the section")
        if s.key not in allowed:
            raise _err("E0273", f"unknown train setting '{s.key}'", s.key_span,
                       expected=", ".join(allowed), found=s.key,
                       hint=did_you_mean(s.key, allowed))
        if s.key in out:
            raise _err("E0273", f"train setting '{s.key}' is given twice", s.key_span,
                       notes=[("first given here", out[s.key].key_span)])
        out[s.key] = s
    return out


# ---- applications of models inside a loss -----------------------------------------------


class _Applications:
    """Collects the model applications of one loss, checks their arguments' types, and gives
    the loss expression with every application replaced by its name."""

    def __init__(self, graphs: dict[str, Graph], values: dict[str, TensorType],
                 known_models: list[str]):
        self.graphs = graphs
        self.values = dict(values)  # data arrays and noises
        self.known = known_models
        self.apps: dict[tuple, Application] = {}

    def rewrite(self, expr):
        return _walk(expr, self._visit)

    def _visit(self, e):
        if isinstance(e, ast.Pipe) and self._is_model(e.stage.func, e.stage.func_span):
            return ast.Name(span=e.span, name=self._apply(
                e.stage.func, e.stage.func_span, [e.source] + list(e.stage.args), e.stage,
                e.span))
        if isinstance(e, ast.Call) and self._is_model(e.func, e.func_span):
            return ast.Name(span=e.span, name=self._apply(e.func, e.func_span, list(e.args),
                                                          e, e.span))
        return None

    def _is_model(self, name: str, span: Span) -> bool:
        if name in self.graphs:
            return True
        if name in self.known:
            raise _err("E0630", f"model '{name}' is not one of this section's models", span,
                       expected=", ".join(self.graphs), found=name,
                       hint=f"add it to the section: `for {', '.join(self.graphs)}, {name}`")
        return False

    def _arg(self, e) -> str:
        if isinstance(e, ast.Name) and e.name in self.values:
            return e.name
        inner = self._visit(e)
        if isinstance(inner, ast.Name):
            return inner.name
        raise _err("E0633", "a model's argument is a `target`, a `noise` or another model's "
                   "application", e.span, expected=", ".join(self.values) or "a name",
                   found=getattr(e, "name", type(e).__name__.lower()))

    def _apply(self, model: str, span: Span, args: list, call, where: Span) -> str:
        g = self.graphs[model]
        if getattr(call, "kwargs", None):
            want = f"{model}({', '.join(n for n, _ in g.inputs)})"
            raise _err("E0633", f"model '{model}' takes its inputs by position",
                       call.kwargs[0].span, expected=want,
                       found=call.kwargs[0].name)
        if len(g.outputs) != 1:
            raise _err("E0633", f"model '{model}' has {len(g.outputs)} outputs; an applied "
                       "model must have one", span, expected="one output",
                       found=", ".join(n for n, _ in g.outputs))
        if len(args) != len(g.inputs):
            raise _err("E0633", f"model '{model}' takes {len(g.inputs)} input(s)", where,
                       expected=f"{model}({', '.join(n for n, _ in g.inputs)})",
                       found=f"{len(args)} argument(s)")
        names = [self._arg(a) for a in args]
        bind: dict[Any, Any] = {}
        for (iname, nid), arg, a in zip(g.inputs, names, args):
            want, got = g.nodes[nid].types[0], self.values[arg]
            if not _unify(want, got, bind):
                raise _err("E0633", f"'{arg}' does not fit input '{iname}' of model "
                           f"'{model}'", a.span, expected=str(want), found=str(got))
        node, idx = g.outputs[0][1]
        out = g.nodes[node].types[idx]
        out = out.with_shape(tuple(D.as_dim(d).subs(bind) if bind else d for d in out.shape))
        key = (model, tuple(names))
        if key not in self.apps:
            name = "_".join([model] + names)
            deps = frozenset({model}).union(*(self._app_deps(n) for n in names))
            self.apps[key] = Application(name, model, names, out, where, deps)
            self.values[name] = out
        return self.apps[key].name

    def _app_deps(self, name: str) -> frozenset[str]:
        for a in self.apps.values():
            if a.name == name:
                return a.depends_on
        return frozenset()


def _unify(want: TensorType, got: TensorType, bind: dict) -> bool:
    """The argument's type against the model input's: the same dtype and rank, each dim equal
    (a symbol of the model's input takes the argument's dim, the same one everywhere)."""
    if want.dtype != got.dtype or want.rank != got.rank:
        return False
    for w, g in zip(want.shape, got.shape):
        w = D.as_dim(w)
        if w.is_Symbol:
            if w in bind and D.equal(bind[w], g) is not True:
                return False
            bind.setdefault(w, g)
        elif D.equal(w.subs(bind) if bind else w, g) is not True:
            return False
    return True


# ---- the section --------------------------------------------------------------------------


def check_multi_train(prog: Program, t: TrainDef, graph: Graph | None = None) -> MultiTrainSpec:
    """Check a multi-model section; `graph` is the loaded model (one of the section's)."""
    models = _section_models(prog, t)
    graphs = _graphs(prog, models, graph)
    names = [m for m, _ in models]
    settings = _settings(t.settings, SECTION_SETTINGS, "in an `update MODEL { }` block",
                         UPDATE_SETTINGS)
    require_settings(settings, ("batch",), t.name_span)
    batch, epochs, steps = (setting_number(settings, k, 1) for k in ("batch", "epochs", "steps"))
    hparams: dict[str, Any] = {}
    for n in names:
        for k, v in graphs[n].hparams.items():
            hparams.setdefault(k, v)
    types, data, noise = _declarations(prog, t, graphs, hparams)
    updates = _updates(prog, t, graphs, types, hparams, steps)
    return MultiTrainSpec(name=t.name, models=names, data=data, noise=noise, updates=updates,
                          batch=batch, epochs=epochs, steps=steps,
                          shuffle=setting_number(settings, "shuffle"),
                          seed=setting_number(settings, "seed", 0),
                          checkpoint_every=setting_number(settings, "checkpoint_every", 1),
                          graphs=graphs)


def _declarations(prog: Program, t: TrainDef, graphs: dict[str, Graph], hparams):
    """The targets (arrays of the data file) and noises, typed; the sample dim comes first in
    each and is the same symbol in all."""
    if not t.targets:
        raise _err("E0637", "a multi-model section needs the data: `target NAME: TYPE`",
                   t.name_span, expected="e.g. target real: f32[B, 1, 28, 28]",
                   found="no target")
    el = _LossElaborator(prog, "types", ast.Number(span=t.span, value=0, text="0"), t.span, [], [],
                         hparams)
    env = Env()
    for name, value in hparams.items():
        env.vars[name] = (value, t.span)
    types: dict[str, TensorType] = {}
    spans: dict[str, Span] = {}
    sample = None
    for d in t.targets + t.noises:
        if d.name in spans or d.name in graphs:
            what = "a model" if d.name in graphs else "another declaration"
            raise _err("E0637", f"'{d.name}' has the name of {what}", d.name_span,
                       expected="a fresh name", found=d.name,
                       notes=[("first declared here", spans[d.name])] if d.name in spans else [])
        try:
            ty = el.eval_type(d.type, env, bind_unknown=True)
        except _Stop:
            raise DslcError(el.all_diagnostics()) from None
        first = D.as_dim(ty.shape[0]) if ty.rank else None
        if first is None or not first.is_Symbol or (sample is not None and first != sample):
            raise _err("E0637", f"'{d.name}' must have the samples first", d.type.span,
                       expected=f"[{D.fmt(sample) if sample is not None else 'B'}, ...]",
                       found=str(ty))
        sample = first
        if d.kind == "noise":
            if not ty.is_float or any(not D.as_dim(x).is_Integer for x in ty.shape[1:]):
                raise _err("E0637", f"noise '{d.name}' needs a float dtype and fixed sizes "
                           "after the sample dim", d.type.span,
                           expected=f"f32[{D.fmt(sample)}, 100]", found=str(ty))
        types[d.name], spans[d.name] = ty, d.name_span
    data = [DataArray(d.name, "target", types[d.name], d.span) for d in t.targets]
    noise = [(d.name, types[d.name]) for d in t.noises]
    return types, data, noise


def _updates(prog: Program, t: TrainDef, graphs: dict[str, Graph],
             types: dict[str, TensorType], hparams, steps: int | None) -> list[Update]:
    by_model: dict[str, TrainUpdate] = {}
    for u in t.updates:
        if u.model not in graphs:
            raise _err("E0630", f"'{u.model}' is not one of this section's models",
                       u.model_span, expected=", ".join(graphs), found=u.model,
                       hint=did_you_mean(u.model, graphs))
        if u.model in by_model:
            raise _err("E0631", f"model '{u.model}' has two `update` blocks", u.model_span,
                       notes=[("first here", by_model[u.model].model_span)])
        if u.targets or u.updates:
            inner = (u.targets or u.updates)[0]
            raise _err("E0632", "an `update` block holds settings only", inner.span,
                       expected="loss, optimizer, schedule, clip, no_weight_decay",
                       found="a declaration" if u.targets else "a nested update")
        by_model[u.model] = u
    for m, span in (t.models or []):
        if m not in by_model:
            raise _err("E0631", f"model '{m}' has no `update {m} {{ ... }}` block", span,
                       expected=f"update {m} {{ loss = ...  optimizer = ... }}",
                       found="no update block",
                       hint="each model of the section needs its loss and its optimizer")
    inputs_outputs: dict[str, str] = {}
    for m, g in graphs.items():
        for n, _ in g.outputs:
            inputs_outputs.setdefault(n, f"an output of model '{m}'")
        for n, _ in g.inputs:
            inputs_outputs.setdefault(n, f"an input of model '{m}'")
    out = []
    for u in t.updates:
        s = _settings(u.settings, UPDATE_SETTINGS, "in the section, not in an `update` block",
                      SECTION_SETTINGS)
        for key in ("loss", "optimizer"):
            if key not in s:
                raise _err("E0632", f"`update {u.model}` needs `{key} = ...`", u.model_span,
                           expected=f"{key} = ...", found="no such setting",
                           hint="each model has its own loss and its own optimizer")
        loss_s = s["loss"]
        _refuse_bare_names(loss_s.value, types, inputs_outputs, graphs)
        apps = _Applications(graphs, types, _model_names(prog))
        expr = apps.rewrite(loss_s.value)
        # l1/l2(params(...)) choose parameters of the updated model.
        from dslc.train_reg import rewrite as penalties

        taken = set(types) | {a.name for a in apps.apps.values()}
        expr, penalty = penalties(expr, graphs[u.model], taken)
        if not any(u.model in a.depends_on for a in apps.apps.values()):
            raise _err("E0635", f"the loss of `update {u.model}` does not depend on model "
                       f"'{u.model}'", loss_s.value.span,
                       expected=f"a loss that applies {u.model}(...)",
                       found="applications of " + (", ".join(sorted(
                           {a.model for a in apps.apps.values()})) or "no model"),
                       hint="its parameters would get no gradient: is this the other "
                       "model's loss?")
        given = [(a.name, a.type, a.span) for a in apps.apps.values()]
        noise_names = [d.name for d in t.noises]
        given += [(n, types[n], t.span) for n in noise_names]
        given += [(p.arg, p.type, p.span) for p in penalty]
        loss = _LossElaborator(prog, f"{u.model}_loss", expr, loss_s.value.span, given,
                               t.targets, hparams).run()
        interp.check(loss)
        lt = loss.nodes[loss.outputs[0][1][0]].types[loss.outputs[0][1][1]]
        if lt.rank != 0 or not lt.is_float:
            raise _err("E0281", "the loss must be one float number", loss_s.value.span,
                       expected="a float scalar (a loss with reduction mean or sum)",
                       found=str(lt), hint="reduce it: `reduction=\"mean\"`, or `mean(...)`")
        opt, opt_args = _optimizer(s["optimizer"].value, s["optimizer"].span)
        sched = ("constant", {})
        if "schedule" in s:
            sched = _schedule(s["schedule"].value, s["schedule"].span, steps)
            if sched[0] == "plateau":
                raise _err("E0632", "plateau needs a validation metric, which a multi-model "
                           "section does not measure", s["schedule"].value.span,
                           expected="a schedule of the step count", found="plateau(...)")
        clip = _clip(s["clip"].value, s["clip"].span) if "clip" in s else None
        no_decay: tuple[str, ...] = ()
        if "no_weight_decay" in s:
            v = _const(s["no_weight_decay"].value, "'no_weight_decay'")
            v = v if isinstance(v, tuple) else (v,)
            no_decay = tuple(x for x in ("bias", "norm") if x in v)
            bad = [x for x in v if x not in ("bias", "norm")]
            if bad:
                raise _err("E0275", "'no_weight_decay' lists kinds of parameters",
                           s["no_weight_decay"].value.span,
                           expected='["bias"], ["norm"] or ["bias", "norm"]',
                           found=repr(bad[0]))
        out.append(Update(model=u.model, loss_graph=loss,
                          loss_args=[n for n, _ in loss.inputs],
                          applications=list(apps.apps.values()), optimizer=opt,
                          optimizer_args=opt_args, schedule=sched, clip=clip,
                          no_weight_decay=no_decay,
                          penalty_params={p.arg: p.key for p in penalty}))
    return out


def _refuse_bare_names(expr, values: dict[str, TensorType], model_names: dict[str, str],
                       graphs: dict[str, Graph]) -> None:
    """`p_real` in a GAN's loss: an output of a model is reached only by applying it."""

    def visit(e):
        if isinstance(e, ast.Name) and e.name not in values and e.name in model_names:
            model = model_names[e.name].rsplit("'", 2)[-2]
            g = graphs[model]
            raise _err("E0634", f"'{e.name}' is {model_names[e.name]}; in a multi-model "
                       "section a loss applies the models", e.span,
                       expected=f"{model}({', '.join(n for n, _ in g.inputs)}) with a target, "
                       "a noise or another application",
                       found=e.name, hint=f"e.g. {model}(...) in place of {e.name}")
        return None

    _walk(expr, visit)



def multi_train_summary(spec: MultiTrainSpec) -> dict[str, Any]:
    """The `train` object of `dslc summary --json` for a multi-model section: the data arrays
    as for one model, and per update its model, optimiser and schedule."""
    from dslc.train_check import _plain, _schedule_json

    return {
        "name": spec.name,
        "models": list(spec.models),
        "data": [{"name": a.name, "role": a.role, "dtype": a.type.dtype,
                  "shape": [int(d) if D.as_dim(d).is_Integer else D.fmt(d)
                            for d in a.type.shape]} for a in spec.data],
        "noise": [{"name": n, "dtype": ty.dtype,
                   "shape": [int(d) if D.as_dim(d).is_Integer else D.fmt(d)
                             for d in ty.shape]} for n, ty in spec.noise],
        "updates": [{"model": u.model,
                     "optimizer": {"name": u.optimizer, **{k: _plain(v) for k, v in
                                                          u.optimizer_args.items()}},
                     "schedule": _schedule_json(u.schedule),
                     "clip": list(u.clip) if u.clip else None} for u in spec.updates],
        "batch": spec.batch, "epochs": spec.epochs, "steps": spec.steps,
        "shuffle": spec.shuffle, "seed": spec.seed,
    }
