"""The window vjps (ops/window_grad.py helpers, conv and pool vjps) visit only the taps that
reach the input, on the rows they read: a padding and dilation far past the input costs
nothing in the backward pass either (the forward's fuzzing cases, tests/ops/test_conv.py and
tests/ops/test_pool.py), and pad_vjp is np.pad's adjoint."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS
from dslc.ops.window_grad import pad_vjp

BIG = 2 ** 30


def _vjp(name, attrs, ins, params=None, seed=3):
    op = OPS[name]
    a = op.attrs(**attrs)
    ctx = RunCtx(train=False, rng=np.random.default_rng(0), params=params or {})
    outs = op.numpy(a, ins, ctx)
    g = np.random.default_rng(seed).standard_normal(outs[0].shape)
    return g, op.vjp(a, ins, outs, [g], ctx)


def test_conv2d_vjp_with_padding_and_dilation_far_past_the_input():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 5))
    params = {"weight": rng.standard_normal((3, 2, 3, 3)), "bias": rng.standard_normal(3)}
    g, ([gx], grads) = _vjp("conv2d", {"out_channels": 3, "kernel": 3, "padding": BIG,
                                       "dilation": BIG}, [x], params)
    # only the middle tap reads the input: a 1x1 conv with w[:, :, 1, 1]
    np.testing.assert_allclose(gx, np.einsum("oc,nohw->nchw", params["weight"][:, :, 1, 1], g))
    want = np.zeros_like(params["weight"])
    want[:, :, 1, 1] = np.einsum("nohw,nchw->oc", g, x)
    np.testing.assert_allclose(grads["weight"], want)
    np.testing.assert_allclose(grads["bias"], g.sum(axis=(0, 2, 3)))


def test_pool1d_vjps_with_a_kernel_far_past_the_input():
    x = np.random.default_rng(2).standard_normal((1, 2, 5))
    g, ([gx], _) = _vjp("max_pool1d", {"kernel": BIG, "padding": BIG // 2}, [x])
    want = np.zeros_like(x)
    np.put_along_axis(want, x.argmax(axis=2)[..., None], g, axis=2)
    np.testing.assert_array_equal(gx, want)
    g, ([gx], _) = _vjp("avg_pool1d", {"kernel": BIG, "padding": BIG // 2}, [x])
    np.testing.assert_allclose(gx, np.broadcast_to(g / BIG, x.shape))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_vjp_is_the_adjoint_of_np_pad(mode):
    """<pad(x), g> == <x, pad_vjp(g)> for random x and g."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 6))
    pads = ((2, 3), (4, 1))
    y = np.pad(x, ((0, 0), (0, 0)) + pads, mode=mode)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose((y * g).sum(), (x * pad_vjp(g, pads, mode)).sum(), rtol=1e-12)
