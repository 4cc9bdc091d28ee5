"""`dslc import` of ONNX `Loop` and `Scan` (dslc/onnx_import_loop.py): recurrences written by
dslc's export and by hand become a `scan` over a cell block that runs like onnxruntime on the
file; loops a scan cannot express are refused with E0826 and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})


def _import(tmp_path: Path, path: Path):
    spec, npz = tmp_path / "out.dl", tmp_path / "out.npz"
    rc = main(["import", str(path), "-o", str(spec)])
    return rc, spec, npz


def _params(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz) as z:
        return {k: z[k] for k in z.files}


# A cell with an extra tensor read at every step (`scan cell(m) ...`), run backwards; and the
# Elman cell over a time-major sequence (`along 0`).
SPECS = {
    "reverse_static": ("""block cell(hidden: int) {
  input x
  input h
  input m
  h_new = tanh((x -> linear(hidden) as ih) + (h -> linear(hidden, bias=false) as hh)
               + (m -> linear(hidden) as mh))
  output h_new, y = h_new * 2.0
}

model rev {
  input x: f32[B, T, 4]
  input h0: f32[B, 6]
  input m: f32[B, 3]
  ys, h = scan cell(m, 6) over x from h0 reverse as back
  output ys, h
}
""", "ys, h = scan back_cell(m) over x from h0 reverse as back"),
    "time_major": ("""import "blocks/rnn.dl"

model tm {
  input x: f32[T, B, 4]
  input h0: f32[B, 6]
  hs, h = scan elman_cell(6) over x from h0 along 0
  output hs, h
}
""", "hs, h = scan elman_cell over x from h0 along 0 as elman_cell1"),
    "two_sequences": ("""block mix(hidden: int) {
  input a
  input b
  input h
  output h_new = sigmoid((a -> linear(hidden) as fa) + (b -> linear(hidden) as fb)
                         + (h -> linear(hidden) as fh))
}

model two {
  input a: f32[B, T, 3]
  input b: f32[B, T, 5]
  input h0: f32[B, 4]
  hs, h = scan mix(4) over a, b from h0 as cell
  output hs
}
""", "hs, h = scan cell_cell over a, b from h0 as cell"),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_scan_round_trips_through_loop(tmp_path, capsys, name):
    """dslc's export writes the scan as a Loop; the import gives it back as a scan with the
    same cell layers, keys and outputs (two sequence lengths: T stays symbolic)."""
    text, folded = SPECS[name]
    src = tmp_path / f"{name}.dl"
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "rnn.dl").write_text((ROOT / "specs/blocks/rnn.dl").read_text())
    src.write_text(text)
    first = tmp_path / "a.onnx"
    assert main(["export", str(src), "-o", str(first)]) == 0, capsys.readouterr().err
    rc, spec, npz = _import(tmp_path, first)
    assert rc == 0, capsys.readouterr().err
    imported = spec.read_text()
    assert folded in imported, imported
    original = dslc.load(src)
    prog = dslc.load(spec)
    params = _params(npz)
    assert set(params) == set(original.source.param_keys())
    for t in (3, 6):
        feeds = original.random_inputs(t, {"B": 2, "T": t})
        got = list(prog.run(feeds, params).values())
        want = _ort(first, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _elman_body(names: dict, rng) -> tuple[list, list]:
    """An Elman cell as ONNX nodes: h' = tanh((x W + b) + h U), the weights initializers
    named as a module `rnn` with layers `ih` and `hh` would be."""
    w = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32),
                                "rnn.ih.weight")
    b = numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "rnn.ih.bias")
    u = numpy_helper.from_array(rng.standard_normal((6, 6)).astype(np.float32) * 0.3,
                                "rnn.hh.weight")
    nodes = [helper.make_node("MatMul", [names["x"], "rnn.ih.weight"], ["xw"]),
             helper.make_node("Add", ["xw", "rnn.ih.bias"], ["xwb"]),
             helper.make_node("MatMul", [names["h"], "rnn.hh.weight"], ["hu"]),
             helper.make_node("Add", ["xwb", "hu"], ["z"]),
             helper.make_node("Tanh", ["z"], [names["out"]])]
    return nodes, [w, b, u]


@pytest.mark.parametrize("reverse", [False, True])
def test_onnx_scan_node_imports_as_scan(tmp_path, capsys, reverse):
    """An ONNX Scan over a time-major [T, B, 4] sequence (axis 0, forwards or backwards) with
    its weights outside the body: `scan ... along 0 [reverse]`, equal to onnxruntime."""
    rng = np.random.default_rng(0)
    nodes, inits = _elman_body({"x": "x_t", "h": "h_in", "out": "h_new"}, rng)
    nodes.append(helper.make_node("Identity", ["h_new"], ["y_t"]))
    body = helper.make_graph(
        nodes, "body",
        [helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["B", 6]),
         helper.make_tensor_value_info("x_t", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("h_new", TensorProto.FLOAT, ["B", 6]),
         helper.make_tensor_value_info("y_t", TensorProto.FLOAT, ["B", 6])])
    d = [1] if reverse else [0]
    scan = helper.make_node("Scan", ["h0", "x"], ["h_last", "ys"], body=body,
                            num_scan_inputs=1, scan_input_directions=d,
                            scan_output_directions=d)
    g = helper.make_graph([scan], "g",
                          [helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["B", 6]),
                           helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", 4])],
                          [helper.make_tensor_value_info("ys", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("h_last", TensorProto.FLOAT, None)],
                          initializer=inits)
    path = tmp_path / "scan.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rc, spec, npz = _import(tmp_path, path)
    assert rc == 0, capsys.readouterr().err
    text = spec.read_text()
    assert "scan rnn_cell over x from h0 along 0" + (" reverse" if reverse else "") in text, text
    assert "x -> linear(6) as ih" in text and "h_in -> linear(6, bias=false) as hh" in text
    prog = dslc.load(spec)
    params = _params(npz)
    assert int(prog.summary()["params"]) == 4 * 6 + 6 * 6 + 6
    for t in (2, 5):
        feeds = {"h0": rng.standard_normal((3, 6)).astype(np.float32),
                 "x": rng.standard_normal((t, 3, 4)).astype(np.float32)}
        got = prog.run(feeds, params)
        want = _ort(path, feeds)
        np.testing.assert_allclose(got[list(got)[0]], want[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[list(got)[1]], want[1], rtol=1e-4, atol=1e-5)


def _loop_model(body_nodes, body_out_cond: str, extra_inits=(), opset=17):
    """Loop(T, true, h0) over x [B, T, 4] whose body gathers x[:, t]; body_nodes make
    `h_new` from `x_t`, `h_in` (and whatever else the case needs)."""
    rng = np.random.default_rng(1)
    cell, inits = _elman_body({"x": "x_t", "h": "h_in", "out": "h_new"}, rng)
    nodes = [helper.make_node("Gather", ["x", "t"], ["x_t"], axis=1)] + cell + body_nodes
    nodes.append(helper.make_node("Identity", ["h_new"], ["h_out"]))
    body = helper.make_graph(
        nodes, "body",
        [helper.make_tensor_value_info("t", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["B", 6])],
        [helper.make_tensor_value_info(body_out_cond, TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["B", 6])])
    outer = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["trip"], axis=0),
             helper.make_node("Loop", ["trip", "true", "h0"], ["h_last"], body=body,
                              name="the_loop")]
    inits = inits + [numpy_helper.from_array(np.array(1, np.int64), "one"),
                     numpy_helper.from_array(np.array(True), "true")] + list(extra_inits)
    g = helper.make_graph(outer, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 4]),
                           helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["B", 6])],
                          [helper.make_tensor_value_info("h_last", TensorProto.FLOAT, None)],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_loop_with_only_final_state_imports(tmp_path, capsys):
    """A Loop with no per-step outputs (the last state only): the scan's stacked states go
    unused; the imported spec equals onnxruntime on the file."""
    model = _loop_model([helper.make_node("Identity", ["cond"], ["cond_out"])], "cond_out")
    path = tmp_path / "loop.onnx"
    onnx.save(model, str(path))
    rc, spec, npz = _import(tmp_path, path)
    assert rc == 0, capsys.readouterr().err
    assert "= scan rnn_cell over x from h0 as rnn" in spec.read_text()
    rng = np.random.default_rng(2)
    feeds = {"x": rng.standard_normal((2, 5, 4)).astype(np.float32),
             "h0": rng.standard_normal((2, 6)).astype(np.float32)}
    (got,) = dslc.load(spec).run(feeds, _params(npz)).values()
    np.testing.assert_allclose(got, _ort(path, feeds)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case,words", [
    ("while", "condition can change"),
    ("counter", "uses its iteration number other than"),
])
def test_loops_a_scan_cannot_express_are_refused(tmp_path, capsys, case, words):
    """A while loop (the body computes its condition) and a loop that reads its counter as a
    number: E0826 naming the node, and nothing is written."""
    if case == "while":
        body = [helper.make_node("ReduceSum", ["h_new"], ["total"], keepdims=0),
                helper.make_node("Less", ["total", "limit"], ["cond_out"])]
        extra = [numpy_helper.from_array(np.array(10.0, np.float32), "limit")]
    else:
        body = [helper.make_node("Cast", ["t"], ["tf"], to=TensorProto.FLOAT),
                helper.make_node("Identity", ["cond"], ["cond_out"]),
                helper.make_node("Add", ["h_new", "tf"], ["unused"])]
        extra = []
    path = tmp_path / "loop.onnx"
    onnx.save(_loop_model(body, "cond_out", extra), str(path))
    rc, spec, npz = _import(tmp_path, path)
    err = capsys.readouterr().err
    assert rc == 1 and "error[E0826]" in err and "the_loop" in err and words in err, err
    assert "Traceback" not in err
    assert not spec.exists() and not npz.exists()


def test_unsupported_op_in_a_loop_body_is_listed(tmp_path, capsys):
    """An op without a dslc counterpart inside the body is listed with the loop's name."""
    body = [helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Sin", ["h_new"], ["sin"], name="the_sin")]
    # make the Sin matter: it feeds the state
    model = _loop_model(body, "cond_out")
    b = model.graph.node[2].attribute[0].g
    for n in b.node:
        if n.op_type == "Identity" and n.input[0] == "h_new":
            n.input[0] = "sin"
    path = tmp_path / "loop.onnx"
    onnx.save(model, str(path))
    rc, spec, npz = _import(tmp_path, path)
    err = capsys.readouterr().err
    assert rc == 1 and "E0825" in err and "Sin: the_loop/the_sin" in err, err
    assert not spec.exists() and not npz.exists()


def test_torchscript_loop_imports_as_scan(tmp_path, capsys):
    """A Python loop over time in a scripted module, exported by torch's TorchScript exporter:
    a Loop that slices x[:, t] out of all of x and collects h in an ONNX sequence
    (SequenceEmpty, SequenceInsert, ConcatFromSequence). It imports as a scan whose cell has
    the module's two layers, equal to onnxruntime on the file at two lengths."""
    import warnings

    torch = pytest.importorskip("torch")

    class Elman(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ih = torch.nn.Linear(4, 6)
            self.hh = torch.nn.Linear(6, 6)

        def forward(self, x, h):
            outs = []
            for t in range(x.shape[1]):
                h = torch.tanh(self.ih(x[:, t]) + self.hh(h))
                outs.append(h)
            return torch.stack(outs, 1), h

    torch.manual_seed(0)
    path = tmp_path / "loop.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated, but still writes Loop
        module = torch.jit.script(Elman())
        torch.onnx.export(module, (torch.randn(2, 5, 4), torch.zeros(2, 6)), str(path),
                          input_names=["x", "h0"], dynamo=False,
                          dynamic_axes={"x": {0: "B", 1: "T"}, "h0": {0: "B"}})
    assert any(n.op_type == "Loop" for n in onnx.load(str(path)).graph.node)
    rc, spec, npz = _import(tmp_path, path)
    assert rc == 0, capsys.readouterr().err
    text = spec.read_text()
    assert "scan cell over x from h0" in text and "linear(6) as ih" in text, text
    prog = dslc.load(spec)
    params = _params(npz)
    assert int(prog.summary()["params"]) == sum(p.numel() for p in module.parameters())
    rng = np.random.default_rng(3)
    for t in (3, 7):
        feeds = {"x": rng.standard_normal((2, t, 4)).astype(np.float32),
                 "h0": rng.standard_normal((2, 6)).astype(np.float32)}
        got = list(prog.run(feeds, params).values())
        want = _ort(path, feeds)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            ys, h = module(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["h0"]))
        np.testing.assert_allclose(got[0], ys.numpy(), rtol=1e-4, atol=1e-5)
