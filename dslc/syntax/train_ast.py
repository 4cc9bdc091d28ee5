"""AST of `train` sections (parser output, checked by dslc/train_check.py)."""

from __future__ import annotations

from dslc.diagnostics import Span
from dslc.syntax.ast import Expr, Node, TensorType


class TrainTarget(Node):
    """`target t: i64[B]`: an array of the data file that the loss compares outputs with."""

    name: str
    name_span: Span
    type: TensorType
    kind: str = "target"  # or "noise": drawn N(0, 1) every step (multi-model sections)


class TrainSetting(Node):
    """`name = expression` inside a train section (`batch = 32`, `loss = mse(y, t)`)."""

    key: str
    key_span: Span
    value: Expr


class TrainUpdate(Node):
    """`update MODEL { loss = ...  optimizer = ... }`: one model's step in a multi-model
    section (dslc/train_multi.py); nested declarations are kept to be refused there."""

    model: str
    model_span: Span
    targets: list[TrainTarget]
    settings: list[TrainSetting]
    updates: list[TrainUpdate]


class TrainDef(Node):
    """`train [NAME] [for MODEL[, MODEL...]] { ... }`."""

    name: str | None
    name_span: Span
    model: str | None
    model_span: Span | None
    targets: list[TrainTarget]
    settings: list[TrainSetting]
    # A multi-model section (`for generator, discriminator`): every model with its span
    # (`model` is the first), the `noise` declarations and the `update` blocks.
    models: list[tuple[str, Span]] = []
    noises: list[TrainTarget] = []
    updates: list[TrainUpdate] = []

    @property
    def is_multi(self) -> bool:
        return len(self.models) > 1 or bool(self.updates) or bool(self.noises)


for _cls in (TrainTarget, TrainSetting, TrainUpdate, TrainDef):
    _cls.model_rebuild()
