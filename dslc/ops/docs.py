"""Op reference: docs/ops.md generated from the op registry (`python -m dslc.ops.docs`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
import typing
from pathlib import Path

from pydantic_core import PydanticUndefined

from dslc import dims as D
from dslc.ops.base import Example, Op, no_params
from dslc.ops.registry import ALL_OPS

OUT = Path(__file__).resolve().parents[2] / "docs" / "ops.md"

# Families in reading order, with their section titles (the render colour groups).
FAMILY_TITLES: dict[str, str] = {
    "dense": "Dense layers",
    "conv": "Convolutions",
    "pool": "Pooling",
    "norm": "Normalisation",
    "act": "Activations",
    "arith": "Arithmetic",
    "shape": "Shape, joining and indexing",
    "reg": "Regularisation",
    "embed": "Embeddings",
    "spatial": "Spatial transforms",
    "sample": "Sampling",
    "attn": "Attention",
    "rnn": "Recurrences",
    "graph": "Graph layers",
    "loss": "Losses",
    "const": "Constants",
}


# Ops made by the language's own syntax rather than by a call; the elaborator fills their
# attributes, so they have no Example and no attribute table here.
CONSTRUCTS: dict[str, str] = {
    "const": "const k: f32[2, 2] = [[1, 0], [0, 1]]",
    "scan": "ys, h = scan cell(args) over x from h0",
}


# ---- values and types as the language writes them ---------------------------------------


def dsl_value(v) -> str:
    """A Python attribute value as a DSL literal (`true`, `"tanh"`, `(2, 2)`)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{v!r} has no literal in the language")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (tuple, list)):
        items = [dsl_value(x) for x in v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise ValueError(f"{v!r} has no literal in the language")


def type_text(ann) -> str:
    """An attribute's annotation in the language's words: `int | (int, int)`."""
    if ann is type(None):
        return "none"
    if ann is typing.Any:
        return "any"
    names = {int: "int", float: "float", bool: "bool", str: "string"}
    if ann in names:
        return names[ann]
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(dsl_value(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"({type_text(args[0])}, ...)"
        return "(" + ", ".join(type_text(a) for a in args) + ")"
    return getattr(ann, "__name__", str(ann))


def default_text(field) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "unset"
    try:
        return f"`{dsl_value(value)}`"
    except ValueError:
        return f"`{value!r}`"


def inputs_text(op: Op) -> str:
    if op.max_inputs == op.min_inputs:
        return str(op.min_inputs)
    if op.max_inputs is None:
        return f"{op.min_inputs} or more"
    return f"{op.min_inputs} to {op.max_inputs}"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


# ---- a DSL program from an Example -------------------------------------------------------


def input_names(n: int) -> list[str]:
    return ["x"] if n == 1 else [f"x{i}" for i in range(n)]


def _subscript_text(op: Op, ex: Example) -> str:
    """`index` is written `x[i, a:b]`, not called."""
    items = []
    for kind, p, q in ex.attrs["items"]:
        if kind == "index":
            items.append(str(p))
        else:
            items.append(f"{'' if p is None else p}:{'' if q is None else q}")
    return f"{input_names(len(ex.inputs))[0]}[{', '.join(items)}]"


# Ops the language writes with their own syntax rather than as a call.
SYNTAX = {"index": _subscript_text}


def call_text(op: Op, ex: Example) -> str:
    """The op's call in the language: positional attrs while they run in order, then kwargs."""
    if op.name in SYNTAX:
        return SYNTAX[op.name](op, ex)
    fields = op.attrs.model_fields
    given = {k: v for k, v in ex.attrs.items()
             if not (v is None and fields[k].default is None)}
    args = []
    for name in op.positional:
        if name not in given:
            break
        args.append(dsl_value(given.pop(name)))
    args += [f"{k}={dsl_value(v)}" for k, v in given.items()]
    names = input_names(len(ex.inputs))
    if len(names) == 1:
        return f"{names[0]} -> {op.name}" + (f"({', '.join(args)})" if args else "")
    return f"{op.name}({', '.join(names + args)})"


def usage(op: Op, ex: Example) -> str:
    """A whole model that applies the op to the example's inputs; it loads with dslc.load."""
    attrs = op.attrs(**ex.attrs)
    n_out = len(op.shape(attrs, list(ex.inputs)))
    outs = ["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)]
    lines = ["model example {"]
    for name, t in zip(input_names(len(ex.inputs)), ex.inputs):
        lines.append(f"  input {name}: {t.dtype}{D.fmt_shape(t.shape)}")
    lines.append(f"  {', '.join(outs)} = {call_text(op, ex)}")
    lines.append(f"  output {', '.join(outs)}")
    lines.append("}")
    return "\n".join(lines)


def param_text(op: Op) -> str:
    """Parameter and buffer names over all examples (some depend on attrs, like `bias`)."""
    if op.params is no_params:
        return "none"
    params: dict[str, bool] = {}
    for ex in op.examples:
        for name, spec in op.params(op.attrs(**ex.attrs), list(ex.inputs)).items():
            params.setdefault(name, spec.buffer)
    if not params:
        return "none"
    plain = [f"`{n}`" for n, buf in params.items() if not buf and n]
    bufs = [f"`{n}`" for n, buf in params.items() if buf and n]
    text = ", ".join(plain) or "none"
    if bufs:
        text += "; buffers " + ", ".join(bufs)
    return text


# ---- the document ------------------------------------------------------------------------


def families() -> list[tuple[str, list[Op]]]:
    order = list(FAMILY_TITLES) + sorted({op.family for op in ALL_OPS} - set(FAMILY_TITLES))
    return [(f, [op for op in ALL_OPS if op.family == f]) for f in order
            if any(op.family == f for op in ALL_OPS)]


def op_section(op: Op) -> list[str]:
    out = [f"### `{op.name}`", "", op.doc.strip(), ""]
    facts = [("inputs", inputs_text(op)),
             ("positional", ", ".join(f"`{p}`" for p in op.positional) or "none"),
             ("params", param_text(op))]
    if op.module_prefix:
        facts.append(("layer names", f"`{op.module_prefix}1`, `{op.module_prefix}2`, ..."))
    if op.random:
        facts.append(("random", "draws random numbers"))
    out += ["| | |", "|---|---|"] + [f"| {k} | {cell(v)} |" for k, v in facts] + [""]
    if op.name in CONSTRUCTS:
        return out + ["Written with its own syntax, not called:", "", "```",
                      CONSTRUCTS[op.name], "```", ""]
    fields = op.attrs.model_fields
    if fields:
        out += ["| attribute | type | default |", "|---|---|---|"]
        out += [f"| `{name}` | {cell(type_text(f.annotation))} | {cell(default_text(f))} |"
                for name, f in fields.items()]
        out.append("")
    if op.examples:
        ex = op.examples[0]
        note = " (in training mode)" if ex.train else ""
        out += [f"Example{note}:", "", "```", usage(op, ex), "```", ""]
    return out


def generate() -> str:
    """The whole of docs/ops.md."""
    fams = families()
    out = ["# Ops", "",
           "Generated from the op registry (`dslc/ops/registry.py`) by "
           "`python -m dslc.ops.docs`; do not edit by hand.", "",
           f"{len(ALL_OPS)} ops in {len(fams)} families. A call `x -> op(a, b, k=v)` is "
           "`op(x, a, b, k=v)`: leading tensors are the inputs, then the positional "
           "attributes in order, then attributes by name.", ""]
    for fam, ops in fams:
        title = FAMILY_TITLES.get(fam, fam)
        out.append(f"- {title} (`{fam}`): " + ", ".join(f"`{op.name}`" for op in ops))
    out.append("")
    for fam, ops in fams:
        out += [f"## {FAMILY_TITLES.get(fam, fam)}", ""]
        for op in ops:
            out += op_section(op)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dslc.ops.docs", description=__doc__)
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (docs/ops.md)")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when the file is out of date")
    args = ap.parse_args(argv)
    text = generate()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        if current != text:
            print(f"{args.out} is out of date: run python -m dslc.ops.docs", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
