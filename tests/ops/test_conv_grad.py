"""The tuned conv vjp of ops/conv_grad.py (patch matrix, two large matmuls) against its plain
tap-by-tap form, and against torch.autograd, over strides, dilations, paddings (a huge one
included), channels-last inputs, 1-d/2-d/3-d, unbatched inputs and both float widths. Every
Example of every conv is also checked by tests/ops/test_registry_grad.py."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops import conv_grad
from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS

torch = pytest.importorskip("torch")

CASES = [
    # nd, batch (None: unbatched), channels in/out, size, kernel, stride, padding, dilation
    (2, 3, 4, 5, 9, 3, 1, 1, 1),
    (2, 2, 3, 6, 11, 3, 2, 1, 1),
    (2, 2, 3, 4, 10, 5, 2, 2, 2),
    (2, 1, 2, 3, 8, 7, 2, 3, 1),  # the ResNet stem's shape of conv
    (2, 4, 5, 6, 7, 1, 2, 0, 1),  # 1x1, strided: the projection shortcut
    (2, 2, 3, 4, 6, 3, 1, "same", 2),
    (2, 2, 3, 4, 5, 3, 1, 30, 1),  # most outputs read padding only
    (2, 2, 3, 4, 3, 3, 8, 6, 3),  # a tap that never reaches the input
    (2, None, 3, 4, 7, 3, 1, 1, 1),
    (1, 3, 4, 5, 20, 5, 2, 2, 1),
    (3, 2, 2, 3, 5, 3, 1, 1, 1),
    (3, 1, 2, 3, 6, 2, 2, 0, 2),
]


def grads(nd, batch, cin, cout, size, k, s, p, d, dtype, tuned, channels_last=False):
    rng = np.random.default_rng(nd * 100 + k)
    a = OPS[f"conv{nd}d"].attrs(out_channels=cout, kernel=k, stride=s, padding=p,
                                dilation=d)
    shape = ((batch,) if batch else ()) + (cin,) + (size,) * nd
    x = rng.standard_normal(shape).astype(dtype)
    if channels_last and nd == 2 and batch:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((cout, cin) + (k,) * nd).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    out = torch.nn.functional.__dict__[f"conv{nd}d"](
        torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(w), torch.from_numpy(b),
        s, p, d)
    g = rng.standard_normal(tuple(out.shape)).astype(dtype)
    ctx = RunCtx(train=False, rng=rng, params={"weight": w, "bias": b})
    # the op's own vjp when tuned
    vjp = OPS[f"conv{nd}d"].vjp if tuned else conv_grad.conv_vjp(nd, tuned=False)
    (gx,), gp = vjp(a, [x], [out.numpy()], [g], ctx)
    return x, w, b, g, gx, gp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_tuned_conv_vjp_equals_the_plain_form_and_torch(case, dtype):
    tuned = grads(*case, dtype, tuned=True)
    plain = grads(*case, dtype, tuned=False)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, want, what in ((tuned[4], plain[4], "x"), (tuned[5]["weight"],
                                                         plain[5]["weight"], "weight"),
                            (tuned[5]["bias"], plain[5]["bias"], "bias")):
        assert got.shape == want.shape and got.dtype == want.dtype, what
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)
    x, w, b, g, gx, gp = tuned
    nd, _, _, _, _, _, s, p, d = case
    xt, wt, bt = (torch.from_numpy(np.ascontiguousarray(v)).requires_grad_(True)
                  for v in (x, w, b))
    torch.nn.functional.__dict__[f"conv{nd}d"](xt, wt, bt, s, p, d).backward(
        torch.from_numpy(g))
    for got, want in ((gx, xt.grad), (gp["weight"], wt.grad), (gp["bias"], bt.grad)):
        scale = max(1.0, float(want.abs().max()))
        np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol * scale)


def test_channels_last_input_gives_the_same_gradients():
    """A conv's output is channels-last in memory: the tuned form reads it without a copy."""
    case = (2, 3, 4, 5, 9, 3, 1, 1, 1)
    a = grads(*case, np.float64, tuned=True, channels_last=True)
    b = grads(*case, np.float64, tuned=True)
    np.testing.assert_allclose(a[4], b[4], rtol=1e-12)
    np.testing.assert_allclose(a[5]["weight"], b[5]["weight"], rtol=1e-12)


def test_grouped_and_reflect_padded_convs_take_the_plain_form(monkeypatch):
    calls = []
    monkeypatch.setattr(conv_grad, "_im2col_grads",
                        lambda *args: calls.append(1) or None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, 6))
    for attrs in ({"groups": 2}, {"padding": 1, "padding_mode": "reflect"}):
        a = OPS["conv2d"].attrs(out_channels=4, kernel=3, **attrs)
        w = rng.standard_normal((4, 4 // attrs.get("groups", 1), 3, 3))
        g = rng.standard_normal((2, 4, 6 if "padding" in attrs else 4,
                                 6 if "padding" in attrs else 4))
        ctx = RunCtx(train=False, rng=rng, params={"weight": w, "bias": np.zeros(4)})
        conv_grad.conv_vjp(2)(a, [x], [None], [g], ctx)
    assert not calls


def test_an_unwanted_input_cotangent_is_not_computed():
    """The backward walk says which inputs want a cotangent (ctx.input_grads): a first conv's
    input (the model's) gets None, and its weight gradient is the same as with one."""
    rng = np.random.default_rng(5)
    a = OPS["conv2d"].attrs(out_channels=4, kernel=3, padding=1)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    got = {}
    for want in (True, False):
        ctx = RunCtx(train=False, rng=rng, params={"weight": w})
        ctx.input_grads = (want,)
        got[want] = OPS["conv2d"].vjp(a, [x], [None], [g], ctx)
    assert got[False][0] == [None] and got[True][0][0].shape == x.shape
    np.testing.assert_array_equal(got[False][1]["weight"], got[True][1]["weight"])
