"""IR as readable text: what `dslc ir` prints and the passes' golden tests compare."""

from __future__ import annotations

from pathlib import Path

from dslc import dims as D
from dslc.ir import Graph, IRNode
from dslc.ops.registry import OPS
from dslc.regions import regions


def _attrs_text(node: IRNode) -> str:
    if node.attrs is None:
        return ""
    op = OPS.get(node.op)
    if op is not None and op.ir_attrs is not None:
        return op.ir_attrs(node.attrs)
    parts = []
    for name, field in type(node.attrs).model_fields.items():
        value = getattr(node.attrs, name)
        if value == field.default:
            continue
        parts.append(f"{name}={value!r}" if not hasattr(value, "free_symbols")
                     else f"{name}={D.fmt(value)}")
    return "[" + ", ".join(parts) + "]" if parts else ""


def format_ir(graph: Graph, indent: str = "  ") -> str:
    """One line per node, in execution order: `%id = op[attrs](inputs) layer : types  # loc`."""
    layout = "" if graph.memory_format == "contiguous" else f" [{graph.memory_format}]"
    lines = [f"{indent[:-2]}model {graph.model}{layout}"]
    for node in graph.order():
        loc = f"{Path(node.span.file).name}:{node.span.line}" if node.span.line else ""
        types = ", ".join(str(t) for t in node.types)
        if node.op == "input":
            lines.append(f"{indent}%{node.id} = input {node.name} : {types}  # {loc}")
            continue
        args = ", ".join(f"%{i}" + (f".{p}" if p else "") for i, p in node.inputs)
        layer = f" {node.module}" if node.module else ""
        lines.append(f"{indent}%{node.id} = {node.op}{_attrs_text(node)}({args}){layer} : "
                     f"{types}  # {loc}")
        for region in regions(node):
            lines.append(format_ir(region, indent + "    ").rstrip("\n"))
    for name, (nid, port) in graph.outputs:
        lines.append(f"{indent}output {name} = %{nid}" + (f".{port}" if port else ""))
    return "\n".join(lines) + "\n"


