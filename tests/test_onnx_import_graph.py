"""`dslc import` of the graph layers (dslc/onnx_import_graph.py): the Gather/ScatterND patterns
`dslc export` writes fold back into the graph ops, with their attributes; the result runs
like onnxruntime on the file at two graph sizes; a pattern that does not match dslc's
lowering, or one without dslc's node names, is reported and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
SIZES = ({"N": 9, "E": 20, "G": 3}, {"N": 4, "E": 6, "G": 2})

# Every graph primitive, with attributes off their defaults where they have any.
PRIMITIVES = """model prims {
  input x: f32[N, 4]
  input edge_index: i64[2, E]
  input batch: i64[N]
  m = gather(x, edge_index, "target")
  s = scatter(m, edge_index, x, "mean", side="source")
  d = degree(edge_index, x, "source")
  ei2 = add_self_loops(edge_index, x)
  ei3, w = gcn_norm(edge_index, x)
  p = propagate(x, ei3, w)
  ei4, lw = laplacian(edge_index, x, "rw", scaled=true, lambda_max=1.5)
  t = chebyshev(x, ei4, lw, 3)
  a = edge_softmax(m -> sum(dim=1), edge_index, x)
  g = readout(p, batch, "max", graphs="G")
  k = x -> gin_aggregate(edge_index, eps=0.25)
  h = diffusion(x, edge_index, 2)
  output s, d, ei2, p, t, a, g, k, h
}
"""
PRIMITIVE_CALLS = [
    'm = x -> gather(edge_index, "target")',
    's = m -> scatter(edge_index, x, "mean", side="source")',
    'd = edge_index -> degree(x, "source")',
    "ei2 = edge_index -> add_self_loops(x)",
    "ei3, w = edge_index -> gcn_norm(x)",
    "p = x -> propagate(ei3, w)",
    'ei4, lw = edge_index -> laplacian(x, "rw", scaled=true, lambda_max=1.5)',
    "t = x -> chebyshev(ei4, lw, 3)",
    "-> edge_softmax(edge_index, x)",
    'g = p -> readout(batch, "max", graphs="G")',
    "k = x -> gin_aggregate(edge_index, 0.25)",
    "h = x -> diffusion(edge_index, 2)",
]

# The layers with their other attributes: what the import reads back from the parameters'
# shapes (heads, K, kernels), their presence (bias, root weight) and the nodes (slope,
# lambda_max, the normalisation, concat or mean of the heads).
LAYERS = """model layers {
  input x: f32[N, 6]
  input edge_index: i64[2, E]
  input pseudo: f32[E, 3]
  a = x -> gat_conv(edge_index, 5, heads=3, concat=false, negative_slope=0.1, bias=false) as att
  b = x -> cheb_conv(edge_index, 4, 2, normalization="none", lambda_max=3.0) as cheb
  c = x -> sage_conv(edge_index, 4, root_weight=false, bias=false) as sage
  d = x -> gmm_conv(edge_index, pseudo, 4, 2, root_weight=false) as gmm
  e = x -> gcn_conv(edge_index, 4, bias=false) as gcn
  f = x -> cheb_conv(edge_index, 4, 3, normalization="rw") as cheb2
  output a, b, c, d, e, f
}
"""


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})


def _params(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


def _export_import(tmp_path: Path, text: str, capsys, *args: str) -> tuple[Path, Path, Path]:
    src = tmp_path / "src.dl"
    src.write_text(text)
    first, spec = tmp_path / "a.onnx", tmp_path / "b.dl"
    assert main(["export", str(src), *args, "-o", str(first)]) == 0, capsys.readouterr().err
    assert main(["import", str(first), "-o", str(spec)]) == 0, capsys.readouterr().err
    return src, first, spec


def _same_as_onnxruntime(src: Path, first: Path, spec: Path) -> None:
    prog, params = dslc.load(spec), _params(spec.with_suffix(".npz"))
    for bind in SIZES:
        feeds = dslc.load(src).random_inputs(3, bind)
        want = _ort(first, feeds)
        got = list(prog.run(feeds, params).values())
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_graph_primitives_fold_back_with_their_attributes(tmp_path, capsys):
    src, first, spec = _export_import(tmp_path, PRIMITIVES, capsys)
    text = spec.read_text()
    for call in PRIMITIVE_CALLS:
        assert call in text, text
    assert "input edge_index: i64[2, E]" in text and "input batch: i64[N]" in text
    _same_as_onnxruntime(src, first, spec)


def test_layer_attributes_are_read_back(tmp_path, capsys):
    src, first, spec = _export_import(tmp_path, LAYERS, capsys)
    body = [line.strip() for line in LAYERS.splitlines() if " as " in line]
    text = spec.read_text()
    for line in body:
        assert line in text, text
    # the parameters keep the spec's state_dict keys and values
    want = dslc.load(src).init_params(0)
    got = _params(spec.with_suffix(".npz"))
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)
    _same_as_onnxruntime(src, first, spec)


def test_a_layer_at_another_opset_and_with_bound_sizes(tmp_path, capsys):
    """Opset 20, and N, E bound at export (the sizes are constants in the file): the same
    statement comes back, with the fixed sizes in the inputs."""
    src, first, spec = _export_import(
        tmp_path, LAYERS, capsys, "--opset", "20", "--bind", "N=9", "--bind", "E=20")
    text = spec.read_text()
    assert "input x: f32[9, 6]" in text and "input edge_index: i64[2, 20]" in text
    assert "gat_conv(edge_index, 5, heads=3, concat=false" in text
    feeds = dslc.load(src).random_inputs(5, {"N": 9, "E": 20})
    got = list(dslc.load(spec).run(feeds, _params(spec.with_suffix(".npz"))).values())
    for g, w in zip(got, _ort(first, feeds), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_edge_dropout_is_every_edge_kept_and_imports(tmp_path, capsys):
    """dropedge_gcn in inference: the edge dropout is a ones vector over the edges (two
    nodes, nothing random), so the model equals gcn_conv with no edge weights; the import
    writes `edge_dropout` again, with its rate, and runs like the file."""
    src = ROOT / "specs" / "dropedge_gcn.dl"
    first, spec = tmp_path / "a.onnx", tmp_path / "b.dl"
    assert main(["export", str(src), "--set", "features=8", "-o", str(first)]) == 0
    model = onnx.load(str(first))
    dropped = [n for n in model.graph.node if n.doc_string.endswith(" edge_dropout")]
    assert [n.op_type for n in dropped] == ["Shape", "ConstantOfShape"] * 2
    plain = dslc.load("plain.dl", text="""model plain {
  input x: f32[N, 8]
  input edge_index: i64[2, E]
  h = x -> gcn_conv(edge_index, 16) as conv1 -> relu
  output logits = h -> gcn_conv(edge_index, 7) as conv2
}
""")
    params = dslc.load(src, hparams={"features": 8}).init_params(0)
    feeds = plain.random_inputs(2, {"N": 7, "E": 15})
    (want,) = _ort(first, feeds)
    (ref,) = plain.run(feeds, params).values()
    np.testing.assert_allclose(want, ref, rtol=1e-4, atol=1e-5)
    assert main(["import", str(first), "-o", str(spec)]) == 0, capsys.readouterr().err
    text = spec.read_text()
    assert "w1 = edge_index -> edge_dropout(x, p=0.3)" in text  # the spec's rate, kept
    assert "gcn_conv(edge_index, w1, 16) as conv1" in text
    (got,) = dslc.load(spec).run(feeds, _params(spec.with_suffix(".npz"))).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _gcn_file(tmp_path: Path) -> Path:
    path = tmp_path / "gcn.onnx"
    assert main(["export", str(ROOT / "specs" / "gcn.dl"), "--set", "features=8", "-o",
                 str(path)]) == 0
    return path


def test_a_pattern_that_does_not_match_is_reported_and_nothing_written(tmp_path, capsys):
    """Two layers' aggregations changed (ScatterND add -> mul): each group is named, with its
    op and spec location, in one run; no file is written."""
    src = tmp_path / "src.dl"
    src.write_text(LAYERS)
    path = tmp_path / "layers.onnx"
    assert main(["export", str(src), "-o", str(path)]) == 0
    model = onnx.load(str(path))
    for layer in ("gcn", "cheb2"):
        node = [n for n in model.graph.node if n.op_type == "ScatterND"
                and n.name.startswith(f"{layer}/")][-1]
        for a in node.attribute:
            if a.name == "reduction":
                a.s = b"mul"
    onnx.save(model, str(path))
    spec = tmp_path / "out.dl"
    rc = main(["import", str(path), "-o", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error[E0826]") == 2, err
    assert "graph layer 'gcn (gcn_conv at src.dl:9:12)'" in err
    assert "graph layer 'cheb2 (cheb_conv at src.dl:10:12)'" in err
    assert "do not match dslc's lowering of gcn_conv" in err and "Traceback" not in err
    assert "has other attributes" in err
    assert not spec.exists() and not spec.with_suffix(".npz").exists()


def test_gather_scatter_without_dslc_names_is_listed_as_unsupported(tmp_path, capsys):
    """The same file without the exporter's doc strings (as another tool would write it):
    nothing says which op the nodes were, so ScatterND is listed (E0825), nothing written."""
    path = _gcn_file(tmp_path)
    model = onnx.load(str(path))
    for n in model.graph.node:
        n.doc_string = ""
    onnx.save(model, str(path))
    spec = tmp_path / "out.dl"
    rc = main(["import", str(path), "-o", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and "error[E0825]" in err and "ScatterND: conv1/ScatterND@" in err, err
    assert "Traceback" not in err
    assert not spec.exists() and not spec.with_suffix(".npz").exists()


def test_another_ops_nodes_under_a_graph_ops_name_are_refused(tmp_path, capsys):
    """A group that claims an op its nodes are not (the doc strings of conv2 say gat_conv):
    refused, not imported as a gat_conv."""
    path = _gcn_file(tmp_path)
    model = onnx.load(str(path))
    for n in model.graph.node:
        if n.name.startswith("conv2/"):
            n.doc_string = n.doc_string.replace("gcn_conv", "gat_conv")
    onnx.save(model, str(path))
    spec = tmp_path / "out.dl"
    rc = main(["import", str(path), "-o", str(spec)])
    err = capsys.readouterr().err
    assert rc == 1 and "graph layer 'conv2 (gat_conv at gcn.dl:8:24)'" in err, err
    assert not spec.exists()


def test_float64_model_with_an_i32_edge_index(tmp_path, capsys):
    """The parameters meet an f64 input through Casts and an i32 edge index is cast to i64:
    the same statements come back, in the file's dtypes."""
    src, first, spec = _export_import(tmp_path, """model g64 {
  input x: f64[N, 5]
  input edge_index: i32[2, E]
  h = x -> gcn_conv(edge_index, 4) as conv1 -> relu
  output y = h -> gat_conv(edge_index, 3, heads=2) as conv2
}
""", capsys)
    text = spec.read_text()
    assert "input x: f64[N, 5]" in text and "input edge_index: i32[2, E]" in text
    assert "gcn_conv(edge_index, 4) as conv1 -> relu -> gat_conv(edge_index, 3, heads=2)" in text
    _same_as_onnxruntime(src, first, spec)


def test_readout_over_a_graph_count_an_input_holds(tmp_path, capsys):
    """graphs=B, a dim of another input: the export reads it from that input's shape (not
    max(batch) + 1), and the import gives back a readout over B (the default)."""
    src, first, spec = _export_import(tmp_path, """model ro {
  input x: f32[N, 4]
  input batch: i64[N]
  input target: f32[B, 4]
  g = readout(x, batch, "mean", graphs="B")
  output y = g + target
}
""", capsys)
    assert 'g = x -> readout(batch, "mean")' in spec.read_text()
    prog = dslc.load(spec)
    for bind in ({"N": 8, "B": 3}, {"N": 5, "B": 4}):
        feeds = dslc.load(src).random_inputs(4, bind)
        (got,) = prog.run(feeds, {}).values()
        (want,) = _ort(first, feeds)
        assert got.shape == (bind["B"], 4)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
