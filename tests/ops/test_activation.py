"""Tests of dslc/ops/activation.py beyond the registry's examples: elu at the extremes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from tests.helpers import assert_close


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_at_the_extremes_equals_torch(dtype, alpha):
    prog = dslc.load("t.dl", text=f"model t {{\n  input x: {dtype}[N]\n"
                     f"  output y = x -> elu({alpha})\n}}\n")
    np_dtype = {"f32": np.float32, "f64": np.float64}[dtype]
    x = np.array([-3e38, -1e4, -100.0, -1.0, -1e-8, -0.0, 0.0, 1e-8, 1.0, 100.0, 3e38],
                 np_dtype)
    got = prog.run({"x": x})["y"]
    want = F.elu(torch.from_numpy(x), alpha=alpha).numpy()
    assert got.dtype == x.dtype
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[x > 0], x[x > 0])  # exact on the positive side
    np.testing.assert_allclose(got[:3], -alpha, rtol=1e-7)  # saturates at -alpha
    assert_close(got, want, rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1000) * 4).astype(np_dtype)
    assert_close(prog.run({"x": x})["y"], F.elu(torch.from_numpy(x), alpha=alpha).numpy(),
                 rtol=1e-6, atol=1e-7)
