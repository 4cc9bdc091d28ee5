"""Max pool ties in the vjp of ops/pool_grad.py (every Example of every pool is checked against
torch.autograd by tests/ops/test_registry_grad.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.pool import Window
from dslc.ops.pool_grad import max_pool_grad
from dslc.ops.registry import OPS

torch = pytest.importorskip("torch")



@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1), (1, 1)])
def test_max_pool_ties_go_where_torch_sends_them(stride, padding):
    """Windows full of equal values: the cotangent goes to the same element as torch's."""
    x = np.round(np.random.default_rng(0).standard_normal((2, 3, 6, 7))).clip(-1, 1)
    g = np.random.default_rng(1).standard_normal(
        torch.nn.functional.max_pool2d(torch.from_numpy(x), 3, stride, padding).shape)
    a = OPS["max_pool2d"].attrs(kernel=3, stride=stride, padding=padding)
    got = max_pool_grad(x, g, Window(a, 2, "max_pool2d"))
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.max_pool2d(xt, 3, stride, padding).backward(torch.from_numpy(g))
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=1e-12)
