"""The vjps of conv1d/2d/3d and conv_transpose1d/2d/3d (ops/conv_grad.py) on every Example:
float64 against torch.autograd through the generated module, and finite differences."""

from __future__ import annotations

import pytest

from dslc.ops.registry import OPS
from tests.ops.grad_check import check_finite_differences, check_vjp_vs_torch

NAMES = ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
         "conv_transpose3d")
CASES = [pytest.param(n, i, id=f"{n}-{i}") for n in NAMES for i in range(len(OPS[n].examples))]


@pytest.mark.parametrize("name,index", CASES)
def test_vjp_matches_torch(name, index):
    check_vjp_vs_torch(name, index)


@pytest.mark.parametrize("name,index", CASES[::3])
def test_vjp_matches_finite_differences(name, index):
    check_finite_differences(name, index)
