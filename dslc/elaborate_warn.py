"""Elaboration's warnings: likely mistakes that still give a valid model (codes W00xx in
docs/errors.md; `--Werror` makes them errors). A part of `Elaborator`, dslc/elaborate.py."""

from __future__ import annotations

import keyword
import re

from dslc import dims as D
from dslc.diagnostics import SOURCES, Span
from dslc.elaborate_call import BUILTINS
from dslc.names import layer_key
from dslc.ops.base import Op
from dslc.ops.registry import OPS
from dslc.values import TensorVal

LITERALS = ("true", "false")
# A `dense` op (linear) mixes the last axis only. Fed a tensor whose last axis is spatial, it
# is almost always a forgotten `flatten`: these families make spatial axes...
SPATIAL_FAMILIES = frozenset({"conv", "pool"})
# ...and an op of another family that keeps the rank keeps them where they are (activations,
# norms, dropout, arithmetic, padding, upsampling), so the walk back to the maker goes through
# it; these families rearrange or replace the axes, and end the walk.
REARRANGING_FAMILIES = frozenset({"shape", "dense", "embed", "rnn", "attn", "graph", "loss"})
WALK_LIMIT = 64  # nodes walked back from a dense op's input looking for its maker


class Warnings:
    """Warnings for `Elaborator`: each check records through `self.warn`, once per place."""

    def warn_shadowing(self, name: str, span: Span, callable_too: bool = True) -> None:
        """W0002 for a name `true`/`false` (the literal always wins in an expression), W0003
        for a name that is also an op or built-in function (a call with that name still
        means the op). Hyperparameters skip W0003: they mirror torch's keyword arguments
        (`dropout: float`), and a call cannot reach them anyway."""
        if name in LITERALS:
            self.warn("W0002", f"'{name}' names a value here, but `{name}` in an expression is "
                      "always the literal", name_span(span, name),
                      found=f"a definition of '{name}'",
                      hint=f"choose another name, e.g. '{name}_'")
        elif callable_too and (name in OPS or name in BUILTINS):
            what = "op" if name in OPS else "built-in function"
            article = "an" if what == "op" else "a"
            self.warn("W0003", f"'{name}' is also the name of {article} {what}; `{name}(...)` and "
                      f"`-> {name}` still call the {what}, not this value",
                      name_span(span, name),
                      found=f"a definition of '{name}'",
                      hint=f"choose another name, e.g. '{name}_out'")

    def warn_renamed_label(self, name: str, span: Span) -> None:
        """W0004: a layer name that torch would refuse (an nn.Module attribute such as
        `training`, a Python keyword) is renamed in the state_dict."""
        key = layer_key(name)
        if key != name:
            self.warn("W0004", f"layer name '{name}' becomes '{key}' in the state_dict and the "
                      "generated module", name_span(span, name, after_as=True),
                      expected="a name torch.nn.Module can register as it is",
                      found=f"'{name}', {_why_renamed(name)}",
                      hint=f"choose another name, e.g. '{name}_layer', so the keys read as "
                      "written")

    def warn_dense_over_spatial(self, op: Op, tensors: list[TensorVal], span: Span) -> None:
        """W0001: a dense op over a tensor of rank > 2 whose last axis is spatial. Precisely:
        the input's rank is 3 or more and either it was made by a conv or pool op (looking
        back through ops that keep the rank and the layout: activations, norms, dropout,
        arithmetic, padding, upsampling; not reshapes or permutes), or
        its rank is 4 or more and its last axis has size 1 (`[B, C, 1, 1]`). A `[B, T, F]`
        sequence (from an input, an embedding, attention, a recurrence) is not flagged."""
        if op.family != "dense" or not tensors:
            return
        t = tensors[0].type
        if t.rank < 3:
            return
        maker = self.spatial_maker(tensors[0])
        last_is_one = D.equal(t.shape[-1], D.const(1)) is True
        if maker is None and not (t.rank >= 4 and last_is_one):
            return
        why = (f"its last axis is a spatial axis of the output of '{maker}'" if maker
               else "its last axis has size 1")
        self.warn("W0001", f"'{op.name}' mixes only the last axis of its input, and {why}; "
                  "is a `flatten` missing?", span,
                  expected="a [B, features] input (or a [B, T, F] sequence)",
                  found=str(t),
                  notes=[("input made here", tensors[0].origin)],
                  hint="flatten first: `-> flatten -> linear(...)`")

    def spatial_maker(self, v: TensorVal) -> str | None:
        ref = v.ref
        for _ in range(WALK_LIMIT):
            node = self.graph.nodes.get(ref[0])
            if node is None:
                return None
            op = OPS.get(node.op)
            if op is None:
                return None
            if op.family in SPATIAL_FAMILIES:
                return node.op
            if op.family in REARRANGING_FAMILIES or not node.inputs:
                return None
            src = node.inputs[0]
            src_node = self.graph.nodes.get(src[0])
            if src_node is None or src_node.types[src[1]].rank != node.types[ref[1]].rank:
                return None
            ref = src
        return None


def _why_renamed(name: str) -> str:
    if keyword.iskeyword(name):
        return "a Python keyword"
    if name.startswith("__"):
        return "a name with a leading '__', which Python mangles"
    return "an attribute of torch.nn.Module"


def name_span(span: Span, name: str, after_as: bool = False) -> Span:
    """The span of `name` within a statement's one-line span (the statement's own span when
    the name cannot be found there): the caret sits under the name, not the statement."""
    line = SOURCES.line(span.file, span.line)
    if line is None or span.line <= 0:
        return span
    end = span.end_column - 1 if span.end_line == span.line else len(line)
    m = None
    for pattern in ([r"\bas\s+("] if after_as else []) + [r"(?<![\w.])("]:
        m = re.compile(pattern + re.escape(name) + r")(?!\w)").search(
            line, span.column - 1, max(end, span.column))
        if m is not None:
            break
    if m is None:
        return span
    return Span(span.file, span.line, m.start(1) + 1, span.line, m.end(1) + 1)
