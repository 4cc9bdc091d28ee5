"""Training: the train sections of a file, for one model (dslc/train_check.py) or for several
trained against each other (dslc/train_multi.py); the checker's entry for the CLI and Program.

It sits above both checkers so that neither imports the other's caller: train_multi builds on
train_check, and this module picks between them."""

from __future__ import annotations

from dslc.ir import Graph
from dslc.sources import Program
from dslc.syntax.train_ast import TrainDef
from dslc.train_check import TrainSpec, pick_train, train_defs
from dslc.train_check import check_train as check_one
from dslc.train_multi import check_multi_train


def check_train(prog: Program, graph: Graph, name: str | None = None,
                tdef: TrainDef | None = None) -> TrainSpec:
    """The one-model train section `name` (or the default) for `graph`; a multi-model section
    reports its own diagnostics first, then that only the PyTorch program trains it (E0638)."""
    t = tdef or pick_train(prog, graph.model, name)
    if t.is_multi:
        check_multi_train(prog, t, graph)
    return check_one(prog, graph, tdef=t)


def check_file_trains(prog: Program, graph: Graph) -> list:
    """Every train section of the root file that applies to this model (for `dslc check`);
    a multi-model section is checked with each of its models."""
    out: list = []
    for t in train_defs(prog):
        if t.is_multi and (t.model in (None, graph.model)
                           or graph.model in [m for m, _ in t.models]):
            out.append(check_multi_train(prog, t, graph))
        elif t.model in (None, graph.model):
            out.append(check_one(prog, graph, tdef=t))
    return out
