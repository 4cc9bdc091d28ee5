"""Tests of dslc/ops/arith.py's helpers beyond the registry's examples: torch's dtype
promotion, as the element-wise ops use it, and numbers in generated code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from dslc.ops.arith import promote_types, py_number, scalar_result_dtype
from dslc.types import DTYPES
from tests.ops.pointwise import one_op


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, DTYPES[name][1].split(".")[1])


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES, repeat=2)))
def test_promote_types_is_torchs(a, b):
    assert torch_dtype(promote_types(a, b)) == torch.promote_types(torch_dtype(a),
                                                                   torch_dtype(b))


@pytest.mark.parametrize("scalar", [2, -1, 0.5, 1e30, True], ids=repr)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_scalar_result_dtype_is_torchs(dtype, scalar):
    t = torch.zeros(2, dtype=torch_dtype(dtype))
    want = torch.result_type(t, scalar)
    assert torch_dtype(scalar_result_dtype(dtype, scalar)) == want


@pytest.mark.parametrize("v,text", [(2, "2"), (-0.5, "-0.5"), (float("inf"), "float('inf')"),
                                    (float("-inf"), "float('-inf')"),
                                    (float("nan"), "float('nan')")])
def test_py_number_is_python_source(v, text):
    assert py_number(v) == text
    got = eval(text, {})  # noqa: S307 - the point is that it evaluates
    assert (got != got and v != v) or got == v


def test_a_spec_infinity_reaches_the_generated_code():
    x = np.array([1.0, -2.0, np.inf], np.float32)
    got, generated = one_op("x + 1e999", x)
    np.testing.assert_array_equal(got, [np.inf, np.inf, np.inf])
    np.testing.assert_array_equal(generated, got)
    got, generated = one_op("x -> clamp(max=1e999)", x)
    np.testing.assert_array_equal(generated, x)

