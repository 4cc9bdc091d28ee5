"""docs/ops.md: generated from the registry, committed up to date, and its examples load."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

import dslc
from dslc.ops import docs
from dslc.ops.registry import ALL_OPS, OPS

ROOT = Path(__file__).resolve().parents[2]


def test_committed_docs_are_up_to_date():
    committed = (ROOT / "docs" / "ops.md").read_text(encoding="utf-8")
    assert committed == docs.generate(), "docs/ops.md is stale: run python -m dslc.ops.docs"


def test_generate_is_deterministic_and_covers_every_op():
    text = docs.generate()
    assert text == docs.generate()
    for op in ALL_OPS:
        assert text.count(f"\n### `{op.name}`\n") == 1, op.name
    assert f"{len(ALL_OPS)} ops in" in text


def test_main_writes_and_checks(tmp_path):
    out = tmp_path / "ops.md"
    assert docs.main(["--check", "--out", str(out)]) == 1  # missing
    assert docs.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == docs.generate()
    assert docs.main(["--check", "--out", str(out)]) == 0
    out.write_text("stale\n", encoding="utf-8")
    assert docs.main(["--check", "--out", str(out)]) == 1


def test_values_and_types_in_the_language():
    assert [docs.dsl_value(v) for v in (True, 3, -1, 0.5, "tanh", (2, 2), (1,))] == [
        "true", "3", "-1", "0.5", '"tanh"', "(2, 2)", "(1,)"]
    with pytest.raises(ValueError):
        docs.dsl_value(None)
    assert docs.type_text(int | tuple[int, int]) == "int | (int, int)"
    assert docs.type_text(tuple[int, ...] | None) == "(int, ...) | none"
    assert docs.type_text(Literal["a", "b"]) == '"a" | "b"'


EXAMPLES = [pytest.param(op.name, i, id=f"{op.name}-{i}")
            for op in ALL_OPS for i in range(len(op.examples))]


@pytest.mark.parametrize("name,index", EXAMPLES)
def test_usage_loads_as_the_example(name, index):
    """Each Example written in the language (as the docs show the first) elaborates to the op
    by its DSL keyword, with the example's attrs and the shape rule's types."""
    op = OPS[name]
    ex = op.examples[index]
    src = docs.usage(op, ex)
    prog = dslc.load("example.dl", text=src, opt_level=0)  # the elaborated op, unoptimised
    nodes = [n for n in prog.graph.order() if n.op not in ("input", "const")]
    assert [n.op for n in nodes] == [name], src
    node = nodes[0]
    attrs = op.attrs(**ex.attrs)
    assert node.attrs == attrs, src
    assert node.types == op.shape(attrs, list(ex.inputs)), src
    assert [prog.graph.nodes[r[0]].types[0] for r in node.inputs] == list(ex.inputs), src
