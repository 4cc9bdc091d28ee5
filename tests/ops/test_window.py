"""Tests of dslc/ops/window.py: the taps of a window op that reach the input, against brute
force, and the buffer of the rows they read."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dslc.limits import MAX_RUN_ELEMENTS
from dslc.ops.base import ShapeError
from dslc.ops.window import reach, window


def geometries():
    """Every small axis geometry with at least one output, as the shape rules allow it."""
    for size, k, s, d, front, back in itertools.product(
            range(1, 5), range(1, 5), range(1, 4), range(1, 4), range(0, 7), range(0, 4)):
        out = (size + front + back - d * (k - 1) - 1) // s + 1
        if out >= 1:
            yield size, k, s, d, front, out


def test_reach_keeps_every_tap_that_reads_the_input():
    n = 0
    for size, k, s, d, front, out in geometries():
        r = reach(size, k, s, d, front, out)
        for t in range(k):
            rows = [t * d + o * s for o in range(out)]
            reads_input = any(front <= row < front + size for row in rows)
            if reads_input:
                assert r.t0 <= t < r.t1, (size, k, s, d, front, out, t)
                assert all(r.lo <= row < r.hi for row in rows)
        # the input rows any kept tap reads are in the buffer, at their offset
        read = {t * d + o * s - front for t in range(r.t0, r.t1) for o in range(out)}
        for row in read & set(range(size)):
            assert r.r0 <= row < r.r1
        assert r.b - r.a == r.r1 - r.r0
        assert r.a == front + r.r0 - r.lo if r.r1 > r.r0 else True
        assert 0 <= r.a <= r.b <= max(r.hi - r.lo, 0)
        n += 1
    assert n > 2000


def test_reach_drops_taps_far_in_the_padding():
    # 5 rows padded by 2**30 on both sides, dilation 2**30, 3 taps: only the middle one reads
    # the input, and the buffer holds the 5 rows it reads.
    big = 2 ** 30
    r = reach(5, 3, 1, big, big, 5)
    assert (r.t0, r.t1) == (1, 2)
    assert (r.lo, r.hi, r.a, r.b, r.r0, r.r1) == (big, big + 5, 0, 5, 0, 5)
    # no tap reaches: tap 0 reads rows 0..4, tap 1 rows 2**30.., the input is rows 10..14
    r = reach(5, 3, 1, big, 10, 5)
    assert r.t1 == r.t0 and r.hi == r.lo


def test_window_frames_the_rows_read_and_views_when_no_padding_is_read():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    rows, cols = reach(3, 3, 1, 1, 1, 3), reach(4, 2, 2, 1, 1, 3)
    assert rows.reads_padding and cols.reads_padding
    got = window(x, (1, 2), (rows, cols), -1.0, lambda shape: np.empty(shape, np.float32))
    want = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-1.0)
    np.testing.assert_array_equal(got, want[:, rows.lo:rows.hi, cols.lo:cols.hi])
    # no padding read, stride 2 leaves the last row unread: a view of the rows read
    rows = reach(3, 1, 2, 1, 0, 2)
    assert not rows.reads_padding
    got = window(x, (1,), (rows,), -1.0, lambda shape: np.empty(shape, np.float32))
    assert np.shares_memory(got, x) and got.shape == (2, 3, 4)
    got = window(x, (1,), (rows,), -1.0, lambda shape: np.empty(shape, np.float32), copy=True)
    assert not np.shares_memory(got, x)
    np.testing.assert_array_equal(got, x)


def test_window_over_the_run_limit_is_refused_before_allocating():
    x = np.zeros((1, 5), np.float32)
    far = reach(5, 2, 2 ** 29, 2 ** 31, 2 ** 31 - 1, 5)  # both taps reach, rows 2**29 apart
    assert not far.empty and far.hi - far.lo > MAX_RUN_ELEMENTS

    def alloc(shape):
        raise AssertionError(f"allocated {shape}")

    with pytest.raises(ShapeError) as exc:
        window(x, (1,), (far,), 0.0, alloc)
    assert exc.value.code == "E0505" and str(MAX_RUN_ELEMENTS) in exc.value.expected
