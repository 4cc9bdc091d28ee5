"""Optimisation passes over the IR graph: one pass per file, pipelines per -O level."""

from __future__ import annotations

from collections.abc import Callable

from dslc.diagnostics import Diagnostic, DslcError, Span, did_you_mean
from dslc.ir import Graph
from dslc.passes.result import Change, ParamFold, PassResult

__all__ = ["Change", "ParamFold", "PassResult", "optimize", "pass_names", "pipeline"]


Pass = Callable[[Graph], PassResult]


def _registry() -> dict[str, Pass]:
    from dslc.passes import (
        channels_last,
        cse,
        dead_code,
        fold_batch_norm,
        fold_constants,
        identity,
        inference,
    )

    return {
        "dead_code": dead_code.run,
        "cse": cse.run,
        "fold_constants": fold_constants.run,
        "identity": identity.run,
        "inference": inference.run,
        "fold_batch_norm": fold_batch_norm.run,
        "channels_last": channels_last.run,
    }


# -O1: clean-ups that keep training semantics. -O2: inference folding on top.
LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("fold_constants", "identity", "cse", "dead_code"),
    2: ("fold_constants", "identity", "cse", "inference", "fold_batch_norm", "dead_code",
        "channels_last"),
}
INFERENCE_ONLY = {"inference", "fold_batch_norm"}


def pass_names() -> list[str]:
    return list(_registry())


def pipeline(level: int = 1, passes: list[str] | None = None) -> tuple[str, ...]:
    if passes is not None:
        known = _registry()
        for p in passes:
            if p not in known:
                raise DslcError(Diagnostic("E0701", f"unknown pass '{p}'", Span("<args>", 0, 0,
                                                                                 0, 0),
                                           expected=", ".join(known), found=p,
                                           hint=did_you_mean(p, known)))
        return tuple(passes)
    if level not in LEVELS:
        raise DslcError(Diagnostic("E0702", f"unknown optimisation level -O{level}",
                                   Span("<args>", 0, 0, 0, 0), expected="-O0, -O1 or -O2",
                                   found=f"-O{level}"))
    return LEVELS[level]


def optimize(graph: Graph, names: tuple[str, ...], after: str | None = None,
             ) -> tuple[Graph, list[Change], list[ParamFold]]:
    """Run passes in order (stopping after `after` when given); the input graph is untouched."""
    registry = _registry()
    changes: list[Change] = []
    folds: list[ParamFold] = []
    g = graph
    for name in names:
        res = registry[name](g.copy())
        g = res.graph
        changes += res.changes
        folds += res.folds
        if name == after:
            break
    return g, changes, folds
