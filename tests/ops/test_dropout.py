"""Tests of dslc/ops/dropout.py: dropout, dropout2d, alpha_dropout and drop_path, NumPy and
generated PyTorch, and the train_only trait the -O2 inference pass relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.registry import ALL_OPS
from tests.helpers import compare_numpy_torch, torch_outputs
from tests.ops.test_norm import _lit


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


# ---- alpha_dropout and drop_path ---------------------------------------------------------

ALPHA = 1.7580993408473766  # SELU's scale · alpha


def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth, as torchvision writes it (torchvision is not installed
    here): the reference the generated code must equal under the same torch generator."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ["batch", "row"]:
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    if mode == "row":
        size = [input.shape[0]] + [1] * (input.ndim - 1)
    else:
        size = [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


@pytest.mark.parametrize("call,shape", [
    ("alpha_dropout(0.3)", "B, 16"),
    ("drop_path(0.3)", "B, 4, 5, 5"),
    ("drop_path(0.5, mode=\"batch\")", "B, 7"),
])
def test_new_dropouts_are_identity_in_eval(call, shape):
    prog = load(f"input x: f32[{shape}]\noutput y = x -> {call}")
    assert prog.init_params() == {}
    inputs = prog.random_inputs(bind={"B": 3})
    np.testing.assert_array_equal(prog.run(inputs, {}, train=False)["y"], inputs["x"])
    np_out, t_out, _ = compare_numpy_torch(prog, bind={"B": 3}, train=False)
    np.testing.assert_array_equal(t_out["y"], inputs["x"])


def test_alpha_dropout_train_maps_kept_and_dropped_units():
    p = 0.2
    prog = load(f"input x: f32[400, 500]\noutput y = x -> alpha_dropout({p})")
    assert "F.alpha_dropout(x, p=0.2, training=self.training)" in prog.to_torch_source()
    x = np.random.default_rng(0).standard_normal((400, 500)).astype(np.float32)
    a = 1.0 / np.sqrt((ALPHA ** 2 * p + 1) * (1 - p))
    kept_value = a * (x + ALPHA * p)
    dropped_value = np.float32(-ALPHA * a * (1 - p))
    y = prog.run({"x": x}, {}, train=True, seed=4)["y"]
    assert y.dtype == np.float32
    torch.manual_seed(0)  # statistical checks on a fixed draw: no flaky test
    t_out, _ = torch_outputs(prog, {"x": x}, {}, train=True)
    for side, out in (("numpy", y), ("torch", t_out["y"])):
        kept = np.abs(out - kept_value) <= 1e-5 * np.abs(kept_value) + 1e-6
        dropped = np.abs(out - dropped_value) <= 1e-6
        # Each unit is one of the two affine maps of the input ...
        assert np.all(kept | dropped), side
        # ... about p of them dropped, and a standardised input stays standardised.
        assert abs(dropped[~kept].size / out.size - p) < 0.005, side
        assert abs(float(out.mean())) < 0.01 and abs(float(out.var()) - 1) < 0.02, side
    # Seeded: the same seed gives the same units.
    np.testing.assert_array_equal(prog.run({"x": x}, {}, train=True, seed=4)["y"], y)


def test_alpha_dropout_extremes():
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    p0 = load("input x: f32[4, 6]\noutput y = x -> alpha_dropout(0)")
    np.testing.assert_array_equal(p0.run({"x": x}, {}, train=True)["y"], x)
    prog = load("input x: f32[4, 6]\noutput y = x -> alpha_dropout(1.0)")
    y = prog.run({"x": x}, {}, train=True)["y"]
    t_out, _ = torch_outputs(prog, {"x": x}, {}, train=True)
    np.testing.assert_array_equal(y, np.zeros_like(x))  # torch: input · 0
    np.testing.assert_array_equal(t_out["y"], y)
    # f64 is computed and returned in f64, standardised too.
    prog = load("input x: f64[300, 300]\noutput y = x -> alpha_dropout(0.5)")
    x64 = np.random.default_rng(2).standard_normal((300, 300))
    y = prog.run({"x": x64}, {}, train=True)["y"]
    assert y.dtype == np.float64
    assert abs(float(y.mean())) < 0.02 and abs(float(y.var()) - 1) < 0.03


def test_drop_path_row_drops_whole_samples():
    p = 0.3
    prog = load(f"input x: f32[2000, 3, 2, 2]\noutput y = x -> drop_path({p})")
    x = np.random.default_rng(2).uniform(1, 2, (2000, 3, 2, 2)).astype(np.float32)
    y = prog.run({"x": x}, {}, train=True, seed=5)["y"]
    torch.manual_seed(0)
    t_out, _ = torch_outputs(prog, {"x": x}, {}, train=True)
    for side, out in (("numpy", y), ("torch", t_out["y"])):
        assert out.dtype == np.float32
        zero = (out == 0).all(axis=(1, 2, 3))
        kept = np.isclose(out, x / (1 - p), rtol=1e-6).all(axis=(1, 2, 3))
        assert np.all(zero ^ kept), side  # a sample is dropped entirely or kept and scaled
        assert abs(zero.mean() - p) < 0.04, side
        assert abs(out.mean() / x.mean() - 1) < 0.05, side  # the expectation is kept
    np.testing.assert_array_equal(prog.run({"x": x}, {}, train=True, seed=5)["y"], y)
    assert not np.array_equal(prog.run({"x": x}, {}, train=True, seed=6)["y"], y)


def test_drop_path_batch_drops_everything_or_nothing():
    p = 0.5
    prog = load(f"input x: f32[4, 6]\noutput y = x -> drop_path({p}, mode=\"batch\")")
    x = np.random.default_rng(3).uniform(1, 2, (4, 6)).astype(np.float32)
    dropped = 0
    for seed in range(200):
        y = prog.run({"x": x}, {}, train=True, seed=seed)["y"]
        if np.all(y == 0):
            dropped += 1
        else:
            np.testing.assert_allclose(y, x / (1 - p), rtol=1e-6)
    assert 70 < dropped < 130


@pytest.mark.parametrize("shape,p,mode", [
    ((6, 3, 4, 4), 0.25, "row"), ((5, 7), 0.5, "row"), ((9,), 0.4, "row"),
    ((3, 2, 5), 0.5, "batch"), ((4, 3), 1.0, "row"), ((4, 3), 1.0, "batch"),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generated_drop_path_is_torchvision_stochastic_depth(shape, p, mode, dtype):
    dims = ", ".join(str(s) for s in shape)
    prog = load(f"input x: f32[{dims}]\noutput y = x -> drop_path({p}, mode=\"{mode}\")")
    module = prog.to_torch()().to(dtype).train()
    x = torch.randn(shape, dtype=dtype)
    for seed in range(5):
        torch.manual_seed(seed)
        got = module(x=x)
        torch.manual_seed(seed)
        want = stochastic_depth(x, p, mode, training=True)
        assert got.dtype == dtype
        assert torch.equal(got, want), seed  # the same draws, the same arithmetic
    module.eval()
    assert torch.equal(module(x=x), x)


def test_drop_path_extremes_in_numpy():
    x = np.random.default_rng(4).standard_normal((5, 3)).astype(np.float32)
    p0 = load("input x: f32[5, 3]\noutput y = x -> drop_path(0.0)")
    src = p0.to_torch_source()
    assert "bernoulli_" not in src and "y = x\n" in src  # p = 0: nothing is drawn
    np.testing.assert_array_equal(p0.run({"x": x}, {}, train=True)["y"], x)
    p1 = load("input x: f32[5, 3]\noutput y = x -> drop_path(1.0)")
    np.testing.assert_array_equal(p1.run({"x": x}, {}, train=True)["y"], np.zeros_like(x))


def test_new_dropout_errors():
    d = diag("input x: f32[4, 6]\noutput y = x -> drop_path(1.5)")
    assert d.code == "E0301" and d.found == "1.5" and d.expected == "0 <= p <= 1"
    d = diag("input x: f32[4, 6]\noutput y = x -> drop_path(0.1, mode=\"col\")")
    assert d.code == "E0209" and "mode" in d.message and "'col'" in d.found
    d = diag("input x: f32[4, 6]\noutput y = x -> drop_path")
    assert d.code == "E0208"
    d = diag("input x: i64[4, 6]\noutput y = x -> drop_path(0.1)")
    assert d.code == "E0302"
    d = diag("input x: f32[4, 6]\noutput y = x -> alpha_dropout(-0.1)")
    assert d.code == "E0301"


# ---- the train_only trait ----------------------------------------------------------------

TRAIN_ONLY = [op for op in ALL_OPS if op.train_only]


def test_train_only_ops_are_the_expected_ones():
    names = {op.name for op in TRAIN_ONLY}
    assert {"dropout", "dropout2d", "alpha_dropout", "drop_path", "gaussian_noise",
            "reparameterize"} <= names
    assert all(op.random for op in TRAIN_ONLY)


@pytest.mark.parametrize("op", TRAIN_ONLY, ids=lambda op: op.name)
def test_train_only_ops_return_their_first_input_in_eval_and_o2_drops_them(op):
    """The trait is what the -O2 inference pass relies on: it must be true of the op."""
    ex = op.examples[0]
    ins = "".join(f"  input a{i}: {t.dtype}[{', '.join(D.fmt(d) for d in t.shape)}]\n"
                  for i, t in enumerate(ex.inputs))
    args = ", ".join([f"a{i}" for i in range(len(ex.inputs))]
                     + [f"{k}={_lit(v)}" for k, v in ex.attrs.items()])
    text = f"model t {{\n{ins}  output y = {op.name}({args}) -> tanh\n}}\n"
    prog = dslc.load("t.dl", text=text)
    bind = {s: 3 for t in ex.inputs for d in t.shape for s in D.free_names(d)}
    inputs = prog.random_inputs(bind=bind)
    y = prog.run(inputs, train=False, bind=bind)["y"]
    np.testing.assert_array_equal(y, np.tanh(inputs["a0"]))
    o2 = dslc.load("t.dl", text=text, opt_level=2)
    assert op.name not in {n.op for n in o2.graph.nodes.values()}
    np.testing.assert_array_equal(o2.run(inputs, train=False, bind=bind)["y"], y)
    compare_numpy_torch(o2, bind=bind)
