"""Structure rules of the dslc package (DESIGN.md, issue #12): passes and back ends ask an op
for its traits and never match op names in lists of their own, and no dslc module imports
itself round a cycle.

What the op-name rule covers: a comparison (`==`, `!=`, `in`, `not in`), a `match` case, or a
lookup in a module-level table, between an IR node's `.op` and a registered op name (written
out, or held in a module-level tuple, list, set or dict). Exempt, and why:
- dslc/ops/: an op's own file is where its name belongs (the registry and the op docs index
  the ops by name).
- the ONNX importer (dslc/onnx_import*.py) and exporter (dslc/backends/onnx_*.py): they
  translate between ONNX op types and dslc ops, and that mapping is by name by nature.
- `input` is the IR's own graph-input node (dslc/ir.py), not an op: comparing with it asks the
  IR, not an op list. AST operators (`e.op == "+"`) are syntax, and none is an op name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from dslc.ops.registry import OPS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dslc"


EXEMPT = ("dslc/ops/", "dslc/onnx_import", "dslc/backends/onnx_")  # see the docstring


def _exempt(rel: str) -> bool:
    return rel.startswith(EXEMPT)


def _sources() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8"))
            for p in sorted(PACKAGE.rglob("*.py"))]


# ---- op names ------------------------------------------------------------------------------


def _names_in(node: ast.AST, tables: dict[str, set[str]]) -> set[str]:
    """Registered op names a comparison's other side holds: a literal, a literal collection,
    or a module-level constant bound to one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & OPS.keys()
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_names_in(e, tables) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.Name):
        return tables.get(node.id, set())
    return set()


def _is_op_field(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "op"


def _tables(tree: ast.Module) -> dict[str, set[str]]:
    """Module-level names bound to literal collections (or dicts keyed by) op names."""
    out: dict[str, set[str]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
                value.func.id in ("frozenset", "set", "tuple") and value.args:
            value = value.args[0]
        if isinstance(value, ast.Dict):
            names = set().union(*(_names_in(k, {}) for k in value.keys if k is not None)) \
                if value.keys else set()
        else:
            names = _names_in(value, {})
        for t in targets:
            if isinstance(t, ast.Name) and names:
                out[t.id] = names
    return out


def op_name_matches(source: str) -> list[tuple[int, str]]:
    """(line, op names) of every place the source matches a node's `.op` against op names."""
    tree = ast.parse(source)
    tables = _tables(tree)
    found: list[tuple[int, str]] = []

    def note(node: ast.AST, names: set[str]) -> None:
        if names:
            found.append((node.lineno, ", ".join(sorted(names))))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_op_field(s) for s in sides):
                note(node, set().union(*(_names_in(s, tables) for s in sides)))
        elif isinstance(node, ast.Match) and _is_op_field(node.subject):
            for case in node.cases:
                for pat in ast.walk(case.pattern):
                    if isinstance(pat, ast.MatchValue):
                        note(pat, _names_in(pat.value, tables))
        elif isinstance(node, ast.Subscript) and _is_op_field(node.slice) and \
                isinstance(node.value, ast.Name):
            note(node, tables.get(node.value.id, set()))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "get" and isinstance(node.func.value, ast.Name) and \
                node.args and _is_op_field(node.args[0]):
            note(node, tables.get(node.func.value.id, set()))
    return sorted(found)


def test_the_op_name_check_sees_each_form():
    src = '''
FOLDABLE = ("conv1d", "linear")
LOWER = {"relu": 1}
def f(node, layer, e):
    if node.op == "scan":
        pass
    if layer.op not in FOLDABLE:
        pass
    if node.op in {"transpose", "permute"}:
        pass
    x = LOWER[node.op] + LOWER.get(layer.op, 0)
    match node.op:
        case "reshape":
            pass
    if node.op == "input" or e.op == "+" or node.kind == "scan":
        pass
'''
    assert op_name_matches(src) == [(5, "scan"), (7, "conv1d, linear"),
                                    (9, "permute, transpose"), (11, "relu"), (11, "relu"),
                                    (13, "reshape")]


def test_the_exemptions_are_the_documented_ones():
    assert _exempt("dslc/ops/scan.py") and _exempt("dslc/onnx_import_graph.py")
    assert _exempt("dslc/backends/onnx_lower_core.py")
    assert not _exempt("dslc/render.py") and not _exempt("dslc/passes/identity.py")
    assert not _exempt("dslc/backends/torch_codegen.py")


def test_no_stage_matches_op_names():
    """An op's facts live on its record (dslc/ops/base.py `Op`): a stage that needs one asks
    the op (`OPS[node.op].regions`, `.view`, `.absorbs_norm`, ...)."""
    bad = [f"{rel}:{line}: compares a node's op with {names}"
           for rel, src in _sources() if not _exempt(rel)
           for line, names in op_name_matches(src)]
    assert bad == [], "\n".join(bad)


# ---- import cycles -------------------------------------------------------------------------


def _module_name(rel: str) -> str:
    parts = rel[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import statements under `if TYPE_CHECKING:` (never run, so never a cycle)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and \
                node.test.id == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def import_graph(sources: list[tuple[str, str]]) -> nx.DiGraph:
    """Module -> the dslc modules it imports, anywhere in the file (an import inside a function
    runs too, only later)."""
    modules = {_module_name(rel): rel for rel, _ in sources}
    graph = nx.DiGraph()
    for rel, src in sources:
        me = _module_name(rel)
        graph.add_node(me)
        tree = ast.parse(src)
        skip = _type_checking_only(tree)
        package = me if rel.endswith("__init__.py") else me.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            for t in targets:
                if t in modules and t != me:
                    graph.add_edge(me, t)
    return graph


def test_the_import_graph_sees_lazy_and_relative_imports():
    g = import_graph([
        ("dslc/a.py", "def f():\n    from dslc.b import x\n"),
        ("dslc/b.py", "from . import c\n"),
        ("dslc/c.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from dslc.a import f\nimport dslc.a\n"),
    ])
    assert sorted(g.edges) == [("dslc.a", "dslc.b"), ("dslc.b", "dslc.c"), ("dslc.c", "dslc.a")]




def test_no_import_cycle():
    graph = import_graph(_sources())
    assert graph.number_of_edges() > 50  # the walk found the package's imports at all
    cycles = sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)
    assert cycles == [], f"import cycles among dslc modules: {cycles}"
