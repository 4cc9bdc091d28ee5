"""Tests of dslc/ops/dropout.py: dropout and dropout2d, NumPy and generated PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc.diagnostics import DslcError
from tests.helpers import compare_numpy_torch, torch_outputs


def load(body: str):
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


@pytest.mark.parametrize("op,shape", [("dropout", "B, 16"), ("dropout2d", "B, 4, 5, 5")])
def test_identity_in_eval_in_numpy_and_torch(op, shape):
    prog = load(f"input x: f32[{shape}]\noutput y = x -> {op}(0.4)")
    assert prog.init_params() == {}
    src = prog.to_torch_source()
    assert f"F.{op}(x, p=0.4, training=self.training)" in src
    assert "nn.Dropout" not in src  # no stateless module is made
    inputs = prog.random_inputs(bind={"B": 3})
    np.testing.assert_array_equal(prog.run(inputs, {}, train=False)["y"], inputs["x"])
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 3}, train=False)
    np.testing.assert_array_equal(t_out["y"], np_out["y"])


def test_dropout_train_masks_and_rescales():
    p = 0.3
    prog = load(f"input x: f32[200, 500]\noutput y = x -> dropout({p})")
    x = np.random.default_rng(0).uniform(1, 2, (200, 500)).astype(np.float32)
    y = prog.run({"x": x}, {}, train=True, seed=7)["y"]
    assert y.dtype == np.float32
    kept = y != 0
    assert abs(1 - kept.mean() - p) < 0.01  # about p of the elements are dropped
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    assert abs(y.mean() / x.mean() - 1) < 0.01  # the expectation is preserved
    # The same seed draws the same mask; another seed draws another.
    np.testing.assert_array_equal(prog.run({"x": x}, {}, train=True, seed=7)["y"], y)
    assert not np.array_equal(prog.run({"x": x}, {}, train=True, seed=8)["y"], y)


def test_generated_torch_drops_in_training_mode():
    p = 0.5
    prog = load(f"input x: f32[100, 400]\noutput y = x -> dropout({p})")
    x = np.ones((100, 400), np.float32)
    out, module = torch_outputs(prog, {"x": x}, {}, train=True)
    y = out["y"]
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y == 0).mean() - p) < 0.02
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(x=torch.from_numpy(x)), torch.from_numpy(x))


def test_dropout_extremes():
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    p0 = load("input x: f32[4, 6]\noutput y = x -> dropout(0)")
    np.testing.assert_array_equal(p0.run({"x": x}, {}, train=True)["y"], x)
    p1 = load("input x: f32[4, 6]\noutput y = x -> dropout(p=1.0)")
    y = p1.run({"x": x}, {}, train=True)["y"]
    assert np.all(y == 0) and np.isfinite(y).all()


def test_dropout2d_zeroes_whole_channels():
    p = 0.5
    prog = load(f"input x: f32[8, 32, 3, 3]\noutput y = x -> dropout2d({p})")
    x = np.random.default_rng(2).uniform(1, 2, (8, 32, 3, 3)).astype(np.float32)
    y = prog.run({"x": x}, {}, train=True, seed=3)["y"]
    zero = (y == 0).all(axis=(2, 3))
    kept = (y != 0).all(axis=(2, 3))
    assert np.all(zero | kept)  # a channel is dropped entirely or kept entirely
    assert 0.3 < zero.mean() < 0.7
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)


def test_dropout_errors():
    d = diag("input x: f32[4, 6]\noutput y = x -> dropout(1.5)")
    assert d.code == "E0301" and d.found == "1.5" and d.expected == "0 <= p <= 1"
    d = diag("input x: f32[4, 6]\noutput y = x -> dropout(p=-0.1)")
    assert d.code == "E0301"
    d = diag("input x: i64[4, 6]\noutput y = x -> dropout")
    assert d.code == "E0302"
    d = diag("input x: f32[4, 6, 5]\noutput y = x -> dropout2d")
    assert d.code == "E0301" and "rank 4" in d.expected
