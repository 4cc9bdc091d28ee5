"""Tests of dslc/ops/sample.py: reparameterize and randn_like, NumPy and generated PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc.diagnostics import DslcError
from tests.helpers import compare_numpy_torch, torch_outputs

VAE_HEAD = ("input mu: f32[B, 6]\ninput logvar: f32[B, 6]\n"
            "output z = reparameterize(mu, logvar)")


def load(body: str):
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


def test_reparameterize_eval_returns_mu_on_both_sides():
    prog = load(VAE_HEAD)
    inputs = prog.random_inputs(bind={"B": 4})
    np.testing.assert_array_equal(prog.run(inputs, {})["z"], inputs["mu"])
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 4}, train=False)
    np.testing.assert_array_equal(t_out["z"], inputs["mu"])


def test_reparameterize_train_is_seeded_and_has_the_right_distribution():
    prog = load(VAE_HEAD.replace("B, 6", "20000, 6"))
    mu = np.tile(np.linspace(-2, 2, 6, dtype=np.float32), (20000, 1))
    logvar = np.tile(np.log(np.linspace(0.25, 4, 6, dtype=np.float32)), (20000, 1))
    z = prog.run({"mu": mu, "logvar": logvar}, {}, train=True, seed=11)["z"]
    assert z.dtype == np.float32
    np.testing.assert_array_equal(
        prog.run({"mu": mu, "logvar": logvar}, {}, train=True, seed=11)["z"], z)
    assert not np.array_equal(
        prog.run({"mu": mu, "logvar": logvar}, {}, train=True, seed=12)["z"], z)
    # z ~ N(mu, exp(logvar)) column by column.
    np.testing.assert_allclose(z.mean(axis=0), mu[0], atol=0.05)
    np.testing.assert_allclose(z.std(axis=0), np.sqrt(np.exp(logvar[0])), rtol=0.03)
    # The generated module samples in training mode with the same distribution.
    out, _ = torch_outputs(prog, {"mu": mu, "logvar": logvar}, {}, train=True)
    np.testing.assert_allclose(out["z"].mean(axis=0), mu[0], atol=0.05)
    np.testing.assert_allclose(out["z"].std(axis=0), np.sqrt(np.exp(logvar[0])), rtol=0.03)


def test_reparameterize_generated_code():
    src = load(VAE_HEAD).to_torch_source()
    assert ("z = (mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)) "
            "if self.training else mu") in src


def test_randn_like_noise():
    prog = load("input x: f32[B, 3, 4, 4]\noutput n = randn_like(x)\noutput y = x + n * 0.0")
    x = np.full((500, 3, 4, 4), 7.0, np.float32)
    n = prog.run({"x": x}, {}, seed=1)["n"]
    assert n.shape == x.shape and n.dtype == np.float32
    assert abs(n.mean()) < 0.02 and abs(n.std() - 1) < 0.02
    np.testing.assert_array_equal(prog.run({"x": x}, {}, seed=1)["n"], n)
    # Noise is drawn in eval too (GAN sampling), unlike dropout.
    assert not np.array_equal(prog.run({"x": x}, {}, seed=2)["n"], n)
    assert "n = torch.randn_like(x)" in prog.to_torch_source()
    out, _ = torch_outputs(prog, {"x": x}, {}, train=False)
    assert out["n"].shape == x.shape and abs(out["n"].std() - 1) < 0.02


def test_randn_like_follows_dtype():
    prog = load("input x: f64[2, 3]\noutput n = randn_like(x)")
    assert prog.run({"x": np.zeros((2, 3))}, {})["n"].dtype == np.float64
    m = prog.to_torch()()
    assert m(x=torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64


def test_sample_errors():
    d = diag("input mu: f32[B, 6]\ninput lv: f32[B, 5]\noutput z = reparameterize(mu, lv)")
    assert d.code == "E0301" and d.expected == "f32[B, 6]" and d.found == "f32[B, 5]"
    d = diag("input mu: f32[B, 6]\ninput lv: f64[B, 6]\noutput z = reparameterize(mu, lv)")
    assert d.code == "E0302"
    d = diag("input mu: f32[B, 6]\noutput z = reparameterize(mu)")
    assert d.code == "E0240"
    d = diag("input x: i64[4]\noutput n = randn_like(x)")
    assert d.code == "E0302"
