"""AST of `train` sections (parser output, checked by dslc/train_check.py)."""

from __future__ import annotations

from dslc.diagnostics import Span
from dslc.syntax.ast import Expr, Node, TensorType


class TrainTarget(Node):
    """`target t: i64[B]`: an array of the data file that the loss compares outputs with."""

    name: str
    name_span: Span
    type: TensorType


class TrainSetting(Node):
    """`name = expression` inside a train section (`batch = 32`, `loss = mse(y, t)`)."""

    key: str
    key_span: Span
    value: Expr


class TrainDef(Node):
    """`train [NAME] [for MODEL] { ... }`."""

    name: str | None
    name_span: Span
    model: str | None
    model_span: Span | None
    targets: list[TrainTarget]
    settings: list[TrainSetting]


for _cls in (TrainTarget, TrainSetting, TrainDef):
    _cls.model_rebuild()
