"""Op `const`: a fixed tensor written in the spec (`const k: f32[3, 3] = [...]`), a buffer."""

from __future__ import annotations

from dslc import dims as D
from dslc.ops.base import Attrs, Op, ParamSpec
from dslc.types import TensorType


class ConstAttrs(Attrs):
    dtype: str
    shape: tuple[int, ...]


CONST = Op(
    name="const",
    family="const",
    doc="A constant tensor declared with `const name: dtype[shape] = [...]`; stored as a buffer "
        "so it follows the module to any device.",
    attrs=ConstAttrs,
    min_inputs=0,
    max_inputs=0,
    constant=True,
    shape=lambda a, ins: [TensorType(a.dtype, tuple(D.const(d) for d in a.shape))],
    params=lambda a, ins: {"": ParamSpec(tuple(D.const(d) for d in a.shape), "const",
                                         buffer=True, dtype=a.dtype,
                                         persistent=False)},
    numpy=lambda a, xs, ctx: [ctx.params[""]],
    no_grad="a constant of the program, not a parameter: nothing to differentiate",
    torch_call=lambda a, args, ctx, ins: ctx.module,
    label=lambda a: "x".join(str(d) for d in a.shape),
    examples=(),
)
