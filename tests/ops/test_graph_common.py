"""Tests of dslc/ops/graph_common.py: the sorted-segment reductions every graph kernel uses."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.graph_common import Segments


def reference_sum(idx: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n,) + vals.shape[1:], np.float64)
    np.add.at(out, idx, vals.astype(np.float64))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int64])
@pytest.mark.parametrize("tail", [(), (3,), (2, 4)], ids=["1d", "2d", "3d"])
def test_sum_per_node_equals_scatter_add(dtype, tail):
    """The sparse-product path (float32/64) and the reduceat path (the rest) both give each
    node the sum of its edges' rows, zeros for nodes without edges (node 5 here)."""
    rng = np.random.default_rng(0)
    n = 7
    idx = rng.choice([0, 1, 2, 3, 4, 6], size=40)
    seg = Segments(idx, n)
    vals = rng.standard_normal((40,) + tail) * 4
    vals = vals.astype(dtype)
    got = seg.sum(vals[seg.order])
    assert got.shape == (n,) + tail and got.dtype == vals.dtype
    want = reference_sum(idx, vals, n)
    tol = 1e-2 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=tol)
    assert not got[5].any()


def test_sum_over_no_edges_is_zeros_and_keeps_inf_and_nan():
    seg = Segments(np.zeros(0, np.int64), 3)
    assert seg.sum(np.zeros((0, 2), np.float32)).tolist() == [[0, 0]] * 3
    seg = Segments(np.array([0, 0, 1, 2]), 3)
    vals = np.array([[1.0], [np.inf], [np.nan], [-np.inf]], np.float32)
    got = seg.sum(vals[seg.order])[:, 0]
    assert got[0] == np.inf and np.isnan(got[1]) and got[2] == -np.inf


def test_softmax_over_each_nodes_edges():
    idx = np.array([2, 0, 2, 2, 0])
    seg = Segments(idx, 4)
    e = np.array([1.0, 2.0, 3.0, -1.0, 0.5], np.float32)
    alpha = seg.unsort(seg.softmax(e[seg.order]))
    for node in (0, 2):
        mine = idx == node
        want = np.exp(e[mine]) / np.exp(e[mine]).sum()
        np.testing.assert_allclose(alpha[mine], want, rtol=1e-6)
