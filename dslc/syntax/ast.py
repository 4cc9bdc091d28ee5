"""AST: the typed tree the parser produces; every node carries its source span."""

from __future__ import annotations

from typing import Union

from pydantic import BaseModel, ConfigDict

from dslc.diagnostics import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    span: Span


# ---- expressions -------------------------------------------------------------------------


class Number(Node):
    value: int | float
    text: str


class String(Node):
    value: str


class Bool(Node):
    value: bool


class Name(Node):
    name: str


class TupleLit(Node):
    items: list[Expr]


class ListLit(Node):
    items: list[Expr]


class BinOp(Node):
    op: str  # + - * / // % @ ** == != < <= > >= and or
    left: Expr
    right: Expr


class UnaryOp(Node):
    op: str  # - + not
    operand: Expr


class Slice(Node):
    start: Expr | None
    stop: Expr | None


class Index(Node):
    value: Expr
    items: list[Union[Expr, Slice]]


class Attribute(Node):
    value: Expr
    attr: str


class Kwarg(Node):
    name: str
    value: Expr


class Call(Node):
    func: str
    func_span: Span
    args: list[Expr]
    kwargs: list[Kwarg]
    label: str | None = None  # `-> conv2d(...) as c1` names the layer


class Pipe(Node):
    """`source -> stage`: the stage is a Call whose first input is `source`."""

    source: Expr
    stage: Call


class Scan(Node):
    """`scan cell(args) over xs from states [steps n] [along d] [reverse]`: a recurrence."""

    cell: Call
    over: list[Expr]
    init: list[Expr]
    steps: Expr | None = None
    along: Expr | None = None
    reverse: bool = False


class Conditional(Node):
    """`then if cond else orelse`: only the branch the condition picks is elaborated."""

    cond: Expr
    then: Expr
    orelse: Expr


Expr = Union[Number, String, Bool, Name, TupleLit, ListLit, BinOp, UnaryOp, Index, Attribute,
             Call, Pipe, Scan, Conditional]


# ---- statements --------------------------------------------------------------------------


class TensorType(Node):
    dtype: str
    dtype_span: Span
    dims: list[Expr]


class InputDecl(Node):
    name: str
    type: TensorType | None


class OutputItem(Node):
    name: str
    value: Expr | None


class OutputDecl(Node):
    items: list[OutputItem]


class ConstDecl(Node):
    name: str
    type: TensorType
    value: Expr


class Assign(Node):
    targets: list[str]
    value: Expr


class Repeat(Node):
    count: Expr
    index: str | None
    body: list[Stmt]
    label: str | None = None


class If(Node):
    cond: Expr
    body: list[Stmt]
    orelse: list[Stmt]


class Assert(Node):
    cond: Expr
    message: str | None


Stmt = Union[InputDecl, OutputDecl, ConstDecl, Assign, Repeat, If, Assert]


# ---- definitions -------------------------------------------------------------------------


class Param(Node):
    name: str
    type: str
    type_span: Span
    default: Expr | None


class Definition(Node):
    kind: str  # "model" or "block"
    name: str
    name_span: Span
    params: list[Param]
    body: list[Stmt]


class Import(Node):
    path: str


class Module(Node):
    """One parsed `.dl` file."""

    file: str
    imports: list[Import]
    definitions: list[Definition]
    trains: list = []  # TrainDef (dslc/syntax/train_ast.py), in file order


for _cls in (TupleLit, ListLit, BinOp, UnaryOp, Slice, Index, Attribute, Kwarg, Call, Pipe, Scan,
             Conditional, Repeat, If, Assign, OutputItem, ConstDecl, TensorType, Param,
             Definition, Assert):
    _cls.model_rebuild()
