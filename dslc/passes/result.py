"""What a pass returns (its changes and parameter folds); the pass modules import it from
here, not from the package, so the package can list them without an import cycle."""

from __future__ import annotations

from dataclasses import dataclass, field

from dslc.diagnostics import Span
from dslc.ir import Graph


@dataclass(frozen=True)
class Change:
    """What a pass did, and where in the spec."""

    pass_name: str
    message: str
    span: Span


@dataclass(frozen=True)
class ParamFold:
    """How a parameter file of the unoptimised program becomes this program's: applied when
    parameters are loaded, by the interpreter and by the generated module alike.

    kind "drop": `keys` are no longer used. kind "batch_norm": the layer `target` absorbs the
    batch norm `source` (keys `source.weight`, `.bias`, `.running_mean`, `.running_var`,
    `.num_batches_tracked`) with `eps`; `had_bias` says whether `target.bias` existed.
    """

    kind: str
    keys: tuple[str, ...] = ()
    target: str = ""
    source: str = ""
    eps: float = 0.0
    had_bias: bool = True


@dataclass
class PassResult:
    graph: Graph
    changes: list[Change] = field(default_factory=list)
    folds: list[ParamFold] = field(default_factory=list)
