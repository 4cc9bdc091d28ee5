"""Tests of dslc.render: DOT text (golden), determinism, clusters, repeats, images."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dslc
from dslc.diagnostics import DslcError
from dslc.ops.registry import OPS
from dslc.render import FAMILY_STYLE, fmt_params, quote, render_bytes, to_dot

ROOT = Path(__file__).resolve().parent.parent

MLP = """
model mlp {
  input x: f32[B, 4]
  h = x -> linear(16) -> relu
  output y = h -> linear(3)
}
"""

# A ResNet-like stack: a residual block repeated, then one more block outside the repeat.
RESNET = """
block res(d: int) {
  input x
  h = x -> linear(d) -> relu
  h = h -> linear(d)
  output y = relu(h + x)
}
model resnet(d: int = 16, n: int = 3) {
  input x: f32[B, 8]
  h = x -> linear(d) as stem -> relu
  stack: repeat n {
    h = res(h, d)
  }
  h2 = h -> res(d)
  out = h2 -> linear(3) as head
  output out, h
}
"""

# Nested repeats, a block inside them, an iteration that differs (the `if`), a constant and a
# non-ASCII name.
NESTED = """
block mlp2(d: int) {
  input x
  output y = x -> linear(d) -> gelu
}
model deep_net(d: int = 8, n: int = 2) {
  input x: f32[B, 5, 4]
  input größe: f32[B, 5, 8]
  const scale: f32[8] = [1, 2, 3, 4, 5, 6, 7, 8]
  h = x -> linear(d) as stem
  outer: repeat n as i {
    if i == 0 {
      h = h + größe
    }
    inner: repeat 2 {
      h = h -> mlp2(d) -> tanh
    }
    h = h * scale
  }
  out = h -> flatten(1) -> linear(3) as head
  output out
}
"""

SPECS = {"mlp": MLP, "resnet": RESNET, "nested": NESTED}


def load(name: str, **hparams):
    return dslc.load(f"{name}.dl", text=SPECS[name], hparams=hparams or None)


def node_ids(dot: str) -> list[str]:
    return re.findall(r"^\s*(n\d+) \[", dot, flags=re.M)


def edges(dot: str) -> list[str]:
    return re.findall(r"^\s*(\w+ -> \w+) \[", dot, flags=re.M)


# ---- golden DOT --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("expand", [False, True], ids=["collapsed", "expanded"])
def test_golden_dot(name, expand, golden):
    dot = to_dot(load(name).graph, expand=expand)
    golden(f"render/{name}{'.expanded' if expand else ''}.dot", dot)


# ---- determinism -------------------------------------------------------------------------


def test_two_runs_are_byte_identical():
    for name in SPECS:
        for expand in (False, True):
            a = to_dot(load(name).graph, expand=expand)
            b = to_dot(load(name).graph, expand=expand)
            assert a == b


def test_same_bytes_under_another_hash_seed():
    """Set and dict-hash order must not leak into the text: run in fresh interpreters."""
    script = ("import sys, dslc\n"
              "from tests.test_render import SPECS\n"
              "from dslc.render import to_dot\n"
              "for n in sorted(SPECS):\n"
              "    g = dslc.load(n + '.dl', text=SPECS[n]).graph\n"
              "    sys.stdout.write(to_dot(g) + to_dot(g, expand=True))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                              env=dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for seed in ("0", "12345")]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode("utf-8", "replace")
        outs.append(out)
    here = "".join(to_dot(load(n).graph) + to_dot(load(n).graph, expand=True)
                   for n in sorted(SPECS))
    assert outs[0] == outs[1] == here.encode("utf-8")


def test_no_absolute_paths_in_dot(tmp_path):
    path = tmp_path / "mlp.dl"
    path.write_text(MLP, encoding="utf-8")
    dot = to_dot(dslc.load(path).graph)
    assert str(tmp_path) not in dot
    assert "mlp.dl" not in dot


# ---- content -----------------------------------------------------------------------------


def test_nodes_show_op_attrs_params_and_edge_shapes():
    dot = to_dot(load("mlp").graph)
    # linear(16) on 4 features: 4*16 + 16 = 80 params; linear(3): 16*3 + 3 = 51.
    assert "<b>linear</b> <i>fc1</i><br/><font point-size=\"10\">16</font>" in dot
    assert "80 params" in dot and "51 params" in dot
    assert 'label=" [B, 4]"' in dot and 'label=" [B, 16]"' in dot and 'label=" [B, 3]"' in dot
    # The input is a parallelogram with its type; the output a house with its name.
    assert re.search(r"n0 \[shape=parallelogram.*<b>x</b>.*f32\[B, 4\]", dot)
    assert re.search(r"out0 \[shape=house.*<b>y</b>", dot)
    assert "n3 -> out0" in dot


def test_family_colours_differ():
    dot = to_dot(load("nested").graph)
    for family in ("dense", "act", "arith", "shape", "const"):
        _shape, fill, _border = FAMILY_STYLE[family]
        assert f'fillcolor="{fill}"' in dot, family
    fills = [FAMILY_STYLE[f][1] for f in FAMILY_STYLE]
    assert len(set(fills)) == len(fills)
    # Every family an op uses has a style.
    assert {op.family for op in OPS.values()} <= set(FAMILY_STYLE)


def test_activation_nodes_are_smaller():
    dot = to_dot(load("mlp").graph)
    relu = next(line for line in dot.splitlines() if "<b>relu</b>" in line)
    fc = next(line for line in dot.splitlines() if "<b>linear</b>" in line)
    assert "height=0.3" in relu and "height=0.3" not in fc


def test_blocks_are_labelled_clusters():
    dot = to_dot(load("resnet").graph)
    # The block outside the repeat: its name and instance path.
    assert re.search(r"subgraph cluster_\d+ \{\n\s+label=<<b>res</b> <font[^>]*>res1</font>>",
                     dot)
    g = load("nested").graph
    dot = to_dot(g)
    # Nested frames nest: outer repeat > inner repeat > block, each a cluster inside the last.
    depth = {}
    level = 0
    for line in dot.splitlines():
        if line.strip().startswith("subgraph cluster_"):
            level += 1
        elif line.strip() == "}":
            level -= 1
        m = re.match(r"\s*label=<<b>(\w+)</b>", line)
        if m and level:
            depth[m.group(1)] = level
    # outer's two iterations differ (the `if i == 0`), so each is a run cluster of its own
    # between the repeat and the inner repeat.
    assert depth == {"outer": 1, "inner": 3, "mlp2": 4}


def test_collapsed_repeat_shows_iteration_zero_only():
    g = load("resnet").graph
    collapsed = to_dot(g)
    expanded = to_dot(g, expand=True)
    assert "stack</b> × 3" in collapsed and "stack</b> × 3" in expanded
    # 24 IR nodes; the repeat body has 5, so collapsing hides the 2 later iterations.
    assert len(g.nodes) == 24
    assert len(node_ids(expanded)) == 24
    assert len(node_ids(collapsed)) == 24 - 2 * 5
    # Expanded: one cluster per iteration inside the repeat cluster.
    for i in range(3):
        assert f">stack.{i}</font>>" in expanded
        assert f">stack.{i}</font>>" not in collapsed


def test_collapsed_repeat_stays_connected():
    g = load("resnet").graph
    dot = to_dot(g)
    shown = set(node_ids(dot)) | {"out0", "out1"}
    for e in edges(dot):
        a, b = e.split(" -> ")
        assert a in shown and b in shown, e
    # The repeat's result leaves the cluster border (ltail), to the next block and to output h.
    stack = next(f"cluster_{i}" for i, p in enumerate(g.frames) if p == "stack")
    leaving = [line for line in dot.splitlines() if f"ltail={stack}" in line]
    assert len(leaving) == 3  # into res1's linear, res1's skip add, and output h
    assert any("-> out1" in line for line in leaving)
    # Every drawn node is reachable from the input.
    adj: dict[str, list[str]] = {}
    for e in edges(dot):
        a, b = e.split(" -> ")
        adj.setdefault(a, []).append(b)
    reach, todo = {"n0"}, ["n0"]
    while todo:
        for b in adj.get(todo.pop(), []):
            if b not in reach:
                reach.add(b)
                todo.append(b)
    assert reach == shown


def test_repeat_count_follows_hparam():
    dot = to_dot(load("resnet", n=5).graph)
    assert "stack</b> × 5" in dot
    assert len(node_ids(dot)) == 24 - 2 * 5  # still one iteration drawn
    assert len(node_ids(to_dot(load("resnet", n=5).graph, expand=True))) == 24 + 2 * 5


def test_differing_iterations_are_drawn_as_runs():
    g = load("nested").graph
    dot = to_dot(g)
    # outer.0 has an `add` (the `if i == 0`) that outer.1 lacks: both iterations are drawn, each
    # in a run cluster, and the last one feeds flatten directly.
    assert "<b>× 1</b> <font point-size=\"10\">outer.0</font>" in dot
    assert "<b>× 1</b> <font point-size=\"10\">outer.1</font>" in dot
    flatten = next(n.id for n in g.nodes.values() if n.op == "flatten")
    assert re.search(rf"n\d+ -> n{flatten} \[label=\" \[B, 5, 8\]\"\]", dot)
    assert op_kinds(dot, g) == op_kinds(to_dot(g, expand=True), g)


STAGE = """
model stage(n: int = 4) {
  input x: f32[B, 8]
  h = x -> linear(16) as stem
  blocks: repeat n as i {
    if i == 0 {
      h = h -> linear(16) -> relu
    } else {
      h = h + (h -> linear(16) -> relu)
    }
  }
  output y = h
}
"""


def op_kinds(dot: str, g) -> set[str]:
    return {g.nodes[int(n[1:])].op for n in node_ids(dot)}


def test_a_stage_shows_its_first_iteration_and_the_run_of_the_rest():
    g = dslc.load("stage.dl", text=STAGE).graph
    dot = to_dot(g)
    # MobileNetV2's stage shape: the first iteration without the residual add, then 3 with it.
    assert "<b>× 1</b> <font point-size=\"10\">blocks.0</font>" in dot
    assert "<b>× 3</b> <font point-size=\"10\">blocks.1–3</font>" in dot
    assert "add" in op_kinds(dot, g)
    assert op_kinds(dot, g) == op_kinds(to_dot(g, expand=True), g)
    # 2 runs drawn: stem, linear+relu, linear+relu+add (and the input)
    assert len(node_ids(dot)) == 1 + 1 + 2 + 3


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.dl")), ids=lambda p: p.stem)
def test_collapsing_never_hides_an_op_kind(path):
    from dslc.sources import load_program

    for d in load_program(path).models_in(str(path)):
        g = dslc.load(path, model=d.name).graph
        assert op_kinds(to_dot(g), g) == op_kinds(to_dot(g, expand=True), g), d.name


def test_params_format():
    assert fmt_params(0) == "0"
    assert fmt_params(1234) == "1,234"
    assert fmt_params(999_999) == "999,999"
    assert fmt_params(1_234_567) == "1.2M"
    assert fmt_params(3_400_000_000) == "3.4B"


def test_quote_escapes():
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert quote("a\nb") == '"a\\nb"'


def test_hostile_names_are_escaped_and_dot_accepts_them():
    g = load("mlp").graph
    weird = 'we"ird\\ <b>&amp; größe'
    g.model = weird
    g.nodes[0].name = weird
    dot = to_dot(g)
    # Inside HTML-like labels every markup character is an entity, so no tag is injected.
    assert "label=<<b>we&quot;ird\\ &lt;b&gt;&amp;amp; größe</b>>" in dot
    assert "<b>we&quot;ird\\ &lt;b&gt;&amp;amp; größe</b><br/>" in dot
    assert dot.startswith('digraph "we\\"ird\\\\ <b>&amp; größe" {')
    svg = render_bytes(g, "svg").decode("utf-8")
    assert "größe" in svg and "we&quot;ird\\ &lt;b&gt;&amp;amp;" in svg


# ---- images ------------------------------------------------------------------------------

MAGIC = {"svg": None, "png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_image_formats(fmt):
    data = render_bytes(load("resnet").graph, fmt)
    if fmt == "svg":
        text = data.decode("utf-8")
        assert "<svg" in text[:1000] and text.rstrip().endswith("</svg>")
        assert "stack" in text and "× 3" in text
    else:
        assert data.startswith(MAGIC[fmt])
        assert len(data) > 1000


def test_images_are_reproducible():
    g = load("resnet").graph
    for fmt in ("svg", "pdf"):
        assert render_bytes(g, fmt) == render_bytes(g, fmt), fmt


def test_dot_format_is_the_text():
    g = load("mlp").graph
    assert render_bytes(g, "dot") == to_dot(g).encode("utf-8")
    assert render_bytes(g, "dot", expand=True) == to_dot(g, expand=True).encode("utf-8")


def test_missing_dot_binary_is_a_diagnostic(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no `dot` anywhere
    with pytest.raises(DslcError) as exc:
        render_bytes(load("mlp").graph, "svg")
    d = exc.value.diagnostics[0]
    assert d.code == "E0605"
    assert "graphviz" in d.hint.lower() and "apt-get install graphviz" in d.hint
    # .dot output needs no Graphviz at all.
    assert render_bytes(load("mlp").graph, "dot").startswith(b"digraph")


def test_cli_render(tmp_path):
    from dslc.cli import main

    spec = tmp_path / "resnet.dl"
    spec.write_text(RESNET, encoding="utf-8")
    for suffix, head in (("svg", b"<?xml"), ("png", MAGIC["png"]), ("dot", b"digraph")):
        out = tmp_path / f"m.{suffix}"
        assert main(["render", str(spec), "-o", str(out)]) == 0
        assert out.read_bytes().startswith(head)
    out = tmp_path / "e.dot"
    assert main(["render", str(spec), "--expand", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == to_dot(dslc.load(spec).graph, expand=True)


SCAN_SPEC = """
block elman_cell(hidden: int) { input x  input h
  output h_new = tanh(linear(x, hidden) + linear(h, hidden)) }
model elman { input x: f32[B, T, 3]
  h0 = x -> zeros([B, 5])
  ys, h = scan elman_cell(5) over x from h0
  output ys, h }
"""


def test_scan_is_drawn_rolled_and_unrolled_on_request():
    prog = dslc.load("elman.dl", text=SCAN_SPEC)
    rolled = to_dot(prog.graph)
    assert "cluster_scan" in rolled and "next step" in rolled and "t = 2" not in rolled
    unrolled = to_dot(prog.graph, expand=True)
    assert "t = 1" in unrolled and "t = 2" in unrolled and "t = T" in unrolled
    assert "…" in unrolled and "next step" not in unrolled
    assert to_dot(prog.graph, expand=True) == unrolled  # deterministic
