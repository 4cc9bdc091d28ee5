"""`dslc import` of the adaptive average pool as dslc's export writes it (a MatMul by torch's
bin matrix per axis, dslc/onnx_import_pool.py): the pool comes back, with no parameters."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SPEC = """model ap {
  input x: f32[B, 2, 7, 11]
  input v: f32[B, 3, 9]
  a = x -> adaptive_avg_pool2d((3, 5))
  b = x -> adaptive_avg_pool2d((7, 4))
  c = v -> adaptive_avg_pool1d(4)
  d = x -> adaptive_avg_pool2d((7, 11)) -> relu
  e = x -> adaptive_avg_pool2d((1, 6))
  output a, b, c, d, e
}
"""


def test_adaptive_avg_pool_comes_back_as_the_pool(tmp_path, capsys):
    """Both axes pooled: one `adaptive_avg_pool2d((3, 5))`; one axis: the pool to the other
    axis's own size; the identity (7x7 of 7x7, as VGG-16's): nothing; output 1 on an axis
    (a ReduceMean) then bins on the other. No `linear` layer, no parameter; the spec computes
    what onnxruntime computes on the file."""
    src, first = tmp_path / "ap.dl", tmp_path / "ap.onnx"
    src.write_text(SPEC)
    assert main(["export", str(src), "-o", str(first)]) == 0, capsys.readouterr().err
    spec = tmp_path / "out.dl"
    assert main(["import", str(first), "-o", str(spec)]) == 0, capsys.readouterr().err
    text = spec.read_text()
    assert "x -> adaptive_avg_pool2d((3, 5))" in text, text
    assert "x -> adaptive_avg_pool2d((7, 4))" in text
    assert "v -> adaptive_avg_pool1d(4)" in text
    assert "d = x -> relu" in text
    assert "linear" not in text and "@" not in text
    prog = dslc.load(spec)
    assert int(prog.summary()["params"]) == 0
    feeds = dslc.load(src).random_inputs(0, {"B": 2})
    got = list(prog.run(feeds, {}).values())
    sess = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    want = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_a_learned_matrix_stays_a_linear_layer(tmp_path, capsys):
    """A MatMul by a matrix that is not torch's bins (a trained weight) is still `linear`."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((7, 3), 1.0 / 7, np.float32)  # averages all 7, not bins of 7 -> 3
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "fc.weight_t"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 2, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w, "fc.weight_t")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    spec = tmp_path / "out.dl"
    assert main(["import", str(path), "-o", str(spec)]) == 0, capsys.readouterr().err
    assert "linear(3, bias=false)" in spec.read_text()
