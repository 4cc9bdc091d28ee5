"""Reverse mode on NumPy (dslc/autodiff.py, Program.grad): whole models against torch.autograd
through the generated module, gradient accumulation, buffers in training, released values,
and the located diagnostics (E0530-E0532)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import autodiff
from dslc.diagnostics import DslcError
from tests.helpers import assert_close

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-4  # float32, both sides

# Every core family on one path to a loss: embedding, concat, layer/batch norm, shape ops,
# a value used three times (h), a reduction, dropout at p = 0, and a loss.
TAGGER = """\
model tagger {
  input ids: i64[B, 6]
  input x: f32[B, 6, 4]
  input t: i64[B]
  e = ids -> embedding(11, 4) as emb
  z = concat(e, x, dim=2) -> layer_norm as ln
  h = z -> linear(8) as fc1 -> gelu
  h2 = h * h + h -> sigmoid
  v = h2 -> permute((0, 2, 1)) -> batch_norm as bn -> dropout(0.0) -> flatten
  p = v -> linear(5) as head -> log_softmax
  s = h -> mean(dim=1) -> sum(dim=1)
  output loss = nll_loss(p, t) + s -> mean(dim=0)
}
"""

SIGN = """\
model blocked {
  input x: f32[4, 3]
  y = x -> linear(2) as fc -> sign
  output loss = y -> sum(dim=(0, 1))
}
"""


def torch_grads(prog, inputs, params, train=False, cotangents=None, wrt_inputs=False):
    """The generated module's torch.autograd gradients (and buffers after the forward)."""
    m = prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()}, strict=True)
    m.train(train)
    args = prog.torch_arg_names()
    tins = {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}
    for t in tins.values():
        if t.is_floating_point() and wrt_inputs:
            t.requires_grad_(True)
    out = m(**{args[k]: t for k, t in tins.items()})
    out = out if isinstance(out, tuple) else (out,)
    names = [n for n, _ in prog.graph.outputs]
    if cotangents is None:
        total = out[0].sum()
    else:
        total = sum((o * torch.from_numpy(cotangents[n])).sum() for n, o in zip(names, out))
    total.backward()
    grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    for k, t in tins.items():
        if t.requires_grad:
            grads[k] = t.grad.numpy()
    return grads, {k: v.detach().numpy() for k, v in m.state_dict().items()}


def assert_same_grads(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for key, want in theirs.items():
        assert ours[key].shape == want.shape, key
        assert ours[key].dtype == want.dtype, key
        assert_close(ours[key], want, rtol=RTOL, atol=1e-6, what=key)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "prelu", "softmax", "gelu",
                                        "leaky_relu", "elu", "hard_sigmoid"])
def test_mlp_matches_torch_autograd(activation):
    prog = dslc.load(ROOT / "specs" / "mlp.dl", hparams={
        "features": 12, "width": 16, "depth": 2, "activation": activation})
    inputs = prog.random_inputs(0, {"B": 5})
    params = prog.init_params(0)
    cot = {"logits": np.random.default_rng(1).standard_normal((5, 10)).astype(np.float32)}
    ours = prog.grad(inputs, {k: v.copy() for k, v in params.items()}, loss=cot,
                     wrt_inputs=True)
    theirs, _ = torch_grads(prog, inputs, params, cotangents=cot, wrt_inputs=True)
    assert_same_grads(ours, theirs)


@pytest.mark.parametrize("train", [False, True])
def test_every_core_family_on_one_model_matches_torch(train):
    prog = dslc.load("tagger.dl", text=TAGGER)
    inputs = prog.random_inputs(0, {"B": 4})
    inputs["t"] = np.array([0, 4, 2, 1], np.int64)
    params = prog.init_params(0)
    ours_params = {k: v.copy() for k, v in params.items()}
    ours = prog.grad(inputs, ours_params, train=train)  # the only scalar output: loss
    theirs, state = torch_grads(prog, inputs, params, train=train)
    assert_same_grads(ours, theirs)
    # Training updates the batch-norm buffers in the parameters given, as torch does.
    for key in ("bn.running_mean", "bn.running_var"):
        assert_close(ours_params[key], state[key], rtol=RTOL, what=key)
    changed = not np.array_equal(ours_params["bn.running_mean"], params["bn.running_mean"])
    assert changed == train


def test_a_value_used_several_times_accumulates():
    """d/dx of sum(x*x + x) is 2x + 1: three uses of x, one gradient."""
    prog = dslc.load("t.dl", text="model t {\n input x: f32[3, 4]\n"
                                  " output y = x * x + x -> sum(dim=(0, 1))\n}\n")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    grads = prog.grad({"x": x}, {}, wrt_inputs=True)
    np.testing.assert_allclose(grads["x"], 2 * x + 1, rtol=1e-6)


def test_the_backward_walk_releases_every_saved_value():
    prog = dslc.load("tagger.dl", text=TAGGER)
    g = prog.source
    inputs = prog.random_inputs(0, {"B": 2})
    tape = autodiff.forward(g, inputs, prog.init_params(0))
    assert len(tape.ins) == len(g.nodes) - len(g.inputs)
    seeds = autodiff.output_seeds(g, tape.outputs, "loss")
    autodiff.backward(g, tape, seeds)
    assert not tape.ins and not tape.outs and not tape.ctxs


def test_a_parameter_the_loss_does_not_reach_gets_zeros():
    prog = dslc.load("t.dl", text="model t {\n input x: f32[2, 3]\n"
                                  " a = x -> linear(4) as used -> sum(dim=(0, 1))\n"
                                  " b = x -> linear(4) as unused\n output a, b\n}\n")
    grads = prog.grad(prog.random_inputs(0), prog.init_params(0), loss="a")
    assert not grads["unused.weight"].any() and not grads["unused.bias"].any()
    assert grads["used.weight"].any()


def test_differentiating_through_an_op_without_a_gradient_is_located():
    prog = dslc.load("blocked.dl", text=SIGN)
    with pytest.raises(DslcError) as info:
        prog.grad(prog.random_inputs(0), prog.init_params(0))
    d = info.value.diagnostics[0]
    assert d.code == "E0530"
    assert "'sign'" in d.message and "piecewise constant" in d.message
    assert d.span.line == 3


def test_an_op_without_a_gradient_off_the_path_is_fine():
    """A comparison feeding `where`'s condition carries no gradient, so it is no error."""
    prog = dslc.load("t.dl", text="model t {\n input x: f32[2, 3]\n h = x -> linear(3)\n"
                                  " m = h -> gt(0.0)\n"
                                  " output y = where(m, h, 0.0) -> sum(dim=(0, 1))\n}\n")
    inputs = prog.random_inputs(0)
    params = prog.init_params(0)
    grads = prog.grad(inputs, params)
    w = next(k for k in params if k.endswith(".weight"))
    b = next(k for k in params if k.endswith(".bias"))
    h = inputs["x"] @ params[w].T + params[b]
    np.testing.assert_allclose(grads[b], (h > 0).sum(axis=0), rtol=1e-6)


@pytest.mark.parametrize("loss,code,words", [
    ("nope", "E0531", "no output named 'nope'"),
    ("b", "E0531", "not a float scalar"),
    (None, "E0531", "which output is the loss"),
])
def test_loss_errors(loss, code, words):
    prog = dslc.load("t.dl", text="model t {\n input x: f32[2, 3]\n"
                                  " a = x -> sum(dim=(0, 1))\n c = x -> mean(dim=(0, 1))\n"
                                  " b = x -> linear(4)\n output a, b, c\n}\n")
    with pytest.raises(DslcError) as info:
        prog.grad(prog.random_inputs(0), prog.init_params(0), loss=loss)
    assert info.value.diagnostics[0].code == code
    assert words in info.value.diagnostics[0].message


def test_a_cotangent_of_the_wrong_shape_is_refused():
    prog = dslc.load("t.dl", text="model t {\n input x: f32[2, 3]\n"
                                  " output b = x -> linear(4)\n}\n")
    with pytest.raises(DslcError) as info:
        prog.grad(prog.random_inputs(0), prog.init_params(0),
                  loss={"b": np.zeros((2, 5), np.float32)})
    assert info.value.diagnostics[0].code == "E0532"


def test_a_region_run_is_taped_and_differentiated_by_its_op():
    """A scan's cell runs are taped one per step; `region_vjp` of one step equals the
    derivative of hₜ = tanh(W xₜ + b + U hₜ₋₁ + c) written out (the scan's own vjp, on branch
    grad_more, chains these backwards through time)."""
    prog = dslc.load(ROOT / "specs" / "elman_rnn.dl", hparams={"features": 3, "hidden": 4})
    inputs = prog.random_inputs(0, {"B": 2, "T": 5})
    params = prog.init_params(0)
    tape = autodiff.forward(prog.source, inputs, params)
    scan = next(n for n in prog.source.order() if n.op == "scan")
    region_vjp = tape.ctxs[scan.id].saved["region_vjp"]
    k = 3
    x, h_prev = inputs["x"][:, k], tape.outs[scan.id][0][:, k - 1]
    h = tape.outs[scan.id][0][:, k]
    g = np.random.default_rng(2).standard_normal(h.shape).astype(np.float32)
    gins, grads = region_vjp(k, [g])
    w, u = params["elman_cell1.ih.weight"], params["elman_cell1.hh.weight"]
    gz = g * (1 - h * h)
    assert_close(gins[0], gz @ w, what="d/dx_t")
    assert_close(gins[1], gz @ u, what="d/dh_t-1")
    assert_close(grads["elman_cell1.ih.weight"], gz.T @ x, what="dW")
    assert_close(grads["elman_cell1.hh.weight"], gz.T @ h_prev, what="dU")
    assert_close(grads["elman_cell1.ih.bias"], gz.sum(axis=0), what="db")
    with pytest.raises(ValueError, match="already"):
        region_vjp(k, [g])  # its tape was released



# ---- the zoo -------------------------------------------------------------------------------


# The zoo's gradients against torch.autograd: tests/specs/test_zoo_grad.py (float64, every
# spec small enough to differentiate on NumPy in the suite).
