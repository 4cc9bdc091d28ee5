"""Loss ops (dslc/ops/loss.py): shape rules, reductions, ignore_index and torch agreement beyond
the registry's generated example tests."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.diagnostics import DslcError
from tests.helpers import compare_numpy_torch

torch = pytest.importorskip("torch")


def load(body: str):
    return dslc.load("loss.dl", text="model m {\n" + body + "\n}\n")


def code_of(body: str) -> str:
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0].code


@pytest.mark.parametrize("op", ["mse_loss", "l1_loss", "bce_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pair_losses_match_torch(op, reduction):
    prog = load(f"input x: f32[B, 3, 4]\ninput t: f32[B, 3, 4]\n"
                f"output y = {op}(x, t, reduction=\"{reduction}\")")
    want = "f32[B, 3, 4]" if reduction == "none" else "f32[]"
    assert str(prog.graph.type_of(prog.graph.outputs[0][1])) == want
    compare_numpy_torch(prog, {"B": 2})


def test_cross_entropy_over_a_sequence_with_ignore_index():
    prog = load("input x: f32[B, 5, T]\ninput t: i64[B, T]\n"
                "output y = cross_entropy(x, t, ignore_index=2)")
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    t = np.array([[0, 2, 4], [2, 2, 1]], dtype=np.int64)
    got = prog.run({"x": x, "t": t})["y"]
    want = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(t),
                                             ignore_index=2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert "ignore_index=2" in prog.to_torch_source()


def test_nll_of_log_softmax_equals_cross_entropy():
    prog = load("input x: f32[N, 6]\ninput t: i64[N]\n"
                "output a = nll_loss(log_softmax(x, dim=1), t)\noutput b = cross_entropy(x, t)")
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    out = prog.run({"x": x, "t": np.array([0, 5, 3, 3])})
    np.testing.assert_allclose(out["a"], out["b"], rtol=1e-6)


@pytest.mark.parametrize("body,code", [
    ("input x: f32[B, 4]\ninput t: f32[B, 5]\noutput y = mse_loss(x, t)", "E0301"),
    ("input x: f32[B, 4]\ninput t: i64[B, 4]\noutput y = mse_loss(x, t)", "E0302"),
    ("input x: f32[B, 4]\ninput t: i32[B]\noutput y = cross_entropy(x, t)", "E0302"),
    ("input x: f32[B, 4]\ninput t: i64[B, 4]\noutput y = cross_entropy(x, t)", "E0301"),
    ("input x: f32[B, 4]\ninput t: f32[B, 4]\noutput y = bce(x, t, reduction=\"avg\")",
     "E0209"),
    ("input x: f32[B, 4]\noutput y = l1_loss(x)", "E0240"),
])
def test_shape_errors_are_located_diagnostics(body, code):
    assert code_of(body) == code


def test_a_target_class_out_of_range_is_a_run_error():
    prog = load("input x: f32[N, 3]\ninput t: i64[N]\noutput y = cross_entropy(x, t)")
    with pytest.raises(DslcError) as exc:
        prog.run({"x": np.zeros((2, 3), np.float32), "t": np.array([0, 3])})
    assert exc.value.diagnostics[0].code == "E0507"


def test_kl_div_batchmean_and_log_target_match_torch():
    prog = load("input p: f32[B, 5]\ninput q: f32[B, 5]\n"
                "output a = kl_div(log_softmax(p, dim=1), softmax(q, dim=1), "
                "reduction=\"batchmean\")\n"
                "output b = kl_div(log_softmax(p, dim=1), log_softmax(q, dim=1), "
                "reduction=\"sum\", log_target=true)")
    np_out, t_out, _ = compare_numpy_torch(prog, {"B": 3})
    np.testing.assert_allclose(np_out["a"] * 3, np_out["b"], rtol=1e-4)


# ---- class weights, label smoothing, pos_weight: value and gradient against torch ----------


def _value_and_grad(prog, inputs: dict[str, np.ndarray]):
    """The NumPy loss and its gradient with respect to `x` (the interpreter's vjp)."""
    out = prog.run(inputs)
    grads = prog.grad(inputs, loss="y", wrt_inputs=True, float64=True)
    return out["y"], grads["x"]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
def test_weighted_smoothed_cross_entropy_with_ignored_labels(reduction, smoothing):
    w = (0.5, 2.0, 1.0, 0.0)
    prog = load("input x: f32[B, 4, T]\ninput t: i64[B, T]\n"
                f"output y = cross_entropy(x, t, weight={w}, label_smoothing={smoothing}, "
                f"ignore_index=1, reduction=\"{reduction}\")")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(np.float32)
    t = rng.integers(0, 4, (3, 5)).astype(np.int64)
    t[0, :] = 1  # a whole row ignored
    got, gx = _value_and_grad(prog, {"x": x, "t": t})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.cross_entropy(
        xt, torch.tensor(t), weight=torch.tensor(w, dtype=torch.float64), ignore_index=1,
        label_smoothing=smoothing, reduction=reduction)
    want.backward()
    np.testing.assert_allclose(got, want.item(), rtol=1e-5)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_weighted_nll_mean_divides_by_the_weights():
    prog = load("input x: f32[B, 3]\ninput t: i64[B]\n"
                "output y = nll_loss(x, t, weight=(1.0, 3.0, 0.5))")
    x = np.log(np.random.default_rng(2).dirichlet(np.ones(3), 6)).astype(np.float32)
    t = np.array([0, 1, 1, 2, 2, 2], dtype=np.int64)
    got, gx = _value_and_grad(prog, {"x": x, "t": t})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.nll_loss(xt, torch.tensor(t),
                                        weight=torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64))
    want.backward()
    np.testing.assert_allclose(got, want.item(), rtol=1e-5)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_bce_with_logits_pos_weight_matches_torch_at_large_logits():
    prog = load("input x: f32[B, 3]\ninput t: f32[B, 3]\n"
                "output y = bce_with_logits(x, t, pos_weight=(1.0, 4.0, 0.25))")
    x = np.array([[-1e4, 0.5, 30.0], [2.0, -30.0, 1e4]], dtype=np.float32)
    t = np.array([[1.0, 0.0, 1.0], [0.5, 1.0, 0.0]], dtype=np.float32)
    got, gx = _value_and_grad(prog, {"x": x, "t": t})
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    want = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch.tensor(t, dtype=torch.float64),
        pos_weight=torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64))
    want.backward()
    np.testing.assert_allclose(got, want.item(), rtol=1e-5)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("body", [
    "input x: f32[B, 3]\ninput t: i64[B]\noutput y = cross_entropy(x, t, weight=(1.0, 2.0))",
    "input x: f32[B, 3]\ninput t: i64[B]\noutput y = cross_entropy(x, t, label_smoothing=1.5)",
    "input x: f32[B, 3]\ninput t: i64[B]\noutput y = nll_loss(x, t, weight=(1.0, -2.0, 1.0))",
    "input x: f32[B, 3]\ninput t: f32[B, 3]\noutput y = bce_with_logits(x, t, "
    "pos_weight=(1.0, 2.0))",
])
def test_bad_loss_options_are_e0640(body):
    assert code_of(body) == "E0640"
