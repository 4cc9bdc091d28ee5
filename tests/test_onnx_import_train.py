"""The train-only ops' rates survive `dslc export` -> `dslc import` (dslc/onnx_import_train.py):
the export writes them as the model property `dslc.train_attrs`, the import reads them back."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SPEC = """model regular {
  input x: f32[B, 4, 6, 6]
  input edge_index: i64[2, E]
  input nodes: f32[N, 5]
  h = x -> dropout2d(0.2) -> conv2d(4, 3, padding=1) as conv -> drop_path(0.15, mode="batch")
  h = h -> flatten -> dropout(0.3) -> linear(8) as fc -> alpha_dropout(0.1)
  output y = h -> gaussian_noise(std=0.25) -> dropout
  w = edge_dropout(edge_index, nodes, 0.35)
  output z = nodes -> gcn_conv(edge_index, w, 3) as gcn
}
"""

# op -> its attributes in SPEC (the default rate, 0.5, where the spec writes `dropout`)
WANT = {"dropout2d": [{"p": 0.2}], "drop_path": [{"p": 0.15, "mode": "batch"}],
        "dropout": [{"p": 0.3}, {"p": 0.5}], "alpha_dropout": [{"p": 0.1}],
        "gaussian_noise": [{"std": 0.25}], "edge_dropout": [{"p": 0.35}]}


def _attrs(prog) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for node in prog.graph.order():
        if node.op in WANT:
            out.setdefault(node.op, []).append(node.attrs.model_dump())
    return {k: sorted(v, key=lambda d: d.get("p", 0)) for k, v in out.items()}


def _export_import(tmp_path, capsys, edit=None):
    src, first = tmp_path / "m.dl", tmp_path / "a.onnx"
    src.write_text(SPEC)
    assert main(["export", str(src), "-o", str(first)]) == 0, capsys.readouterr().err
    if edit is not None:
        model = onnx.load(str(first))
        edit(model)
        onnx.save(model, str(first))
    out = tmp_path / "b.dl"
    rc = main(["import", str(first), "-o", str(out)])
    return rc, first, out


def test_rates_of_train_only_ops_survive_the_round_trip(tmp_path, capsys):
    rc, first, out = _export_import(tmp_path, capsys)
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    for call in ("dropout2d(p=0.2)", 'drop_path(p=0.15, mode="batch")', "dropout(p=0.3)",
                 "alpha_dropout(p=0.1)", "gaussian_noise(std=0.25)", "-> dropout\n",
                 "-> edge_dropout(x, p=0.35)"):  # x: an input of the weights' dtype
        assert call in text, text
    assert _attrs(dslc.load(out)) == _attrs(dslc.load("m.dl", text=SPEC)) == WANT
    # ... and the imported spec still computes what the file computes (the ops' eval mode)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 4, 6, 6)).astype(np.float32),
             "edge_index": np.array([[0, 1, 2, 3], [1, 2, 3, 0]], dtype=np.int64),
             "nodes": rng.standard_normal((4, 5)).astype(np.float32)}
    with np.load(out.with_suffix(".npz")) as z:
        params = {k: z[k] for k in z.files}
    got = list(dslc.load(out).run(feeds, params).values())
    sess = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    for g, w in zip(got, sess.run(None, feeds), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_export_names_each_rate_by_its_nodes(tmp_path, capsys):
    _export_import(tmp_path, capsys)
    model = onnx.load(str(tmp_path / "a.onnx"))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    recs = json.loads(props["dslc.train_attrs"])
    names = {n.name: n for n in model.graph.node}
    assert set(recs) <= set(names)
    ident = [r for k, r in recs.items() if names[k].op_type == "Identity"]
    assert sorted(r["op"] for r in ident) == sorted(
        ["dropout2d", "drop_path", "dropout", "alpha_dropout", "gaussian_noise", "dropout"])
    assert {"op": "edge_dropout", "p": 0.35} in recs.values()


def _set_prop(value: str):
    def edit(model):
        for p in model.metadata_props:
            if p.key == "dslc.train_attrs":
                p.value = value
    return edit


def test_without_the_property_the_rates_are_the_defaults(tmp_path, capsys):
    """A file from another producer, or with the property unreadable: dropouts are the
    identity they export as, edge_dropout gets its default rate."""
    rc, _, out = _export_import(tmp_path, capsys, _set_prop("{not json"))
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    assert "dropout" not in text.replace("edge_dropout", "")
    assert "-> edge_dropout(x)\n" in text


@pytest.mark.parametrize("op,key,value", [("alpha_dropout", "p", "high"),
                                           ("dropout", "p", 2.0),
                                           ("gaussian_noise", "std", -1.0),
                                           ("drop_path", "mode", "column")])
def test_a_rate_the_op_refuses_is_reported_and_nothing_written(tmp_path, capsys, op, key,
                                                                value):
    def edit(model):
        for p in model.metadata_props:
            if p.key == "dslc.train_attrs":
                recs = json.loads(p.value)
                for r in recs.values():
                    if r["op"] == op:
                        r[key] = value
                p.value = json.dumps(recs)
    rc, _, out = _export_import(tmp_path, capsys, edit)
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    assert "E0826" in err and f"dslc.train_attrs gives {op} attributes it does not take" in err
    assert "Traceback" not in err


RNN_SPEC = """model r {
  input x: f32[B, T, 6]
  ys, h, c = x -> lstm(8, num_layers=3, dropout=0.25) as lstm
  zs, g = ys -> gru(5, num_layers=2, dropout=0.1, bidirectional=true) as gru
  vs, k = zs -> rnn(4) as cell
  output y = vs
}
"""


def test_dropout_between_recurrent_layers_survives(tmp_path, capsys):
    """ONNX's LSTM and GRU have no dropout between stacked layers: the property keeps it,
    and the stack merges back into one layer with it."""
    src, first, out = tmp_path / "r.dl", tmp_path / "r.onnx", tmp_path / "rb.dl"
    src.write_text(RNN_SPEC)
    assert main(["export", str(src), "-o", str(first)]) == 0, capsys.readouterr().err
    assert main(["import", str(first), "-o", str(out)]) == 0, capsys.readouterr().err
    text = out.read_text()
    assert "lstm(8, num_layers=3, dropout=0.25) as lstm" in text, text
    assert "gru(5, num_layers=2, bidirectional=true, dropout=0.1) as gru" in text, text
    assert "rnn(4) as cell" in text, text  # no dropout: nothing recorded, nothing written

    def rates(prog):
        return {n.op: n.attrs.dropout for n in prog.graph.order() if n.op in ("lstm", "gru",
                                                                               "rnn")}
    assert rates(dslc.load(out)) == rates(dslc.load(src)) == {"lstm": 0.25, "gru": 0.1,
                                                              "rnn": 0.0}
    feeds = {"x": np.random.default_rng(2).standard_normal((2, 5, 6)).astype(np.float32)}
    with np.load(out.with_suffix(".npz")) as z:
        params = {k: z[k] for k in z.files}
    (got,) = dslc.load(out).run(feeds, params).values()
    sess = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, feeds)[0], rtol=1e-4, atol=1e-5)
