"""The scan construct: recurrences in the language, checked, run and compiled."""

import numpy as np
import pytest

import dslc
from dslc.diagnostics import DslcError
from tests.helpers import assert_close, compare_numpy_torch

torch = pytest.importorskip("torch")

ELMAN = """
block elman_cell(hidden: int) {
  input x
  input h
  output h_new = tanh(linear(x, hidden) + linear(h, hidden))
}
model elman(hidden: int = 5) {
  input x: f32[B, T, 3]
  input h0: f32[B, hidden]
  ys, h = scan elman_cell(hidden) over x from h0 %s
  output ys, h
}
"""


@pytest.mark.parametrize("reverse", [False, True])
def test_elman_scan_equals_nn_rnn(reverse):
    prog = dslc.load("elman.dl", text=ELMAN % ("reverse" if reverse else ""))
    np_out, t_out, _ = compare_numpy_torch(prog, {"B": 2, "T": 7})
    p = prog.init_params(0)
    rnn = torch.nn.RNN(3, 5, batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["elman_cell1.fc1.weight"]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["elman_cell1.fc1.bias"]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["elman_cell1.fc2.weight"]))
        rnn.bias_hh_l0.copy_(torch.from_numpy(p["elman_cell1.fc2.bias"]))
    inputs = prog.random_inputs(0, {"B": 2, "T": 7})
    x = torch.from_numpy(inputs["x"])
    if reverse:
        x = torch.flip(x, [1])
    with torch.no_grad():
        ys, hn = rnn(x, torch.from_numpy(inputs["h0"])[None])
    if reverse:
        ys = torch.flip(ys, [1])
    assert_close(np_out["ys"], ys.numpy())
    assert_close(np_out["h"], hn[0].numpy())


def test_scan_shapes_are_symbolic_in_T():
    prog = dslc.load("elman.dl", text=ELMAN % "")
    out = prog.graph.order()[-1]
    assert str(out.types[0]) == "f32[B, T, 5]"
    assert str(out.types[1]) == "f32[B, 5]"


def test_generation_with_steps_and_feedback():
    src = """
block gen_cell(vocab: int) {
  input y
  output y_next = y -> linear(vocab) -> softmax
}
model gen {
  input y0: f32[B, 6]
  ys, y = scan gen_cell(6) from y0 steps 4
  output ys
}"""
    prog = dslc.load("gen.dl", text=src)
    np_out, _, _ = compare_numpy_torch(prog, {"B": 3})
    assert np_out["ys"].shape == (3, 4, 6)


def test_static_inputs_and_several_outputs():
    src = """
block cell(h: int) {
  input x
  input s
  input ctx
  s2 = tanh(linear(x, h) + linear(s, h) + ctx)
  output s2, o = s2 * 2.0
}
model m {
  input x: f32[B, T, 4]
  input c: f32[B, 3]
  s0 = c * 0.0
  outs, s = scan cell(c, 3) over x from s0
  output outs, s
}"""
    prog = dslc.load("m.dl", text=src)
    np_out, _, _ = compare_numpy_torch(prog, {"B": 2, "T": 5})
    assert np_out["outs"].shape == (2, 5, 3)


def test_long_sequence_stays_finite():
    prog = dslc.load("elman.dl", text=ELMAN % "")
    inputs = prog.random_inputs(0, {"B": 1, "T": 2000})
    out = prog.run(inputs, prog.init_params(0))
    assert np.isfinite(out["ys"]).all()


@pytest.mark.parametrize("body,code", [
    ("ys, h = scan bad_cell(5) over x from h0", "E0310"),
    ("ys, h = scan elman_cell(5) over x from h0 along 3", "E0314"),
    ("ys, h = scan elman_cell(5) over x from h0, h0", "E0315"),
    ("ys, h = scan relu over x from h0", "E0311"),
])
def test_bad_recurrences_are_located(body, code):
    src = ELMAN.replace("ys, h = scan elman_cell(hidden) over x from h0 %s", body) + """
block bad_cell(hidden: int) { input x  input h  output h2 = linear(x, hidden + 1) }
"""
    with pytest.raises(DslcError) as exc:
        dslc.load("elman.dl", text=src)
    d = exc.value.diagnostics[0]
    assert d.code == code
    assert d.span.line == 10
