"""Checking of `train` sections: AST (dslc/syntax/train_ast.py) + the model's IR graph to a
TrainSpec, the plain data the training-program generator (dslc/backends/torch_train.py) reads.

The loss is elaborated as a small model of its own whose inputs are the model's outputs and
inputs and the section's targets: the loss ops' shape rules then give the located diagnostics
(class-index targets against one-hot ones, shapes that differ) with no second checker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dslc import dims as D
from dslc import interp
from dslc.diagnostics import Diagnostic, DslcError, Span, did_you_mean
from dslc.elaborate import Elaborator, _Stop
from dslc.ir import Graph
from dslc.ops.registry import OPS
from dslc.sources import Program
from dslc.syntax import ast
from dslc.syntax.train_ast import TrainDef, TrainSetting
from dslc.types import TensorType
from dslc.values import Env, TensorVal

# torch.optim's argument names and defaults (torch 2.x); the generated program passes every
# argument explicitly, so a later change of torch's defaults cannot change a run.
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {"lr": 1e-3, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                    "nesterov": False}),
    "adam": ("Adam", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                      "amsgrad": False}),
    "adamw": ("AdamW", {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
                        "amsgrad": False}),
    "rmsprop": ("RMSprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                            "momentum": 0.0, "centered": False}),
    "adagrad": ("Adagrad", {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                            "initial_accumulator_value": 0.0, "eps": 1e-10}),
    "adadelta": ("Adadelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-6, "weight_decay": 0.0}),
}

# Learning-rate schedules: a factor of the optimiser's lr, a function of the number of
# optimisation steps already taken. `None` marks a required argument.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "cosine": {"t_max": None, "eta_min": 0.0},
    "cosine_restarts": {"t_0": None, "t_mult": 1, "eta_min": 0.0},
    "warmup": {"total_iters": None, "then": None},
    "noam": {"d_model": None, "warmup": 4000},
    # Reduce-on-plateau: lr times factor after `patience` epochs without improvement of the
    # metric (ReduceLROnPlateau, stepped once an epoch); checked with the metrics below.
    "plateau": {"factor": 0.1, "patience": 10, "metric": "", "min_delta": 0.0},
}

# setting -> (kind of value, default); `None` default = required (see _require).
SETTINGS: dict[str, tuple[str, Any]] = {
    "loss": ("expr", None),
    "optimizer": ("call", None),
    "schedule": ("call", None),
    "batch": ("int", None),
    "epochs": ("int", None),
    "steps": ("int", None),
    "shuffle": ("bool", True),
    "validation": ("float", 0.0),
    "clip": ("call", None),
    "metrics": ("list", None),
    "checkpoint_every": ("int", None),
    "seed": ("int", 0),
    "no_weight_decay": ("list", ()),
    "early_stop": ("call", None),
}
NO_DECAY_KINDS = ("bias", "norm")


@dataclass
class DataArray:
    """One array of the data file: a model input or a target; shape[0] is the sample dim."""

    name: str
    role: str  # "input" | "target"
    type: TensorType
    span: Span
    classes: int | None = None  # class-index targets: labels must lie in [0, classes)
    ignore_index: int | None = None


@dataclass
class Metric:
    kind: str  # "accuracy"
    output: str
    target: str
    threshold: float = 0.5
    k: int = 1  # top-k accuracy for class scores
    name: str = "accuracy"  # the key in metrics.jsonl


@dataclass
class TrainSpec:
    name: str | None
    model: str
    data: list[DataArray]
    loss_graph: Graph
    loss_args: list[str]  # the loss module's inputs, in order
    optimizer: str
    optimizer_args: dict[str, Any]
    schedule: tuple[str, dict[str, Any]]
    batch: int
    epochs: int | None
    steps: int | None
    shuffle: bool
    validation: float
    seed: int
    clip: tuple[str, float] | None
    metrics: list[Metric] = field(default_factory=list)
    checkpoint_every: int | None = None
    no_weight_decay: tuple[str, ...] = ()  # parameter kinds kept out of weight decay
    early_stop: dict[str, Any] | None = None  # patience, metric, min_delta, mode
    # Regularisation terms (dslc/train_reg.py): loss input -> the parameter's state_dict key.
    penalty_params: dict[str, str] = field(default_factory=dict)
    # `batch = full`: one step sees the whole data file (a graph: every node, every edge); the
    # targets are per node and the samples of the split are nodes (transductive training).
    full_graph: bool = False
    # With full_graph: the loss's arguments that hold one row per node (outputs and inputs
    # whose first dim is the targets' node dim): the loss sees the rows of the step's nodes.
    node_args: tuple[str, ...] = ()


def _err(code: str, msg: str, span: Span, **kw) -> DslcError:
    return DslcError(Diagnostic(code, msg, span, **kw))


# ---- choosing a section --------------------------------------------------------------------


def train_defs(prog: Program) -> list[TrainDef]:
    """The train sections of the root file, in file order."""
    return [t for m in prog.modules if m.file == prog.root for t in m.trains]


def pick_train(prog: Program, model: str, name: str | None) -> TrainDef:
    defs = [t for t in train_defs(prog)
            if t.model in (None, model) or model in [m for m, _ in t.models]]
    where = Span(prog.root, 1, 1, 1, 2)
    if name:
        for t in defs:
            if t.name == name:
                return t
        names = [t.name for t in defs if t.name]
        raise _err("E0271", f"no train section named '{name}' for model '{model}'", where,
                   expected="one of: " + ", ".join(names) if names else "a train section",
                   found=name, hint=did_you_mean(name, names))
    if not defs:
        raise _err("E0270", f"this file has no train section for model '{model}'", where,
                   hint=f"add `train for {model} {{ ... }}` (docs/language.md, Training)")
    unnamed = [t for t in defs if t.name is None]
    if len(defs) == 1 or len(unnamed) == 1:
        return unnamed[0] if unnamed else defs[0]
    raise _err("E0272", "this file has several train sections; choose one by name",
               defs[1].name_span,
               expected="--train " + " | ".join(t.name or "?" for t in defs),
               hint="or leave one section unnamed: it is the default")


# ---- values of settings -------------------------------------------------------------------


def _const(e, what: str):
    """A literal value: number, bool, string, list/tuple of those, or a name (as a string)."""
    if isinstance(e, ast.Number | ast.Bool | ast.String):
        return e.value
    if isinstance(e, ast.UnaryOp) and e.op == "-" and isinstance(e.operand, ast.Number):
        return -e.operand.value
    if isinstance(e, ast.BinOp) and e.op in ("*", "/", "**") and all(
            isinstance(x, ast.Number) for x in (e.left, e.right)):
        a, b = e.left.value, e.right.value
        return a * b if e.op == "*" else a / b if e.op == "/" else a ** b
    if isinstance(e, ast.TupleLit | ast.ListLit):
        return tuple(_const(x, what) for x in e.items)
    if isinstance(e, ast.Call):
        return e
    raise _err("E0275", f"{what} must be a constant", e.span,
               expected="a number, true/false, a string or a tuple of numbers",
               found=type(e).__name__.lower())


def _number(v, e, what: str, kind: str, low: float | None = None) -> Any:
    ok = isinstance(v, bool) if kind == "bool" else \
        isinstance(v, int) and not isinstance(v, bool) if kind == "int" else \
        isinstance(v, int | float) and not isinstance(v, bool)
    if not ok:
        raise _err("E0275", f"{what} must be {'an' if kind == 'int' else 'a'} {kind}", e.span,
                   expected=kind, found=repr(v) if not isinstance(v, ast.Call) else "a call")
    if low is not None and v < low:
        raise _err("E0275", f"{what} is out of range", e.span, expected=f">= {low}",
                   found=repr(v))
    return float(v) if kind == "float" else v


def _call_args(call: ast.Call, table: dict[str, Any], what: str) -> dict[str, Any]:
    """Keyword (or positional, in table order) arguments of `sgd(lr=0.1)` against a table of
    known names; unknown names get a did-you-mean."""
    names = list(table)
    out: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    if len(call.args) > len(names):
        raise _err("E0277", f"too many arguments for {what} '{call.func}'", call.args[-1].span,
                   expected=f"at most {len(names)}: " + ", ".join(names),
                   found=f"{len(call.args)} arguments")
    for i, a in enumerate(call.args):
        out[names[i]] = _const(a, f"argument '{names[i]}'")
        spans[names[i]] = a.span
    for kw in call.kwargs:
        if kw.name not in table:
            raise _err("E0277", f"{what} '{call.func}' has no argument '{kw.name}'", kw.span,
                       expected=", ".join(names) or "no arguments", found=kw.name,
                       hint=did_you_mean(kw.name, names))
        if kw.name in out:
            raise _err("E0277", f"argument '{kw.name}' is given twice", kw.span)
        out[kw.name] = _const(kw.value, f"argument '{kw.name}'")
        spans[kw.name] = kw.value.span
    out["__spans__"] = spans
    return out


def _optimizer(call, span: Span) -> tuple[str, dict[str, Any]]:
    if not isinstance(call, ast.Call):
        raise _err("E0276", "the optimizer is a call such as `sgd(lr=0.1, momentum=0.9)`", span,
                   expected=" | ".join(OPTIMIZERS), found="a value")
    if call.func not in OPTIMIZERS:
        raise _err("E0276", f"unknown optimizer '{call.func}'", call.func_span,
                   expected=" | ".join(OPTIMIZERS), found=call.func,
                   hint=did_you_mean(call.func, OPTIMIZERS))
    defaults = OPTIMIZERS[call.func][1]
    given = _call_args(call, defaults, "optimizer")
    spans = given.pop("__spans__")
    args = dict(defaults)
    for k, v in given.items():
        d = defaults[k]
        e = _Spanned(spans[k])
        if isinstance(d, bool):
            args[k] = _number(v, e, f"'{k}'", "bool")
        elif isinstance(d, tuple):
            if not (isinstance(v, tuple) and len(v) == len(d)):
                raise _err("E0277", f"'{k}' takes {len(d)} numbers", spans[k],
                           expected=str(d), found=repr(v))
            args[k] = tuple(_number(x, e, f"'{k}'", "float", 0.0) for x in v)
        else:
            args[k] = _number(v, e, f"'{k}'", "float", 0.0)
    if call.func == "sgd" and args["nesterov"] and (args["momentum"] <= 0 or args["dampening"]):
        raise _err("E0277", "nesterov needs a momentum and no dampening", call.span,
                   expected="momentum > 0 and dampening = 0",
                   found=f"momentum={args['momentum']}, dampening={args['dampening']}")
    return call.func, args


class _Spanned:
    """A stand-in node that only carries a span (for _number's messages)."""

    def __init__(self, span: Span):
        self.span = span


def _schedule(call, span: Span, total: int | None) -> tuple[str, dict[str, Any]]:
    if not isinstance(call, ast.Call):
        raise _err("E0278", "the schedule is a call such as `cosine(t_max=1000)`", span,
                   expected=" | ".join(SCHEDULES), found="a value")
    if call.func not in SCHEDULES:
        raise _err("E0278", f"unknown schedule '{call.func}'", call.func_span,
                   expected=" | ".join(SCHEDULES), found=call.func,
                   hint=did_you_mean(call.func, SCHEDULES))
    table = SCHEDULES[call.func]
    given = _call_args(call, table, "schedule")
    spans = given.pop("__spans__")
    args: dict[str, Any] = {}
    for k, d in table.items():
        if k not in given:
            if k == "t_max" and total is not None:
                args[k] = total  # cosine over the whole run
                continue
            if d is None and k != "then":
                why = " (or give the section `steps = N`: the run's length)" \
                    if k == "t_max" else ""
                raise _err("E0280", f"schedule '{call.func}' needs '{k}'{why}", call.span,
                           expected=f"{call.func}({k}=...)", found=f"no '{k}'")
            args[k] = d
            continue
        v, e = given[k], _Spanned(spans[k])
        if k == "then":
            args[k] = _schedule(v, spans[k], None if total is None else total)
            if args[k][0] == "plateau":
                raise _err("E0279", "plateau cannot follow a warm-up", spans[k],
                           expected="a schedule of the step count", found="plateau(...)")
        elif k == "metric":
            if not isinstance(v, str):
                raise _err("E0279", "metric is a name in quotes", spans[k],
                           expected='"val_loss"', found=repr(v))
            args[k] = v
        elif k == "milestones":
            v = v if isinstance(v, tuple) else (v,)
            args[k] = tuple(_number(x, e, "a milestone", "int", 0) for x in v)
            if list(args[k]) != sorted(args[k]):
                raise _err("E0279", "milestones must increase", spans[k],
                           expected="increasing step numbers", found=repr(v))
        elif k in ("step_size", "total_iters", "t_max", "warmup", "d_model", "t_0", "t_mult"):
            args[k] = _number(v, e, f"'{k}'", "int", 1)
        elif k == "patience":  # epochs without improvement tolerated: 0 cuts at the first
            args[k] = _number(v, e, f"'{k}'", "int", 0)
        else:
            args[k] = _number(v, e, f"'{k}'", "float", 0.0)
    return call.func, args


def _clip(call, span: Span) -> tuple[str, float]:
    if not (isinstance(call, ast.Call) and call.func in ("norm", "value")
            and len(call.args) == 1 and not call.kwargs):
        raise _err("E0283", "clip is `norm(MAX)` or `value(MAX)`", span,
                   expected="norm(1.0) | value(0.5)",
                   found=call.func if isinstance(call, ast.Call) else "a value")
    v = _number(_const(call.args[0], "the clip limit"), call.args[0], "the clip limit",
                "float", 0.0)
    return call.func, v


# ---- the loss as a small model --------------------------------------------------------------


class _LossElaborator(Elaborator):
    """Elaborates `output loss = EXPR` over given tensor inputs (model outputs, inputs, targets)."""

    def __init__(self, prog: Program, name: str, expr, span: Span,
                 given: list[tuple[str, TensorType, Span]], targets,
                 hparams: dict[str, Any] | None = None):
        body = [ast.OutputDecl(span=span, items=[ast.OutputItem(span=span, name="loss",
                                                               value=expr)])]
        d = ast.Definition(span=span, kind="model", name=name, name_span=span, params=[],
                           body=body)
        super().__init__(prog, d, {})
        self.given = given
        self.targets = targets
        self.hparams = dict(hparams or {})

    def run(self) -> Graph:
        env = Env()
        # The model's hyperparameters are constants of the loss (`beta * kl` of a beta-VAE).
        for name, value in self.hparams.items():
            env.vars[name] = (value, self.model.span)
        for name, ttype, span in self.given:
            self._input(env, name, ttype, span)
        for t in self.targets:
            self._input(env, t.name, self.eval_type(t.type, env, bind_unknown=True), t.span)
        try:
            self.exec_body(self.model.body, env, is_model=True)
        except _Stop:
            pass
        # The elaborator records a statement's error and goes on (several diagnostics per
        # file): the loss's errors are raised here, together.
        if self.errors:
            raise DslcError(self.all_diagnostics())
        return self.graph

    def _input(self, env: Env, name: str, ttype: TensorType, span: Span) -> None:
        for d in ttype.shape:
            for sym in sorted(d.free_symbols, key=lambda s: s.name):
                if env.get(sym.name) is None:
                    env.vars[sym.name] = (sym, span)
        node = self.add_node("input", None, [], [ttype], span, name)
        self.graph.inputs.append((name, node.id))
        env.set(name, TensorVal((node.id, 0), ttype, span), span)


def _class_targets(loss: Graph) -> dict[str, tuple[int | None, int]]:
    """Targets that hold class indices: target name -> (number of classes, ignore_index)."""
    names = {nid: name for name, nid in loss.inputs}
    out: dict[str, tuple[int | None, int]] = {}
    for node in loss.order():
        op = OPS.get(node.op)
        found = op.class_target(node.attrs, [loss.type_of(r) for r in node.inputs]) \
            if op is not None and op.class_target is not None else None
        if found is not None and node.inputs[found[0]][0] in names:
            _, c, ignore = found
            out[names[node.inputs[found[0]][0]]] = (
                int(c) if D.as_dim(c).is_Integer else None, ignore)
    return out


# ---- the section ----------------------------------------------------------------------------


def require_settings(settings: dict[str, TrainSetting], keys: tuple[str, ...],
                     span: Span) -> None:
    """E0285 unless every key of `keys` and `epochs` or `steps` is set (one-model and
    multi-model sections alike)."""
    for key in keys:
        if key not in settings:
            raise _err("E0285", f"train section needs `{key} = ...`", span,
                       expected=f"{key} = ...", found="no such setting")
    if "epochs" not in settings and "steps" not in settings:
        raise _err("E0285", "train section needs `epochs = N` or `steps = N`", span,
                   expected="epochs = N or steps = N", found="neither")


def setting_number(settings: dict[str, TrainSetting], key: str, low: float | None = None):
    """A numeric setting's value (its default from SETTINGS when absent), checked."""
    s = settings.get(key)
    if s is None:
        return SETTINGS[key][1]
    return _number(_const(s.value, f"'{key}'"), s.value, f"'{key}'", SETTINGS[key][0], low)


def check_train(prog: Program, graph: Graph, name: str | None = None,
                tdef: TrainDef | None = None) -> TrainSpec:
    """Check the train section `name` (or the default one) for the model `graph`."""
    t = tdef or pick_train(prog, graph.model, name)
    if t.is_multi:  # dslc/train_sections.py reports the section's own diagnostics first
        raise _err("E0638", "this train section trains several models, which only the "
                   "PyTorch training program does", t.name_span,
                   expected="a section for one model", found="a multi-model section",
                   hint="dslc compile --train / dslc train with the torch back end")
    inputs = {n: graph.nodes[nid].types[0] for n, nid in graph.inputs}
    outputs = {n: graph.nodes[r[0]].types[r[1]] for n, r in graph.outputs}
    settings: dict[str, TrainSetting] = {}
    for s in t.settings:
        if s.key not in SETTINGS:
            raise _err("E0273", f"unknown train setting '{s.key}'", s.key_span,
                       expected=", ".join(SETTINGS), found=s.key,
                       hint=did_you_mean(s.key, list(SETTINGS) + ["optimiser"]))
        if s.key in settings:
            raise _err("E0273", f"train setting '{s.key}' is given twice", s.key_span,
                       notes=[("first given here", settings[s.key].key_span)])
        settings[s.key] = s
    # Targets: fresh names, sample dim first like the inputs'.
    sample = next(iter(inputs.values())).shape[0] if inputs else None
    if "batch" in settings and _is_full(settings["batch"].value):
        sample = None  # a whole graph: no sample dim; the targets' first dim is the nodes'
    seen: dict[str, Span] = {}
    for tg in t.targets:
        clash = "an input" if tg.name in inputs else "an output" if tg.name in outputs else \
            "another target" if tg.name in seen else None
        if clash:
            raise _err("E0274", f"target '{tg.name}' has the name of {clash} of model "
                       f"'{graph.model}'", tg.name_span,
                       expected="a name no input, output or target has", found=tg.name,
                       hint=f"name it e.g. '{tg.name}_target'")
        seen[tg.name] = tg.name_span
        # Before the loss is elaborated, so that this and not a loss's shape error is said.
        first = tg.type.dims[0] if tg.type.dims else None
        if sample is not None and sample.is_Symbol and not (
                isinstance(first, ast.Name) and first.name == sample.name):
            raise _err("E0287", f"target '{tg.name}' must have the samples first",
                       tg.type.span, expected=f"[{D.fmt(sample)}, ...] like the inputs",
                       found=tg.type.dtype + "[" + ", ".join(
                           str(getattr(d, "name", getattr(d, "text", "?")))
                           for d in tg.type.dims) + "]")
    require_settings(settings, ("loss", "optimizer", "batch"), t.name_span)

    def num(key: str, low: float | None = None):
        return setting_number(settings, key, low)

    full_graph = _is_full(settings["batch"].value)
    batch = 1 if full_graph else num("batch", 1)
    epochs, steps = num("epochs", 1), num("steps", 1)
    validation = num("validation", 0.0)
    if validation >= 1.0:
        s = settings["validation"]
        raise _err("E0275", "'validation' is the fraction of samples held out", s.value.span,
                   expected="a number in [0, 1)", found=repr(validation))
    # The loss.
    loss_s = settings["loss"]
    given = [(n, ty, graph.nodes[r[0]].span) for (n, r), ty in
             zip(graph.outputs, outputs.values())]
    given += [(n, inputs[n], graph.nodes[nid].span) for n, nid in graph.inputs]
    lname = f"{t.name or graph.model}_loss"
    # l1(params(...)) / l2(params(...)): the chosen parameters become inputs of the loss.
    from dslc.train_reg import rewrite

    taken = {n for n, _, _ in given} | {tg.name for tg in t.targets}
    loss_expr, penalty = rewrite(loss_s.value, graph, taken)
    given += [(p.arg, p.type, p.span) for p in penalty]
    loss = _LossElaborator(prog, lname, loss_expr, loss_s.value.span, given, t.targets,
                           graph.hparams).run()
    interp.check(loss)
    lt = loss.nodes[loss.outputs[0][1][0]].types[loss.outputs[0][1][1]]
    if lt.rank != 0 or not lt.is_float:
        raise _err("E0281", "the loss must be one float number", loss_s.value.span,
                   expected="a float scalar (a loss with reduction mean or sum)", found=str(lt),
                   hint="reduce it: `reduction=\"mean\"`, or `mean(...)`")
    target_types = {n: loss.nodes[nid].types[0] for n, nid in loss.inputs
                    if n in {tg.name for tg in t.targets}}
    for tg in t.targets:
        ty = target_types[tg.name]
        if sample is not None and (ty.rank == 0 or D.equal(ty.shape[0], sample) is not True):
            raise _err("E0287", f"target '{tg.name}' must have the samples first",
                       tg.type.span, expected=f"[{D.fmt(sample)}, ...] like the inputs",
                       found=str(ty))
    classes = _class_targets(loss)
    data = [DataArray(n, "input", inputs[n], graph.nodes[nid].span) for n, nid in graph.inputs]
    for tg in t.targets:
        c, ign = classes.get(tg.name, (None, None))
        data.append(DataArray(tg.name, "target", target_types[tg.name], tg.span, c, ign))
    opt, opt_args = _optimizer(settings["optimizer"].value, settings["optimizer"].span)
    sched = ("constant", {})
    if "schedule" in settings:
        s = settings["schedule"]
        sched = _schedule(s.value, s.span, steps)
    clip = _clip(settings["clip"].value, settings["clip"].span) if "clip" in settings else None
    metrics = _metrics(settings.get("metrics"), outputs, target_types)
    no_decay: tuple[str, ...] = ()
    if "no_weight_decay" in settings:
        s = settings["no_weight_decay"]
        v = _const(s.value, "'no_weight_decay'")
        v = v if isinstance(v, tuple) else (v,)
        bad = [x for x in v if x not in NO_DECAY_KINDS]
        if bad:
            raise _err("E0275", "'no_weight_decay' lists kinds of parameters", s.value.span,
                       expected='["bias"], ["norm"] or ["bias", "norm"]', found=repr(bad[0]),
                       hint=did_you_mean(str(bad[0]), NO_DECAY_KINDS))
        no_decay = tuple(x for x in NO_DECAY_KINDS if x in v)
    if sched[0] == "plateau":
        sched = (sched[0], _plateau_metric(sched[1], settings["schedule"], validation, metrics))
    early = None
    if "early_stop" in settings:
        early = _early_stop(settings["early_stop"], validation, metrics)
    node_args: tuple[str, ...] = ()
    if full_graph:
        node_args = _node_args(settings["batch"], loss, target_types, t.targets)
    spec = TrainSpec(name=t.name, model=graph.model, data=data, loss_graph=loss,
                     loss_args=[n for n, _ in loss.inputs], optimizer=opt,
                     optimizer_args=opt_args, schedule=sched, batch=batch, epochs=epochs,
                     steps=steps, shuffle=num("shuffle"), validation=validation,
                     seed=num("seed", 0), clip=clip, metrics=metrics,
                     checkpoint_every=num("checkpoint_every", 1), no_weight_decay=no_decay,
                     early_stop=early, full_graph=full_graph, node_args=node_args,
                     penalty_params={p.arg: p.key for p in penalty})
    return spec


def _is_full(e) -> bool:
    """`batch = full`: the whole data file (a whole graph) in every step."""
    return isinstance(e, ast.Name) and e.name == "full"


def _node_args(s: TrainSetting, loss: Graph, targets: dict[str, TensorType],
               tdefs) -> tuple[str, ...]:
    """With `batch = full`, every target holds one value per node (its first dim, the same for
    all); the loss arguments with that first dim are cut to the step's nodes."""
    names = [tg.name for tg in tdefs]
    if not names:
        raise _err("E0540", "`batch = full` needs a target with one row per node",
                   s.value.span, expected="target label: i64[N] (N the node dim)",
                   found="no target")
    first = targets[names[0]].shape[0] if targets[names[0]].rank else None
    for n in names:
        ty = targets[n]
        if ty.rank == 0 or first is None or D.equal(ty.shape[0], first) is not True:
            tg = next(t for t in tdefs if t.name == n)
            raise _err("E0540", f"with `batch = full`, target '{n}' must have the node dim "
                       "first, as the other targets", tg.type.span,
                       expected=f"[{D.fmt(first) if first is not None else 'N'}, ...]",
                       found=str(ty))
    out = []
    for name, nid in loss.inputs:
        ty = loss.nodes[nid].types[0]
        if name not in names and ty.rank and D.equal(ty.shape[0], first) is True:
            out.append(name)
    return tuple(out)


def _plateau_metric(a: dict[str, Any], s: TrainSetting, validation: float,
                    metrics: list[Metric]) -> dict[str, Any]:
    """plateau's metric: a validation metric, or the epoch's training `loss` (the default
    without a validation split); losses are minimised, accuracies maximised."""
    names = ["loss"] + (["val_loss"] + ["val_" + m.name for m in metrics] if validation else [])
    metric = a["metric"] or ("val_loss" if validation else "loss")
    if metric not in names:
        raise _err("E0279", f"plateau watches '{metric}', which the run does not measure",
                   s.value.span, expected=" | ".join(names), found=repr(metric),
                   hint="add `validation = 0.1`: val_ metrics are measured on it"
                   if metric.startswith("val_") and not validation
                   else did_you_mean(metric, names))
    return dict(a, metric=metric, mode="min" if metric.endswith("loss") else "max")


def _early_stop(s: TrainSetting, validation: float, metrics: list[Metric]) -> dict[str, Any]:
    """`early_stop = patience(5, metric="val_loss", min_delta=0)`, on the validation split."""
    call = s.value
    if not (isinstance(call, ast.Call) and call.func == "patience"):
        raise _err("E0288", "early_stop is `patience(EPOCHS, metric=\"val_loss\")`",
                   call.span, expected="patience(5)",
                   found=call.func if isinstance(call, ast.Call) else "a value")
    table = {"patience": None, "metric": "val_loss", "min_delta": 0.0}
    given = _call_args(call, table, "early_stop")
    spans = given.pop("__spans__")
    if "patience" not in given:
        raise _err("E0288", "patience(...) needs the number of epochs", call.span,
                   expected="patience(5)", found="no number")
    patience = _number(given["patience"], _Spanned(spans["patience"]), "patience", "int", 1)
    min_delta = _number(given.get("min_delta", 0.0), _Spanned(spans.get("min_delta", call.span)),
                        "min_delta", "float", 0.0)
    names = ["val_loss"] + ["val_" + m.name for m in metrics]
    metric = given.get("metric", "val_loss")
    if metric not in names:
        raise _err("E0288", f"early_stop watches '{metric}', which the run does not measure",
                   spans.get("metric", call.span), expected=" | ".join(names), found=repr(metric),
                   hint=did_you_mean(str(metric), names))
    if validation <= 0:
        raise _err("E0288", "early stopping needs a validation split", call.span,
                   expected="validation = 0.1 (or another fraction) in this section",
                   found="no validation split")
    return {"patience": patience, "metric": metric, "min_delta": min_delta,
            "mode": "min" if metric.endswith("loss") else "max"}


def _metrics(s: TrainSetting | None, outputs: dict[str, TensorType],
             targets: dict[str, TensorType]) -> list[Metric]:
    if s is None:
        return []
    items = s.value.items if isinstance(s.value, ast.ListLit | ast.TupleLit) else [s.value]
    out = []
    for e in items:
        if not (isinstance(e, ast.Call) and e.func == "accuracy" and len(e.args) == 2
                and all(isinstance(a, ast.Name) for a in e.args)):
            raise _err("E0282", "a metric is `accuracy(OUTPUT, TARGET)`", e.span,
                       expected="accuracy(logits, label)",
                       found=e.func if isinstance(e, ast.Call) else "a value")
        o, tg = e.args[0].name, e.args[1].name
        if o not in outputs:
            raise _err("E0282", f"'{o}' is not an output of the model", e.args[0].span,
                       expected=", ".join(outputs), found=o, hint=did_you_mean(o, outputs))
        if tg not in targets:
            raise _err("E0282", f"'{tg}' is not a target", e.args[1].span,
                       expected=", ".join(targets) or "a target", found=tg,
                       hint=did_you_mean(tg, targets))
        ot, tt = outputs[o], targets[tg]
        threshold, k = 0.5, 1
        for kw in e.kwargs:
            if kw.name == "threshold" and tt.dtype != "i64":
                threshold = _number(_const(kw.value, "threshold"), kw.value, "threshold",
                                    "float")
            elif kw.name == "k" and tt.dtype == "i64":
                k = _number(_const(kw.value, "k"), kw.value, "k", "int", 1)
            else:
                raise _err("E0282", f"accuracy has no argument '{kw.name}' here", kw.span,
                           expected="k (class labels) or threshold (0/1 targets)",
                           found=kw.name)
        if tt.dtype == "i64":
            ok = ot.rank == tt.rank + 1 and all(D.equal(a, b) is True for a, b in
                                                zip(ot.shape[:1] + ot.shape[2:], tt.shape))
            want = f"[N, C, ...] scores for i64{D.fmt_shape(tt.shape)} labels"
        else:
            ok = ot.rank == tt.rank and all(D.equal(a, b) is True
                                            for a, b in zip(ot.shape, tt.shape))
            want = f"{D.fmt_shape(tt.shape)}, the target's shape (0/1 targets)"
        if not ok:
            raise _err("E0282", f"accuracy cannot compare '{o}' with '{tg}'", e.span,
                       expected=want, found=str(ot))
        name = "accuracy" if k == 1 else f"top{k}_accuracy"
        if any(m.name == name for m in out):
            name += f"_{o}_{tg}"
        out.append(Metric("accuracy", o, tg, threshold, k, name))
    return out


def lr_factor(schedule: tuple[str, dict[str, Any]], i: int, lr: float) -> float:
    """The schedule's factor of the base `lr` after `i` optimisation steps (a reference for
    tests; the generated program holds the same formulas as source). `eta_min` is a rate."""
    kind, a = schedule
    if kind == "constant":
        return 1.0
    if kind == "step":
        return a["gamma"] ** (i // a["step_size"])
    if kind == "multistep":
        return a["gamma"] ** sum(1 for m in a["milestones"] if m <= i)
    if kind == "exponential":
        return a["gamma"] ** i
    if kind == "cosine":
        return (a["eta_min"] + (lr - a["eta_min"]) * (1 + math.cos(
            math.pi * min(i, a["t_max"]) / a["t_max"])) / 2) / lr
    if kind == "cosine_restarts":
        t_cur, t_i = _restart_position(i, a["t_0"], a["t_mult"])
        return (a["eta_min"] + (lr - a["eta_min"]) * (1 + math.cos(math.pi * t_cur / t_i)) / 2) / lr
    if kind == "warmup":
        if i < a["total_iters"]:
            return (i + 1) / a["total_iters"]
        return lr_factor(a["then"] or ("constant", {}), i - a["total_iters"], lr)
    if kind == "plateau":
        return 1.0  # changes with the metric, not the step count
    if kind == "noam":
        s = i + 1
        return a["d_model"] ** -0.5 * min(s ** -0.5, s * a["warmup"] ** -1.5)
    raise ValueError(kind)


def _restart_position(i: int, t_0: int, t_mult: int) -> tuple[int, int]:
    """SGDR: the step within the current cycle and the cycle's length (t_0, t_0*t_mult, ...)."""
    t_i = t_0
    while i >= t_i:
        i -= t_i
        t_i *= t_mult
    return i, t_i


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _schedule_json(sched: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    kind, a = sched
    out: dict[str, Any] = {"name": kind}
    for k, v in a.items():
        out[k] = _schedule_json(v) if k == "then" and v is not None else _plain(v)
    return out


def train_summary(spec: TrainSpec) -> dict[str, Any]:
    """The `train` object of `dslc summary --json`: what a tool needs to make a data file and
    to know how the model will be trained. Shapes keep their symbols (the sample dim first)."""
    return {
        "name": spec.name,
        "data": [{"name": a.name, "role": a.role, "dtype": a.type.dtype,
                  "shape": [int(d) if D.as_dim(d).is_Integer else D.fmt(d)
                            for d in a.type.shape],
                  **({"classes": a.classes} if a.classes is not None else {})}
                 for a in spec.data],
        "optimizer": {"name": spec.optimizer, **{k: _plain(v) for k, v in
                                                 spec.optimizer_args.items()}},
        "schedule": _schedule_json(spec.schedule),
        "batch": "full" if spec.full_graph else spec.batch, "epochs": spec.epochs,
        "steps": spec.steps,
        "shuffle": spec.shuffle, "validation": spec.validation, "seed": spec.seed,
        "clip": list(spec.clip) if spec.clip else None,
        "metrics": [m.name for m in spec.metrics],
        "no_weight_decay": list(spec.no_weight_decay),
        "early_stop": spec.early_stop,
    }
