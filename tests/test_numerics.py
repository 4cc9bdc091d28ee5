"""Numerical stability of the NumPy interpreter: inputs of +-1e4 give the finite numbers torch
gives (softmax, log-softmax, sigmoid, cross-entropy, BCE), and long recurrences stay finite."""

from __future__ import annotations

import numpy as np
import pytest

import dslc

torch = pytest.importorskip("torch")
F = torch.nn.functional

BIG = np.array([[1e4, -1e4, 0.0, 5e3], [-1e4, -1e4, -1e4, 1e4], [1e4, 1e4, -3.0, 2.0]],
               dtype=np.float32)


def run_one(src: str, **inputs):
    prog = dslc.load("num.dl", text=src)
    return prog.run(inputs, prog.init_params(0))


@pytest.mark.parametrize("op,ref", [
    ("softmax(dim=-1)", lambda t: torch.softmax(t, -1)),
    ("log_softmax(dim=-1)", lambda t: torch.log_softmax(t, -1)),
    ("sigmoid", torch.sigmoid),
])
def test_activations_are_finite_at_1e4(op, ref):
    out = run_one(f"model m {{ input x: f32[B, 4]\n output y = x -> {op} }}\n", x=BIG)["y"]
    want = ref(torch.from_numpy(BIG)).numpy()
    assert np.isfinite(want).all()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_is_finite_at_1e4(reduction):
    target = np.array([1, 2, 3], dtype=np.int64)
    out = run_one("model m { input x: f32[N, 4]\n input t: i64[N]\n"
                  f" output y = cross_entropy(x, t, reduction=\"{reduction}\") }}\n",
                  x=BIG, t=target)["y"]
    want = F.cross_entropy(torch.from_numpy(BIG), torch.from_numpy(target),
                           reduction=reduction).numpy()
    assert np.isfinite(want).all() and np.isfinite(out).all()
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_bce_with_logits_is_finite_at_1e4():
    target = (np.arange(12).reshape(3, 4) % 2).astype(np.float32)
    out = run_one("model m { input x: f32[N, 4]\n input t: f32[N, 4]\n"
                  " output y = bce_with_logits(x, t, \"none\") }\n", x=BIG, t=target)["y"]
    want = F.binary_cross_entropy_with_logits(torch.from_numpy(BIG), torch.from_numpy(target),
                                              reduction="none").numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_bce_clamps_the_log_of_exact_zeros_and_ones_as_torch():
    p = np.array([[0.0, 1.0, 0.5, 1e-30]], dtype=np.float32)
    t = np.array([[1.0, 0.0, 1.0, 1.0]], dtype=np.float32)
    out = run_one("model m { input p: f32[N, 4]\n input t: f32[N, 4]\n"
                  " output y = bce(p, t, reduction=\"none\") }\n", p=p, t=t)["y"]
    want = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(t),
                                  reduction="none").numpy()
    np.testing.assert_allclose(out, want, rtol=1e-5)
    assert out[0, 0] == pytest.approx(100.0)


def test_sigmoid_then_bce_at_1e4_is_finite():
    t = np.ones((3, 4), dtype=np.float32)
    out = run_one("model m { input x: f32[N, 4]\n input t: f32[N, 4]\n"
                  " output y = bce(sigmoid(x), t) }\n", x=BIG, t=t)["y"]
    want = F.binary_cross_entropy(torch.sigmoid(torch.from_numpy(BIG)),
                                  torch.from_numpy(t)).numpy()
    assert np.isfinite(out) and np.isfinite(want)
    np.testing.assert_allclose(out, want, rtol=1e-5)


def test_a_long_recurrence_stays_finite():
    """An Elman cell over 2,000 steps with large inputs: tanh keeps the state bounded."""
    src = """
block cell {
  input x
  input h
  h2 = tanh((x -> linear(8)) + (h -> linear(8)))
  output h2
}
model m {
  input xs: f32[B, T, 4]
  input h0: f32[B, 8]
  hT, hs = scan cell over xs from h0
  output hT, hs
}
"""
    prog = dslc.load("rnn.dl", text=src)
    xs = (np.random.default_rng(0).standard_normal((2, 2000, 4)) * 1e4).astype(np.float32)
    out = prog.run({"xs": xs, "h0": np.zeros((2, 8), np.float32)}, prog.init_params(0))
    for v in out.values():
        assert np.isfinite(v).all()
