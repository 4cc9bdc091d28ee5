"""Vjps of grid_sample (bilinear with border padding, points outside the image) and of
reparameterize in training, which the Examples leave out; float64 against torch.autograd and
finite differences. (Every Example is checked by tests/ops/test_registry_grad.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_sample_bilinear_matches_torch(padding_mode, align_corners):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    grid = rng.uniform(-1.4, 1.4, (2, 3, 6, 2))  # some points fall outside the image
    op = OPS["grid_sample"]
    a = op.attrs(padding_mode=padding_mode, align_corners=align_corners)
    ctx = RunCtx(train=False, rng=rng)
    outs = op.numpy(a, [x, grid], ctx)
    g = rng.standard_normal(outs[0].shape)
    (gx, ggrid), _ = op.vjp(a, [x, grid], outs, [g], ctx)
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(grid).requires_grad_(True)
    torch.nn.functional.grid_sample(xt, gt, mode="bilinear", padding_mode=padding_mode,
                                    align_corners=align_corners).backward(torch.from_numpy(g))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ggrid, gt.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_reparameterize_in_training_uses_the_forward_noise():
    rng = np.random.default_rng(1)
    mu, logvar = rng.standard_normal((2, 3, 4))
    op = OPS["reparameterize"]

    def run(m, lv):
        ctx = RunCtx(train=True, rng=np.random.default_rng(9))
        return op.numpy(op.attrs(), [m, lv], ctx)[0], ctx

    z, ctx = run(mu, logvar)
    g = rng.standard_normal(z.shape)
    (gmu, glv), _ = op.vjp(op.attrs(), [mu, logvar], [z], [g], ctx)
    np.testing.assert_allclose(gmu, g)
    eps = 1e-6
    for idx in [(0, 0), (1, 2), (2, 3)]:
        up, down = logvar.copy(), logvar.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = ((run(mu, up)[0] - run(mu, down)[0]) * g).sum() / (2 * eps)
        assert abs(fd - glv[idx]) <= 1e-7 * max(1.0, abs(fd))
