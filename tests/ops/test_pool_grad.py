"""The vjps of the windowed pools (ops/pool_grad.py) and the adaptive, global and k-max pools
(ops/pool_adaptive.py) on every Example: float64 against torch.autograd through the generated
module, and finite differences; max pool ties go to the first maximum, as in torch."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.pool import Window
from dslc.ops.pool_grad import max_pool_grad
from dslc.ops.registry import OPS
from tests.ops.grad_check import check_finite_differences, check_vjp_vs_torch

torch = pytest.importorskip("torch")

NAMES = tuple(f"{m}_pool{n}d" for m in ("max", "avg", "lp") for n in (1, 2, 3)) + tuple(
    f"adaptive_{m}_pool{n}d" for m in ("max", "avg") for n in (1, 2, 3)) + (
    "global_avg_pool", "k_max_pool")
CASES = [pytest.param(n, i, id=f"{n}-{i}") for n in NAMES for i in range(len(OPS[n].examples))]


@pytest.mark.parametrize("name,index", CASES)
def test_vjp_matches_torch(name, index):
    check_vjp_vs_torch(name, index)


@pytest.mark.parametrize("name,index", CASES[::3])
def test_vjp_matches_finite_differences(name, index):
    check_finite_differences(name, index)


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
